/**
 * The device mesh a program is partitioned over: data parallel (dp) or tensor parallel (tp, attention heads and MLP blocks), one axis
 * at a time; 2-D meshes and pipeline parallelism are designed in docs/parallel.md and refused here with a clear
 * error rather than half-supported.
 */
import { KilnError } from '../errors.js';

export interface ParallelConfig {
  /** Data-parallel degree: each device runs the model on its 1/dp of the batch; gradients are all-reduced. */
  dp: number;
  /** Tensor-parallel degree (attention heads and MLP blocks split Megatron-style; src/parallel/tensor-parallel.ts). Not with dp > 1. */
  tp?: number;
  /** ZeRO stage over the dp group (1: optimizer state, 2: + gradients, 3: + parameters sharded; src/parallel/zero.ts). */
  zero?: number;
  /** Pipeline stages (src/parallel/pipeline-parallel.ts), the micro-batches a step is split into, and their schedule. */
  pp?: number;
  microBatches?: number;
  ppSchedule?: 'gpipe' | '1f1b';
}

/** The graph input that weights each device's loss and gradients (its share of the global batch's counted tokens). */
export const DP_WEIGHT_INPUT = 'dp_weight';

/** The graph input holding a device's rank in the data-parallel group. */
export const DP_RANK_INPUT = 'dp_rank';

/** Parses `--parallel dp=2` (comma-separated axis=degree pairs). */
export function parseParallel(spec: string): ParallelConfig {
  const cfg: ParallelConfig = { dp: 1 };
  for (const part of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^([a-z]+)=(\d+)$/.exec(part);
    if (!m) throw new KilnError(`--parallel: expected axis=degree pairs such as dp=2, got '${part}'`);
    const [, axis, deg] = m;
    const n = Number(deg);
    if (n < 1) throw new KilnError(`--parallel: ${axis} must be at least 1, got ${n}`);
    if (axis === 'dp') cfg.dp = n;
    else if (axis === 'tp') cfg.tp = n;
    else if (axis === 'pp') cfg.pp = n;
    else throw new KilnError(`--parallel: unknown axis '${axis}' (known: dp, tp, pp)`);
  }
  if ((cfg.pp ?? 1) > 1 && (cfg.tp ?? 1) > 1) throw new KilnError(`--parallel tp=${cfg.tp},pp=${cfg.pp}: pipeline stages combined with tensor parallelism need collectives over sub-groups of the devices, designed (docs/parallel.md) but not built; use dp=N,pp=M or one of them`);
  if (cfg.dp > 1 && (cfg.tp ?? 1) > 1) throw new KilnError(`--parallel dp=${cfg.dp},tp=${cfg.tp}: a 2-D mesh needs collectives over sub-groups of the devices, designed (docs/parallel.md) but not built; use dp or tp`);
  return cfg;
}

/** Devices a mesh uses. */
export const meshSize = (p: ParallelConfig): number => p.dp * (p.tp ?? 1) * (p.pp ?? 1);

/** Splits a global batch dimension over dp devices, refusing one that does not divide. */
export function localBatch(batch: number, p: ParallelConfig): number {
  if (batch % p.dp !== 0) throw new KilnError(`--batch ${batch} does not split over dp=${p.dp} devices (it must be a multiple of ${p.dp})`);
  return batch / p.dp;
}

/** `--devices N` and `--parallel dp=N` together: each defaults to the other; they must agree. */
export function parallelFromFlags(devices: string | undefined, parallel: string | undefined, zero?: string): ParallelConfig | undefined {
  if (zero !== undefined && !['0', '1', '2', '3'].includes(zero)) throw new KilnError(`--zero expects 0, 1, 2 or 3, got '${zero}'`);
  const stage = zero === undefined ? 0 : Number(zero);
  if (devices === undefined && parallel === undefined) {
    if (stage > 0) throw new KilnError(`--zero ${stage} shards state over data-parallel devices: add --devices N (N > 1)`);
    return undefined;
  }
  const n = devices === undefined ? undefined : Number(devices);
  if (n !== undefined && !(Number.isInteger(n) && n >= 1)) throw new KilnError(`--devices expects a positive integer, got '${devices}'`);
  const p: ParallelConfig = parallel === undefined ? { dp: n! } : parseParallel(parallel);
  if (n !== undefined && n !== meshSize(p)) throw new KilnError(`--devices ${n} does not match --parallel ${parallel} (which uses ${meshSize(p)} device${meshSize(p) === 1 ? '' : 's'})`);
  if (stage > 0 && p.dp <= 1) throw new KilnError(`--zero ${stage} shards state over data-parallel devices: it needs dp > 1`);
  return stage > 0 ? { ...p, zero: stage } : p;
}
