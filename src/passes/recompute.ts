/**
 * Recomputation (gradient checkpointing) over the joint forward+backward graph.
 *
 * The backward reads some forward values (`saves` of each op's gradient rule). Each is either kept alive from the
 * forward to its last backward use, or recomputed: its forward subgraph is cloned, from kept values and leaves,
 * right before its first backward reader. Node order is execution order for the memory plan, so a clone's life
 * starts there. Clones carry `recompute: 1`, which CSE's value key includes, so they are not merged back into the
 * forward originals. A policy chooses what to keep; the memory plan (schedule + inplace + memory-plan, generic
 * target) of each candidate graph is the figure a plan is judged by. See docs/recompute.md.
 */
import { forwardNodes, savedForBackward as savedValues } from '../autodiff/saved.js';
import { KilnError } from '../errors.js';
import type { Graph, Node } from '../ir/graph.js';
import { numel } from '../ir/types.js';
import { deviceBytes, type MemoryPlan } from '../schedule/memory.js';
import { isStateParam } from '../train/optimizers.js';
import { kernelCost } from '../schedule/cost.js';
import type { Schedule } from '../schedule/schedule.js';
import { runPipeline } from './pipeline.js';
import { GENERIC_TARGET, registerPass } from './registry.js';

export const RECOMPUTE_POLICIES = ['none', 'blocks', 'sqrt', 'selective', 'budget'] as const;
export type RecomputePolicy = (typeof RECOMPUTE_POLICIES)[number];

export interface RecomputeRequest {
  /** Default: 'budget' when budgetBytes is given, else 'none'. */
  policy?: RecomputePolicy;
  /** Largest predicted device memory of the step (bytes): own buffers plus intermediate slots. */
  budgetBytes?: number;
}

declare module './registry.js' {
  interface PassOptionsMap {
    recompute: { policy: RecomputePolicy; budgetBytes: number };
  }
  interface CompileRequest {
    /** Gradient checkpointing: which forward values the backward recomputes (the `recompute` pass). */
    recompute?: RecomputeRequest;
  }
}

/** Parses a byte size as users write it: 64MiB, 1.5GiB, 500MB, 4096 (bytes). */
export function parseByteSize(text: string, flag = '--memory-budget'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB)?\s*$/i.exec(text);
  const unit: Record<string, number> = { b: 1, kb: 1e3, kib: 1024, mb: 1e6, mib: 1 << 20, gb: 1e9, gib: 1 << 30 };
  if (!m) throw new KilnError(`${flag} must be a size such as 64MiB, 1.5GiB, 500MB or a number of bytes, got '${text}'`);
  return Math.floor(Number(m[1]) * unit[(m[2] ?? 'b').toLowerCase()]);
}

/** Checks a --recompute value. */
export function parsePolicy(text: string): RecomputePolicy {
  if (!(RECOMPUTE_POLICIES as readonly string[]).includes(text)) throw new KilnError(`--recompute must be one of ${RECOMPUTE_POLICIES.join(', ')}, got '${text}'`);
  return text as RecomputePolicy;
}

/** The request the --memory-budget / --recompute flags make (undefined when neither is given). */
export function recomputeFromFlags(budget?: string, policy?: string): RecomputeRequest | undefined {
  if (budget === undefined && policy === undefined) return undefined;
  const r: RecomputeRequest = { budgetBytes: budget === undefined ? undefined : parseByteSize(budget), policy: policy === undefined ? undefined : parsePolicy(policy) };
  if (r.policy === 'budget' && r.budgetBytes === undefined) throw new KilnError('--recompute budget needs --memory-budget');
  return r;
}

const LEAF = new Set(['input', 'param', 'constant', 'iota']);
/** Ops never cloned: collectives talk to other devices, so running one twice is not a local recomputation. */
const NEVER_CLONED = new Set(['all_reduce', 'all_gather', 'reduce_scatter']);
/** Ops whose outputs `selective` keeps: the expensive ones (everything else is cheap to redo). */
const EXPENSIVE = new Set(['matmul', 'flash_attention', 'conv2d']);

const isLeaf = (n: Node) => LEAF.has(n.op);

export { forwardNodes, savedValues };

