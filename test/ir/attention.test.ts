import { describe, expect, it } from 'vitest';
import { grad } from '../../src/autodiff/index.js';
import { gradcheck } from '../../src/autodiff/gradcheck.js';
import { ShapeError } from '../../src/errors.js';
import { interpret } from '../../src/interp/interpreter.js';
import { GraphBuilder } from '../../src/ir/builder.js';
import { decomposeComposites } from '../../src/passes/decompose.js';
import { savedForBackward } from '../../src/autodiff/saved.js';
import { ATTN_CASES, attnAttrs, attnGraph } from './attention-cases.js';

const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};

describe('flash_attention against the unfused composition (interpreter)', () => {
  for (const c of ATTN_CASES) {
    it(`${c.name}: forward and every gradient`, () => {
      const { graph, inputs } = attnGraph(c);
      const unfused = decomposeComposites(graph);
      expect(unfused.nodes.some((n) => n.op === 'flash_attention')).toBe(false);
      // f32: forward agrees to rounding, and the dropout masks are the same bits (a different mask would move
      // the output by O(1)).
      const f = interpret(graph, { inputs, seed: 5 });
      const u = interpret(unfused, { inputs, seed: 5 });
      expect(maxDiff(f.out.data, u.out.data)).toBeLessThan(2e-6);
      // f64: the fused gradient rule against autodiff of the chain.
      const jf = interpret(grad(graph, { loss: 'loss' }), { inputs, seed: 5, float64: true });
      const ju = interpret(grad(unfused, { loss: 'loss' }), { inputs, seed: 5, float64: true });
      for (const k of Object.keys(ju).filter((x) => x.startsWith('grad:') && x !== 'grad:weight')) {
        const scale = Math.max(1, ...Array.from(ju[k].data, Math.abs));
        expect(maxDiff(jf[k].data, ju[k].data) / scale, k).toBeLessThan(1e-10);
      }
    });
  }
});

describe('flash_attention gradient rule', () => {
  for (const c of ATTN_CASES.filter((x) => ['causal', 'bool mask with a fully hidden row', 'causal + bias + dropout', 'S != T (cross-attention)'].includes(x.name))) {
    it(`${c.name}: central finite differences in double precision`, () => {
      const { graph, inputs } = attnGraph(c);
      const r = gradcheck(graph, { inputs, seed: 7, maxElementsPerParam: 30, rtol: 1e-6, atol: 1e-9 });
      const checked = r.perParam.filter((p) => p.name !== 'weight');
      expect(checked.map((p) => p.name).sort()).toEqual(c.bias ? ['bias', 'k', 'q', 'v'] : ['k', 'q', 'v']);
      for (const p of checked) expect(p.worstRatio, p.name).toBeLessThanOrEqual(1);
    });
  }

  it('keeps q, k, v, out and O(T) row statistics (log-sum-exp, dout·out) for the backward, never a [.., T, S] tensor', () => {
    const c = ATTN_CASES.find((x) => x.name === 'causal')!;
    const j = grad(attnGraph(c).graph, { loss: 'loss' });
    const saved = savedForBackward(j).map((id) => j.nodes[id]);
    // (the stop_gradient is the test's fixed weight w)
    expect(saved.map((n) => n.op).filter((op) => op !== 'stop_gradient')).toEqual(['flash_attention']);
    const big = j.nodes.filter((n) => n.type.shape.length === 4 && n.type.shape[2] === c.T && n.type.shape[3] === c.S && n.op !== 'param');
    expect(big).toEqual([]);
    const stats = j.nodes.filter((n) => n.op === 'flash_attention_stats');
    expect(stats.map((n) => n.type.shape)).toEqual([[...c.batch, c.T, 2]]);
  });
});

describe('flash_attention shape rule', () => {
  const b = new GraphBuilder();
  const t = (name: string, shape: number[], dtype: 'f32' | 'bool' | 'i32' = 'f32') => b.op('input', [], { name, dtype, shape });
  const a = attnAttrs({ name: '', batch: [2], T: 3, S: 4, D: 8, Dv: 8, mask: 'none' });
  it('names both shapes when the head sizes differ', () => {
    expect(() => b.op('flash_attention', [t('q', [2, 3, 8]), t('k', [2, 4, 6]), t('v', [2, 4, 8])], a)).toThrow(ShapeError);
    expect(() => b.op('flash_attention', [t('q1', [2, 3, 8]), t('k1', [2, 4, 6]), t('v1', [2, 4, 8])], a)).toThrow('q and k must have the same head size: [2, 3, 8] vs [2, 4, 6]');
  });
  it('rejects v with a different key count, a missing mask operand and a mask that does not broadcast', () => {
    expect(() => b.op('flash_attention', [t('q2', [2, 3, 8]), t('k2', [2, 4, 8]), t('v2', [2, 5, 8])], a)).toThrow('v must be f32[2, 4, Dv]');
    expect(() => b.op('flash_attention', [t('q3', [2, 3, 8]), t('k3', [2, 4, 8]), t('v3', [2, 4, 8])], { ...a, mask: 'bool' })).toThrow("expects 4 operands for mask 'bool'");
    expect(() => b.op('flash_attention', [t('q4', [2, 3, 8]), t('k4', [2, 4, 8]), t('v4', [2, 4, 8]), t('m4', [4, 3], 'bool')], { ...a, mask: 'bool' })).toThrow('the mask must be bool and broadcast to the scores [2, 3, 4], got bool[4, 3]');
  });
  it('gives [..., T, Dv] for S != T', () => {
    const y = b.op('flash_attention', [t('q5', [2, 3, 8]), t('k5', [2, 4, 8]), t('v5', [2, 4, 5])], a);
    expect(b.type(y).shape).toEqual([2, 3, 5]);
  });
});
