/**
 * Optimizers compiled into the training graph. The step graph is the joint forward+backward graph plus, per
 * parameter, the optimizer's update written as IR, so the whole step is one compiled WGSL program. Optimizer
 * state is held in extra `param` leaves (`opt.m.<p>`, ...), updated through `update:<name>` outputs that the
 * runtime writes back into the parameter buffers. `lr` and `step` are scalar graph inputs, so one compiled graph
 * serves every step of a schedule.
 *
 * Weight decay (AdamW's decoupled decay, SGD/Adam's L2) applies to parameters of rank >= 2 only: biases, norm
 * gains and other vectors are not decayed.
 */
import { KilnError } from '../errors.js';
import { GraphBuilder } from '../ir/builder.js';
import { gradParam, updateOutput, type Graph, type GraphOutput, type Node } from '../ir/graph.js';
import type { AttrsOf } from '../ir/op.js';
import { isFloat } from '../ir/types.js';
import type { LossScaleConfig } from '../passes/precision.js';
import { LOSS_SCALE } from '../passes/precision.js';

export const OPTIMIZERS = ['adamw', 'adam', 'sgd', 'adafactor'] as const;
export type OptimizerKind = (typeof OPTIMIZERS)[number];

export interface OptimizerConfig {
  kind: OptimizerKind;
  beta1?: number; // adam/adamw 0.9
  beta2?: number; // adam/adamw 0.999
  eps?: number; // adam/adamw 1e-8
  weightDecay?: number; // adamw 0.01, others 0
  momentum?: number; // sgd 0.9
  /** Global-norm clipping threshold; 0 disables. Default 1.0. */
  clip?: number;
  /** Adafactor: power of the second-moment decay 1 - t^-decay (0.8), update clipping threshold d (1.0). */
  decayRate?: number;
  clipThreshold?: number;
  /**
   * Leave parameters and optimizer state unchanged in a step whose loss or gradient norm is not finite (the
   * trainer's `--on-nonfinite skip`). A select, so a skipped step changes nothing; off by default.
   */
  skipNonFinite?: boolean;
  /**
   * Dynamic loss scaling (mixed precision f16): the backward was seeded with the state parameter LOSS_SCALE, so
   * gradients are unscaled here; a step with a non-finite gradient or loss is skipped and halves the scale, and
   * `growthInterval` clean steps in a row double it. All in the compiled step; the scale and the count of skipped
   * steps are state (checkpointed) and metrics.
   */
  lossScale?: LossScaleConfig;
}

const pname = (n: Node) => (n.attrs as AttrsOf<'param'>).name;
export const isStateParam = (name: string) => name.startsWith('opt.') || name.startsWith('acc.');
const decays = (n: Node) => n.type.shape.length >= 2;

interface StepInputs {
  lr: number;
  step: number;
}

function stepInputs(b: GraphBuilder): StepInputs {
  return {
    lr: b.op('input', [], { name: 'lr', dtype: 'f32', shape: [] }),
    step: b.op('input', [], { name: 'step', dtype: 'f32', shape: [] }),
  };
}

function newState(b: GraphBuilder, prefix: string, p: Node, shape = p.type.shape): number {
  return b.op('param', [], { name: `${prefix}${pname(p)}`, dtype: p.type.dtype, shape: [...shape], init: { kind: 'zeros' } });
}

const c = (b: GraphBuilder, v: number) => b.scalar(v, 'f32');
const sumAll = (b: GraphBuilder, x: number) => b.sum(x, b.type(x).shape.map((_, i) => i));

/**
 * Global gradient norm and the clipped gradients (scale = min(1, clip / (norm + 1e-6))). `pre` is a scalar every
 * gradient is multiplied by first (1 / loss scale): folded into the norm and the one multiplier the gradients get,
 * so the raw gradients are read once and no unscaled copy is made.
 */
function clipGrads(b: GraphBuilder, grads: Map<Node, number>, clip: number, pre?: number): { norm: number; grads: Map<Node, number> } {
  let sq: number | null = null;
  for (const g of grads.values()) {
    const s = sumAll(b, b.mul(g, g));
    sq = sq === null ? s : b.add(sq, s);
  }
  const raw = b.unary('sqrt', sq ?? c(b, 0));
  const norm = pre === undefined ? raw : b.mul(raw, pre);
  if (!clip && pre === undefined) return { norm, grads };
  let scale = clip ? b.binary('min', c(b, 1), b.div(c(b, clip), b.add(norm, c(b, 1e-6)))) : null;
  if (pre !== undefined) scale = scale === null ? pre : b.mul(scale, pre);
  return { norm, grads: new Map([...grads].map(([p, g]) => [p, b.mul(g, scale!)])) };
}

