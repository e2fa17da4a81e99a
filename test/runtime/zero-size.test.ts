// Tensors with a zero-size dimension (not only the leading one) on WebGPU, for every kernel family: they compile
// (no division by zero in index arithmetic), launch nothing where there is nothing to compute, and agree with the
// interpreter — including the non-empty results computed from empty operands (a sum over a zero-length axis is 0).
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../src/ir/builder.js';
import type { Graph } from '../../src/ir/graph.js';
import type { DType, Shape } from '../../src/ir/types.js';
import { randTensor } from './graphs.js';
import { checkAgainstInterpreter } from './helpers.js';

const input = (b: GraphBuilder, name: string, shape: Shape, dtype: DType = 'f32') => b.op('input', [], { name, dtype, shape });

interface Case {
  name: string;
  build(b: GraphBuilder): { name: string; id: number }[];
  inputs: Record<string, { shape: Shape; dtype?: DType; hi?: number }>;
}

const cases: Case[] = [
  {
    name: 'layout: slice to [20, 0, 5], transpose and concat with an empty part',
    inputs: { x: { shape: [20, 4, 5] } },
    build: (b) => {
      const x = 0;
      const e = b.op('slice', [x], { starts: [0, 2, 0], ends: [20, 2, 5] });
      return [
        { name: 'empty', id: e },
        { name: 't', id: b.op('transpose', [e], { perm: [2, 1, 0] }) },
        { name: 'cat', id: b.op('concat', [e, x], { axis: 1 }) },
      ];
    },
  },
  {
    name: 'elementwise and triangular mask over i32[3, 0, 5]',
    inputs: { t: { shape: [3, 0, 5], dtype: 'i32' } },
    build: (b) => {
      const t = 0;
      const r = b.op('iota', [], { dtype: 'i32', shape: [3, 0, 5], axis: 1 });
      const c = b.op('iota', [], { dtype: 'i32', shape: [3, 0, 5], axis: 2 });
      return [{ name: 'masked', id: b.op('select', [b.op('ge', [r, c], {}), t, b.scalar(0, 'i32')], {}) }];
    },
  },
  {
    name: 'reduce: over the zero-length axis (zeros), and of an empty result',
    inputs: { x: { shape: [4, 0, 3] } },
    build: (b) => [
      { name: 'sum1', id: b.op('sum', [0], { axes: [1], keepdims: false }) },
      { name: 'mean2', id: b.op('mean', [0], { axes: [2], keepdims: false }) },
      { name: 'all', id: b.op('sum', [b.mul(0, 0)], { axes: [0, 1, 2], keepdims: false }) },
    ],
  },
  {
    name: 'matmul: empty contraction (zeros) and empty rows',
    inputs: { a: { shape: [3, 0] }, w: { shape: [0, 4] }, e: { shape: [0, 5] }, v: { shape: [5, 2] } },
    build: (b) => [
      { name: 'k0', id: b.op('matmul', [0, 1], { transA: false, transB: false }) },
      { name: 'm0', id: b.op('matmul', [2, 3], { transA: false, transB: false }) },
    ],
  },
  {
    name: 'row-wise: softmax, layer_norm and cross_entropy over zero rows',
    inputs: { x: { shape: [2, 0, 6] }, g: { shape: [6] }, y: { shape: [2, 0], dtype: 'i32', hi: 6 } },
    build: (b) => [
      { name: 'sm', id: b.op('softmax', [0], {}) },
      { name: 'ln', id: b.op('layer_norm', [0, 1, 1], { eps: 1e-5 }) },
      { name: 'ce', id: b.op('cross_entropy', [0, 2], { ignore_index: -1 }) },
    ],
  },
  {
    name: 'gather and scatter_add with no indices',
    inputs: { table: { shape: [7, 3] }, idx: { shape: [2, 0], dtype: 'i32', hi: 7 }, upd: { shape: [2, 0, 3] } },
    build: (b) => [
      { name: 'rows', id: b.op('gather', [0, 1], {}) },
      { name: 'scattered', id: b.op('scatter_add', [1, 2], { rows: 7 }) },
    ],
  },
  {
    name: 'dropout of an empty tensor',
    inputs: { x: { shape: [5, 0] }, seed: { shape: [], dtype: 'u32', hi: 1000 } },
    build: (b) => [{ name: 'd', id: b.op('dropout', [0, 1], { p: 0.5, stream: 3 }) }],
  },
];

describe('zero-size tensors on WebGPU, every kernel family', () => {
  for (const c of cases) {
    it(c.name, async () => {
      const b = new GraphBuilder();
      const names = Object.keys(c.inputs);
      names.forEach((n) => input(b, n, c.inputs[n].shape, c.inputs[n].dtype));
      const g: Graph = b.build(c.name, c.build(b));
      const feeds = Object.fromEntries(names.map((n, i) => [n, randTensor(c.inputs[n].dtype ?? 'f32', c.inputs[n].shape, i + 1, { lo: 0, hi: c.inputs[n].hi ?? 1 })]));
      const stats = await checkAgainstInterpreter(g, feeds);
      // nothing is launched for a kernel whose output is empty
      const empty = g.outputs.filter((o) => g.nodes[o.id].type.shape.includes(0)).length;
      for (const s of stats) expect(s.dispatchesPerRun).toBeLessThanOrEqual(s.kernels - empty + 1);
    });
  }
});
