/**
 * How IR dtypes live in WGSL. Storage buffers cannot hold bool, WGSL has no bf16, and f16 needs an optional device
 * feature, so:
 *   f32 -> f32          i32 -> i32          u32 -> u32
 *   bool -> u32 in buffers (0/1), bool in registers
 *   f16  -> 2 bytes per element in buffers: array<f16> where the device has `shader-f16` (`native`), else two per
 *           u32 word (`packed`); f32 in registers, rounded to the nearest f16 after every op (kiln_f16, integer bit
 *           ops) — for +, -, *, / and sqrt this equals f16 arithmetic (f32 has more than 2·11+2 significand bits,
 *           so the double rounding is exact), and it is the interpreter's "compute wide, round each result".
 *   bf16 -> always packed two per u32 word; f32 in registers, rounded to bf16 after every op (kiln_bf16).
 * A packed output is written with two atomics per element (clear its half of the word, then or in its bits): two
 * invocations writing the two halves of one word never lose each other's bits, whatever the order, so results stay
 * deterministic and every kernel generator keeps its one-output-per-invocation shape.
 */
import type { DType } from '../../ir/types.js';
import { isHalf } from '../../ir/types.js';
import { roundBf16, roundF16 } from '../../ir/tensor.js';

export type WgslScalar = 'f32' | 'i32' | 'u32' | 'bool';

/** How f16 tensors are stored: `native` array<f16> (needs shader-f16) or `packed` two per u32. */
export type HalfStorage = 'native' | 'packed';

/** Type of a value in registers. */
export const computeType = (d: DType): WgslScalar => (isHalf(d) ? 'f32' : d);

/** Whether tensors of dtype d sit two per u32 word in buffers. */
export const isPacked = (d: DType, f16: HalfStorage): boolean => d === 'bf16' || (d === 'f16' && f16 === 'packed');

/** Element type of a storage buffer holding the dtype. */
export const storageType = (d: DType, f16: HalfStorage): 'f32' | 'f16' | 'i32' | 'u32' =>
  d === 'bool' || isPacked(d, f16) ? 'u32' : d === 'f16' ? 'f16' : (d as 'f32' | 'i32' | 'u32');

/**
 * Round an f32 to the nearest f16 value (ties to even), kept as f32. Written with integer ops: the
 * unpack2x16float(pack2x16float(x)) round trip is folded away by some drivers (lavapipe) and then rounds nothing.
 */
export const WGSL_F16_ROUND = /* wgsl */ `
fn kiln_f16(x: f32) -> f32 {
  let a = abs(x);
  let b = bitcast<u32>(x);
  if (a < 6.103515625e-5) { return round(x * 16777216.0) * 5.9604644775390625e-8; } // f16 subnormals: multiples of 2^-24
  if (a >= 65520.0) { return bitcast<f32>((b & 0x80000000u) | 0x7f800000u); } // overflows to inf
  return bitcast<f32>((b + 0xfffu + ((b >> 13u) & 1u)) & 0xffffe000u); // keep 10 mantissa bits, ties to even
}`;

/** Round an f32 to the nearest bf16 value (ties to even), kept as f32; inf and NaN pass through. */
export const WGSL_BF16_ROUND = /* wgsl */ `
fn kiln_bf16(x: f32) -> f32 {
  let b = bitcast<u32>(x);
  if ((b & 0x7f800000u) == 0x7f800000u) { return x; }
  return bitcast<f32>((b + 0x7fffu + ((b >> 16u) & 1u)) & 0xffff0000u);
}`;

/**
 * The binary16 bits of an f32 already rounded to f16 (or inf/NaN), by integer ops: pack2x16float and f16() leave
 * values outside f16's finite range indeterminate, and overflow to inf is part of the semantics (loss scaling).
 */
export const WGSL_F16_BITS = /* wgsl */ `
fn kiln_f16_bits(r: f32) -> u32 {
  let b = bitcast<u32>(r);
  let s = (b >> 16u) & 0x8000u;
  let a = b & 0x7fffffffu;
  if (a >= 0x7f800000u) { return s | 0x7c00u | select(0u, 0x200u, a > 0x7f800000u); }
  if (a < 0x38800000u) { return s | u32(bitcast<f32>(a) * 16777216.0); } // subnormal: a multiple of 2^-24
  return s | (((a >> 23u) - 112u) << 10u) | ((a >> 13u) & 0x3ffu);
}
fn kiln_f16_from_bits(h: u32) -> f32 {
  let s = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  if (e == 0u) { return bitcast<f32>(s | bitcast<u32>(f32(m) * 5.9604644775390625e-8)); }
  if (e == 31u) { return bitcast<f32>(s | 0x7f800000u | (m << 13u)); }
  return bitcast<f32>(s | ((e + 112u) << 23u) | (m << 13u));
}`;

