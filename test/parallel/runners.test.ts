import { describe, expect, it } from 'vitest';
import { KilnError } from '../../src/errors.js';
import { compileModel } from '../../src/frontend/index.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import { compileIR } from '../../src/passes/index.js';
import { parallelFromFlags, parseParallel } from '../../src/parallel/mesh.js';
import { DataParallelInterpreterRunner } from '../../src/parallel/runner.js';
import { InterpreterRunner } from '../../src/train/runner.js';
import { Rng } from '../../src/train/rng.js';

const f32 = (v: number): HostTensor => ({ dtype: 'f32', shape: [], data: Float32Array.of(v) });
const cfg = { d: 8, heads: 2, layers: 1, vocab: 7, d_ff: 16, ctx: 4 };
const B = 4, T = 4;
const step = (batch: number, dp: number, tp = 1, zero = 0) =>
  compileIR(compileModel('src/models/gpt.kiln', { entry: 'loss', set: cfg, dims: { B: batch, T } }).graph, { train: { optimizer: { kind: 'adamw' } }, ...(dp * tp > 1 ? { parallel: { dp, tp, zero } } : {}) });
function batch(t: number): Record<string, HostTensor> {
  const r = new Rng(t, 'resume');
  const ints = () => Int32Array.from({ length: B * T }, () => r.int(cfg.vocab));
  return { tokens: { dtype: 'i32', shape: [B, T], data: ints() }, targets: { dtype: 'i32', shape: [B, T], data: ints() }, lr: f32(1e-2), step: f32(t + 1) };
}

describe('--devices and --parallel', () => {
  it('parse, default to each other, and refuse what is not built or does not agree', () => {
    expect(parseParallel('dp=4')).toEqual({ dp: 4 });
    expect(parallelFromFlags('2', undefined)).toEqual({ dp: 2 });
    expect(parallelFromFlags(undefined, 'dp=2,tp=1')).toEqual({ dp: 2, tp: 1 });
    expect(parallelFromFlags(undefined, undefined)).toBeUndefined();
    expect(() => parallelFromFlags('2', 'dp=4')).toThrow('--devices 2 does not match --parallel dp=4');
    expect(parseParallel('pp=2')).toEqual({ dp: 1, pp: 2 });
    expect(parseParallel('dp=2,pp=2')).toEqual({ dp: 2, pp: 2 });
    expect(() => parseParallel('tp=2,pp=2')).toThrow('sub-groups');
    expect(parseParallel('tp=2')).toEqual({ dp: 1, tp: 2 });
    expect(() => parseParallel('dp=2,tp=2')).toThrow('sub-groups');
    expect(() => parallelFromFlags('4', 'tp=2')).toThrow('which uses 2 devices');
    expect(() => parallelFromFlags(undefined, 'tp=2', '1')).toThrow('needs dp > 1');
    expect(() => parseParallel('dp2')).toThrow(KilnError);
    expect(parallelFromFlags('2', undefined, '1')).toEqual({ dp: 2, zero: 1 });
    expect(parallelFromFlags('2', undefined, '3')).toEqual({ dp: 2, zero: 3 });
    expect(() => parallelFromFlags('2', undefined, '4')).toThrow("--zero expects 0, 1, 2 or 3, got '4'");
    expect(() => parallelFromFlags(undefined, 'tp=2', '3')).toThrow('--zero 3 shards state over data-parallel devices: it needs dp > 1');
    expect(() => parallelFromFlags(undefined, undefined, '1')).toThrow('add --devices N');
  });
});

describe('a data-parallel run hands its (unsharded) state to another device count', () => {
  for (const zero of [0, 3]) it(`dp=2${zero ? ' ZeRO-3 (parameters and state sharded)' : ''} for 2 steps, then step 3 on one device or on 4 devices, equals dp=2 continuing`, async () => {
    const dp2 = new DataParallelInterpreterRunner(step(B / 2, 2, 1, zero), 2, 0);
    for (let t = 0; t < 2; t++) await dp2.run(batch(t), ['loss']);
    const state = await dp2.getParams();
    const one = new InterpreterRunner(step(B, 1), 0);
    const dp4 = new DataParallelInterpreterRunner(step(B / 4, 4, 1, zero), 4, 0);
    await one.setParams(state);
    await dp4.setParams(state);
    const want = (await dp2.run(batch(2), ['loss'])).loss.data[0];
    for (const r of [one, dp4]) {
      const got = (await r.run(batch(2), ['loss'])).loss.data[0];
      expect(Math.abs(got - want) / want).toBeLessThan(1e-6);
      const p = await r.getParams(['wte']);
      const q = await dp2.getParams(['wte']);
      for (let i = 0; i < p.wte.data.length; i++) expect(Math.abs(p.wte.data[i] - q.wte.data[i])).toBeLessThan(1e-5);
    }
  });
});

describe('a tensor-parallel runner starts from the whole model\'s initialisation and hands over whole tensors', () => {
  it('tp=2 from scratch follows one device; its state continues on one device', async () => {
    const one = new InterpreterRunner(step(B, 1), 0);
    const tp2 = new DataParallelInterpreterRunner(step(B, 1, 2), 1, 0, { dp: 1, tp: 2 });
    for (let t = 0; t < 3; t++) {
      const a = (await one.run(batch(t), ['loss'])).loss.data[0];
      const b = (await tp2.run(batch(t), ['loss'])).loss.data[0];
      expect(Math.abs(a - b) / a).toBeLessThan(1e-6);
    }
    const state = await tp2.getParams();
    const want = await one.getParams();
    for (const k of Object.keys(want)) {
      expect(state[k].shape).toEqual(want[k].shape);
      for (let i = 0; i < want[k].data.length; i++) expect(Math.abs(state[k].data[i] - want[k].data[i])).toBeLessThan(1e-5);
    }
    const resumed = new InterpreterRunner(step(B, 1), 0);
    await resumed.setParams(state);
    const a = (await one.run(batch(3), ['loss'])).loss.data[0];
    const b = (await resumed.run(batch(3), ['loss'])).loss.data[0];
    expect(Math.abs(a - b) / a).toBeLessThan(1e-6);
  });
});
