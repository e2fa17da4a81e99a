/**
 * Scheduling: partitions a graph's nodes into kernels. This pass decides WHAT is fused; codegen only decides how.
 *
 * Every node ends up with one storage class:
 *   leaf   graph input or parameter (its own device buffer)
 *   const  a constant with one value per element (uploaded once at compile time)
 *   kernel materialised: some kernel writes it to a buffer
 *   inline recomputed from a flat index inside the kernels that read it (pointwise ops, splat constants, iota,
 *          and anchors whose value flows straight into a fused epilogue)
 *   dead   not needed by any graph output
 *
 * A kernel has one root (the materialised node it writes) and at most one anchor (reduce, matmul, rowwise or
 * scatter op). Pointwise producers of the anchor's operands inline as a prologue; a chain of same-shaped
 * elementwise consumers of the anchor (bias + GELU + residual) becomes its epilogue and the anchor's own value
 * never touches memory.
 */
import { IRError, KilnError } from '../errors.js';
import type { Graph, Node } from '../ir/graph.js';
import { OPS } from '../ir/registry.js';
import { deviceElemBytes, fmtType, numel, sameShape } from '../ir/types.js';
import type { AnchorKind } from './classify.js';
import { anchorKind, isConstBuffer, isLeafBuffer, ownCost } from './classify.js';
import { markInPlaceUpdates } from './inplace.js';

export type KernelKind = 'elementwise' | AnchorKind;
export type Storage = 'leaf' | 'const' | 'kernel' | 'inline' | 'dead';

export interface Kernel {
  id: number;
  kind: KernelKind;
  /** The node that gives the kernel its shape of computation (the root itself for elementwise kernels). */
  anchor: number;
  /** The materialised node this kernel writes. */
  root: number;
  /** Every IR node the kernel computes (anchor, inlined prologue and epilogue), ascending. */
  nodes: number[];
  /** Buffer-resident nodes the kernel reads, ascending. */
  inputs: number[];
  /** True when root !== anchor: the anchor's value goes through an epilogue before it is stored. */
  epilogue: boolean;
  /** A parameter the kernel overwrites with its root (an in-place `update:` output; see inplace.ts). */
  inPlace?: number;
}

export interface ScheduleOptions {
  /** false: one kernel per op (every op's value materialised), the baseline fusion is measured against. */
  fuse?: boolean;
  /** Storage buffers one kernel may bind (device limit maxStorageBuffersPerShaderStage); default 8. */
  maxStorageBuffers?: number;
  /** Largest per-element cost a rowwise prologue may have (it is recomputed once per pass over the row). */
  maxRowwisePrologue?: number;
}

export interface Schedule {
  graph: Graph;
  kernels: Kernel[];
  storage: Storage[];
  /** Index in `kernels` of the kernel writing each node, or -1. */
  producer: number[];
  /** Kernel count without fusion: one per non-leaf op. */
  unfusedKernelCount: number;
  fused: boolean;
}

function liveNodes(g: Graph): boolean[] {
  const live = new Array<boolean>(g.nodes.length).fill(false);
  for (const o of g.outputs) live[o.id] = true;
  for (let i = g.nodes.length - 1; i >= 0; i--) if (live[i]) for (const q of g.nodes[i].inputs) live[q] = true;
  return live;
}

const isLeafish = (n: Node) => n.op === 'input' || n.op === 'param' || n.op === 'constant' || n.op === 'iota';

export function unfusedKernelCount(g: Graph): number {
  const live = liveNodes(g);
  return g.nodes.filter((n) => live[n.id] && !isLeafish(n)).length;
}

/** Edges (consumer id, operand position) of every live node. */
function consumerEdges(g: Graph, live: boolean[]): { c: number; pos: number }[][] {
  const edges: { c: number; pos: number }[][] = g.nodes.map(() => []);
  for (const n of g.nodes) if (live[n.id]) n.inputs.forEach((q, pos) => edges[q].push({ c: n.id, pos }));
  return edges;
}

