/**
 * Mixed precision as a compiler pass over the forward graph, before autodiff (so the backward is derived in the
 * same precisions, and each cast's gradient casts back):
 *   - parameters and inputs keep their f32 type: they are the master weights the optimizer updates in f32; the
 *     forward reads a half copy through a cast, which the scheduler fuses into the reading kernel (a matmul
 *     converts its weight tile as it loads it), so the copy is rarely a buffer of its own;
 *   - the HALF_OPS (matmuls, attention, embedding gathers) run in the half dtype (their float operands are cast);
 *     the F32_OPS (norms' statistics, losses, reductions, exp/log/pow) run on f32 operands; every other op follows
 *     its operands: half when one of its data operands is half, else as it was — so the residual stream and the
 *     activations between matmuls are half, while the loss's arithmetic after the cross-entropy stays f32;
 *   - kernels accumulate in f32 anyway (matmul accumulators, reductions, softmax's max and sum are f32 registers),
 *     and round once when they store a half result;
 *   - values that do not depend on float data (masks, positions, RoPE tables) are left alone;
 *   - an output whose dtype changed is cast back, so the graph's interface is unchanged.
 * Casts are memoised per value and dtype: one cast node per (value, dtype), however many readers.
 * With `lossScale`, a scalar state parameter LOSS_SCALE is added; autodiff seeds the backward with it and the
 * optimizer unscales, checks and adapts it (src/train/optimizers.ts).
 */
import { GraphBuilder } from '../ir/builder.js';
import type { Graph, GraphOutput } from '../ir/graph.js';
import type { AttrsOf, OpKind } from '../ir/op.js';
import type { DType } from '../ir/types.js';
import { isFloat } from '../ir/types.js';

export type Precision = 'f32' | 'f16' | 'bf16';
export const PRECISIONS: readonly Precision[] = ['f32', 'f16', 'bf16'];

export interface LossScaleConfig {
  /** Starting scale (2^16). */
  init: number;
  /** Clean steps after which the scale doubles (2000). */
  growthInterval: number;
}

export const DEFAULT_LOSS_SCALE: LossScaleConfig = { init: 65536, growthInterval: 2000 };

export interface PrecisionOptions {
  dtype: 'f16' | 'bf16';
  /** Ops computed in the half dtype whatever their operands. */
  halfOps: OpKind[];
  /** Ops computed on f32 operands (their results are f32). */
  f32Ops: OpKind[];
  /** Dynamic loss scaling (f16: its range is too narrow for small gradients; bf16 has f32's range and needs none). */
  lossScale: LossScaleConfig | null;
}

/** The policy's half list: the ops that make activations (matmuls, attention, embedding lookups). */
export const HALF_OPS: readonly OpKind[] = ['matmul', 'flash_attention', 'gather'];
/** The policy's f32 list: statistics, losses and range-sensitive math. Other ops follow their operands. */
export const F32_OPS: readonly OpKind[] = ['layer_norm', 'rms_norm', 'log_softmax', 'cross_entropy', 'sum', 'mean', 'max_reduce', 'exp', 'log', 'pow'];

/** The scalar state parameter holding the loss scale; with it, the step's gradients are scale × the true ones. */
export const LOSS_SCALE = 'opt.loss_scale';

export function defaultPrecisionOptions(dtype: 'f16' | 'bf16', lossScale?: Partial<LossScaleConfig> | false): PrecisionOptions {
  return {
    dtype,
    halfOps: [...HALF_OPS],
    f32Ops: [...F32_OPS],
    lossScale: dtype === 'bf16' || lossScale === false ? null : { ...DEFAULT_LOSS_SCALE, ...(lossScale ?? {}) },
  };
}

export function applyPrecision(g: Graph, o: PrecisionOptions): Graph {
  const half = o.dtype;
  const f32 = new Set<string>(o.f32Ops);
  const halfOps = new Set<string>(o.halfOps);
  const b = new GraphBuilder();
  const map = new Array<number>(g.nodes.length);
  // whether a node's value is computed from float data (a float param or input): only those change precision
  const data = new Array<boolean>(g.nodes.length).fill(false);
  const casts = new Map<string, number>();
  const as = (id: number, dt: DType): number => {
    const t = b.type(id);
    if (!isFloat(t.dtype) || t.dtype === dt) return id;
    const key = `${id}:${dt}`;
    let c = casts.get(key);
    if (c === undefined) {
      c = b.op('cast', [id], { to: dt }, { scope: b.nodes[id].scope, loc: b.nodes[id].loc });
      b.nodes[c].rule = 'precision';
      casts.set(key, c);
    }
    return c;
  };
  for (const n of g.nodes) {
    const opts = { name: n.name, scope: n.scope, loc: n.loc };
    if (n.inputs.length === 0) {
      map[n.id] = b.op(n.op, [], n.attrs as never, opts);
      data[n.id] = (n.op === 'param' || n.op === 'input') && isFloat(n.type.dtype);
      continue;
    }
    data[n.id] = n.inputs.some((q) => data[q]);
    const follows = !f32.has(n.op) && !halfOps.has(n.op);
    // an op that follows its operands stays as it was unless one of its data operands became half
    if (!data[n.id] || (follows && !n.inputs.some((q) => data[q] && b.type(map[q]).dtype === half))) {
      map[n.id] = b.op(n.op, n.inputs.map((q) => map[q]), n.attrs as never, opts);
      if (n.rule) b.nodes[map[n.id]].rule = n.rule;
      continue;
    }
    const dt: DType = f32.has(n.op) ? 'f32' : half;
    const inputs = n.inputs.map((q) => as(map[q], dt));
    let attrs = n.attrs;
    if (n.op === 'cast' && isFloat((n.attrs as AttrsOf<'cast'>).to)) attrs = { to: dt } as never;
    map[n.id] = b.op(n.op, inputs, attrs as never, opts);
    if (b.nodes[map[n.id]].type.dtype !== n.type.dtype) b.nodes[map[n.id]].rule = 'precision';
    else if (n.rule) b.nodes[map[n.id]].rule = n.rule;
  }
  if (o.lossScale && !g.nodes.some((n) => n.op === 'param' && (n.attrs as AttrsOf<'param'>).name === LOSS_SCALE)) {
    b.op('param', [], { name: LOSS_SCALE, dtype: 'f32', shape: [], init: { kind: 'constant', value: o.lossScale.init } });
  }
  const outputs: GraphOutput[] = g.outputs.map((out) => ({ ...out, id: as(map[out.id], g.nodes[out.id].type.dtype) }));
  return b.build(g.name, outputs);
}

/** How many values of each float dtype the graph computes (for `kiln compile --print-ir-after precision` summaries). */
export function dtypeCounts(g: Graph): Record<string, number> {
  const c: Record<string, number> = {};
  for (const n of g.nodes) if (n.inputs.length && isFloat(n.type.dtype)) c[n.type.dtype] = (c[n.type.dtype] ?? 0) + 1;
  return c;
}
