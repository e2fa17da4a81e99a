/**
 * Host side of data parallelism: splits a global batch into per-device shards along axis 0 and gives each shard
 * its rank (`dp_rank`, read by ZeRO's sharded optimizer) and its `dp_weight`, the share of the batch's counted (not ignored) target positions it holds, so the all-reduced
 * weighted mean losses equal the whole batch's mean loss.
 */
import { KilnError } from '../errors.js';
import type { HostTensor } from '../ir/tensor.js';
import { numel } from '../ir/types.js';
import { IGNORE } from '../train/objectives.js';
import { DP_RANK_INPUT, DP_WEIGHT_INPUT } from './mesh.js';

/** Rank r's rows of `t` split along axis 0 into `parts`. */
export function rowsOf(t: HostTensor, parts: number, r: number): HostTensor {
  const n = t.shape[0] / parts;
  const inner = numel(t.shape.slice(1));
  return { dtype: t.dtype, shape: [n, ...t.shape.slice(1)], data: t.data.slice(r * n * inner, (r + 1) * n * inner) as never };
}

function counted(t: HostTensor): number {
  let c = 0;
  for (let i = 0; i < t.data.length; i++) if (t.data[i] !== IGNORE) c++;
  return c;
}

/**
 * Shards every input of rank >= 1 along its first axis (scalars go to every device). `countedBy` names the input
 * whose non-ignored entries weight the shards (targets or labels); without it each shard weighs 1/dp.
 */
export function shardBatch(inputs: Record<string, HostTensor>, dp: number, countedBy?: string): Record<string, HostTensor>[] {
  const shards: Record<string, HostTensor>[] = Array.from({ length: dp }, () => ({}));
  for (const [name, t] of Object.entries(inputs)) {
    if (t.shape.length === 0) {
      for (const s of shards) s[name] = t;
      continue;
    }
    if (t.shape[0] % dp !== 0) throw new KilnError(`input '${name}' has ${t.shape[0]} rows along its batch axis, which do not split over dp=${dp} devices`);
    shards.forEach((s, r) => (s[name] = rowsOf(t, dp, r)));
  }
  const total = countedBy && inputs[countedBy] ? counted(inputs[countedBy]) : 0;
  shards.forEach((s) => {
    const w = total > 0 ? counted(s[countedBy!]) / total : 1 / dp;
    s[DP_WEIGHT_INPUT] = { dtype: 'f32', shape: [], data: Float32Array.of(w) };
  });
  shards.forEach((s, r) => (s[DP_RANK_INPUT] = { dtype: 'i32', shape: [], data: Int32Array.of(r) }));
  return shards;
}
