/**
 * Parameter initialisers. Each parameter's values depend only on (seed, parameter name, element index),
 * drawn from Philox, so initialisation is reproducible and independent of the order parameters are created.
 * Weight matrices are stored [in, out]: fan_in is the product of all but the last dim, fan_out the last.
 */
import type { ParamInit } from './op.js';
import { hashString, philox4x32, u32ToUnit } from './philox.js';
import type { HostTensor } from './tensor.js';
import { allocData, roundHalfInPlace } from './tensor.js';
import type { TensorType } from './types.js';
import { numel } from './types.js';

export function fans(shape: readonly number[]): { fanIn: number; fanOut: number } {
  if (shape.length === 0) return { fanIn: 1, fanOut: 1 };
  if (shape.length === 1) return { fanIn: shape[0], fanOut: shape[0] };
  const fanOut = shape[shape.length - 1];
  return { fanIn: numel(shape) / fanOut, fanOut };
}

/** Standard deviation or half-range an initialiser implies for a shape (used by docs and tests). */
export function initScale(init: ParamInit, shape: readonly number[]): { std?: number; bound?: number } {
  const { fanIn, fanOut } = fans(shape);
  switch (init.kind) {
    case 'normal':
      return { std: init.std };
    case 'xavier_normal':
      return { std: (init.gain ?? 1) * Math.sqrt(2 / (fanIn + fanOut)) };
    case 'kaiming_normal':
      return { std: (init.gain ?? Math.SQRT2) / Math.sqrt(fanIn) };
    case 'xavier_uniform':
      return { bound: (init.gain ?? 1) * Math.sqrt(6 / (fanIn + fanOut)) };
    case 'kaiming_uniform':
      return { bound: (init.gain ?? Math.SQRT2) * Math.sqrt(3 / fanIn) };
    default:
      return {};
  }
}

export function initParam(init: ParamInit, type: TensorType, name: string, seed: number): HostTensor {
  const n = numel(type.shape);
  const data = allocData(type.dtype, n);
  const key = hashString(name);
  const uniform = (i: number) => philox4x32(i, 0, 0, 0, seed >>> 0, key);
  const scale = initScale(init, type.shape);
  switch (init.kind) {
    case 'zeros':
      break;
    case 'ones':
      data.fill(1);
      break;
    case 'constant':
      data.fill(init.value);
      break;
    case 'uniform':
    case 'xavier_uniform':
    case 'kaiming_uniform': {
      const lo = init.kind === 'uniform' ? init.low : -scale.bound!;
      const hi = init.kind === 'uniform' ? init.high : scale.bound!;
      for (let i = 0; i < n; i++) data[i] = lo + (hi - lo) * u32ToUnit(uniform(i)[0]);
      break;
    }
    case 'normal':
    case 'xavier_normal':
    case 'kaiming_normal': {
      const mean = init.kind === 'normal' ? (init.mean ?? 0) : 0;
      const std = scale.std!;
      for (let i = 0; i < n; i++) {
        const w = uniform(i);
        // Box-Muller; 1 - u keeps the log argument in (0, 1].
        const u1 = 1 - u32ToUnit(w[0]);
        const u2 = u32ToUnit(w[1]);
        data[i] = mean + std * Math.sqrt(-2 * Math.log(u1)) * Math.cos(2 * Math.PI * u2);
      }
      break;
    }
  }
  roundHalfInPlace(type.dtype, data);
  return { dtype: type.dtype, shape: [...type.shape], data };
}
