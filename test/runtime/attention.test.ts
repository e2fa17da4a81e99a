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
import { ATTN_CASES, attnGraph } from '../ir/attention-cases.js';
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
        modes: [{ strategy: 'thread' }, { strategy: 'workgroup' }],
        tol: { rtol: 2e-4, atol: 2e-5 },
      });
    }, 120_000);
  }
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
