import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { HostTensor } from '../../src/ir/tensor.js';
import { loadCheckpoint, resolveCheckpoint, saveCheckpoint } from '../../src/train/checkpoint.js';
import { decodeSafetensors, encodeSafetensors } from '../../src/io/safetensors.js';

const t = (shape: number[], seed: number): HostTensor => ({
  dtype: 'f32',
  shape,
  data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i * 1.7 + seed)),
});
const meta = { model: { file: 'm.kiln', name: 'm', config: { d: 4 } }, train: { note: 'x' } };
const fresh = () => mkdtempSync(join(tmpdir(), 'kiln-ck-'));

describe('safetensors', () => {
  it('round-trips every dtype with the standard header layout', () => {
    const tensors: Record<string, HostTensor> = {
      'h.0.w': t([3, 5], 1),
      half: { dtype: 'f16', shape: [3], data: Float32Array.of(0.5, -2, 65504) },
      ids: { dtype: 'i32', shape: [2, 2], data: Int32Array.of(-1, 2, 3, 2147483647) },
      flags: { dtype: 'bool', shape: [3], data: Uint8Array.of(1, 0, 1) },
    };
    const bytes = encodeSafetensors(tensors, { format: 'pt' });
    const hlen = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + hlen)));
    expect(header['h.0.w']).toEqual({ dtype: 'F32', shape: [3, 5], data_offsets: expect.any(Array) });
    expect(header.__metadata__).toEqual({ format: 'pt' });
    const back = decodeSafetensors(bytes).tensors;
    for (const [k, v] of Object.entries(tensors)) {
      expect(back[k].dtype).toBe(v.dtype);
      expect(Array.from(back[k].data)).toEqual(Array.from(v.data));
    }
  });
  it('refuses truncated and corrupt files with a clear message', () => {
    const bytes = encodeSafetensors({ w: t([4, 4], 2) });
    expect(() => decodeSafetensors(bytes.subarray(0, bytes.length - 3), 'x.safetensors')).toThrow(/x.safetensors: not a valid safetensors file: tensor 'w' ends at byte 64 but the data section has 61 bytes \(truncated file\)/);
    const bad = bytes.slice();
    bad[9] = 0x7b; // break the JSON header
    bad[10] = 0x7b;
    expect(() => decodeSafetensors(bad, 'y.safetensors')).toThrow(/y.safetensors: not a valid safetensors file: the header is not valid JSON/);
    expect(() => decodeSafetensors(new Uint8Array(3), 'z')).toThrow(/only 3 bytes/);
  });
});

describe('checkpoints', () => {
  it('save and load round-trip; `latest` names the newest step and old steps are pruned', () => {
    const dir = fresh();
    for (const s of [1, 2, 3]) saveCheckpoint(dir, s, { w: t([2, 3], s) }, { 'opt.m.w': t([2, 3], -s) }, meta);
    expect(resolveCheckpoint(dir)).toBe(join(dir, 'step-0000003'));
    expect(existsSync(join(dir, 'step-0000001'))).toBe(false);
    const ck = loadCheckpoint(dir, { params: { w: { dtype: 'f32', shape: [2, 3] } } });
    expect(ck.state.step).toBe(3);
    expect(Array.from(ck.params.w.data)).toEqual(Array.from(t([2, 3], 3).data));
  });

  it('refuses a truncated, corrupted or differently shaped checkpoint before returning anything', () => {
    const dir = fresh();
    const step = saveCheckpoint(dir, 5, { w: t([2, 3], 1) }, {}, meta);
    expect(() => loadCheckpoint(dir, { params: { w: { dtype: 'f32', shape: [3, 3] } } })).toThrow(
      `checkpoint ${step} does not match the model: parameter 'w' is f32[2, 3] in the checkpoint, the model has f32[3, 3]`,
    );
    expect(() => loadCheckpoint(dir, { params: { w: { dtype: 'f32', shape: [2, 3] } }, modelName: 'gpt' })).toThrow(/is of model 'm', not 'gpt'/);
    const p = join(step, 'params.safetensors');
    const original = readFileSync(p);
    const flipped = original.slice();
    flipped[flipped.length - 1] ^= 0xff; // a flipped bit in the data: the format is intact, the checksum is not
    writeFileSync(p, flipped);
    expect(() => loadCheckpoint(dir)).toThrow(/params.safetensors is corrupt or truncated \(checksum mismatch\)/);
    writeFileSync(p, original);
    truncateSync(p, 20);
    expect(() => loadCheckpoint(dir)).toThrow(/corrupt or truncated/);
    writeFileSync(join(step, 'state.json'), '{"format": "kiln-ch');
    expect(() => loadCheckpoint(dir)).toThrow(/state.json is unreadable or not valid JSON/);
    expect(() => loadCheckpoint(fresh())).toThrow(/is not a Kiln checkpoint/);
  });

  it('a crash while writing leaves the previous checkpoint loadable', () => {
    const dir = fresh();
    saveCheckpoint(dir, 1, { w: t([2], 1) }, {}, meta);
    // what a process killed mid-save leaves: a half-written temporary folder, `latest` untouched
    mkdirSync(join(dir, '.tmp-step-0000002-999'));
    writeFileSync(join(dir, '.tmp-step-0000002-999', 'params.safetensors'), 'garbage');
    expect(loadCheckpoint(dir).state.step).toBe(1);
  });
});

