/**
 * Collectives: ops whose result on one device depends on the same op's operand on every device of a group of
 * `size` devices (an SPMD program runs on each; the k-th collective of every device's program meets the k-th of
 * the others). They are not kernels: the multi-device runtime splits programs at collectives and exchanges the
 * values between devices (src/runtime/multi.ts); the sharded interpreter does the same on the host
 * (src/interp/sharded.ts). Both combine with `combineCollective`, which sums in device order 0, 1, ..., size-1 in
 * the operand's precision, so results are deterministic and equal everywhere.
 *
 *   all_reduce      x_d[...]           -> sum_d x_d                       (same shape)
 *   reduce_scatter  x_d[.., n*size, ..] -> (sum_d x_d)[.., shard r, ..]    (rank r keeps the r-th of `size` slices)
 *   all_gather      x_d[.., n, ..]      -> concat_d x_d along `axis`       (same on every rank)
 *
 * On one device (the plain interpreter) a collective of size 1 is the identity; a larger one is an error there.
 */
import { KilnError } from '../../errors.js';
import type { AttrsOf, OpRule } from '../op.js';
import type { HostTensor } from '../tensor.js';
import { allocData } from '../tensor.js';
import type { TensorType } from '../types.js';
import { isFloat, numel } from '../types.js';
import { fail, finish } from './util.js';

export type CollectiveKind = 'all_reduce' | 'reduce_scatter' | 'all_gather';
export const COLLECTIVES: readonly CollectiveKind[] = ['all_reduce', 'reduce_scatter', 'all_gather'];
export const isCollective = (op: string): op is CollectiveKind => (COLLECTIVES as readonly string[]).includes(op);

function checkSize(op: string, inputs: readonly TensorType[], size: number): void {
  if (!Number.isInteger(size) || size < 1) fail(op, inputs, `group size must be a positive integer, got ${size}`);
}

function checkAxis(op: string, inputs: readonly TensorType[], axis: number): number {
  const r = inputs[0].shape.length;
  const ax = axis < 0 ? axis + r : axis;
  if (!Number.isInteger(ax) || ax < 0 || ax >= r) fail(op, inputs, `axis ${axis} is out of range for rank ${r}`);
  return ax;
}

/** outer x dim x inner view of a shape around `axis`. */
function around(shape: readonly number[], axis: number): { outer: number; dim: number; inner: number } {
  return { outer: numel(shape.slice(0, axis)), dim: shape[axis], inner: numel(shape.slice(axis + 1)) };
}

/** Sum in device order, rounding each partial sum to the operand's precision (f32 arrays round on store). */
function sumInOrder(xs: readonly HostTensor[]): HostTensor {
  const data = allocData(xs[0].dtype, xs[0].data.length);
  data.set(xs[0].data);
  for (let d = 1; d < xs.length; d++) {
    const x = xs[d].data;
    for (let i = 0; i < data.length; i++) data[i] = (data[i] as number) + (x[i] as number);
  }
  return finish({ dtype: xs[0].dtype, shape: xs[0].shape }, data);
}

/** Rank r's slice of `x` split into `parts` equal slices along `axis` (also how split parameters are initialised). */
export function shard(x: HostTensor, axis: number, parts: number, r: number): HostTensor {
  const { outer, dim, inner } = around(x.shape, axis);
  const n = dim / parts;
  const shape = x.shape.map((s, i) => (i === axis ? n : s));
  const data = allocData(x.dtype, outer * n * inner);
  for (let o = 0; o < outer; o++) data.set(x.data.subarray((o * dim + r * n) * inner, (o * dim + (r + 1) * n) * inner) as never, o * n * inner);
  return { dtype: x.dtype, shape, data };
}

function gather(xs: readonly HostTensor[], axis: number): HostTensor {
  const { outer, dim, inner } = around(xs[0].shape, axis);
  const total = dim * xs.length;
  const shape = xs[0].shape.map((s, i) => (i === axis ? total : s));
  const data = allocData(xs[0].dtype, outer * total * inner);
  xs.forEach((x, r) => {
    for (let o = 0; o < outer; o++) data.set(x.data.subarray(o * dim * inner, (o + 1) * dim * inner) as never, (o * total + r * dim) * inner);
  });
  return { dtype: xs[0].dtype, shape, data };
}