/** Appends one optimizer step for every (param, gradient) pair; returns the update outputs. */
function applyOptimizer(b: GraphBuilder, grads: Map<Node, number>, cfg: OptimizerConfig, io: StepInputs, ok?: number): GraphOutput[] {
  const out: GraphOutput[] = [];
  // With `ok` (skip a non-finite step, or apply only on the last micro-batch), each new state value is selected
  // against its old value where it is made, and the parameter update reads the selected state: so the selected
  // value is the one buffer the update kernel and the state's own kernel share (no extra kernel per state).
  const byName = new Map(b.nodes.filter((n) => n.op === 'param').map((n) => [pname(n), n.id]));
  const keep = (name: string, id: number) => (ok === undefined ? id : b.op('select', [ok, id, byName.get(name)!], {}));
  const upd = (name: string, id: number) => {
    const kept = keep(name, id);
    out.push(updateOutput(name, kept));
    return kept;
  };
  const state = (prefix: string, p: Node, shape = p.type.shape) => {
    const id = newState(b, prefix, p, shape);
    byName.set(`${prefix}${pname(p)}`, id);
    return id;
  };
  const wd = cfg.weightDecay ?? (cfg.kind === 'adamw' ? 0.01 : 0);
  for (const [p, g0] of grads) {
    const name = pname(p);
    let g = g0;
    switch (cfg.kind) {
      case 'sgd': {
        if (wd && decays(p)) g = b.add(g, b.mul(c(b, wd), p.id));
        const mu = cfg.momentum ?? 0.9;
        let dir = g;
        if (mu) {
          const buf = state('opt.buf.', p);
          dir = upd(`opt.buf.${name}`, b.add(b.mul(c(b, mu), buf), g));
        }
        upd(name, b.sub(p.id, b.mul(io.lr, dir)));
        break;
      }
      case 'adam':
      case 'adamw': {
        const b1 = cfg.beta1 ?? 0.9;
        const b2 = cfg.beta2 ?? 0.999;
        const eps = cfg.eps ?? 1e-8;
        if (cfg.kind === 'adam' && wd && decays(p)) g = b.add(g, b.mul(c(b, wd), p.id));
        const m = upd(`opt.m.${name}`, b.add(b.mul(c(b, b1), state('opt.m.', p)), b.mul(c(b, 1 - b1), g)));
        const v = upd(`opt.v.${name}`, b.add(b.mul(c(b, b2), state('opt.v.', p)), b.mul(c(b, 1 - b2), b.mul(g, g))));
        const bc1 = b.sub(c(b, 1), b.binary('pow', c(b, b1), io.step));
        const bc2 = b.sub(c(b, 1), b.binary('pow', c(b, b2), io.step));
        const mhat = b.div(m, bc1);
        const vhat = b.div(v, bc2);
        let dir = b.div(mhat, b.add(b.unary('sqrt', vhat), c(b, eps)));
        if (cfg.kind === 'adamw' && wd && decays(p)) dir = b.add(dir, b.mul(c(b, wd), p.id));
        upd(name, b.sub(p.id, b.mul(io.lr, dir)));
        break;
      }
      case 'adafactor': {
        // Shazeer & Stern 2018: factored second moments for matrices, beta2_t = 1 - t^-0.8, update clipping d = 1.
        const eps1 = 1e-30;
        const beta2t = b.sub(c(b, 1), b.binary('pow', io.step, c(b, -(cfg.decayRate ?? 0.8))));
        const g2 = b.add(b.mul(g, g), c(b, eps1));
        const shape = p.type.shape;
        let vhat: number;
        const ema = (prev: number, x: number) => b.add(b.mul(beta2t, prev), b.mul(b.sub(c(b, 1), beta2t), x));
        if (shape.length >= 2) {
          const r = upd(`opt.r.${name}`, ema(state('opt.r.', p, shape.slice(0, -1)), b.op('mean', [g2], { axes: [-1], keepdims: false })));
          const cc = upd(`opt.c.${name}`, ema(state('opt.c.', p, [...shape.slice(0, -2), shape[shape.length - 1]]), b.op('mean', [g2], { axes: [-2], keepdims: false })));
          const rowMean = b.op('mean', [r], { axes: [-1], keepdims: true });
          const rr = b.reshape(b.div(r, rowMean), [...shape.slice(0, -1), 1]);
          const cr = b.reshape(cc, [...shape.slice(0, -2), 1, shape[shape.length - 1]]);
          vhat = b.mul(rr, cr);
        } else {
          vhat = upd(`opt.v.${name}`, ema(state('opt.v.', p), g2));
        }
        let u = b.mul(g, b.unary('rsqrt', vhat));
        const rms = b.unary('sqrt', b.op('mean', [b.mul(u, u)], { axes: shape.map((_, i) => i), keepdims: false }));
        u = b.div(u, b.binary('max', c(b, 1), b.div(rms, c(b, cfg.clipThreshold ?? 1))));
        if (wd && decays(p)) u = b.add(u, b.mul(c(b, wd), p.id));
        upd(name, b.sub(p.id, b.mul(io.lr, u)));
        break;
      }
      default:
        throw new KilnError(`unknown optimizer '${cfg.kind}' (expected ${OPTIMIZERS.join(', ')})`);
    }
  }
  return out;
}

