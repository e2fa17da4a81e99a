/**
 * attention-fusion: replaces scaled-dot-product attention written as plain ops with one `flash_attention` node, so
 * the [.., T, S] scores and probabilities are never tensors (forward or backward).
 *
 * The computation it recognises, from the output backwards:
 *   matmul(dropout?(softmax(select?(mask, add?(scale(matmul(q, k, transB)), bias), fill))), v)
 * where scale is `* c`, `c *` or `/ c` by a scalar constant (or absent), fill is a scalar constant, and every
 * intermediate has exactly one use (a model that also returns its attention weights keeps the unfused chain).
 * Mask operands become mask kinds: `iota(axis 0) >= iota(axis 1)` over [T, S] is `causal` (no operand at all),
 * the std library's prefix_mask is `prefix` with the lengths as operand, any other bool tensor is `bool`.
 *
 * The matching is a list of named rules (`ATTENTION_RULES`), each `match(g, node)` -> a replacement or null,
 * so the declared pipeline's rewrite engine can host them as they are: `composite-attention` takes the nodes of
 * the library's `@composite attention` (scope kind 'attention', matched at the scope's last node);
 * `handwritten-attention` takes the same chain anywhere else.
 */
import { GraphBuilder } from '../ir/builder.js';
import type { Graph, Node } from '../ir/graph.js';
import { useCounts } from '../ir/graph.js';
import type { AttentionAttrs, AttrsOf } from '../ir/op.js';
import { sameShape } from '../ir/types.js';
import { dce } from './dce.js';

/** What replaces a matched root: a flash_attention over these operands (ids in the input graph). */
export interface AttentionMatch {
  rule: string;
  q: number;
  k: number;
  v: number;
  bias?: number;
  /** The mask operand: a bool tensor (mask 'bool') or the per-sequence prefix lengths (mask 'prefix'). */
  mask?: number;
  seed?: number;
  attrs: AttentionAttrs;
}

export interface AttentionRule {
  name: string;
  match(g: Graph, node: Node, uses: readonly number[]): AttentionMatch | null;
}

export interface AttentionFusionOptions {
  /** false: return the graph unchanged (the option that turns the pass off). */
  enabled?: boolean;
  /** Names of the rules to apply (default: all). */
  rules?: string[];
  /**
   * Storage buffers a kernel may bind (default 8, WebGPU's guaranteed maxStorageBuffersPerShaderStage). The
   * backward kernels bind q, k, v, dout, stats, the bias / mask / seed operands and their result: an attention
   * with a bias, a mask and dropout needs 9 and stays unfused under the default.
   */
  maxStorageBuffers?: number;
  /**
   * Fuse only attentions whose [..., T, S] f32 score tensor takes more bytes than this (default 0: every one).
   * The pipeline's default is 0, except on a CPU adapter without fixed-size subgroups, where it is the
   * storage-binding limit: fused exactly where the unfused graph cannot bind its scores (docs/codegen.md).
   */
  minScoreBytes?: number;
  /**
   * Fuse only attentions with at least this many queries (T of q's [..., T, D]; default 0: every one). The
   * pipeline's default is 2 (0 with --fuse-attention): a decode step's single query stays unfused,
   * because the fused kernels spread their work over query rows and the unfused matmuls over keys (exported
   * decode on lavapipe, `workgroup` kernels: 123 tokens/s unfused, 69 fused).
   */
  minQueries?: number;
}

/** Queries (T of q's [..., T, D]) of a match. */
const queries = (g: Graph, m: AttentionMatch): number => g.nodes[m.q].type.shape.at(-2) ?? 1;

/** Bytes of the f32 score tensor [..., T, S] the unfused chain of a match materialises. */
export function scoreBytes(g: Graph, m: AttentionMatch): number {
  const q = g.nodes[m.q].type.shape;
  const k = g.nodes[m.k].type.shape;
  return 4 * q.reduce((a, b) => a * b, 1) / q[q.length - 1] * k[k.length - 2];
}

const attrs = <K extends Node['op']>(n: Node, _k: K) => n.attrs as AttrsOf<K>;

/** The single value of a splat scalar constant, or null. */
function scalarConst(g: Graph, id: number): number | null {
  const n = g.nodes[id];
  if (n.op !== 'constant') return null;
  const a = attrs(n, 'constant');
  return a.values.length === 1 && n.type.shape.every((d) => d === 1) ? a.values[0] : null;
}

const isIota = (n: Node, axis: number) => n.op === 'iota' && attrs(n, 'iota').axis === axis;

