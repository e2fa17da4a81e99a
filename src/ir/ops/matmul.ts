/** Batched matrix multiply with optional transposed operands; batch dims broadcast like numpy. */
import type { OpRule } from '../op.js';
import { allocData } from '../tensor.js';
import { broadcastShapes, isFloat, numel } from '../types.js';
import { broadcastIndexer, fail, finish } from './util.js';

/** Splits [..., R, C] into batch dims and the matrix dims as the op sees them (after the transpose flag). */
export function matDims(shape: readonly number[], trans: boolean): { batch: number[]; rows: number; cols: number } {
  const r = shape[shape.length - 2];
  const c = shape[shape.length - 1];
  return { batch: shape.slice(0, -2), rows: trans ? c : r, cols: trans ? r : c };
}

export const matmulOp: OpRule<'matmul'> = {
  arity: 2,
  infer: (inputs, a) => {
    const [x, y] = inputs;
    if (x.dtype !== y.dtype) fail('matmul', inputs, 'operands must have the same dtype');
    if (!isFloat(x.dtype)) fail('matmul', inputs, 'operands must be float');
    if (x.shape.length < 2 || y.shape.length < 2) fail('matmul', inputs, 'operands must have rank >= 2');
    const A = matDims(x.shape, a.transA);
    const B = matDims(y.shape, a.transB);
    if (A.cols !== B.rows) {
      fail('matmul', inputs, `inner dimensions differ: ${A.cols} vs ${B.rows}`);
    }
    const batch = broadcastShapes('matmul', [A.batch, B.batch]);
    return { dtype: x.dtype, shape: [...batch, A.rows, B.cols] };
  },
  evaluate: (inputs, a, out) => {
    const [x, y] = inputs;
    const A = matDims(x.shape, a.transA);
    const B = matDims(y.shape, a.transB);
    const M = A.rows, K = A.cols, N = B.cols;
    const batch = out.shape.slice(0, -2);
    const nb = numel(batch);
    const ia = broadcastIndexer(A.batch, batch);
    const ib = broadcastIndexer(B.batch, batch);
    const data = allocData(out.dtype, numel(out.shape));
    const xs = x.shape[x.shape.length - 1];
    const ys = y.shape[y.shape.length - 1];
    for (let bi = 0; bi < nb; bi++) {
      const xo = ia(bi) * M * K;
      const yo = ib(bi) * K * N;
      for (let m = 0; m < M; m++) {
        for (let n = 0; n < N; n++) {
          let acc = 0;
          for (let k = 0; k < K; k++) {
            const av = a.transA ? x.data[xo + k * xs + m] : x.data[xo + m * xs + k];
            const bv = a.transB ? y.data[yo + n * ys + k] : y.data[yo + k * ys + n];
            acc += av * bv;
          }
          data[bi * M * N + m * N + n] = acc;
        }
      }
    }
    return finish(out, data);
  },
  grad: {
    saves: { inputs: [0, 1], output: false },
    vjp: (b, n, g) => {
      const [x, y] = n.inputs;
      const { transA, transB } = n.attrs;
      // With A' = op(A), B' = op(B): dA' = g B'^T and dB' = A'^T g; transpose back where the operand was transposed.
      const dA = transA
        ? b.op('matmul', [y, g], { transA: transB, transB: true })
        : b.op('matmul', [g, y], { transA: false, transB: !transB });
      const xs = b.type(x).shape;
      const gs = b.type(g).shape;
      if (!transA && b.type(y).shape.length === 2 && xs.length > 2 && xs.length === gs.length) {
        // A weight shared across the batch (x[..., M, K] @ W[K, N]): fold the batch into the contraction,
        // dW = X^T G over all B*M rows in one matmul, instead of one product per batch entry summed afterwards.
        const rows = xs.slice(0, -1).reduce((p, q) => p * q, 1);
        const X = b.reshape(x, [rows, xs[xs.length - 1]]);
        const G = b.reshape(g, [rows, gs[gs.length - 1]]);
        return [b.unbroadcast(dA, xs), transB ? b.op('matmul', [G, X], { transA: true, transB: false }) : b.op('matmul', [X, G], { transA: true, transB: false })];
      }
      const dB = transB
        ? b.op('matmul', [g, x], { transA: true, transB: transA })
        : b.op('matmul', [x, g], { transA: !transA, transB: false });
      return [b.unbroadcast(dA, xs), b.unbroadcast(dB, b.type(y).shape)];
    },
  },
  lower: { kernel: 'matmul' },
};
