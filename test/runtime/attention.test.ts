/**
 * Fused attention kernels (forward, log-sum-exp, dQ, dK, dV, dBias) on WebGPU against the interpreter, with both
 * kernel strategies, on tiny odd shapes: every mask kind, dropout on and off, T = 1, S != T.
 */
import { describe, expect, it } from 'vitest';
import { grad } from '../../src/autodiff/index.js';
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