describe('kiln train --resume continues exactly, also after SIGKILL', () => {
  const kiln = join(process.cwd(), 'bin', 'kiln.js');
  const args = (out: string, extra: string[] = []) => [
    kiln, 'train', 'src/models/gpt.kiln', '--set', 'd=32,heads=2,layers=1,ctx=16', '--batch', '2', '--steps', '12',
    '--lr', '1e-2', '--warmup', '2', '--eval-every', '0', '--save-every', '4', '--json', '--data', 'moby-dick', '--out', out, ...extra,
  ];
  const losses = (stdout: string) =>
    stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l))
      .filter((e) => e.type === 'step')
      .map((e) => [e.step, e.loss] as [number, number]);

  it('the loss sequence after resuming equals the uninterrupted run', async () => {
    const base = fresh();
    const full = spawnSync(process.execPath, args(join(base, 'full')), { encoding: 'utf8' });
    expect(full.status, full.stderr).toBe(0);
    const reference = losses(full.stdout);
    expect(reference.length).toBe(12);

    // a run killed with SIGKILL once its step-8 checkpoint exists
    const out = join(base, 'killed');
    const child = spawn(process.execPath, args(out), { stdio: ['ignore', 'pipe', 'pipe'] });
    await new Promise<void>((resolve, reject) => {
      const timer = setInterval(() => {
        if (existsSync(join(out, 'latest')) && readFileSync(join(out, 'latest'), 'utf8').trim() === 'step-0000008') {
          clearInterval(timer);
          child.kill('SIGKILL');
          resolve();
        }
      }, 20);
      child.on('exit', () => {
        clearInterval(timer);
        reject(new Error('the run finished before it could be killed'));
      });
    }).catch(() => undefined);
    await new Promise((r) => child.once('exit', r).once('close', r));
    const at = Number(readFileSync(join(out, 'latest'), 'utf8').trim().slice(5));
    expect(at).toBeGreaterThanOrEqual(4);
    expect(at).toBeLessThan(12); // it really was killed before the end
    const resumed = spawnSync(process.execPath, args(out, ['--resume', out]), { encoding: 'utf8' });
    expect(resumed.status, resumed.stderr).toBe(0);
    const after = losses(resumed.stdout);
    expect(after.length).toBe(12 - at);
    expect(after.map((x) => x[0])).toEqual(reference.filter((x) => x[0] > at).map((x) => x[0]));
    for (const [i, [, l]] of after.entries()) expect(l).toBe(reference.find((x) => x[0] === after[i][0])![1]);
    rmSync(base, { recursive: true, force: true });
  });

  it('a corrupt or differently shaped checkpoint is refused before training starts, and nothing in it changes', () => {
    const base = fresh();
    const out = join(base, 'run');
    const first = spawnSync(process.execPath, args(out, ['--steps', '4']), { encoding: 'utf8' });
    expect(first.status, first.stderr).toBe(0);
    const step = resolveCheckpoint(out);
    const optim = readFileSync(join(step, 'optim.safetensors'));
    writeFileSync(join(step, 'optim.safetensors'), 'not a tensor file');
    const before = readFileSync(join(step, 'params.safetensors'));
    const r = spawnSync(process.execPath, args(out, ['--resume', out]), { encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/optim.safetensors is corrupt or truncated/);
    expect(r.stderr).not.toMatch(/\n\s+at /); // no stack trace
    expect(readFileSync(join(step, 'params.safetensors')).equals(before)).toBe(true);
    expect(readFileSync(join(out, 'latest'), 'utf8').trim()).toBe('step-0000004');
    // a checkpoint of another shape: refused before the device is touched (no "device:" line yet)
    writeFileSync(join(step, 'optim.safetensors'), optim);
    const other = spawnSync(process.execPath, [...args(join(base, 'other'), ['--resume', out]).map((a) => (a === 'd=32,heads=2,layers=1,ctx=16' ? 'd=32,heads=2,layers=2,ctx=16' : a))], { encoding: 'utf8' });
    expect(other.status).toBe(1);
    expect(other.stderr).toMatch(/does not match the model: parameter 'h\.1\.[\w.]+' is missing/);
    expect(other.stdout).not.toMatch(/device:/);
    rmSync(base, { recursive: true, force: true });
  });
});
