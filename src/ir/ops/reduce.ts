/** Reductions over a set of axes (sum, mean, max) and argmax. */
import type { GraphBuilder } from '../builder.js';
import type { OpRule } from '../op.js';
import type { HostTensor } from '../tensor.js';
import { allocData } from '../tensor.js';
import type { TensorType } from '../types.js';
import { isFloat, numel, strides } from '../types.js';
import { fail, finish, normAxes } from './util.js';

function reducedShape(shape: readonly number[], axes: number[], keepdims: boolean): number[] {
  const out: number[] = [];
  shape.forEach((d, i) => {
    if (!axes.includes(i)) out.push(d);
    else if (keepdims) out.push(1);
  });
  return out;
}

function inferReduce(op: string) {
  return (inputs: readonly TensorType[], a: { axes: number[]; keepdims: boolean }): TensorType => {
    if (inputs[0].dtype === 'bool') fail(op, inputs, 'cannot reduce a bool tensor (cast it first)');
    const axes = normAxes(op, inputs, a.axes, inputs[0].shape.length);
    return { dtype: inputs[0].dtype, shape: reducedShape(inputs[0].shape, axes, a.keepdims) };
  };
}

/** Visits every element with (flat input index, flat output index). */
function reduceIndex(shape: readonly number[], axes: number[], visit: (inFlat: number, outFlat: number) => void): void {
  const n = numel(shape);
  const keptShape = shape.map((d, i) => (axes.includes(i) ? 1 : d));
  const keptStr = strides(keptShape);
  for (let i = 0; i < n; i++) {
    let rem = i;
    let o = 0;
    for (let k = shape.length - 1; k >= 0; k--) {
      const c = rem % shape[k];
      rem = (rem - c) / shape[k];
      if (!axes.includes(k)) o += c * keptStr[k];
    }
    visit(i, o);
  }
}

function evalReduce(kind: 'sum' | 'mean' | 'max') {
  return (inputs: readonly HostTensor[], a: { axes: number[]; keepdims: boolean }, out: TensorType): HostTensor => {
    const x = inputs[0];
    const axes = normAxes(kind, [x], a.axes, x.shape.length);
    const m = numel(out.shape);
    const acc = new Float64Array(m).fill(kind === 'max' ? -Infinity : 0);
    reduceIndex(x.shape, axes, (i, o) => {
      const v = x.data[i];
      if (kind === 'max') {
        if (v > acc[o] || Number.isNaN(v)) acc[o] = v;
      } else acc[o] += v;
    });
    const count = axes.reduce((p, ax) => p * x.shape[ax], 1);
    const data = allocData(out.dtype, m);
    for (let o = 0; o < m; o++) {
      const v = kind === 'mean' ? acc[o] / count : acc[o];
      data[o] = isFloat(out.dtype) ? v : kind === 'mean' ? Math.trunc(v) : v;
    }
    return finish(out, data);
  };
}

/** Cotangent of a reduction, broadcast back over the reduced axes. */
function expandBack(b: GraphBuilder, g: number, inShape: readonly number[], axes: number[]): number {
  const kept = inShape.map((d, i) => (axes.includes(i) ? 1 : d));
  return b.broadcastTo(b.reshape(g, kept), inShape);
}

export const reduceOps: { sum: OpRule<'sum'>; mean: OpRule<'mean'>; max_reduce: OpRule<'max_reduce'>; argmax: OpRule<'argmax'> } = {
  sum: {
    arity: 1,
    infer: inferReduce('sum'),
    evaluate: evalReduce('sum'),
    grad: {
      saves: { inputs: [], output: false },
      vjp: (b, n, g) => {
        const s = b.type(n.inputs[0]).shape;
        return [expandBack(b, g, s, normAxes('sum', [], n.attrs.axes, s.length))];
      },
    },
    lower: { kernel: 'reduce' },
  },
  mean: {
    arity: 1,
    infer: inferReduce('mean'),
    evaluate: evalReduce('mean'),
    grad: {
      saves: { inputs: [], output: false },
      vjp: (b, n, g) => {
        const s = b.type(n.inputs[0]).shape;
        const axes = normAxes('mean', [], n.attrs.axes, s.length);
        const count = axes.reduce((p, ax) => p * s[ax], 1);
        return [expandBack(b, b.mul(g, b.scalar(1 / count, n.type.dtype)), s, axes)];
      },
    },
    lower: { kernel: 'reduce' },
  },
  max_reduce: {
    arity: 1,
    infer: inferReduce('max'),
    evaluate: evalReduce('max'),
    grad: {
      // Every position equal to the max receives the gradient (ties are measure-zero for float inputs).
      saves: { inputs: [0], output: true },
      vjp: (b, n, g) => {
        const x = n.inputs[0];
        const s = b.type(x).shape;
        const axes = normAxes('max', [], n.attrs.axes, s.length);
        const hit = b.op('eq', [x, expandBack(b, n.id, s, axes)], {});
        return [b.op('select', [hit, expandBack(b, g, s, axes), b.scalar(0, n.type.dtype)], {})];
      },
    },
    lower: { kernel: 'reduce' },
  },
  argmax: {
    arity: 1,
    infer: (inputs, a) => {
      const axes = normAxes('argmax', inputs, [a.axis], inputs[0].shape.length);
      return { dtype: 'i32', shape: reducedShape(inputs[0].shape, axes, a.keepdims) };
    },
    evaluate: (inputs, a, out) => {
      const x = inputs[0];
      const axes = normAxes('argmax', [x], [a.axis], x.shape.length);
      const m = numel(out.shape);
      const best = new Float64Array(m).fill(-Infinity);
      const arg = new Int32Array(m).fill(0);
      const inner = strides(x.shape)[axes[0]];
      const d = x.shape[axes[0]];
      const seen = new Uint8Array(m);
      reduceIndex(x.shape, axes, (i, o) => {
        const v = x.data[i];
        const pos = Math.floor(i / inner) % d;
        // first maximum wins, as in numpy
        if (!seen[o] || v > best[o]) {
          best[o] = v;
          arg[o] = pos;
          seen[o] = 1;
        }
      });
      return finish(out, arg);
    },
    grad: 'integer',
    lower: { kernel: 'reduce' },
  },
};
