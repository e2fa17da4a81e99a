import type { DType, Shape, TensorType } from './types.js';
import { numel } from './types.js';

export type TensorData = Float32Array | Float64Array | Int32Array | Uint32Array | Uint8Array;

/**
 * When set, f32 tensors the interpreter allocates are Float64Array: gradient checking runs the same reference
 * implementations in double precision so central differences are accurate. Only `interpret` toggles it.
 */
let wideFloats = false;
export function withFloat64<T>(f: () => T): T {
  const prev = wideFloats;
  wideFloats = true;
  try {
    return f();
  } finally {
    wideFloats = prev;
  }
}

/**
 * A tensor on the host: the interpreter's values, CLI inputs/outputs, checkpoints.
 * f16 and bf16 are stored widened in a Float32Array, every value exactly representable in the dtype.
 */
export interface HostTensor {
  readonly dtype: DType;
  readonly shape: Shape;
  readonly data: TensorData;
}

export function allocData(dtype: DType, n: number): TensorData {
  switch (dtype) {
    case 'f32':
      return wideFloats ? new Float64Array(n) : new Float32Array(n);
    case 'f16':
    case 'bf16':
      return new Float32Array(n);
    case 'i32':
      return new Int32Array(n);
    case 'u32':
      return new Uint32Array(n);
    case 'bool':
      return new Uint8Array(n);
  }
}

export function zeros(t: TensorType): HostTensor {
  return { dtype: t.dtype, shape: [...t.shape], data: allocData(t.dtype, numel(t.shape)) };
}

export function tensor(dtype: DType, shape: Shape, values: ArrayLike<number>): HostTensor {
  const data = allocData(dtype, numel(shape));
  if (values.length !== data.length) {
    throw new Error(`tensor: ${values.length} values for shape [${shape.join(', ')}]`);
  }
  for (let i = 0; i < data.length; i++) data[i] = values[i];
  roundHalfInPlace(dtype, data);
  return { dtype, shape: [...shape], data };
}

export function scalar(dtype: DType, v: number): HostTensor {
  return tensor(dtype, [], [v]);
}

// ---- f16 emulation: round-to-nearest-even to binary16, then widen back to f32 ----
const f32buf = new Float32Array(1);
const u32buf = new Uint32Array(f32buf.buffer);

/** Converts an f32 to its IEEE binary16 bit pattern (round to nearest, ties to even). */
export function f32ToF16Bits(v: number): number {
  f32buf[0] = v;
  const x = u32buf[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // inf / nan
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow -> inf
  if (e <= 0) {
    // subnormal in f16 (or underflow to zero)
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let m = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    if (rem > half || (rem === half && (m & 1))) m++;
    return sign | m;
  }
  let m = mant >>> 13;
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (m & 1))) {
    m++;
    if (m === 0x400) {
      m = 0;
      e++;
      if (e >= 0x1f) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | m;
}

export function f16BitsToF32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 0x1f) return m ? NaN : sign * Infinity;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

export const roundF16 = (v: number): number => f16BitsToF32(f32ToF16Bits(v));

export function roundF16InPlace(a: Float32Array): void {
  for (let i = 0; i < a.length; i++) a[i] = roundF16(a[i]);
}

// ---- bf16 emulation: the top 16 bits of an f32, rounded to nearest, ties to even ----

/** Converts an f32 to its bfloat16 bit pattern (round to nearest, ties to even; NaN stays a quiet NaN). */
export function f32ToBf16Bits(v: number): number {
  f32buf[0] = v;
  const x = u32buf[0];
  if ((x & 0x7f800000) === 0x7f800000 && x & 0x7fffff) return ((x >>> 16) | 0x40) & 0xffff;
  // adding 0x7fff plus the kept part's lowest bit rounds ties to even; a carry into the exponent is correct (up to inf)
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

export function bf16BitsToF32(h: number): number {
  u32buf[0] = (h & 0xffff) << 16;
  return f32buf[0];
}

export const roundBf16 = (v: number): number => bf16BitsToF32(f32ToBf16Bits(v));

export function roundBf16InPlace(a: Float32Array): void {
  for (let i = 0; i < a.length; i++) a[i] = roundBf16(a[i]);
}

/** Rounds every value to the dtype when it is a 16-bit float (a no-op for the others). */
export function roundHalfInPlace(dtype: DType, a: TensorData): void {
  if (dtype === 'f16') roundF16InPlace(a as Float32Array);
  else if (dtype === 'bf16') roundBf16InPlace(a as Float32Array);
}

/** Rounds one value to the dtype when it is a 16-bit float. */
export const roundTo = (dtype: DType, v: number): number => (dtype === 'f16' ? roundF16(v) : dtype === 'bf16' ? roundBf16(v) : v);

/** The 16-bit pattern of a value in a half dtype. */
export const halfBits = (dtype: 'f16' | 'bf16', v: number): number => (dtype === 'f16' ? f32ToF16Bits(v) : f32ToBf16Bits(v));
export const halfFromBits = (dtype: 'f16' | 'bf16', h: number): number => (dtype === 'f16' ? f16BitsToF32(h) : bf16BitsToF32(h));

/** Device layout of a half tensor: 16-bit patterns in order (two per little-endian u32 word). */
export function toHalfBits(dtype: 'f16' | 'bf16', a: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(a.length + (a.length & 1));
  for (let i = 0; i < a.length; i++) out[i] = halfBits(dtype, a[i]);
  return out;
}
