/** Shared helpers for op definitions: shape checks and the reference implementations' index arithmetic. */
import { ShapeError } from '../../errors.js';
import type { HostTensor, TensorData } from '../tensor.js';
import { allocData, roundHalfInPlace } from '../tensor.js';
import type { DType, Shape, TensorType } from '../types.js';
import { fmtType, isFloat, numel, strides } from '../types.js';

export function fail(op: string, inputs: readonly TensorType[], why: string): never {
  const desc = inputs.length ? ` (operands ${inputs.map(fmtType).join(', ')})` : '';
  throw new ShapeError(`${op}: ${why}${desc}`);
}

export function requireFloat(op: string, inputs: readonly TensorType[], i: number): void {
  if (!isFloat(inputs[i].dtype)) fail(op, inputs, `operand ${i + 1} must be a float tensor, got ${inputs[i].dtype}`);
}

export function requireInt(op: string, inputs: readonly TensorType[], i: number): void {
  const d = inputs[i].dtype;
  if (d !== 'i32' && d !== 'u32') fail(op, inputs, `operand ${i + 1} must be an integer tensor, got ${d}`);
}

export function requireSameDtype(op: string, inputs: readonly TensorType[]): DType {
  const d = inputs[0].dtype;
  for (const t of inputs) if (t.dtype !== d) fail(op, inputs, `operands must have the same dtype`);
  return d;
}

/** Maps a flat index of `out` to the flat index of a (right-aligned, broadcast) input. */
export function broadcastIndexer(inShape: Shape, outShape: Shape): (flat: number) => number {
  const rank = outShape.length;
  const lead = rank - inShape.length;
  const inStr = strides(inShape);
  const eff = outShape.map((_, i) => (i < lead || inShape[i - lead] === 1 ? 0 : inStr[i - lead]));
  if (numel(inShape) === numel(outShape) && eff.every((s, i) => i < lead || s === inStr[i - lead])) return (f) => f;
  return (flat) => {
    let off = 0;
    for (let i = rank - 1; i >= 0; i--) {
      const d = outShape[i];
      const c = flat % d;
      flat = (flat - c) / d;
      off += c * eff[i];
    }
    return off;
  };
}

export function finish(out: TensorType, data: TensorData): HostTensor {
  roundHalfInPlace(out.dtype, data);
  if (out.dtype === 'i32' && !(data instanceof Int32Array)) data = Int32Array.from(data);
  return { dtype: out.dtype, shape: [...out.shape], data };
}

/** Evaluates an elementwise function with broadcasting; `f` works on plain JS numbers. */
export function mapBroadcast(inputs: readonly HostTensor[], out: TensorType, f: (...v: number[]) => number): HostTensor {
  const n = numel(out.shape);
  const data = allocData(out.dtype, n);
  const idx = inputs.map((t) => broadcastIndexer(t.shape, out.shape));
  const vals = new Array<number>(inputs.length);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < inputs.length; k++) vals[k] = inputs[k].data[idx[k](i)];
    data[i] = f(...vals);
  }
  return finish(out, data);
}

export function normAxes(op: string, inputs: readonly TensorType[], axes: readonly number[], rank: number): number[] {
  const out = axes.map((a) => {
    const x = a < 0 ? a + rank : a;
    if (!Number.isInteger(x) || x < 0 || x >= rank) fail(op, inputs, `axis ${a} is out of range for rank ${rank}`);
    return x;
  });
  if (new Set(out).size !== out.length) fail(op, inputs, `repeated axis in [${axes.join(', ')}]`);
  return out.sort((a, b) => a - b);
}

/** Iterates rows of the last axis: the layout every row-wise primitive (softmax, norms, xent) uses. */
export function lastAxisRows(shape: Shape): { rows: number; width: number } {
  const width = shape.length ? shape[shape.length - 1] : 1;
  return { rows: width === 0 ? 0 : numel(shape) / width, width };
}

/**
 * erf to double precision: the Maclaurin series below |x| = 3 (at most ~4 digits lost to cancellation) and the
 * continued fraction of erfc above. The reference must be this exact: gradient checks compare the derivative of the
 * reference forward with the analytic rule 2/sqrt(pi) exp(-x^2), and a cheap fit's derivative would differ.
 */
export function erf(x: number): number {
  const z = Math.abs(x);
  if (z < 3) {
    let term = z;
    let sum = z;
    for (let n = 1; n < 200; n++) {
      term *= (-z * z) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    const r = (2 / Math.sqrt(Math.PI)) * sum;
    return x < 0 ? -r : r;
  }
  let k = z;
  for (let n = 60; n >= 1; n--) k = z + n / 2 / k;
  const erfc = Math.exp(-z * z) / (Math.sqrt(Math.PI) * k);
  return x < 0 ? erfc - 1 : 1 - erfc;
}
