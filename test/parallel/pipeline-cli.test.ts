import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const kiln = (...args: string[]) => {
  const r = spawnSync(process.execPath, [join(process.cwd(), 'bin', 'kiln.js'), ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
};
const tmp = () => mkdtempSync(join(tmpdir(), 'kiln-pp-'));
const job = ['train', 'src/models/gpt.kiln', '--set', 'd=16,heads=2,layers=2,ctx=16', '--batch', '4', '--steps', '4', '--eval-every', '0', '--save-every', '2', '--lr', '1e-2', '--seed', '1', '--device', 'interp', '--json'];
const records = (out: string) => out.trim().split('\n').map((l) => JSON.parse(l));
const losses = (out: string) => records(out).filter((r) => r.type === 'step').map((r) => r.loss as number);
const close = (a: number[], b: number[]) => a.forEach((l, i) => expect(Math.abs(l - b[i]) / b[i]).toBeLessThan(1e-6));

describe('kiln train --pp (stages simulated in the interpreter)', () => {
  it('GPipe, 1F1B and dp=2 x pp=2 report the single-device losses; a pp checkpoint resumes on pp=2 bit for bit and on one device', () => {
    const oneDir = tmp();
    const one = kiln(...job, '--out', oneDir);
    expect(one.code, one.err).toBe(0);
    const want = losses(one.out);
    expect(want.length).toBe(4);
    const gp = kiln(...job, '--devices', '2', '--pp', '2', '--micro-batches', '4', '--pp-schedule', 'gpipe', '--out', tmp());
    expect(gp.code, gp.err).toBe(0);
    expect(records(gp.out).find((r) => r.type === 'info' && /pipeline parallel \(pp=2/.test(r.message)).message).toContain('bubble 20.0%');
    close(losses(gp.out), want);
    const dpp = kiln(...job, '--devices', '4', '--parallel', 'dp=2,pp=2', '--micro-batches', '2', '--out', tmp());
    expect(dpp.code, dpp.err).toBe(0);
    close(losses(dpp.out), want);
    const dir = tmp();
    const ofb = kiln(...job, '--parallel', 'pp=2', '--micro-batches', '2', '--out', dir);
    expect(ofb.code, ofb.err).toBe(0);
    const full = losses(ofb.out);
    close(full, want);
    const ck = join(dir, readdirSync(dir).filter((d) => d.startsWith('step-')).sort()[0]);
    const again = kiln(...job, '--pp', '2', '--micro-batches', '2', '--resume', ck, '--out', tmp());
    expect(again.code, again.err).toBe(0);
    expect(losses(again.out)).toEqual(full.slice(2)); // same device count, same summation order: the same bits
    const onOne = kiln(...job, '--resume', ck, '--out', tmp());
    expect(onOne.code, onOne.err).toBe(0);
    close(losses(onOne.out), want.slice(2));
  }, 300_000);

  it('kiln compile --parallel pp=2 --emit schedule shows every stage\'s programs with their send/recv and the memory per device', () => {
    const r = kiln('compile', 'src/models/gpt.kiln', '--entry', 'loss', '--set', 'd=16,heads=2,layers=4,ctx=16', '--dim', 'B=2', '--train', '--parallel', 'pp=2', '--micro-batches', '8', '--emit', 'schedule');
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain('blocks 0: 0,1; 1: 2,3; 8 micro-batches; bubble (pp-1)/(M+pp-1) = 11.1%');
    expect(r.out).toMatch(/stage 0 \(device 0\), fwd \(per micro-batch\): \d+ nodes; send act\.\d+ -> 1/);
    expect(r.out).toMatch(/stage 1 \(device 1\), bwd \(per micro-batch\): \d+ nodes; send grad\.\d+ -> 0/);
    expect(r.out).toMatch(/stage 0 \(device 0\), update \(per step\): \d+ nodes; recv tie\.wte <- 0, recv tie\.wte <- 1, recv sq <- 0, recv sq <- 1/);
    expect(r.out).toMatch(/device 1: .* KiB parameters, optimizer state and accumulators .* GPipe 8 -> .* 1F1B 1 ->/);
  }, 120_000);

  it('refuses what does not fit, without a stack trace', () => {
    for (const [flags, msg] of [
      [['--pp', '3', '--micro-batches', '4'], 'the model has 2 repeated block(s)'],
      [['--pp', '2', '--micro-batches', '3'], '--batch 4 does not split into --micro-batches 3'],
      [['--micro-batches', '2'], 'add --pp N'],
      [['--devices', '4', '--pp', '2'], '--devices 4 does not match --pp 2'],
      [['--parallel', 'tp=2,pp=2'], 'sub-groups'],
      [['--parallel', 'dp=2,pp=2', '--micro-batches', '4'], '--batch 4 does not split into --micro-batches 4 on each of dp=2 replicas'],
      [['--pp', '2', '--pp-schedule', 'zigzag'], '--pp-schedule must be gpipe or 1f1b'],
    ] as const) {
      const r = kiln(...job, ...flags, '--out', tmp());
      expect(r.code, r.out).toBe(1);
      expect(r.err).toContain(msg);
      expect(r.err).not.toMatch(/\n\s+at /);
    }
  }, 300_000);
});
