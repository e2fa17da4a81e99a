import { describe, expect, it } from 'vitest';
import { grad } from '../../src/autodiff/index.js';
import { gradcheck } from '../../src/autodiff/gradcheck.js';
import { interpret } from '../../src/interp/interpreter.js';
import { GraphBuilder } from '../../src/ir/builder.js';
import type { Graph } from '../../src/ir/graph.js';
import type { ParamInit } from '../../src/ir/op.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import { decomposeComposites } from '../../src/passes/decompose.js';
import { printGraph } from '../../src/ir/print.js';
import { OP_KINDS, OPS } from '../../src/ir/registry.js';

type Build = (b: GraphBuilder, p: (name: string, shape: number[], init?: ParamInit) => number) => number;

/** loss = sum(op(params...) * w) with a fixed random weight w, so every output element matters differently. */
function lossGraph(build: Build): Graph {
  const b = new GraphBuilder();
  const p = (name: string, shape: number[], init: ParamInit = { kind: 'uniform', low: -1.5, high: 1.5 }) =>
    b.op('param', [], { name, dtype: 'f32', shape, init });
  const y = build(b, p);
  const w = b.op('param', [], { name: 'weight', dtype: 'f32', shape: [...b.type(y).shape], init: { kind: 'uniform', low: -1, high: 1 } });
  const prod = b.mul(y, b.op('stop_gradient', [w], {}));
  const loss = b.sum(prod, b.type(prod).shape.map((_, i) => i));
  return b.build('check', [{ name: 'loss', id: b.type(loss).shape.length ? b.reshape(loss, []) : loss }]);
}

const positive: ParamInit = { kind: 'uniform', low: 0.5, high: 2 };
const ints = (shape: number[], values: number[]): HostTensor => ({ dtype: 'i32', shape, data: Int32Array.from(values) });