/** Whether `q` is an anchor whose only reader is `n`, at the same shape: `n` can be its epilogue. */
function epilogueSource(g: Graph, q: number, n: Node, all: { c: number; pos: number }[][], isOutput: Set<number>): boolean {
  const ak = anchorKind(g.nodes[q].op);
  if (!ak || ak === 'scatter' || ak === 'attention' || !sameShape(g.nodes[q].type.shape, n.type.shape)) return false;
  return all[q].length === 1 && !isOutput.has(q) && OPS[n.op].lower.kernel === 'elementwise';
}

/** Whether a pointwise node of inline cost `cost` must be materialised rather than recomputed by its readers. */
function mustMaterialise(
  g: Graph,
  n: Node,
  cost: number,
  all: { c: number; pos: number }[][],
  opts: Required<ScheduleOptions>,
  isOutput: Set<number>,
): boolean {
  const edges = all[n.id];
  if (cost === 0) return false; // index arithmetic over buffers: recomputing is free
  // A widening cast (a half value read as f32: gradients of f32 master weights, norms' inputs) is cheaper to
  // recompute in each reader than to store: its buffer would be twice its operand's.
  if (n.op === 'cast' && deviceElemBytes(n.type.dtype) > deviceElemBytes(g.nodes[n.inputs[0]].type.dtype)) return false;
  if (cost > 40) return true; // keeps generated shaders a sane size
  if (edges.length > 1 && cost > 1) return true;
  // A shared value computed straight from a matmul/reduction/row-wise result (e.g. the qkv bias add read by
  // three head slices): storing it lets it become that anchor's epilogue, and its readers then inline for free.
  if (edges.length > 1 && n.inputs.some((q) => epilogueSource(g, q, n, all, isOutput))) return true;
  for (const { c, pos } of edges) {
    const cn = g.nodes[c];
    const ak = anchorKind(cn.op);
    if (ak === 'matmul' || ak === 'attention') return true; // every element is read N (or M) times
    if (ak === 'scatter' && pos === 0) return true;
    if (ak === 'rowwise' && cost > opts.maxRowwisePrologue) return true;
    if (cn.op === 'gather' || cn.op === 'one_hot') return true; // irregular or repeated reads
    if (cn.op === 'dropout' && pos === 1) return true;
    if (!ak && numel(cn.type.shape) > numel(n.type.shape) && cost >= 2) return true; // broadcast recomputation
  }
  return false;
}

export const DEFAULT_SCHEDULE_OPTIONS: Required<ScheduleOptions> = { fuse: true, maxStorageBuffers: 8, maxRowwisePrologue: 6 };

/** Fusion groups and in-place updates: the `schedule` and `inplace` stages of the pipeline, for callers that want both. */
export function schedule(g: Graph, options: ScheduleOptions = {}): Schedule {
  return markInPlaceUpdates(fuseKernels(g, options));
}

/** Decides which ops form one kernel (the `schedule` stage). */
export function fuseKernels(g: Graph, options: ScheduleOptions = {}): Schedule {
  // Collectives are not kernels: the multi-device runtime (src/runtime/multi.ts) splits programs around them.
  const coll = g.nodes.find((n) => OPS[n.op].lower.kernel === 'collective');
  if (coll) throw new KilnError(`${coll.op} %${coll.id} cannot be compiled into a kernel: a program with collectives runs on several devices (MultiDeviceExecutable, src/runtime/multi.ts, splits it at them)`);
  const opts: Required<ScheduleOptions> = { ...DEFAULT_SCHEDULE_OPTIONS, ...options };
  const forced = new Set<number>();
  for (let iter = 0; ; iter++) {
    const s = attempt(g, opts, forced);
    const over = s.kernels.filter((k) => storageBuffers(k) > opts.maxStorageBuffers);
    if (!over.length) return s;
    // Too many buffers for one shader stage: in each such kernel, materialise the inlined subtree that reads the
    // most of them (all kernels at once, so a graph with many wide kernels is rescheduled a few times, not once each).
    for (const k of over) {
      const victims = splitCandidates(g, s, k, opts.maxStorageBuffers - (k.kind === 'scatter' ? 1 : 0)).filter((v) => !forced.has(v));
      if (!victims.length || iter > g.nodes.length) {
        throw new IRError(
          `schedule: kernel for %${k.root} (${g.nodes[k.root].op}) needs ${storageBuffers(k)} storage buffers, over the device limit of ${opts.maxStorageBuffers}`,
        );
      }
      for (const v of victims) forced.add(v);
    }
  }
}