/**
 * Rewrites `g` so that every saved value not in `keep` is recomputed: cloned (with whatever of its forward
 * subgraph is neither kept nor a leaf) right before the first non-forward node that reads it. A clone serves
 * every later backward reader too.
 */
export function applyRecompute(g: Graph, keep: ReadonlySet<number>, segments?: number): Graph {
  const fwd = forwardNodes(g);
  const nodes: Node[] = [];
  const map = new Array<number>(g.nodes.length).fill(-1);
  const clone = new Map<number, number>();
  const kept = (id: number) => isLeaf(g.nodes[id]) || keep.has(id) || NEVER_CLONED.has(g.nodes[id].op);
  // A clone is shared only while the backward stays in one layer: reusing a layer-3 clone made for layer 7's
  // recomputation would keep it alive through layers 7..3 of the backward, which is keeping it, not recomputing it.
  // With `segments` (sqrt), clones are shared across a segment of layers, each segment recomputed once.
  const layer = segments ? layerOf(g).map((l) => Math.floor(l / segments)) : layerOf(g);
  let current = Number.NaN;
  const cloneOf = (id: number): number => {
    if (kept(id)) return map[id];
    const have = clone.get(id);
    if (have !== undefined) return have;
    const n = g.nodes[id];
    const inputs = n.inputs.map(cloneOf);
    const c: Node = { ...n, id: nodes.length, inputs, recompute: 1 };
    nodes.push(c);
    clone.set(id, c.id);
    return c.id;
  };
  for (const n of g.nodes) {
    const inputs = fwd[n.id]
      ? n.inputs.map((i) => map[i])
      : n.inputs.map((i) => {
          if (!fwd[i]) return map[i];
          if (!kept(i) && layer[i] !== current) {
            clone.clear();
            current = layer[i];
          }
          return cloneOf(i);
        });
    map[n.id] = nodes.length;
    nodes.push({ ...n, id: nodes.length, inputs });
  }
  return { name: g.name, nodes, outputs: g.outputs.map((o) => ({ ...o, id: map[o.id] })) };
}

/** Device bytes of a step: every own buffer (inputs, parameters, constants, outputs) plus the intermediate slots. */
export const planBytes = (p: MemoryPlan): number => p.slotBytes + p.inputBytes + p.paramBytes + p.constBytes + p.outputBytes;

/**
 * A step's peak split into the part recomputation cannot touch and the rest. Fixed: the own buffers (parameters,
 * optimizer state, inputs, outputs, constants) plus one gradient per trained parameter of a training step (the
 * optimizer runs after the whole backward, so every gradient is live at its end). Activations: everything else of
 * the peak (saved and recomputed forward values, backward temporaries, slot packing slack).
 */
export interface PeakSplit {
  peakBytes: number;
  ownBytes: number;
  gradientBytes: number;
  fixedBytes: number;
  activationBytes: number;
}

export function splitPeak(g: Graph, plan: MemoryPlan): PeakSplit {
  const peakBytes = planBytes(plan);
  const ownBytes = peakBytes - plan.slotBytes;
  const params = new Map<string, Node>();
  for (const n of g.nodes) if (n.op === 'param') params.set((n.attrs as { name: string }).name, n);
  let gradientBytes = 0;
  for (const o of g.outputs) {
    // optimizer state and accumulators are updated too, but have no gradient
    if (o.role?.kind !== 'update' || isStateParam(o.role.param)) continue;
    const p = params.get(o.role.param);
    if (p) gradientBytes += deviceBytes(p.type);
  }
  const fixedBytes = ownBytes + gradientBytes;
  return { peakBytes, ownBytes, gradientBytes, fixedBytes, activationBytes: peakBytes - fixedBytes };
}

export interface RecomputeEstimate {
  graph: Graph;
  /** Predicted device bytes (planBytes of the memory plan for the generic target). */
  peakBytes: number;
  /** FLOPs of the kernels that compute recomputed values (fusion included: an epilogue clone costs what its kernel costs). */
  recomputedFlops: number;
  schedule: Schedule;
  plan: MemoryPlan;
}