const cases: Record<string, { build: Build; inputs?: Record<string, HostTensor> }> = {};
for (const op of ['neg', 'abs', 'exp', 'tanh', 'sigmoid', 'relu', 'silu', 'sin', 'cos', 'erf'] as const) {
  cases[op] = { build: (b, p) => b.op(op, [p('x', [3, 1, 4])], {}) };
}
for (const op of ['log', 'sqrt', 'rsqrt'] as const) cases[op] = { build: (b, p) => b.op(op, [p('x', [2, 5], positive)], {}) };
cases['gelu tanh'] = { build: (b, p) => b.op('gelu', [p('x', [7])], { approximate: 'tanh' }) };
cases['gelu erf'] = { build: (b, p) => b.op('gelu', [p('x', [7])], { approximate: 'erf' }) };
for (const op of ['add', 'sub', 'mul', 'div', 'max', 'min'] as const) {
  cases[`${op} with broadcasting`] = { build: (b, p) => b.op(op, [p('a', [3, 1, 4]), p('b', [2, 4], op === 'div' ? positive : undefined)], {}) };
}
// collectives of a group of one (the identity); across devices: test/parallel/collectives.test.ts
cases['all_reduce'] = { build: (b, p) => b.op('all_reduce', [p('x', [2, 3])], { size: 1 }) };
cases['reduce_scatter'] = { build: (b, p) => b.op('reduce_scatter', [p('x', [2, 3])], { size: 1, axis: 1 }) };
cases['all_gather'] = { build: (b, p) => b.op('all_gather', [p('x', [2, 3])], { size: 1, axis: 0 }) };
cases['pow'] = { build: (b, p) => b.op('pow', [p('a', [2, 3], positive), p('b', [3])], {}) };
cases['select'] = { build: (b, p) => { const x = p('x', [4, 3]); return b.op('select', [b.op('gt', [x, b.scalar(0)], {}), b.mul(x, x), p('y', [1, 3])], {}); } };
cases['sum keepdims'] = { build: (b, p) => b.op('sum', [p('x', [2, 3, 4])], { axes: [0, 2], keepdims: true }) };
cases['mean'] = { build: (b, p) => b.op('mean', [p('x', [2, 3, 4])], { axes: [1], keepdims: false }) };
cases['max'] = { build: (b, p) => b.op('max_reduce', [p('x', [3, 5])], { axes: [-1], keepdims: false }) };
for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]]) {
  cases[`matmul transA=${ta} transB=${tb} batched`] = {
    build: (b, p) => b.op('matmul', [p('a', ta ? [2, 1, 4, 3] : [2, 1, 3, 4]), p('b', tb ? [3, 5, 4] : [3, 4, 5])], { transA: ta, transB: tb }),
  };
}
for (const tb of [false, true]) {
  // a weight shared across the batch: its gradient folds the batch into one matmul
  cases[`matmul batched x shared weight transB=${tb}`] = { build: (b, p) => b.op('matmul', [p('x', [2, 3, 4]), p('w', tb ? [5, 4] : [4, 5])], { transA: false, transB: tb }) };
}
cases['cast f32 -> f32'] = { build: (b, p) => b.op('cast', [p('x', [2, 3])], { to: 'f32' }) };
cases['reshape + transpose'] = { build: (b, p) => b.op('transpose', [b.reshape(p('x', [6, 4]), [2, 3, 4])], { perm: [2, 0, 1] }) };
cases['broadcast'] = { build: (b, p) => b.op('broadcast', [p('x', [3, 1])], { shape: [2, 3, 4] }) };
cases['slice'] = { build: (b, p) => b.op('slice', [p('x', [5, 6])], { starts: [1, 2], ends: [4, 6] }) };
cases['concat (and fan-out)'] = { build: (b, p) => { const x = p('x', [2, 3]); return b.op('concat', [x, b.mul(x, x), p('y', [2, 1])], { axis: 1 }); } };
cases['gather with duplicate indices'] = { build: (b, p) => b.op('gather', [p('table', [5, 3]), b.op('input', [], { name: 'idx', dtype: 'i32', shape: [2, 4] })], {}), inputs: { idx: ints([2, 4], [1, 1, 4, 0, 1, 4, 4, -7]) } };
cases['scatter_add'] = { build: (b, p) => b.op('scatter_add', [b.op('input', [], { name: 'idx', dtype: 'i32', shape: [6] }), p('upd', [6, 2])], { rows: 4 }), inputs: { idx: ints([6], [0, 3, 3, 1, 3, 9]) } };
cases['update_slice (a row past the end dropped)'] = { build: (b, p) => b.op('update_slice', [p('x', [2, 5, 3]), p('u', [2, 2, 3]), b.op('input', [], { name: 'pos', dtype: 'i32', shape: [1] })], { axis: 1 }), inputs: { pos: ints([1], [4]) } };
cases['update_slice on axis 0'] = { build: (b, p) => b.op('update_slice', [p('x', [4, 3]), p('u', [2, 3]), b.op('input', [], { name: 'pos', dtype: 'i32', shape: [] })], { axis: 0 }), inputs: { pos: ints([], [1]) } };
cases['softmax'] = { build: (b, p) => b.op('softmax', [p('x', [3, 5])], {}) };
cases['log_softmax'] = { build: (b, p) => b.op('log_softmax', [p('x', [3, 5])], {}) };
cases['layer_norm'] = { build: (b, p) => b.op('layer_norm', [p('x', [3, 6]), p('g', [6]), p('bias', [6])], { eps: 1e-5 }) };
cases['rms_norm'] = { build: (b, p) => b.op('rms_norm', [p('x', [2, 2, 6]), p('g', [6])], { eps: 1e-6 }) };
cases['cross_entropy with ignore_index'] = {
  build: (b, p) => b.op('cross_entropy', [p('logits', [2, 3, 5]), b.op('input', [], { name: 'labels', dtype: 'i32', shape: [2, 3] })], { ignore_index: -100 }),
  inputs: { labels: ints([2, 3], [0, 4, -100, 2, 2, 7]) },
};
cases['dropout reuses its mask'] = {
  build: (b, p) => b.op('dropout', [p('x', [4, 8]), b.op('input', [], { name: 'seed', dtype: 'u32', shape: [] })], { p: 0.3, stream: 5 }),
  inputs: { seed: { dtype: 'u32', shape: [], data: Uint32Array.of(1234) } },
};
cases['flash_attention causal'] = {
  build: (b, p) => b.op('flash_attention', [p('q', [2, 3, 4]), p('k', [2, 3, 4]), p('v', [2, 3, 2])], { scale: 0.5, mask: 'causal', bias: false, fill: -1e9, p: 0, stream: 0 }),
};

describe('every differentiable op: compiled gradient vs central finite differences (double precision)', () => {
  for (const [name, c] of Object.entries(cases)) {
    it(name, () => {
      const g = lossGraph(c.build);
      const r = gradcheck(g, { inputs: c.inputs ?? {}, seed: 7, maxElementsPerParam: 40, rtol: 1e-6, atol: 1e-9 });
      expect(r.perParam.length).toBeGreaterThan(0);
      for (const p of r.perParam) if (p.name !== 'weight') expect(p.worstRatio, `${p.name}`).toBeLessThanOrEqual(1);
    });
  }
});