/** `iota(0) >= iota(1)` / `iota(1) <= iota(0)` over [T, S] (leading 1s allowed): the causal mask. */
function isCausal(g: Graph, id: number): boolean {
  const n = g.nodes[id];
  if (n.type.shape.length < 2 || n.type.shape.slice(0, -2).some((d) => d !== 1)) return false;
  const rank = n.type.shape.length;
  const [a, b] = n.inputs.map((i) => g.nodes[i]);
  if (n.op === 'ge') return isIota(a, rank - 2) && isIota(b, rank - 1);
  if (n.op === 'le') return isIota(a, rank - 1) && isIota(b, rank - 2);
  return false;
}

/**
 * The std library's prefix_mask: reshape(or(iota(1) >= iota(2), iota(2) < reshape(len, [b, 1, 1])), [b, 1, t, t]).
 * Returns the lengths node, or null.
 */
function prefixLengths(g: Graph, id: number): number | null {
  let n = g.nodes[id];
  if (n.op === 'reshape') n = g.nodes[n.inputs[0]];
  if (n.op !== 'or' || n.type.shape.length !== 3) return null;
  const [c, p] = n.inputs.map((i) => g.nodes[i]);
  const causal = c.op === 'ge' && isIota(g.nodes[c.inputs[0]], 1) && isIota(g.nodes[c.inputs[1]], 2);
  if (!causal || p.op !== 'lt' || !isIota(g.nodes[p.inputs[0]], 2)) return null;
  const col = g.nodes[p.inputs[1]];
  if (col.op !== 'reshape') return null;
  const len = g.nodes[col.inputs[0]];
  if (len.type.shape.length !== 1 || !sameShape(col.type.shape, [len.type.shape[0], 1, 1])) return null;
  return len.type.dtype === 'i32' || len.type.dtype === 'u32' ? len.id : null;
}

/** The structural matcher both rules share; `root` is the candidate P·V matmul. */
function matchChain(g: Graph, root: Node, uses: readonly number[], rule: string): AttentionMatch | null {
  if (root.op !== 'matmul') return null;
  const rm = attrs(root, 'matmul');
  if (rm.transA || rm.transB) return null;
  const once = (id: number) => uses[id] === 1;
  const v = root.inputs[1];
  let pid = root.inputs[0];
  let p = g.nodes[pid];
  const scoreShape = p.type.shape;
  const same = (n: Node) => sameShape(n.type.shape, scoreShape);
  let drop: { p: number; stream: number; seed: number } | undefined;
  if (p.op === 'dropout') {
    if (!once(pid)) return null;
    drop = { ...attrs(p, 'dropout'), seed: p.inputs[1] };
    pid = p.inputs[0];
    p = g.nodes[pid];
  }
  if (p.op !== 'softmax' || !once(pid) || !same(p)) return null;
  let zid = p.inputs[0];
  let z = g.nodes[zid];
  let fill = -1e9;
  let maskId: number | undefined;
  if (z.op === 'select') {
    const f = scalarConst(g, z.inputs[2]);
    if (f === null || !once(zid) || !same(z)) return null;
    fill = f;
    maskId = z.inputs[0];
    zid = z.inputs[1];
    z = g.nodes[zid];
  }
  // scale(QK) [+ bias]: find which add operand is the scaled scores.
  const scaled = (id: number): { qk: Node; scale: number } | null => {
    const n = g.nodes[id];
    if (!same(n)) return null;
    if (n.op === 'matmul') {
      const a = attrs(n, 'matmul');
      return !a.transA && a.transB && once(id) ? { qk: n, scale: 1 } : null;
    }
    if ((n.op === 'mul' || n.op === 'div') && once(id)) {
      for (const [x, c] of n.op === 'div' ? [[0, 1]] : [[0, 1], [1, 0]]) {
        const s = scalarConst(g, n.inputs[c]);
        const m = g.nodes[n.inputs[x]];
        if (s === null || m.op !== 'matmul' || !once(m.id) || !same(m)) continue;
        const a = attrs(m, 'matmul');
        if (a.transA || !a.transB) continue;
        return { qk: m, scale: n.op === 'div' ? 1 / s : s };
      }
    }
    return null;
  };
  let sc = scaled(zid);
  let bias: number | undefined;
  if (!sc && z.op === 'add' && once(zid) && same(z)) {
    for (const [x, o] of [[0, 1], [1, 0]]) {
      sc = scaled(z.inputs[x]);
      if (sc) {
        bias = z.inputs[o];
        break;
      }
    }
  }
  if (!sc) return null;
  const [q, k] = sc.qk.inputs;
  const qt = g.nodes[q].type;
  const kt = g.nodes[k].type;
  const vt = g.nodes[v].type;
  const batch = qt.shape.slice(0, -2);
  // flash_attention wants q, k, v with the same batch dims (no broadcasting between them) and a float dtype.
  if (!sameShape(kt.shape.slice(0, -2), batch) || !sameShape(vt.shape.slice(0, -2), batch) || qt.shape.length < 2) return null;
  if (!sameShape(root.type.shape.slice(0, -2), batch) || qt.dtype !== kt.dtype || qt.dtype !== vt.dtype) return null;
  if (bias !== undefined && g.nodes[bias].type.dtype !== qt.dtype) return null;
  const m: AttentionMatch = { rule, q, k, v, attrs: { scale: sc.scale, mask: 'none', bias: bias !== undefined, fill, p: drop?.p ?? 0, stream: drop?.stream ?? 0 } };
  if (bias !== undefined) m.bias = bias;
  if (drop && drop.p > 0) m.seed = drop.seed;
  if (maskId !== undefined) {
    const len = prefixLengths(g, maskId);
    if (isCausal(g, maskId)) m.attrs.mask = 'causal';
    else if (len !== null && batch.length >= 1 && g.nodes[len].type.shape[0] === batch[0]) {
      m.attrs.mask = 'prefix';
      m.mask = len;
    } else if (g.nodes[maskId].type.dtype === 'bool') {
      m.attrs.mask = 'bool';
      m.mask = maskId;
    } else return null;
  }
  return m;
}

