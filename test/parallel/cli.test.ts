import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const kiln = (...args: string[]) => {
  const r = spawnSync(process.execPath, [join(process.cwd(), 'bin', 'kiln.js'), ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
};
const tmp = () => mkdtempSync(join(tmpdir(), 'kiln-par-'));
const job = ['train', 'src/models/gpt.kiln', '--set', 'd=16,heads=2,layers=1,ctx=16', '--batch', '4', '--steps', '3', '--eval-every', '0', '--lr', '1e-2', '--seed', '1', '--device', 'interp', '--json'];
const losses = (out: string) => out.trim().split('\n').map((l) => JSON.parse(l)).filter((r) => r.type === 'step').map((r) => r.loss as number);

describe('kiln train across (simulated) devices', () => {
  it('dp=2 with ZeRO-1 or ZeRO-3 and tp=2 report the single-device losses; bad meshes are refused without a stack trace', () => {
    const one = kiln(...job, '--out', tmp());
    expect(one.code, one.err).toBe(0);
    const want = losses(one.out);
    expect(want.length).toBe(3);
    for (const mesh of [['--devices', '2', '--zero', '1'], ['--devices', '2', '--zero', '3'], ['--parallel', 'tp=2']]) {
      const r = kiln(...job, ...mesh, '--out', tmp());
      expect(r.code, r.err).toBe(0);
      losses(r.out).forEach((l, i) => expect(Math.abs(l - want[i]) / want[i]).toBeLessThan(1e-6));
    }
    const bad = kiln(...job, '--devices', '3', '--out', tmp());
    expect(bad.code).toBe(1);
    expect(bad.err).toContain('--batch 4 does not split over dp=3 devices');
    expect(bad.err).not.toMatch(/\n\s+at /);
    const stage = kiln(...job, '--devices', '2', '--zero', '4', '--out', tmp());
    expect(stage.code).toBe(1);
    expect(stage.err).toContain("--zero expects 0, 1, 2 or 3, got '4'");
  });

  it('kiln compile --parallel dp=2 --zero 3 --emit schedule: each segment, the collectives between them, memory per device', () => {
    const set = ['--set', 'd=8,heads=2,layers=1,vocab=8,d_ff=16,ctx=4', '--dim', 'B=2', '--entry', 'loss', '--train'];
    const r = kiln('compile', 'src/models/gpt.kiln', ...set, '--parallel', 'dp=2', '--zero', '3', '--emit', 'schedule');
    expect(r.code, r.err).toBe(0);
    const one = kiln('compile', 'src/models/gpt.kiln', ...set, '--emit', 'memory');
    expect(one.code, one.err).toBe(0);
    // every parameter of this GPT has an even first axis: one all-gather each, then their gradients reduce-scattered
    const params = Number(/(\d+) all_gather/.exec(r.out)![1]);
    expect(r.out).toContain(`1 all_reduce, ${params} reduce_scatter`);
    expect(r.out).toMatch(/----- segment 3: \d+ nodes/);
    // parameters + AdamW state per device: 3P/2 (KiB, one decimal), against the single device's parameter bytes
    const perDevice = Number(/memory per device: ([\d.]+) KiB parameters and optimizer state/.exec(r.out)![1]);
    const single = /params ([\d.]+) (KiB|MiB)/.exec(one.out)!;
    const singleKiB = Number(single[1]) * (single[2] === 'MiB' ? 1024 : 1);
    expect(Math.abs(perDevice - singleKiB / 2)).toBeLessThan(0.2);
  });
});
