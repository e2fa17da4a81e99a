/**
 * attention-fusion: every attention of the library models (and the same chain written by hand) becomes one
 * flash_attention node, and the fused graph computes the same loss and gradients (interpreter) and, trained for
 * a few steps, the same loss curve.
 */
import { describe, expect, it } from 'vitest';
import { grad } from '../../src/autodiff/index.js';
import { compileRequest } from '../../src/cli/commands/compile.js';
import { compileModel } from '../../src/frontend/index.js';
import { interpret } from '../../src/interp/interpreter.js';
import { GraphBuilder } from '../../src/ir/builder.js';
import type { Graph } from '../../src/ir/graph.js';
import type { AttrsOf } from '../../src/ir/op.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import { ATTENTION_RULES, compileIR, findAttention, fuseAttention, GENERIC_TARGET, runPasses, runPipeline } from '../../src/passes/index.js';
import { buildTrainStep } from '../../src/train/optimizers.js';
import { InterpreterRunner } from '../../src/train/runner.js';

const ints = (shape: number[], f: (i: number) => number): HostTensor => ({ dtype: 'i32', shape, data: Int32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => f(i)) });
const seedT = (v: number): HostTensor => ({ dtype: 'u32', shape: [], data: Uint32Array.of(v) });
const f32 = (v: number): HostTensor => ({ dtype: 'f32', shape: [], data: Float32Array.of(v) });

const small = { vocab: 13, d: 8, heads: 2, layers: 2, d_ff: 16, ctx: 5, dropout: 0.2 };

interface ModelCase {
  model: string;
  set?: Record<string, number>;
  dims?: Record<string, number>;
  masks: string[];
  inputs: Record<string, HostTensor>;
}

const B = 2;
const cases: ModelCase[] = [
  { model: 'gpt', masks: ['causal', 'causal'], inputs: { tokens: ints([B, 5], (i) => (i * 7) % 13), targets: ints([B, 5], (i) => (i * 3 + 1) % 13) } },
  { model: 'bert', masks: ['none', 'none'], inputs: { tokens: ints([B, 5], (i) => (i * 5) % 13), labels: ints([B, 5], (i) => (i % 3 === 0 ? (i * 2) % 13 : -100)) } },
  {
    model: 'prefixlm',
    masks: ['prefix', 'prefix'],
    inputs: { tokens: ints([B, 5], (i) => (i * 7) % 13), targets: ints([B, 5], (i) => (i < 2 ? -100 : (i * 3) % 13)), prefix_len: ints([B], (i) => 2 + i) },
  },
  {
    // S != T: the decoder's cross-attention reads 7 encoder positions from 4 queries.
    model: 't5',
    set: { layers: 1 },
    dims: { S: 7, T: 4 },
    masks: ['none', 'causal', 'none'],
    inputs: { src: ints([B, 7], (i) => (i * 5) % 13), dec_in: ints([B, 4], (i) => (i * 3) % 13), targets: ints([B, 4], (i) => (i * 2 + 1) % 13) },
  },
];

function compile(c: ModelCase): Graph {
  return compileModel(`src/models/${c.model}.kiln`, { entry: 'loss', set: { ...small, ...c.set }, dims: c.dims }).graph;
}

