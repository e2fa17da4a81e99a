/**
 * Fused attention kernels (forward, log-sum-exp, dQ, dK, dV, dBias) on WebGPU against the interpreter, with both
 * kernel strategies, on tiny odd shapes: every mask kind, dropout on and off, T = 1, S != T.
 */
import { describe, expect, it } from 'vitest';
import { grad } from '../../src/autodiff/index.js';
import { compileModel } from '../../src/frontend/index.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import { fuseAttention } from '../../src/passes/index.js';
import { schedule } from '../../src/schedule/index.js';
import { ATTN_CASES, attnGraph, type AttnCase } from '../ir/attention-cases.js';
import { GENERIC_TARGET, type Target } from '../../src/passes/registry.js';
import { runPipeline } from '../../src/passes/pipeline.js';
import { checkAgainstInterpreter } from './helpers.js';

describe('flash attention kernels against the interpreter', () => {
  for (const c of ATTN_CASES) {
    it(`${c.name}: forward + backward, thread and workgroup strategies`, async () => {
      const { graph, inputs } = attnGraph(c);
      const j = grad(graph, { loss: 'loss' });
      const kinds = new Set(schedule(j).kernels.map((k) => k.kind));
      expect(kinds.has('attention')).toBe(true);
      expect(j.nodes.filter((n) => n.op === 'flash_attention_grad').length).toBe(c.bias ? 4 : 3);
      await checkAgainstInterpreter(j, inputs, {
        seed: 3,
        modes: [{ strategy: 'thread' }, { strategy: 'thread', subgroups: false }, { strategy: 'workgroup' }],
        tol: { rtol: 2e-4, atol: 2e-5 },
      });
    }, 120_000);
  }
});

describe('flash attention over several workgroups (heads 64, 128 and odd; rows past one block of lanes)', () => {
  const cases: AttnCase[] = [
    { name: 'causal, head 64, T 37', batch: [1, 2], T: 37, S: 37, D: 64, Dv: 64, mask: 'causal' },
    { name: 'S != T, odd heads, dropout', batch: [2], T: 20, S: 45, D: 33, Dv: 17, mask: 'none', p: 0.2 },
    { name: 'causal + bias, head 128', batch: [2], T: 18, S: 18, D: 128, Dv: 128, mask: 'causal', bias: true },
    { name: 'prefix lengths, head 32, T 33', batch: [2], T: 33, S: 33, D: 32, Dv: 32, mask: 'prefix' },
  ];
  for (const c of cases) {
    // Only the subgroup kernels here: lavapipe takes 10-40 s to compile the per-invocation and workgroup-tile
    // kernels at these head sizes (their loops over the head unrolled); the small cases above cover those.
    it(`${c.name}: the subgroup-shared CPU kernels equal the interpreter`, async () => {
      const { graph, inputs } = attnGraph(c);
      await checkAgainstInterpreter(grad(graph, { loss: 'loss' }), inputs, {
        seed: 5,
        modes: [{ strategy: 'thread' }],
        tol: { rtol: 5e-4, atol: 5e-5 },
      });
    }, 180_000);
  }

  it('CPU kernels share loads across a subgroup only when its size is fixed and subgroups are on', () => {
    const j = grad(attnGraph(cases[0]).graph, { loss: 'loss' });
    const wgsl = (target: Partial<Target>) =>
      runPipeline(j, { levels: ['kernels'], target: { ...GENERIC_TARGET, strategy: 'thread', ...target } })
        .kernels!.flatMap((k) => k.passes)
        .filter((p) => /flash_attention/.test(p.label))
        .map((p) => p.wgsl);
    const shared = wgsl({ subgroups: true, subgroupSize: 4 });
    expect(shared.length).toBe(5); // forward, statistics, dQ, dK, dV
    for (const w of shared) expect(w).toMatch(/subgroupBroadcast/);
    for (const w of [...wgsl({ subgroups: true }), ...wgsl({ subgroups: false, subgroupSize: 4 })]) expect(w).not.toMatch(/subgroup/);
  });
});

describe('library models with fused attention on WebGPU against the interpreter', () => {
  const ints = (shape: number[], f: (i: number) => number): HostTensor => ({ dtype: 'i32', shape, data: Int32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => f(i)) });
  const small = { vocab: 13, d: 8, heads: 2, layers: 1, d_ff: 16, ctx: 6, dropout: 0.1 };
  const models: [string, Record<string, number>, Record<string, HostTensor>][] = [
    ['gpt', {}, { tokens: ints([2, 6], (i) => (i * 7) % 13), targets: ints([2, 6], (i) => (i * 3 + 1) % 13) }],
    ['t5', { S: 5, T: 3 }, { src: ints([2, 5], (i) => (i * 5) % 13), dec_in: ints([2, 3], (i) => (i * 3) % 13), targets: ints([2, 3], (i) => (i * 2 + 1) % 13) }],
  ];
  for (const [model, dims, inputs] of models) {
    it(`${model}: loss and every gradient of the fused training graph`, async () => {
      const g = fuseAttention(compileModel(`src/models/${model}.kiln`, { entry: 'loss', set: small, dims }).graph);
      expect(g.nodes.some((n) => n.op === 'softmax')).toBe(false);
      const j = grad(g, { loss: 'loss' });
      await checkAgainstInterpreter(j, { ...inputs, rng_seed: { dtype: 'u32', shape: [], data: Uint32Array.of(77) } }, {
        seed: 2,
        modes: [{}],
        tol: { rtol: 1e-3, atol: 1e-5 },
      });
    }, 180_000);
  }
});