/** The last node of each scope id (where a composite's result is produced). */
function scopeEnds(g: Graph): Map<number, number> {
  const ends = new Map<number, number>();
  for (const n of g.nodes) if (n.scope) ends.set(n.scope.id, n.id);
  return ends;
}

let endsCache: { g: Graph; ends: Map<number, number> } | undefined;
const endsOf = (g: Graph) => (endsCache?.g === g ? endsCache.ends : (endsCache = { g, ends: scopeEnds(g) }).ends);

export const ATTENTION_RULES: AttentionRule[] = [
  {
    name: 'composite-attention',
    match: (g, n, uses) => (n.scope?.kind === 'attention' && endsOf(g).get(n.scope.id) === n.id ? matchChain(g, n, uses, 'composite-attention') : null),
  },
  {
    name: 'handwritten-attention',
    match: (g, n, uses) => matchChain(g, n, uses, 'handwritten-attention'),
  },
];

/** Finds every attention in `g` the rules recognise (root id -> match), without changing anything. */
export function findAttention(g: Graph, opts: AttentionFusionOptions = {}): Map<number, AttentionMatch> {
  const rules = opts.rules ? ATTENTION_RULES.filter((r) => opts.rules!.includes(r.name)) : ATTENTION_RULES;
  const uses = useCounts(g);
  const found = new Map<number, AttentionMatch>();
  const limit = opts.maxStorageBuffers ?? 8;
  for (const n of g.nodes) {
    for (const r of rules) {
      const m = r.match(g, n, uses);
      if (m && 6 + [m.bias, m.mask, m.seed].filter((x) => x !== undefined).length <= limit && scoreBytes(g, m) > (opts.minScoreBytes ?? 0) && queries(g, m) >= (opts.minQueries ?? 0)) {
        found.set(n.id, m);
        break;
      }
    }
  }
  return found;
}

/** The pass: every recognised attention becomes one flash_attention node; the unfused chain is then dead code. */
export function fuseAttention(g: Graph, opts: AttentionFusionOptions = {}): Graph {
  if (opts.enabled === false) return g;
  const found = findAttention(g, opts);
  if (found.size === 0) return g;
  const b = new GraphBuilder();
  const map = new Array<number>(g.nodes.length);
  for (const n of g.nodes) {
    const m = found.get(n.id);
    const o = { name: n.name, scope: n.scope, loc: n.loc };
    if (!m) {
      const id = b.nodes.length;
      b.nodes.push({ ...n, id, inputs: n.inputs.map((i) => map[i]) });
      map[n.id] = id;
      continue;
    }
    b.loc = n.loc;
    b.scope = n.scope;
    const ops = [map[m.q], map[m.k], map[m.v]];
    if (m.bias !== undefined) ops.push(map[m.bias]);
    if (m.mask !== undefined) {
      // prefix lengths [b] line up with the batch dims [b, heads, ...]: give them trailing 1s.
      const batchRank = n.type.shape.length - 2;
      ops.push(m.attrs.mask === 'prefix' ? b.reshape(map[m.mask], [b.type(map[m.mask]).shape[0], ...new Array<number>(batchRank - 1).fill(1)]) : map[m.mask]);
    }
    if (m.seed !== undefined) ops.push(map[m.seed]);
    map[n.id] = b.op('flash_attention', ops, m.attrs, o);
    b.loc = undefined;
    b.scope = undefined;
  }
  return dce(b.build(g.name, g.outputs.map((x) => ({ name: x.name, id: map[x.id] }))));
}