/** Storage buffers a kernel binds: its inputs, its output, and scatter-add's work buffer of duplicate chains. */
const storageBuffers = (k: Kernel): number => k.inputs.length + 1 + (k.kind === 'scatter' ? 1 : 0);

/**
 * Inlined nodes of kernel `k` to materialise so that every resulting kernel binds at most `max` buffers: walking
 * the kernel's nodes bottom-up, a node that would read more than `max - 1` buffers (one is its output) gets its
 * widest inlined operands materialised until it fits. One walk finds every split a long chain needs (the sum of
 * squared gradients over all parameters), instead of one split per rescheduling.
 */
function splitCandidates(g: Graph, s: Schedule, k: Kernel, max: number): number[] {
  const inKernel = new Set(k.nodes);
  const reads = new Map<number, Set<number>>();
  const victims = new Set<number>();
  // computed inside the kernel (the anchor too: its operands are read by this kernel), not yet split off
  const computed = (q: number) => inKernel.has(q) && (s.storage[q] === 'inline' || q === k.anchor) && !victims.has(q);
  const splittable = (q: number) => computed(q) && q !== k.anchor;
  const readsOf = (id: number): Set<number> => {
    const r = new Set<number>();
    for (const q of g.nodes[id].inputs) {
      if (computed(q)) for (const x of reads.get(q)!) r.add(x);
      else r.add(q);
    }
    return r;
  };
  for (const id of k.nodes) {
    if (id !== k.root && !computed(id)) continue;
    let r = readsOf(id);
    while (r.size > max - 1) {
      const widest = g.nodes[id].inputs.filter(splittable).sort((a, b) => reads.get(b)!.size - reads.get(a)!.size)[0];
      if (widest === undefined || reads.get(widest)!.size <= 1) break;
      victims.add(widest);
      r = readsOf(id);
    }
    reads.set(id, r);
  }
  return [...victims];
}

