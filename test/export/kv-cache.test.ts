/**
 * Incremental decoding with a key/value cache (gpt.kiln's `decode` entry, std `cached_self_attention`, the
 * `update_slice` op): feeding a sequence one token per step, each step's logits equal the full-window forward's
 * logits at that position — in the reference interpreter and compiled to WebGPU (caches passed from step to step).
 */
import { describe, expect, it } from 'vitest';
import { compileModel } from '../../src/frontend/index.js';
import { interpret } from '../../src/interp/interpreter.js';
import type { AttrsOf } from '../../src/ir/op.js';
import { initParam } from '../../src/ir/init.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import { compileGraph } from '../../src/runtime/index.js';
import { expectClose, sharedDevice } from '../runtime/helpers.js';

const set = { vocab: 32, d: 16, heads: 2, layers: 2, ctx: 8 };
const T = 8;
const fwd = compileModel('src/models/gpt.kiln', { entry: 'forward', set, dims: { B: 1, T } }).graph;
const dec = compileModel('src/models/gpt.kiln', { entry: 'decode', set, dims: { B: 1 } }).graph;
const params: Record<string, HostTensor> = {};
for (const n of fwd.nodes) {
  if (n.op !== 'param') continue;
  const a = n.attrs as AttrsOf<'param'>;
  params[a.name] = initParam(a.init, n.type, a.name, 3);
}
const toks = [5, 1, 30, 7, 2, 9, 11, 4];
const i32 = (shape: number[], v: number[]): HostTensor => ({ dtype: 'i32', shape, data: Int32Array.from(v) });
const full = interpret(fwd, { inputs: { tokens: i32([1, T], toks) }, params }).logits;
const row = (p: number): HostTensor => ({ dtype: 'f32', shape: [1, 1, 32], data: full.data.slice(p * 32, (p + 1) * 32) });
const cacheShape = [2, 1, 2, 8, 8];
const zeros = (): HostTensor => ({ dtype: 'f32', shape: cacheShape, data: new Float32Array(2 * 2 * 8 * 8) });

describe('decode with a key/value cache', () => {
  it('has the inputs and outputs generation relies on, and the same parameters as forward', () => {
    expect(dec.outputs.map((o) => o.name)).toEqual(['logits', 'k_cache', 'v_cache']);
    const names = (g: typeof dec) => g.nodes.filter((n) => n.op === 'param').map((n) => (n.attrs as AttrsOf<'param'>).name).sort();
    expect(names(dec)).toEqual(names(fwd));
    expect(dec.nodes.filter((n) => n.op === 'update_slice').length).toBe(2 * set.layers);
  });

  it('interpreter: logits of one-token steps equal the full window at every position', () => {
    let k = zeros();
    let v = zeros();
    for (let p = 0; p < T; p++) {
      const r = interpret(dec, { inputs: { token: i32([1, 1], [toks[p]]), pos: i32([1], [p]), k_cache: k, v_cache: v }, params });
      expectClose(`position ${p}`, r.logits, row(p), { rtol: 1e-6, atol: 1e-7 });
      // row p of every layer's cache is written, later rows are still zero
      const written = (c: HostTensor, r0: number) => c.data[r0 * 8] !== 0;
      expect(written(r.k_cache, p)).toBe(true);
      if (p + 1 < T) expect(written(r.k_cache, p + 1)).toBe(false);
      k = r.k_cache;
      v = r.v_cache;
    }
  });

  it('WebGPU: the compiled decode step reproduces the full window position by position', async () => {
    const dev = await sharedDevice();
    const exe = await compileGraph(dec, dev, { seed: null });
    try {
      for (const [name, t] of Object.entries(params)) exe.setParam(name, t);
      let k = zeros();
      let v = zeros();
      for (let p = 0; p < T; p++) {
        const { outputs } = await exe.run({ token: i32([1, 1], [toks[p]]), pos: i32([1], [p]), k_cache: k, v_cache: v });
        expectClose(`position ${p}`, outputs.logits, row(p), { rtol: 1e-4, atol: 1e-5 });
        k = outputs.k_cache;
        v = outputs.v_cache;
      }
    } finally {
      exe.destroy();
    }
  }, 120_000);
});
