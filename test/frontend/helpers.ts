import { join } from 'node:path';
import type { HostTensor } from '../../src/ir/tensor.js';
import type { DType } from '../../src/ir/types.js';

export const FIXTURES = join(import.meta.dirname, 'fixtures');

/** Deterministic pseudo-random numbers in [-1, 1) (a small LCG; tests only need variety, not quality). */
export function rand(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  };
}

export function randTensor(shape: number[], seed: number, dtype: DType = 'f32', limit = 0): HostTensor {
  const r = rand(seed);
  const n = shape.reduce((a, b) => a * b, 1);
  if (dtype === 'f32') return { dtype, shape, data: Float32Array.from({ length: n }, r) };
  return { dtype, shape, data: Int32Array.from({ length: n }, () => Math.floor(((r() + 1) / 2) * limit)) };
}

export const at = (t: HostTensor, ...idx: number[]): number => {
  let off = 0;
  idx.forEach((v, i) => (off = off * t.shape[i] + v));
  return t.data[off];
};