describe('fused composite rules agree with the naive chain of their parts', () => {
  for (const name of ['softmax', 'log_softmax', 'layer_norm', 'rms_norm', 'cross_entropy with ignore_index']) {
    it(name, () => {
      const g = lossGraph(cases[name].build);
      const naive = decomposeComposites(g);
      expect(printGraph(naive)).not.toMatch(/= (softmax|log_softmax|layer_norm|rms_norm|cross_entropy) /);
      const a = interpret(grad(g, { loss: 'loss' }), { inputs: cases[name].inputs, seed: 3, float64: true });
      const b = interpret(grad(naive, { loss: 'loss' }), { inputs: cases[name].inputs, seed: 3, float64: true });
      for (const k of Object.keys(a)) {
        expect(Object.keys(b)).toContain(k);
        a[k].data.forEach((v, i) => expect(Math.abs(v - b[k].data[i])).toBeLessThan(1e-10 * Math.max(1, Math.abs(v))));
      }
    });
  }
});

describe('the joint graph', () => {
  it('accumulates gradients over fan-out, and unused parameters get zero gradients', () => {
    const b = new GraphBuilder();
    const x = b.op('param', [], { name: 'x', dtype: 'f32', shape: [3], init: { kind: 'ones' } });
    b.op('param', [], { name: 'unused', dtype: 'f32', shape: [2], init: { kind: 'ones' } });
    const y = b.add(b.mul(x, x), b.mul(b.scalar(3), x)); // d/dx (x^2 + 3x) = 2x + 3
    const loss = b.sum(y, [0]);
    const j = grad(b.build('f', [{ name: 'loss', id: loss }]), { loss: 'loss' });
    const out = interpret(j, { params: { x: { dtype: 'f32', shape: [3], data: Float32Array.of(1, 2, -4) } } });
    expect(Array.from(out['grad:x'].data)).toEqual([5, 7, -5]);
    expect(Array.from(out['grad:unused'].data)).toEqual([0, 0]);
  });

  it('holds no dropout mask tensor: the backward regenerates it from the same seed and stream', () => {
    const g = lossGraph(cases['dropout reuses its mask'].build);
    const j = grad(g, { loss: 'loss' });
    const drops = j.nodes.filter((n) => n.op === 'dropout');
    expect(drops.length).toBe(2);
    expect(drops[0].attrs).toEqual(drops[1].attrs);
    expect(drops[0].inputs[1]).toBe(drops[1].inputs[1]);
  });

  it('is composable: differentiating a joint graph again does not crash', () => {
    const g = lossGraph(cases['layer_norm'].build);
    const j = grad(g, { loss: 'loss' });
    expect(() => grad(j, { loss: 'loss' })).not.toThrow();
  });

  it('dead-code and common-subexpression elimination leave only what loss and gradients need', () => {
    const b = new GraphBuilder();
    const x = b.op('param', [], { name: 'x', dtype: 'f32', shape: [4], init: { kind: 'ones' } });
    const e1 = b.unary('exp', x);
    const e2 = b.unary('exp', x); // the same value twice
    b.unary('sin', x); // dead
    const loss = b.sum(b.add(e1, e2), [0]);
    const j = grad(b.build('f', [{ name: 'loss', id: loss }]), { loss: 'loss' });
    expect(j.nodes.filter((n) => n.op === 'exp').length).toBe(1);
    expect(j.nodes.some((n) => n.op === 'sin')).toBe(false);
  });
});

describe('coverage and stopping rules', () => {
  it('the cases above exercise every op that has a vjp and a float operand', () => {
    const seen = new Set<string>();
    for (const c of Object.values(cases)) for (const n of lossGraph(c.build).nodes) seen.add(n.op);
    const noFloatOperand = new Set(['input', 'param', 'constant', 'one_hot']);
    const missing = OP_KINDS.filter((k) => typeof OPS[k].grad === 'object' && !noFloatOperand.has(k) && !seen.has(k));
    expect(missing).toEqual([]);
  });

  it("floor and stop_gradient pass no gradient; the seed's and labels' integer paths get none", () => {
    const b = new GraphBuilder();
    const x = b.op('param', [], { name: 'x', dtype: 'f32', shape: [3], init: { kind: 'ones' } });
    const y = b.add(b.add(b.unary('floor', b.mul(x, x)), b.op('stop_gradient', [b.unary('exp', x)], {})), x);
    const j = grad(b.build('f', [{ name: 'loss', id: b.sum(y, [0]) }]), { loss: 'loss' });
    const out = interpret(j, { params: { x: { dtype: 'f32', shape: [3], data: Float32Array.of(0.3, -1.7, 2.2) } } });
    expect(Array.from(out['grad:x'].data)).toEqual([1, 1, 1]);
  });

  it('the dropout backward holds no mask tensor of any dtype', () => {
    const j = grad(lossGraph(cases['dropout reuses its mask'].build), { loss: 'loss' });
    const masks = j.nodes.filter((n) => n.op !== 'input' && n.type.shape.join() === '4,8' && n.type.dtype !== 'f32');
    expect(masks).toEqual([]);
  });
});
