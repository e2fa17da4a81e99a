/**
 * How IR dtypes live in WGSL. Storage buffers cannot hold bool, and f16 needs an optional device feature, so:
 *   f32 -> f32          i32 -> i32          u32 -> u32
 *   bool -> u32 in buffers (0/1), bool in registers
 *   f16 -> f32 in buffers and registers, rounded to the nearest f16 after every op (kiln_f16, integer bit ops),
 *          which reproduces the interpreter's "compute wide, round each op's result" semantics without shader-f16.
 */
import type { DType } from '../../ir/types.js';
import { roundF16 } from '../../ir/tensor.js';

export type WgslScalar = 'f32' | 'i32' | 'u32' | 'bool';

/** Type of a value in registers. */
export const computeType = (d: DType): WgslScalar => (d === 'f16' ? 'f32' : d);

/** Element type of a storage buffer holding the dtype. */
export const storageType = (d: DType): 'f32' | 'i32' | 'u32' => (d === 'bool' ? 'u32' : d === 'f16' ? 'f32' : d);

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

/** Expression reading element `idx` of buffer `buf` holding dtype d, as its compute type. */
export const loadExpr = (buf: string, idx: string, d: DType): string => (d === 'bool' ? `(${buf}[${idx}] != 0u)` : `${buf}[${idx}]`);

/** Expression converting a compute-type value to what a buffer of dtype d stores. */
export const storeExpr = (v: string, d: DType): string => (d === 'bool' ? `select(0u, 1u, ${v})` : d === 'f16' ? `kiln_f16(${v})` : v);

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
      const f = Math.fround(d === 'f16' ? roundF16(v) : v);
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