function attempt(g: Graph, opts: Required<ScheduleOptions>, forced: Set<number>): Schedule {
  const live = liveNodes(g);
  const edges = consumerEdges(g, live);
  const isOutput = new Set(g.outputs.map((o) => o.id));
  const storage: Storage[] = g.nodes.map(() => 'dead');
  const icost = new Array<number>(g.nodes.length).fill(0);

  for (const n of g.nodes) {
    if (!live[n.id]) continue;
    if (isLeafBuffer(n)) storage[n.id] = 'leaf';
    else if (isConstBuffer(n)) storage[n.id] = 'const';
    else if (anchorKind(n.op)) storage[n.id] = 'kernel';
    else if (n.op === 'constant' || n.op === 'iota') storage[n.id] = isOutput.has(n.id) ? 'kernel' : 'inline';
    else if (!opts.fuse || isOutput.has(n.id) || forced.has(n.id)) storage[n.id] = 'kernel';
    else {
      const cost = ownCost(n.op) + n.inputs.reduce((a, q) => a + icost[q], 0);
      storage[n.id] = mustMaterialise(g, n, cost, edges, opts, isOutput) ? 'kernel' : 'inline';
      if (storage[n.id] === 'inline') icost[n.id] = cost;
    }
  }

  type Draft = { kind: KernelKind; anchor: number; root: number };
  let drafts: Draft[] = [];
  for (const n of g.nodes) {
    if (storage[n.id] === 'kernel') drafts.push({ kind: anchorKind(n.op) ?? 'elementwise', anchor: n.id, root: n.id });
  }

  if (opts.fuse) {
    const byAnchor = new Map(drafts.filter((d) => d.kind !== 'elementwise').map((d) => [d.anchor, d]));
    const usesOne = (id: number) => edges[id].length === 1 && !isOutput.has(id);
    const chainOp = (n: Node) => OPS[n.op].lower.kernel === 'elementwise' || n.op === 'reshape';
    const sameIndex = (p: Node, q: Node) => (p.op === 'reshape' ? numel(p.type.shape) === numel(q.type.shape) : sameShape(p.type.shape, q.type.shape));
    const findAnchor = (p: Node): Draft | null => {
      for (const q of p.inputs) {
        const qn = g.nodes[q];
        if (!sameIndex(p, qn) || !usesOne(q)) continue;
        const d = byAnchor.get(q);
        if (d && d.root === d.anchor && d.kind !== 'scatter' && d.kind !== 'attention') return d;
        if (storage[q] === 'inline' && chainOp(qn)) {
          const found = findAnchor(qn);
          if (found) return found;
        }
      }
      return null;
    };
    const removed = new Set<Draft>();
    for (const d of drafts) {
      if (d.kind !== 'elementwise' || !chainOp(g.nodes[d.root])) continue;
      const a = findAnchor(g.nodes[d.root]);
      if (!a) continue;
      a.root = d.root;
      storage[a.anchor] = 'inline';
      removed.add(d);
    }
    drafts = drafts.filter((d) => !removed.has(d)).sort((x, y) => x.root - y.root);
  }

  const producer = new Array<number>(g.nodes.length).fill(-1);
  const kernels: Kernel[] = drafts.map((d, id) => {
    const nodes = new Set<number>();
    const inputs = new Set<number>();
    const visit = (n: number) => {
      if (nodes.has(n)) return;
      nodes.add(n);
      for (const q of g.nodes[n].inputs) {
        if (q === d.anchor || storage[q] === 'inline') visit(q);
        else inputs.add(q);
      }
    };
    visit(d.root);
    if (!nodes.has(d.anchor)) throw new IRError(`schedule: anchor %${d.anchor} is not reachable from root %${d.root}`);
    producer[d.root] = id;
    const asc = (a: number, b: number) => a - b;
    return { id, kind: d.kind, anchor: d.anchor, root: d.root, nodes: [...nodes].sort(asc), inputs: [...inputs].sort(asc), epilogue: d.root !== d.anchor };
  });
  return { graph: g, kernels, storage, producer, unfusedKernelCount: unfusedKernelCount(g), fused: opts.fuse };
}

/** Text form for `kiln compile --emit schedule`. */
export function describeSchedule(s: Schedule): string {
  const g = s.graph;
  const lines = [
    `schedule of graph '${g.name}': ${s.kernels.length} kernels (${s.unfusedKernelCount} before fusion, one per non-leaf op)${s.fused ? '' : ' [fusion off]'}`,
  ];
  for (const k of s.kernels) {
    const root = g.nodes[k.root];
    const ops = k.nodes
      .filter((id) => !['input', 'param', 'constant', 'iota'].includes(g.nodes[id].op))
      .map((id) => `${g.nodes[id].op} %${id}`);
    const over = k.inPlace === undefined ? '' : ` in place over %${k.inPlace}`;
    lines.push(`  k${k.id} ${k.kind.padEnd(11)} -> %${k.root} ${fmtType(root.type)}${root.name ? ` (${root.name})` : ''}${over}`);
    lines.push(`      ops: ${ops.join(', ')}`);
    lines.push(`      reads: ${k.inputs.map((q) => `%${q}`).join(' ') || '(nothing)'}`);
  }
  return lines.join('\n');
}
