/**
 * Neural-net primitives over the last axis: softmax, log_softmax, layer_norm, rms_norm, cross_entropy.
 * They are primitives rather than composites because each has a numerically stable reference, a fused
 * gradient rule and a one-kernel lowering; `decompose` gives the plain-op chain they stand for.
 */
import type { GraphBuilder } from '../builder.js';
import type { OpRule } from '../op.js';
import type { HostTensor } from '../tensor.js';
import { allocData } from '../tensor.js';
import type { TensorType } from '../types.js';
import { fmtShape } from '../types.js';
import { fail, finish, lastAxisRows, requireFloat, requireInt } from './util.js';

const LAST = [-1];

function rowInfer(op: string) {
  return (inputs: readonly TensorType[]): TensorType => {
    requireFloat(op, inputs, 0);
    if (inputs[0].shape.length === 0) fail(op, inputs, 'needs rank >= 1');
    return inputs[0];
  };
}

function normInfer(op: string) {
  return (inputs: readonly TensorType[]): TensorType => {
    const x = rowInfer(op)(inputs);
    const d = x.shape[x.shape.length - 1];
    for (let i = 1; i < inputs.length; i++) {
      if (inputs[i].dtype !== x.dtype) fail(op, inputs, 'the gain/bias must have the dtype of x');
      if (inputs[i].shape.length !== 1 || inputs[i].shape[0] !== d) {
        fail(op, inputs, `the gain/bias must have shape [${d}] (the last axis of x), got ${fmtShape(inputs[i].shape)}`);
      }
    }
    return x;
  };
}

/** Applies f to each last-axis row in f64, writing into a fresh output of type out. */
function rowwise(x: HostTensor, out: TensorType, f: (row: Float64Array, o: Float64Array, r: number) => void): HostTensor {
  const { rows, width } = lastAxisRows(x.shape);
  const data = allocData(out.dtype, rows * width);
  const row = new Float64Array(width);
  const o = new Float64Array(width);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < width; j++) row[j] = x.data[r * width + j];
    f(row, o, r);
    for (let j = 0; j < width; j++) data[r * width + j] = o[j];
  }
  return finish(out, data);
}

function logSumExp(row: Float64Array): number {
  const { m, logS } = maxAndLogSum(row);
  return m + logS;
}

/**
 * The row maximum m and log Σ exp(x - m). log_softmax and cross-entropy are computed as (x - m) - log Σ (never
 * x - (m + log Σ), whose sum loses the small term next to a large m): the WGSL kernels use the same formulation,
 * so both agree to float precision however far apart the inputs are.
 */
function maxAndLogSum(row: Float64Array): { m: number; logS: number } {
  let m = -Infinity;
  for (const v of row) if (v > m) m = v;
  if (m === -Infinity) return { m, logS: 0 };
  let s = 0;
  for (const v of row) s += Math.exp(v - m);
  return { m, logS: Math.log(s) };
}

const keepLast = (b: GraphBuilder, x: number, op: 'sum' | 'mean' | 'max_reduce') => b.op(op, [x], { axes: LAST, keepdims: true });

/** mean and 1/sqrt(var + eps) of the last axis, as graph ops (shared by forward decomposition and backward). */
function normStats(b: GraphBuilder, x: number, eps: number, centered: boolean): { xc: number; rstd: number } {
  const dt = b.type(x).dtype;
  const xc = centered ? b.sub(x, keepLast(b, x, 'mean')) : x;
  const v = keepLast(b, b.mul(xc, xc), 'mean');
  return { xc, rstd: b.unary('rsqrt', b.add(v, b.scalar(eps, dt))) };
}

/** d/dx of xhat = xc * rstd, given dL/dxhat (centered: layer norm; otherwise RMS norm). */
function normBackward(b: GraphBuilder, gxhat: number, xhat: number, rstd: number, centered: boolean): number {
  let t = b.mul(xhat, keepLast(b, b.mul(gxhat, xhat), 'mean'));
  if (centered) t = b.add(t, keepLast(b, gxhat, 'mean'));
  return b.mul(rstd, b.sub(gxhat, t));
}