describe('attention-fusion on the library models', () => {
  for (const c of cases) {
    it(`${c.model}: every attention becomes flash_attention; loss and gradients equal the unfused graph`, () => {
      const g = compile(c);
      const fused = fuseAttention(g);
      const fa = fused.nodes.filter((n) => n.op === 'flash_attention');
      expect(fa.map((n) => (n.attrs as AttrsOf<'flash_attention'>).mask)).toEqual(c.masks);
      // nothing of the unfused chain is left: no softmax, no [.., T, S] tensor
      expect(fused.nodes.some((n) => n.op === 'softmax')).toBe(false);
      expect(fa.every((n) => (n.attrs as AttrsOf<'flash_attention'>).p === small.dropout)).toBe(true);
      expect([...findAttention(g).values()].every((m) => m.rule === 'composite-attention')).toBe(true);
      const inputs = { ...c.inputs, rng_seed: seedT(99) };
      const a = interpret(grad(g, { loss: 'loss' }), { inputs, seed: 4, float64: true });
      const b = interpret(grad(fused, { loss: 'loss' }), { inputs, seed: 4, float64: true });
      expect(Object.keys(b).sort()).toEqual(Object.keys(a).sort());
      for (const k of Object.keys(a)) {
        const scale = Math.max(1e-3, ...Array.from(a[k].data, Math.abs));
        let worst = 0;
        a[k].data.forEach((v, i) => (worst = Math.max(worst, Math.abs(v - b[k].data[i]))));
        expect(worst / scale, k).toBeLessThan(1e-9);
      }
    });
  }

  it('gpt: training 12 AdamW steps with and without fusion gives the same loss curve', async () => {
    const c = cases[0];
    const step = (g: Graph) => buildTrainStep(grad(g, { loss: 'loss' }), { kind: 'adamw', weightDecay: 0.01 });
    const curve = async (g: Graph) => {
      const r = new InterpreterRunner(step(g), 1);
      const losses: number[] = [];
      for (let s = 0; s < 12; s++) {
        const out = await r.run({ ...c.inputs, rng_seed: seedT(1000 + s), lr: f32(3e-2), step: f32(s + 1) }, ['loss']);
        losses.push(out.loss.data[0]);
      }
      return losses;
    };
    const g = compile(c);
    const [u, f] = [await curve(g), await curve(fuseAttention(g))];
    expect(u[11]).toBeLessThan(u[0] - 0.05); // it does train
    u.forEach((v, i) => expect(Math.abs(v - f[i]), `step ${i}`).toBeLessThan(1e-4));
  });
});