/** The rest of the graph pipeline (CSE, DCE) and the kernel level without codegen: what the memory plan says. */
export function estimate(g: Graph): RecomputeEstimate {
  const cleaned = runPipeline(g, { levels: ['graph'], only: ['cse', 'dce'] }, false).graph;
  const s = runPipeline(cleaned, { levels: ['kernels'], target: GENERIC_TARGET, passes: { codegen: false } }, false);
  const flops = s.schedule!.kernels.filter((k) => k.nodes.some((id) => cleaned.nodes[id].recompute)).reduce((t, k) => t + kernelCost(s.schedule!, k).flops, 0);
  return { graph: cleaned, peakBytes: planBytes(s.plan!), recomputedFlops: flops, schedule: s.schedule!, plan: s.plan! };
}

/** FLOPs of one node alone (matmul 2MNK; other ops one per output element): the planner's cost of redoing it. */
function nodeFlops(g: Graph, n: Node): number {
  if (n.op === 'matmul') {
    const a = g.nodes[n.inputs[0]].type.shape;
    const { transA } = n.attrs as { transA?: boolean };
    const K = transA ? a[a.length - 2] : a[a.length - 1];
    return 2 * numel(n.type.shape) * K;
  }
  if (EXPENSIVE.has(n.op)) return 1e12;
  return numel(n.type.shape);
}

/** Per-layer index of each node: the latest repeated layer (parameter path `<prefix>.<n>.`) it depends on, -1 before any. */
function layerOf(g: Graph): number[] {
  const ordinal = new Map<string, number>();
  const layer = new Array<number>(g.nodes.length).fill(-1);
  for (const n of g.nodes) {
    if (n.op === 'param' && n.name) {
      const m = /^(.*?\.\d+)\./.exec(n.name);
      if (m) {
        if (!ordinal.has(m[1])) ordinal.set(m[1], ordinal.size);
        layer[n.id] = ordinal.get(m[1])!;
      }
      continue;
    }
    for (const i of n.inputs) layer[n.id] = Math.max(layer[n.id], layer[i]);
  }
  return layer;
}

/** The kept set a fixed policy gives (budget is searched, not fixed). */
export function policyKeep(g: Graph, policy: Exclude<RecomputePolicy, 'budget'>): Set<number> {
  const fwd = forwardNodes(g);
  const saved = savedValues(g, fwd);
  switch (policy) {
    case 'none':
      return new Set(saved);
    case 'selective': {
      // Keep what is expensive to redo: a matmul's value, and any saved value whose recomputation would reach a
      // matmul (the bias add or activation fused into its epilogue), so only cheap elementwise / norm / softmax /
      // dropout chains are recomputed.
      const keep = new Set<number>();
      const reachesExpensive = (id: number, seen: Set<number>): boolean => {
        const n = g.nodes[id];
        if (isLeaf(n) || keep.has(id) || seen.has(id)) return false;
        seen.add(id);
        return EXPENSIVE.has(n.op) || NEVER_CLONED.has(n.op) || n.inputs.some((i) => reachesExpensive(i, seen));
      };
      for (const id of saved) if (reachesExpensive(id, new Set())) keep.add(id);
      return keep;
    }
    case 'blocks': {
      // the classic per-layer checkpoint: keep the values that flow from one layer (or the embedding) into a later one
      const layer = layerOf(g);
      const keep = new Set<number>();
      for (const n of g.nodes) {
        if (!fwd[n.id]) continue;
        for (const i of n.inputs) if (fwd[i] && !isLeaf(g.nodes[i]) && layer[i] < layer[n.id]) keep.add(i);
      }
      return keep;
    }
    case 'sqrt': {
      // Chen et al.: L layers in ⌈√L⌉-layer segments, keeping each segment's input (without layers: every
      // ⌈√n⌉-th saved value)
      const layer = layerOf(g);
      const L = Math.max(...layer) + 1;
      if (L <= 1) {
        const k = Math.max(1, Math.ceil(Math.sqrt(saved.length)));
        return new Set(saved.filter((_, i) => (i + 1) % k === 0));
      }
      const seg = sqrtSegment(g);
      const keep = new Set<number>();
      for (const n of g.nodes) {
        if (!fwd[n.id]) continue;
        for (const i of n.inputs) if (fwd[i] && !isLeaf(g.nodes[i]) && Math.floor(layer[i] / seg) < Math.floor(layer[n.id] / seg)) keep.add(i);
      }
      return keep;
    }
  }
}