/**
 * The reference semantics of a collective over a whole group: the operand of every rank in, the result of every
 * rank out. The host side of the multi-device runtime runs exactly this.
 */
export function combineCollective<K extends CollectiveKind>(op: K, attrs: AttrsOf<K>, xs: readonly HostTensor[]): HostTensor[] {
  if (xs.length !== attrs.size) throw new KilnError(`${op} over ${attrs.size} devices got ${xs.length} operands`);
  switch (op) {
    case 'all_reduce': {
      const s = sumInOrder(xs);
      return xs.map(() => s);
    }
    case 'reduce_scatter': {
      const s = sumInOrder(xs);
      const axis = (attrs as AttrsOf<'reduce_scatter'>).axis;
      return xs.map((_, r) => shard(s, axis < 0 ? axis + s.shape.length : axis, xs.length, r));
    }
    case 'all_gather': {
      const axis = (attrs as AttrsOf<'all_gather'>).axis;
      const g = gather(xs, axis < 0 ? axis + xs[0].shape.length : axis);
      return xs.map(() => g);
    }
  }
  throw new KilnError(`unknown collective '${op}'`);
}

const alone = (op: string, size: number, x: HostTensor): HostTensor => {
  if (size !== 1) throw new KilnError(`${op} over ${size} devices needs the other devices: run the per-device programs with interpretSharded (src/interp/sharded.ts)`);
  return x;
};

export const collectiveOps: { all_reduce: OpRule<'all_reduce'>; reduce_scatter: OpRule<'reduce_scatter'>; all_gather: OpRule<'all_gather'> } = {
  all_reduce: {
    arity: 1,
    infer: (inputs, a) => {
      checkSize('all_reduce', inputs, a.size);
      if (!isFloat(inputs[0].dtype)) fail('all_reduce', inputs, 'operand must be a float tensor');
      return inputs[0];
    },
    evaluate: ([x], a) => alone('all_reduce', a.size, x),
    // y_d = sum_k x_k on every d, so dL/dx_k = sum_d g_d: the cotangents all-reduced.
    grad: { saves: { inputs: [], output: false }, vjp: (b, n, g) => [b.op('all_reduce', [g], { ...n.attrs })] },
    lower: { kernel: 'collective' },
  },
  reduce_scatter: {
    arity: 1,
    infer: (inputs, a) => {
      checkSize('reduce_scatter', inputs, a.size);
      if (!isFloat(inputs[0].dtype)) fail('reduce_scatter', inputs, 'operand must be a float tensor');
      const ax = checkAxis('reduce_scatter', inputs, a.axis);
      const d = inputs[0].shape[ax];
      if (d % a.size !== 0) fail('reduce_scatter', inputs, `axis ${a.axis} (length ${d}) does not split into ${a.size} equal shards`);
      return { dtype: inputs[0].dtype, shape: inputs[0].shape.map((s, i) => (i === ax ? s / a.size : s)) };
    },
    evaluate: ([x], a) => alone('reduce_scatter', a.size, x),
    // rank r's result reads slice r of every x_k: dL/dx_k = concat_r g_r, the cotangents all-gathered.
    grad: { saves: { inputs: [], output: false }, vjp: (b, n, g) => [b.op('all_gather', [g], { ...n.attrs })] },
    lower: { kernel: 'collective' },
  },
  all_gather: {
    arity: 1,
    infer: (inputs, a) => {
      checkSize('all_gather', inputs, a.size);
      if (!isFloat(inputs[0].dtype)) fail('all_gather', inputs, 'operand must be a float tensor');
      const ax = checkAxis('all_gather', inputs, a.axis);
      return { dtype: inputs[0].dtype, shape: inputs[0].shape.map((s, i) => (i === ax ? s * a.size : s)) };
    },
    evaluate: ([x], a) => alone('all_gather', a.size, x),
    // every rank's result holds x_k at slice k: dL/dx_k = sum_d g_d[slice k], the cotangents reduce-scattered.
    grad: { saves: { inputs: [], output: false }, vjp: (b, n, g) => [b.op('reduce_scatter', [g], { ...n.attrs })] },
    lower: { kernel: 'collective' },
  },
};