describe('attention-fusion rules', () => {
  /** The chain written by hand: q kᵀ / sqrt(d) + bias, where(mask), softmax, @ v. */
  function handwritten(extraUse = false): { g: Graph; inputs: Record<string, HostTensor> } {
    const b = new GraphBuilder();
    const x = (name: string, shape: number[]) => b.op('input', [], { name, dtype: 'f32', shape });
    const [q, k, v, bias] = [x('q', [3, 4, 2]), x('k', [3, 6, 2]), x('v', [3, 6, 5]), x('bias', [4, 6])];
    const mask = b.op('input', [], { name: 'mask', dtype: 'bool', shape: [3, 4, 6] });
    const s = b.add(b.div(b.op('matmul', [q, k], { transA: false, transB: true }), b.scalar(Math.SQRT2)), bias);
    const p = b.op('softmax', [b.op('select', [mask, s, b.scalar(-1e4)], {})], {});
    const out = b.op('matmul', [p, v], { transA: false, transB: false });
    const outs = [{ name: 'out', id: out }];
    if (extraUse) outs.push({ name: 'probs', id: p });
    const rnd = (shape: number[], seed: number): HostTensor => ({ dtype: 'f32', shape, data: Float32Array.from({ length: shape.reduce((a, c) => a * c, 1) }, (_, i) => Math.sin(i * 1.7 + seed)) });
    const inputs = { q: rnd([3, 4, 2], 1), k: rnd([3, 6, 2], 2), v: rnd([3, 6, 5], 3), bias: rnd([4, 6], 4), mask: { dtype: 'bool' as const, shape: [3, 4, 6], data: Uint8Array.from({ length: 72 }, (_, i) => (i % 5 === 0 ? 0 : 1)) } };
    return { g: b.build('hand', outs), inputs };
  }

  it('the hand-written chain (divide by a constant, + bias, where-mask) is fused by handwritten-attention', () => {
    const { g, inputs } = handwritten();
    expect(ATTENTION_RULES.map((r) => r.name)).toEqual(['composite-attention', 'handwritten-attention']);
    const m = [...findAttention(g).values()];
    expect(m.map((x) => [x.rule, x.attrs.mask, x.attrs.bias, x.attrs.fill])).toEqual([['handwritten-attention', 'bool', true, -1e4]]);
    expect(m[0].attrs.scale).toBeCloseTo(1 / Math.SQRT2, 12);
    const fused = runPasses(g, 'attention-fusion');
    expect(fused.nodes.filter((n) => n.op !== 'input' && n.op !== 'constant').map((n) => n.op)).toEqual(['flash_attention']);
    const a = interpret(g, { inputs }).out.data;
    const b = interpret(fused, { inputs }).out.data;
    a.forEach((v, i) => expect(Math.abs(v - b[i])).toBeLessThan(1e-6));
  });

  it('leaves the chain alone when the probabilities are used elsewhere, when turned off, or over the buffer limit', () => {
    const shared = handwritten(true).g;
    expect(fuseAttention(shared)).toBe(shared);
    const { g } = handwritten();
    expect(fuseAttention(g, { enabled: false })).toBe(g);
    expect(fuseAttention(g, { maxStorageBuffers: 7 })).toBe(g); // bias + mask: 8 buffers in the backward
    expect(fuseAttention(g, { rules: ['composite-attention'] })).toBe(g);
  });

  it('by default fuses every attention, except on CPU adapters without fixed-size subgroups (there only those over the binding limit); --fuse-attention: all; false: none', () => {
    // gpt with 4 heads: f32 scores [B, 4, T, T] are 128 MiB at B=2, T=2048 (at the limit) and 512 MiB at
    // T=4096 (over it). Graph-level only: nothing runs.
    const gpt = (T: number) => compileModel('src/models/gpt.kiln', { entry: 'loss', set: { vocab: 13, d: 8, heads: 4, layers: 1, d_ff: 16, ctx: T }, dims: { B: 2, T } }).graph;
    const flash = (g: Graph) => g.nodes.filter((n) => n.op === 'flash_attention').length;
    const at = (g: Graph, passes?: Record<string, object | false>) => compileIR(g, { passes });
    expect(flash(at(gpt(64)))).toBe(1);
    expect(flash(at(gpt(4096)))).toBe(1);
    expect(flash(at(gpt(4096), { 'attention-fusion': false }))).toBe(0);
    // one query (a decode step): unfused by default, fused when asked
    expect(flash(at(gpt(1)))).toBe(0);
    expect(flash(at(gpt(1), { 'attention-fusion': {} }))).toBe(1);
    // a CPU adapter whose fused kernels cannot share loads across subgroup lanes: only what the binding limit forces
    const cpu = { ...GENERIC_TARGET, strategy: 'thread' as const, maxStorageBufferBindingSize: 2 ** 27 };
    const onCpu = (g: Graph, target: typeof cpu, passes?: Record<string, object | false>) => runPipeline(g, { levels: ['graph'], target, passes }).graph;
    expect(flash(onCpu(gpt(2048), cpu))).toBe(0);
    expect(flash(onCpu(gpt(4096), cpu))).toBe(1);
    expect(flash(onCpu(gpt(64), cpu, { 'attention-fusion': {} }))).toBe(1);
    expect(flash(onCpu(gpt(64), { ...cpu, subgroups: true, subgroupSize: 4 }))).toBe(1); // lanes kernels: fused by default
    expect(flash(at(gpt(64), { 'attention-fusion': { minScoreBytes: 4 * 2 * 4 * 64 * 64 - 1 } }))).toBe(1);
    expect(flash(at(gpt(64), { 'attention-fusion': { minScoreBytes: 4 * 2 * 4 * 64 * 64 } }))).toBe(0);
    // the CLI flags: --fuse-attention asks for the pass, --no-fuse-attention leaves it out, neither keeps the default
    const g = gpt(64);
    expect(compileRequest(g, { fuseAttention: true }).passes?.['attention-fusion']).toEqual({});
    expect(compileRequest(g, { fuseAttention: false }).passes?.['attention-fusion']).toBe(false);
    expect(compileRequest(g, {}).passes?.['attention-fusion']).toBeUndefined();
  });
});
