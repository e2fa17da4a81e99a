/**
 * Kernel benchmarks: each case is one small Kiln graph (operands are parameters, so they stay resident on the
 * device like TF.js's tensors) and the equivalent TF.js expression. Both sides read the result back every run.
 */
import type * as TF from '@tensorflow/tfjs-core';
import { GraphBuilder } from '../src/ir/builder.js';
import type { Graph } from '../src/ir/graph.js';
import type { HostTensor } from '../src/ir/tensor.js';
import { Rng } from '../src/train/rng.js';

export interface KernelCase {
  name: string;
  graph: Graph;
  /** Operand values by parameter name. */
  values: Record<string, HostTensor>;
  /** The same computation in TF.js on tensors made from `values`. */
  tf(tf: typeof TF, t: Record<string, TF.Tensor>): TF.Tensor;
  /** Floating-point operations, for GFLOP/s where meaningful. */
  flops?: number;
  /** Why the TF.js CPU backend is not timed on this case, if it is not. */
  skipCpu?: string;
  /** A plain matmul of operands a and b (b transposed with transB): jax-js times it too. */
  matmul?: { transA: boolean; transB: boolean };
}

function rand(shape: number[], seed: number, lo = -1, hi = 1): HostTensor {
  const r = new Rng(seed, 'bench');
  const n = shape.reduce((a, b) => a * b, 1);
  return { dtype: 'f32', shape, data: Float32Array.from({ length: n }, () => lo + (hi - lo) * r.next()) };
}

function kernel(name: string, operands: Record<string, HostTensor>, build: (b: GraphBuilder, p: Record<string, number>) => number, tf: KernelCase['tf'], flops?: number): KernelCase {
  const b = new GraphBuilder();
  const p: Record<string, number> = {};
  for (const [k, v] of Object.entries(operands)) {
    p[k] = v.dtype === 'f32' ? b.op('param', [], { name: k, dtype: 'f32', shape: v.shape, init: { kind: 'zeros' } }) : b.op('input', [], { name: k, dtype: v.dtype, shape: v.shape });
  }
  return { name, graph: b.build(name, [{ name: 'y', id: build(b, p) }]), values: operands, tf, flops };
}

function matmulCase(name: string, a: HostTensor, bm: HostTensor, transA: boolean, transB: boolean, flops: number): KernelCase {
  const c = kernel(name, { a, b: bm }, (b, p) => b.op('matmul', [p.a, p.b], { transA, transB }), (tf, t) => tf.matMul(t.a, t.b, transA, transB), flops);
  return { ...c, matmul: { transA, transB } };
}

export function kernelCases(quick: boolean): KernelCase[] {
  const sizes = quick ? [32] : [256, 512, 1024];
  const cases: KernelCase[] = [];
  for (const n of sizes) cases.push(matmulCase(`matmul ${n}x${n}x${n}`, rand([n, n], 1), rand([n, n], 2), false, false, 2 * n ** 3));
  // The layouts the backward pass uses, at the NN case's size: dx = dy·Wᵀ (NT) and dW = xᵀ·dy (TN).
  const L = quick ? 32 : 512;
  cases.push(matmulCase(`matmul ${L}³ A·Bᵀ (NT)`, rand([L, L], 14), rand([L, L], 15), false, true, 2 * L ** 3));
  cases.push(matmulCase(`matmul ${L}³ Aᵀ·B (TN)`, rand([L, L], 16), rand([L, L], 17), true, false, 2 * L ** 3));
  const [M, K, N] = quick ? [24, 40, 8] : [512, 768, 256];
  cases.push(matmulCase(`matmul ${M}x${K} · (${N}x${K})ᵀ`, rand([M, K], 3), rand([N, K], 4), false, true, 2 * M * N * K));
  const [R, C] = quick ? [64, 32] : [4096, 512];
  cases.push(kernel(`softmax [${R}, ${C}]`, { x: rand([R, C], 5, -4, 4) }, (b, p) => b.op('softmax', [p.x], {}), (tf, t) => tf.softmax(t.x)));
  cases.push(
    kernel(
      `layer_norm [${R}, ${C}]`,
      { x: rand([R, C], 6), g: rand([C], 7), beta: rand([C], 8) },
      (b, p) => b.op('layer_norm', [p.x, p.g, p.beta], { eps: 1e-5 }),
      (tf, t) => {
        const xc = tf.sub(t.x, tf.mean(t.x, -1, true));
        return tf.add(tf.mul(tf.mul(xc, tf.rsqrt(tf.add(tf.mean(tf.square(xc), -1, true), 1e-5))), t.g), t.beta);
      },
    ),
  );
  cases.push(
    kernel(
      `bias + GELU + residual [${R}, ${C}]`,
      { x: rand([R, C], 9), bias: rand([C], 10), res: rand([R, C], 11) },
      (b, p) => b.add(b.op('gelu', [b.add(p.x, p.bias)], { approximate: 'tanh' }), p.res),
      (tf, t) => {
        const h = tf.add(t.x, t.bias);
        return tf.add(tf.mul(tf.mul(h, 0.5), tf.add(1, tf.tanh(tf.mul(Math.sqrt(2 / Math.PI), tf.add(h, tf.mul(0.044715, tf.mul(h, tf.mul(h, h)))))))), t.res);
      },
    ),
  );
  const [V, D, NT] = quick ? [50, 16, 64] : [32000, 512, 8 * 1024];
  const ids: HostTensor = { dtype: 'i32', shape: [NT], data: Int32Array.from({ length: NT }, (_, i) => (i * 7919) % Math.min(V, 1000)) };
  cases.push(kernel(`embedding gather [${V}, ${D}] x ${NT}`, { table: rand([V, D], 12), ids }, (b, p) => b.op('gather', [p.table, p.ids], {}), (tf, t) => tf.gather(t.table, t.ids)));
  const scatter = kernel(
    `embedding scatter-add backward ${NT} -> [${V}, ${D}]`,
    { ids, upd: rand([NT, D], 13) },
    (b, p) => b.op('scatter_add', [p.ids, p.upd], { rows: V }),
    (tf, t) => tf.unsortedSegmentSum(t.upd, t.ids as TF.Tensor1D, V),
  );
  // TF.js CPU's unsortedSegmentSum makes one pass over the updates per segment: O(rows x n x d), minutes here.
  if (!quick) scatter.skipCpu = 'TF.js CPU unsortedSegmentSum takes one pass over all updates per row (minutes at this size)';
  cases.push(scatter);
  return cases;
}