/** Expression reading element `idx` of buffer `buf` holding dtype d, as its compute type. */
export function loadExpr(buf: string, idx: string, d: DType, f16: HalfStorage = 'native'): string {
  if (d === 'bool') return `(${buf}[${idx}] != 0u)`;
  if (isPacked(d, f16)) {
    // `out` of a packed in-place update is an atomic array: its old value is read with atomicLoad
    const word = buf === 'out' ? `atomicLoad(&out[(${idx}) >> 1u])` : `${buf}[(${idx}) >> 1u]`;
    const half = `((${word} >> (((${idx}) & 1u) << 4u)) & 0xffffu)`;
    return d === 'bf16' ? `bitcast<f32>(${half} << 16u)` : `kiln_f16_from_bits(${half})`;
  }
  if (d === 'f16') return `f32(${buf}[${idx}])`;
  return `${buf}[${idx}]`;
}

/** Expression converting a compute-type value to what a (not packed) buffer of dtype d stores. */
export const storeExpr = (v: string, d: DType): string =>
  d === 'bool' ? `select(0u, 1u, ${v})` : d === 'f16' ? `bitcast<vec2<f16>>(kiln_f16_bits(kiln_f16(${v})))[0]` : v;

/**
 * The statement writing compute-type value v as element idx of the kernel's output `out` of dtype d. A packed
 * output goes through kiln_store (see the header: two atomics, one per half of the word).
 */
export const storeStmt = (idx: string, v: string, d: DType, f16: HalfStorage): string =>
  isPacked(d, f16) ? `kiln_store(${idx}, ${v})` : `out[${idx}] = ${storeExpr(v, d)}`;

/** The kiln_store helper of a kernel whose output is packed dtype d. */
export const packedStoreHelper = (d: DType): string => `fn kiln_store(i: u32, v: f32) {
  let sh = (i & 1u) << 4u;
  let bits = ${d === 'bf16' ? 'bitcast<u32>(kiln_bf16(v)) >> 16u' : 'kiln_f16_bits(kiln_f16(v))'};
  atomicAnd(&out[i >> 1u], ~(0xffffu << sh));
  atomicOr(&out[i >> 1u], bits << sh);
}`;

/** A WGSL literal of the dtype's compute type. Non-finite floats go through bitcast (WGSL has no inf literal). */
export function literal(v: number, d: DType): string {
  switch (computeType(d)) {
    case 'bool':
      return v ? 'true' : 'false';
    case 'i32': {
      const x = v | 0;
      return x === -2147483648 ? 'i32(-2147483647 - 1)' : `i32(${x})`;
    }
    case 'u32':
      return `${v >>> 0}u`;
    case 'f32': {
      const f = Math.fround(d === 'f16' ? roundF16(v) : d === 'bf16' ? roundBf16(v) : v);
      if (Number.isNaN(f)) return 'kiln_bits_f32(0x7fc00000u)';
      if (f === Infinity) return 'kiln_bits_f32(0x7f800000u)';
      if (f === -Infinity) return 'kiln_bits_f32(0xff800000u)';
      return `f32(${f})`;
    }
  }
}

export const NEG_INF = 'kiln_bits_f32(0xff800000u)';

/**
 * Non-finite floats: WGSL rejects a constant expression that evaluates to inf or NaN, so the bit pattern goes
 * through a variable (a runtime value). Every kernel includes this helper.
 */
export const WGSL_BITS_F32 = /* wgsl */ `fn kiln_bits_f32(b: u32) -> f32 { var v = b; return bitcast<f32>(v); }`;

/** Splits a workgroup count over x and y so that neither exceeds the per-dimension limit. */
export function grid(groups: number, maxPerDim = 65535): [number, number, number] {
  if (groups <= maxPerDim) return [Math.max(groups, 0), 1, 1];
  const y = Math.ceil(groups / maxPerDim);
  return [Math.ceil(groups / y), y, 1];
}

/**
 * How kernels use a workgroup: `workgroup` — cooperatively (workgroup-memory matmul tiles, tree reductions; GPUs);
 * `thread` — each invocation on its own (direct matmul, one row or output per invocation; CPU-backed adapters, where
 * a workgroup runs on one CPU thread and every barrier is a coroutine switch per invocation).
 */
export type KernelStrategy = 'workgroup' | 'thread';