/**
 * Cut points of the forward: values that alone carry everything data-dependent from the nodes before them to the
 * nodes after them (in node order), such as the residual stream between a layer's attention and MLP halves.
 * Keeping all of them is the finest segment-wise checkpoint: each recomputation reaches back only to the last cut.
 * Values that depend on no graph input (a causal mask, a weight view) are not activations and do not count.
 */
export function cutPoints(g: Graph): Set<number> {
  const fwd = forwardNodes(g);
  const data = new Array<boolean>(g.nodes.length).fill(false);
  for (const n of g.nodes) data[n.id] = n.op === 'input' || (!isLeaf(n) && n.inputs.some((i) => data[i]));
  const counted = (id: number) => fwd[id] && data[id] && !isLeaf(g.nodes[id]);
  const lastUse = new Array<number>(g.nodes.length).fill(-1);
  for (const n of g.nodes) if (fwd[n.id]) for (const i of n.inputs) if (counted(i)) lastUse[i] = Math.max(lastUse[i], n.id);
  const ending = new Map<number, number>();
  for (const last of lastUse) if (last >= 0) ending.set(last, (ending.get(last) ?? 0) + 1);
  const cuts = new Set<number>();
  let live = 0;
  for (const n of g.nodes) {
    if (!counted(n.id)) continue;
    live -= ending.get(n.id) ?? 0;
    if (lastUse[n.id] > n.id) live++;
    if (live === 1 && lastUse[n.id] > n.id) cuts.add(n.id);
  }
  return cuts;
}

/** Layers per segment of the sqrt policy: ⌈√L⌉. */
function sqrtSegment(g: Graph): number {
  return Math.max(1, Math.ceil(Math.sqrt(Math.max(...layerOf(g)) + 1)));
}

export interface RecomputeResult extends RecomputeEstimate {
  policy: RecomputePolicy;
  baselinePeakBytes: number;
  /** Saved values the plan keeps; the others are recomputed. */
  keep: Set<number>;
  /** How many saved values are recomputed. */
  recomputed: number;
  /** The rewritten graph before CSE/DCE (what the pass hands on). */
  rewritten: Graph;
}

const mib = (b: number) => `${(b / (1 << 20)).toFixed(2)} MiB (${b} bytes)`;

/**
 * Chooses and applies a plan. `budget`: the saved values are ordered by recompute FLOPs per byte freed (cheapest
 * first); the plan recomputes the shortest prefix of that order whose memory plan fits, found by bisection on the
 * prefix length (each probe one memory plan). docs/recompute.md argues why this is near-optimal.
 */
