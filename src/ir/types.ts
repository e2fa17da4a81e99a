import { ShapeError } from '../errors.js';

export const DTYPES = ['f32', 'f16', 'bf16', 'i32', 'u32', 'bool'] as const;
export type DType = (typeof DTYPES)[number];
export type Shape = readonly number[];

export interface TensorType {
  readonly dtype: DType;
  readonly shape: Shape;
}

export const isFloat = (d: DType): boolean => d === 'f32' || d === 'f16' || d === 'bf16';
/** The 16-bit floats: stored in two bytes on the device, computed in f32 and rounded to the dtype after each op. */
export const isHalf = (d: DType): d is 'f16' | 'bf16' => d === 'f16' || d === 'bf16';
/** Bytes of one element in a device buffer (bool is a u32 word there). */
export const deviceElemBytes = (d: DType): number => (isHalf(d) ? 2 : 4);
export const isInt = (d: DType): boolean => d === 'i32' || d === 'u32';

export function numel(shape: Shape): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

export function fmtShape(shape: Shape): string {
  return `[${shape.join(', ')}]`;
}

export function fmtType(t: TensorType): string {
  return `${t.dtype}${fmtShape(t.shape)}`;
}

export function sameShape(a: Shape, b: Shape): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

export function sameType(a: TensorType, b: TensorType): boolean {
  return a.dtype === b.dtype && sameShape(a.shape, b.shape);
}

/** Row-major strides. */
export function strides(shape: Shape): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/** Numpy broadcasting of several shapes (right-aligned; a dim of 1 stretches). */
export function broadcastShapes(op: string, shapes: Shape[]): number[] {
  const rank = Math.max(...shapes.map((s) => s.length));
  const out: number[] = [];
  for (let i = 0; i < rank; i++) {
    let d = 1;
    for (const s of shapes) {
      const k = s.length - rank + i;
      const v = k >= 0 ? s[k] : 1;
      if (v === 1) continue;
      if (d !== 1 && d !== v) {
        throw new ShapeError(
          `${op}: shapes ${shapes.map(fmtShape).join(' and ')} cannot be broadcast together (dimension ${i - rank} is ${d} vs ${v})`,
        );
      }
      d = v;
    }
    out.push(d);
  }
  return out;
}

/** Normalises a possibly negative axis against a rank; throws a ShapeError naming the op. */
export function normAxis(op: string, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) {
    throw new ShapeError(`${op}: axis ${axis} is out of range for a tensor of rank ${rank}`);
  }
  return a;
}