export const nnOps: {
  softmax: OpRule<'softmax'>;
  log_softmax: OpRule<'log_softmax'>;
  layer_norm: OpRule<'layer_norm'>;
  rms_norm: OpRule<'rms_norm'>;
  cross_entropy: OpRule<'cross_entropy'>;
} = {
  softmax: {
    arity: 1,
    infer: rowInfer('softmax'),
    evaluate: (i, _a, out) =>
      rowwise(i[0], out, (row, o) => {
        const lse = logSumExp(row);
        for (let j = 0; j < row.length; j++) o[j] = Math.exp(row[j] - lse);
      }),
    grad: {
      saves: { inputs: [], output: true },
      vjp: (b, n, g) => [b.mul(n.id, b.sub(g, keepLast(b, b.mul(g, n.id), 'sum')))],
    },
    lower: { kernel: 'rowwise' },
    decompose: (b, n) => {
      const x = n.inputs[0];
      const e = b.unary('exp', b.sub(x, b.unary('stop_gradient', keepLast(b, x, 'max_reduce'))));
      return b.div(e, keepLast(b, e, 'sum'));
    },
  },
  log_softmax: {
    arity: 1,
    infer: rowInfer('log_softmax'),
    evaluate: (i, _a, out) =>
      rowwise(i[0], out, (row, o) => {
        const { m, logS } = maxAndLogSum(row);
        for (let j = 0; j < row.length; j++) o[j] = row[j] - m - logS;
      }),
    grad: {
      saves: { inputs: [], output: true },
      vjp: (b, n, g) => [b.sub(g, b.mul(b.unary('exp', n.id), keepLast(b, g, 'sum')))],
    },
    lower: { kernel: 'rowwise' },
    decompose: (b, n) => {
      const x = n.inputs[0];
      const xs = b.sub(x, b.unary('stop_gradient', keepLast(b, x, 'max_reduce')));
      return b.sub(xs, b.unary('log', keepLast(b, b.unary('exp', xs), 'sum')));
    },
  },
  layer_norm: {
    arity: 3,
    infer: normInfer('layer_norm'),
    evaluate: (i, a, out) => {
      const [, gamma, beta] = i;
      return rowwise(i[0], out, (row, o) => {
        const d = row.length;
        let mu = 0;
        for (const v of row) mu += v;
        mu /= d;
        let v2 = 0;
        for (const v of row) v2 += (v - mu) * (v - mu);
        const rstd = 1 / Math.sqrt(v2 / d + a.eps);
        for (let j = 0; j < d; j++) o[j] = (row[j] - mu) * rstd * gamma.data[j] + beta.data[j];
      });
    },
    grad: {
      saves: { inputs: [0, 1], output: false },
      vjp: (b, n, g) => {
        const [x, gamma, beta] = n.inputs;
        const { xc, rstd } = normStats(b, x, n.attrs.eps, true);
        const xhat = b.mul(xc, rstd);
        const dx = normBackward(b, b.mul(g, gamma), xhat, rstd, true);
        return [dx, b.unbroadcast(b.mul(g, xhat), b.type(gamma).shape), b.unbroadcast(g, b.type(beta).shape)];
      },
    },
    lower: { kernel: 'rowwise' },
    decompose: (b, n) => {
      const [x, gamma, beta] = n.inputs;
      const { xc, rstd } = normStats(b, x, n.attrs.eps, true);
      return b.add(b.mul(b.mul(xc, rstd), gamma), beta);
    },
  },
  rms_norm: {
    arity: 2,
    infer: normInfer('rms_norm'),
    evaluate: (i, a, out) => {
      const gamma = i[1];
      return rowwise(i[0], out, (row, o) => {
        let ms = 0;
        for (const v of row) ms += v * v;
        const r = 1 / Math.sqrt(ms / row.length + a.eps);
        for (let j = 0; j < row.length; j++) o[j] = row[j] * r * gamma.data[j];
      });
    },
    grad: {
      saves: { inputs: [0, 1], output: false },
      vjp: (b, n, g) => {
        const [x, gamma] = n.inputs;
        const { rstd } = normStats(b, x, n.attrs.eps, false);
        const xhat = b.mul(x, rstd);
        const dx = normBackward(b, b.mul(g, gamma), xhat, rstd, false);
        return [dx, b.unbroadcast(b.mul(g, xhat), b.type(gamma).shape)];
      },
    },
    lower: { kernel: 'rowwise' },
    decompose: (b, n) => {
      const [x, gamma] = n.inputs;
      const { rstd } = normStats(b, x, n.attrs.eps, false);
      return b.mul(b.mul(x, rstd), gamma);
    },
  },
  cross_entropy: {
    // Per-position loss -log softmax(logits)[label]; 0 where label == ignore_index or outside [0, V).
    arity: 2,
    infer: (inputs) => {
      const [logits, labels] = inputs;
      requireFloat('cross_entropy', inputs, 0);
      requireInt('cross_entropy', inputs, 1);
      const lead = logits.shape.slice(0, -1);
      if (logits.shape.length < 1 || labels.shape.length !== lead.length || labels.shape.some((d, i) => d !== lead[i])) {
        fail('cross_entropy', inputs, `labels must have the logits' shape without the class axis (${fmtShape(lead)})`);
      }
      return { dtype: logits.dtype, shape: labels.shape };
    },
    evaluate: (i, a, out) => {
      const [logits, labels] = i;
      const { rows, width } = lastAxisRows(logits.shape);
      const data = allocData(out.dtype, rows);
      const row = new Float64Array(width);
      for (let r = 0; r < rows; r++) {
        const y = labels.data[r];
        if (y === a.ignore_index || y < 0 || y >= width) continue;
        for (let j = 0; j < width; j++) row[j] = logits.data[r * width + j];
        const { m, logS } = maxAndLogSum(row);
        data[r] = logS - (row[y] - m);
      }
      return finish(out, data);
    },
    grad: {
      // dL/dlogits = g * (softmax(logits) - onehot(label)) on counted positions.
      saves: { inputs: [0, 1], output: false },
      vjp: (b, n, g) => {
        const [logits, labels] = n.inputs;
        const t = b.type(logits);
        const V = t.shape[t.shape.length - 1];
        const p = b.op('softmax', [logits], {});
        const oh = b.op('one_hot', [labels], { depth: V, dtype: t.dtype });
        const valid = b.op('ne', [labels, b.scalar(n.attrs.ignore_index, b.type(labels).dtype)], {});
        const gm = b.op('select', [valid, g, b.scalar(0, t.dtype)], {});
        const gcol = b.reshape(gm, [...b.type(gm).shape, 1]);
        // Out-of-range labels have an all-zero one-hot row, so mask those rows through `inRange` as well.
        const inRange = b.reshape(keepLast(b, oh, 'sum'), [...b.type(gm).shape, 1]);
        return [b.mul(b.mul(b.sub(p, oh), gcol), inRange), null];
      },
    },
    lower: { kernel: 'rowwise' },
    decompose: (b, n) => {
      const [logits, labels] = n.inputs;
      const t = b.type(logits);
      const V = t.shape[t.shape.length - 1];
      const x = logits;
      const xs = b.sub(x, b.unary('stop_gradient', keepLast(b, x, 'max_reduce')));
      const ls = b.sub(xs, b.unary('log', keepLast(b, b.unary('exp', xs), 'sum')));
      const oh = b.op('one_hot', [labels], { depth: V, dtype: t.dtype });
      const nll = b.neg(b.op('sum', [b.mul(ls, oh)], { axes: LAST, keepdims: false }));
      const valid = b.op('ne', [labels, b.scalar(n.attrs.ignore_index, b.type(labels).dtype)], {});
      return b.op('select', [valid, nll, b.scalar(0, t.dtype)], {});
    },
  },
};