export function planRecompute(g: Graph, policy: RecomputePolicy, budgetBytes = Infinity): RecomputeResult {
  const saved = savedValues(g);
  const base = estimate(g);
  const result = (keep: Set<number>, pol: RecomputePolicy, e?: RecomputeEstimate): RecomputeResult => {
    const rewritten = saved.every((id) => keep.has(id)) ? g : applyRecompute(g, keep, pol === 'sqrt' ? sqrtSegment(g) : undefined);
    const est = e ?? (rewritten === g ? base : estimate(rewritten));
    return { ...est, policy: pol, baselinePeakBytes: base.peakBytes, keep, recomputed: saved.filter((id) => !keep.has(id)).length, rewritten };
  };
  if (policy !== 'budget') {
    const r = result(policyKeep(g, policy), policy);
    if (r.peakBytes > budgetBytes) throw infeasible(budgetBytes, smallestPeak(g));
    return r;
  }
  if (base.peakBytes <= budgetBytes) return result(new Set(saved), 'budget');
  // Start points: recompute everything that can be, and each fixed policy. From each one that fits, put values back
  // (most FLOPs per byte first) while the plan still fits; the cheapest fitting result wins.
  // The cost of recomputing one value alone is its cone back to other saved values and leaves: a bias add fused
  // into a matmul's epilogue is saved, the matmul's own value is not, so redoing the bias add costs the matmul.
  const savedSet = new Set(saved);
  const coneFlops = (id: number): number => {
    let t = 0;
    const seen = new Set<number>();
    const walk = (x: number) => {
      if (seen.has(x) || isLeaf(g.nodes[x]) || (x !== id && savedSet.has(x))) return;
      seen.add(x);
      t += nodeFlops(g, g.nodes[x]);
      g.nodes[x].inputs.forEach(walk);
    };
    walk(id);
    return t;
  };
  const ratio = (id: number) => coneFlops(id) / Math.max(4, numel(g.nodes[id].type.shape) * 4);
  const starts = [
    new Set(saved.filter((id) => NEVER_CLONED.has(g.nodes[id].op))),
    policyKeep(g, 'selective'),
    policyKeep(g, 'blocks'),
    policyKeep(g, 'sqrt'),
    cutPoints(g),
  ];
  const searches = starts.map((start) => {
    const back = saved.filter((id) => !start.has(id)).sort((a, b) => ratio(b) - ratio(a) || a - b);
    const keepFor = (k: number) => new Set([...start, ...back.slice(0, k)]);
    const probes = new Map<number, RecomputeEstimate>();
    const probe = (k: number) => {
      if (!probes.has(k)) probes.set(k, estimate(applyRecompute(g, keepFor(k))));
      return probes.get(k)!;
    };
    return { back, keepFor, probe };
  });
  const smallest = Math.min(...searches.map((s) => s.probe(0).peakBytes));
  // Put back only from the two fitting starts that recompute the least as they are: the others' searches end at the
  // same plan or near it (measured), and the cheapest start alone already bounds the result by every fitting
  // start's own FLOPs, so the plan never recomputes more than a fixed policy that fits.
  const fitting = searches.filter((s) => s.probe(0).peakBytes <= budgetBytes).sort((a, b) => a.probe(0).recomputedFlops - b.probe(0).recomputedFlops);
  let best: { keep: Set<number>; e: RecomputeEstimate } | null = null;
  for (const { back, keepFor, probe } of fitting.slice(0, 2)) {
    let lo = 0; // fits
    let hi = back.length + 1; // does not fit (the baseline, k = back.length, does not)
    while (hi - lo > 1) {
      const mid = (lo + hi) >> 1;
      if (mid < back.length && probe(mid).peakBytes <= budgetBytes) lo = mid;
      else hi = mid;
    }
    const e = probe(lo);
    if (!best || e.recomputedFlops < best.e.recomputedFlops || (e.recomputedFlops === best.e.recomputedFlops && e.peakBytes < best.e.peakBytes)) best = { keep: keepFor(lo), e };
  }
  if (!best) throw infeasible(budgetBytes, smallest);
  return result(best.keep, 'budget', best.e);
}

/** The smallest peak any start point of the budget search reaches. */
function smallestPeak(g: Graph): number {
  try {
    planRecompute(g, 'budget', 0);
  } catch (e) {
    const m = /\((\d+) bytes\)$/.exec((e as Error).message);
    if (m) return Number(m[1]);
  }
  return 0;
}

/** No plan fits: name the smallest peak the planner reaches. */
function infeasible(budgetBytes: number, smallest: number): KilnError {
  return new KilnError(`memory budget ${mib(budgetBytes)} cannot be met by recomputation: the smallest peak reachable is ${mib(smallest)}`);
}
registerPass(
  {
    name: 'recompute',
    summary: 'gradient checkpointing: recomputes saved forward values right before their backward use (policy none|blocks|sqrt|selective|budget)',
    level: 'graph',
    options: {
      policy: 'none | blocks (keep layer inputs) | sqrt (√n segments) | selective (keep matmul outputs) | budget (fewest recomputed FLOPs that fit)',
      budgetBytes: 'largest predicted device memory of the step in bytes (Infinity: no limit)',
    },
    requires: ['autodiff'],
    guarantees: ['with a budget, the memory plan of the result (generic target) fits it'],
    configure: (req) => {
      if (!req.recompute || !(req.grad || req.train)) return null;
      const budgetBytes = req.recompute.budgetBytes ?? Infinity;
      return { policy: req.recompute.policy ?? (Number.isFinite(budgetBytes) ? 'budget' : 'none'), budgetBytes };
    },
    run: (s, o) => (o.policy === 'none' && !Number.isFinite(o.budgetBytes) ? s : { ...s, graph: planRecompute(s.graph, o.policy, o.budgetBytes).rewritten }),
  },
  // last before CSE: it sees the whole step (optimizer, sharding), so the memory plan it predicts is the final one
  { before: 'cse' },
);