/**
 * The parameters the step updates: those autodiff differentiated (a `grad` output). Frozen parameters have none,
 * so they get no update and no optimizer state.
 */
function trainableParams(g: Graph): Node[] {
  const differentiated = new Set(g.outputs.map(gradParam).filter((p) => p !== undefined));
  return g.nodes.filter((n) => n.op === 'param' && isFloat(n.type.dtype) && !isStateParam(pname(n)) && differentiated.has(pname(n)));
}

function gradOf(g: Graph, p: Node): number {
  const o = g.outputs.find((x) => gradParam(x) === pname(p));
  if (!o) throw new KilnError(`the joint graph has no gradient for '${pname(p)}'`);
  return o.id;
}

const stepOutputs = (loss: number, norm: number): GraphOutput[] => [
  { name: 'loss', id: loss, role: { kind: 'loss' } },
  { name: 'grad_norm', id: norm, role: { kind: 'metric' } },
];
/** 1 when loss and gradient norm are both finite: NaN and infinities propagate through the sum and fail `<`. */
function finiteStep(b: GraphBuilder, norm: number, loss: number): number {
  return b.op('lt', [b.add(norm, b.unary('abs', loss)), c(b, 3e38)], {});
}

interface LossScale {
  scale: number;
  /** 1 / scale, multiplied into each gradient. */
  inv: number;
  cfg: LossScaleConfig;
}

/** The loss-scale state parameter (added by the precision pass) and its reciprocal, when the step scales. */
function lossScaleOf(b: GraphBuilder, joint: Graph, cfg: OptimizerConfig): LossScale | null {
  if (!cfg.lossScale) return null;
  const p = joint.nodes.find((n) => n.op === 'param' && pname(n) === LOSS_SCALE);
  if (!p) throw new KilnError(`loss scaling needs the '${LOSS_SCALE}' parameter the precision pass adds (is the precision pass off?)`);
  return { scale: p.id, inv: b.div(c(b, 1), p.id), cfg: cfg.lossScale };
}

/**
 * The scale's next value and the count of skipped steps, as updates and metrics: on a finite step (`ok`) the run of
 * clean steps grows and, at growthInterval, the scale doubles; on a non-finite one the scale halves (not below 1)
 * and the step counts as skipped. Where `apply` is given (accumulation), only applying micro-batches count.
 */
function lossScaleUpdates(b: GraphBuilder, ls: LossScale, ok: number, apply?: number): { updates: GraphOutput[]; metrics: GraphOutput[] } {
  const scalarState = (name: string) => b.op('param', [], { name, dtype: 'f32', shape: [], init: { kind: 'zeros' } });
  const good = scalarState(`${LOSS_SCALE}.good_steps`);
  const skipped = scalarState('opt.skipped_steps');
  const run = b.add(good, c(b, 1));
  const grow = b.op('ge', [run, c(b, ls.cfg.growthInterval)], {});
  const sel = (cond: number, x: number, y: number) => b.op('select', [cond, x, y], {});
  let scale = sel(ok, sel(grow, b.mul(ls.scale, c(b, 2)), ls.scale), b.binary('max', b.mul(ls.scale, c(b, 0.5)), c(b, 1)));
  let goodNext = sel(ok, sel(grow, c(b, 0), run), c(b, 0));
  let skippedNext = b.add(skipped, sel(ok, c(b, 0), c(b, 1)));
  if (apply !== undefined) {
    scale = sel(apply, scale, ls.scale);
    goodNext = sel(apply, goodNext, good);
    skippedNext = sel(apply, skippedNext, skipped);
  }
  return {
    updates: [updateOutput(LOSS_SCALE, scale), updateOutput(`${LOSS_SCALE}.good_steps`, goodNext), updateOutput('opt.skipped_steps', skippedNext)],
    metrics: [
      { name: 'loss_scale', id: ls.scale, role: { kind: 'metric' } },
      { name: 'skipped_steps', id: skippedNext, role: { kind: 'metric' } },
    ],
  };
}

/**
 * One optimizer step fused with the forward and backward pass (no accumulation): outputs `loss`, `grad_norm`
 * and the `update:` outputs (with loss scaling also `loss_scale` and `skipped_steps`).
 */
export function buildTrainStep(joint: Graph, cfg: OptimizerConfig, loss = 'loss'): Graph {
  const b = GraphBuilder.extend(joint);
  const io = stepInputs(b);
  const ls = lossScaleOf(b, joint, cfg);
  const grads = new Map(trainableParams(joint).map((p) => [p, gradOf(joint, p)]));
  const { norm, grads: clipped } = clipGrads(b, grads, cfg.clip ?? 1.0, ls?.inv);
  const lossId = joint.outputs.find((o) => o.name === loss)!.id;
  const ok = cfg.skipNonFinite || ls ? finiteStep(b, norm, lossId) : undefined;
  const updates = applyOptimizer(b, clipped, cfg, io, ok);
  const scaling = ls && ok !== undefined ? lossScaleUpdates(b, ls, ok) : { updates: [], metrics: [] };
  return b.build(joint.name + '.step', [...stepOutputs(lossId, norm), ...scaling.metrics, ...updates, ...scaling.updates]);
}

/**
 * Gradient accumulation in one graph (so parameters, accumulators and optimizer state share one set of device
 * buffers): every micro-batch adds `loss_weight * grad` into accumulators `acc.<p>`; on the last micro-batch
 * (input `apply` = 1) the accumulated gradient is clipped and applied and the accumulators are zeroed. Other
 * micro-batches leave parameters and optimizer state exactly as they were (select, not arithmetic).
 * With loss_weight = counted tokens of the micro-batch / counted tokens of the whole batch, the accumulated gradient
 * equals the gradient of the whole batch's mean loss.
 */
export function buildAccumTrainStep(joint: Graph, cfg: OptimizerConfig, loss = 'loss'): Graph {
  const b = GraphBuilder.extend(joint);
  const io = stepInputs(b);
  const w = b.op('input', [], { name: 'loss_weight', dtype: 'f32', shape: [] });
  const lossId = joint.outputs.find((o) => o.name === loss)!.id;
  const applyIn = b.op('ne', [b.op('input', [], { name: 'apply', dtype: 'u32', shape: [] }), b.scalar(0, 'u32')], {});
  const ls = lossScaleOf(b, joint, cfg);
  const grads = new Map<Node, number>();
  const accUpdates: GraphOutput[] = [];
  for (const p of trainableParams(joint)) {
    const acc = b.add(newState(b, 'acc.', p), b.mul(ls ? b.mul(w, ls.inv) : w, gradOf(joint, p)));
    grads.set(p, acc);
    accUpdates.push(updateOutput(`acc.${pname(p)}`, b.op('select', [applyIn, b.full(0, p.type), acc], {})));
  }
  const { norm, grads: clipped } = clipGrads(b, grads, cfg.clip ?? 1.0);
  // a skipped (non-finite) step still zeroes the accumulators: the next step starts clean
  const ok = cfg.skipNonFinite || ls ? finiteStep(b, norm, lossId) : null;
  const apply = ok !== null ? b.op('and', [applyIn, ok], {}) : applyIn;
  const updates = applyOptimizer(b, clipped, cfg, io, apply);
  const scaling = ls && ok !== null ? lossScaleUpdates(b, ls, ok, applyIn) : { updates: [], metrics: [] };
  return b.build(joint.name + '.accum_step', [...stepOutputs(lossId, norm), ...scaling.metrics, ...updates, ...accUpdates, ...scaling.updates]);
}

/** Number of optimizer-state values per parameter (Adafactor: O(n + m) for an n x m matrix). */
export function stateParams(g: Graph): Node<'param'>[] {
  return g.nodes.filter((n): n is Node<'param'> => n.op === 'param' && pname(n).startsWith('opt.'));
}
