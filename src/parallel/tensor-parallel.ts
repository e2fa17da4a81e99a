/**
 * The `tensor-parallel` pass (Megatron style): runs before autodiff on the forward graph.
 *
 * MLP blocks: in every `mlp` composite (std/layers.kiln: `fc`, optional `gate`, `proj` linears) the first
 * linear(s) are split by columns and the projection by rows over tp devices, and the projection's partial products
 * are all-reduced:
 *
 *   h_d = act(x @ fc.w[:, shard d] + fc.b[shard d])        y = all_reduce(h_d @ proj.w[shard d, :]) + proj.b
 *
 * Attention blocks (std/attention.kiln: linears `q`, `k`, `v`, `proj` under one prefix): q, k and v are split by
 * columns, which are whole heads (head h is columns h*dh .. (h+1)*dh), so device d computes heads/tp heads; the
 * reshapes that split and merge heads follow (splitReshape); the output projection is split by rows and its
 * partial products all-reduced, as the MLP's. So the hidden activations of every MLP and the q/k/v, scores and
 * per-head outputs of every attention block are 1/tp per device, with one all-reduce per block in the forward
 * pass (and its gradient's in the backward). Every device computes the rest of the model (embeddings, layer
 * norms, residual stream, logits) replicated, on the whole batch. With the collective semantics (the objective is
 * the sum of the devices' losses), the `shard` pass then weights loss and gradients by 1/tp and all-reduces the
 * gradients of replicated parameters only; a split parameter's gradient is already its own (the all-reduce's
 * gradient rule, itself an all-reduce, sums the cotangents of the block's output across devices).
 */
import { KilnError } from '../errors.js';
import { GraphBuilder } from '../ir/builder.js';
import type { Graph, Node } from '../ir/graph.js';
import type { AttrsOf } from '../ir/op.js';
import type { CompileState } from '../passes/registry.js';
import { registerPass } from '../passes/registry.js';
import { isStateParam } from '../train/optimizers.js';

declare module '../passes/registry.js' {
  interface PassOptionsMap {
    'tensor-parallel': { tp: number };
    'tp-grad-norm': { tp: number };
  }
}

/** Marks (as the node's `rule`) a split parameter's gradient, whose square the gradient norm must all-reduce. */
export const LOCAL_GRAD_RULE = 'tp-local-grad';

const pname = (n: Node) => (n.attrs as AttrsOf<'param'>).name;

/**
 * Which axis of each parameter tensor parallelism splits (by name and composite: mlp fc/gate columns, proj rows),
 * in the whole model (`split` false) or in the per-device program the pass made (`split` true).
 */
export function tensorShards(g: Graph, tp: number, split = false): Map<string, number> {
  const out = new Map<string, number>();
  if (tp <= 1) return out;
  const scopes = new Map<number, Node<'param'>[]>();
  for (const n of g.nodes) {
    if (n.op !== 'param' || n.scope?.kind !== 'mlp') continue;
    scopes.set(n.scope.id, [...(scopes.get(n.scope.id) ?? []), n as Node<'param'>]);
  }
  for (const params of scopes.values()) {
    const by = (suffix: string) => params.find((p) => pname(p).endsWith(suffix));
    const fc = by('.fc.w');
    const proj = by('.proj.w');
    if (!fc || !proj || fc.type.shape.length !== 2 || proj.type.shape.length !== 2) continue;
    // the hidden width, whole (before the pass) or split (after it): both linears must agree and split evenly
    const f = fc.type.shape[1];
    if (proj.type.shape[0] !== f) continue;
    if (!split && f % tp !== 0) continue;
    out.set(pname(fc), 1);
    out.set(pname(proj), 0);
    for (const s of ['.fc.b', '.gate.w', '.gate.b']) {
      const p = by(s);
      if (p) out.set(pname(p), s.endsWith('.w') ? 1 : 0);
    }
  }
  // attention (std/attention.kiln: linears q, k, v, proj under one prefix): q, k, v by columns, which are whole
  // heads (a head is dh consecutive columns), proj by rows; only where the head count divides by tp
  const named = new Map(g.nodes.filter((n) => n.op === 'param').map((n) => [pname(n), n]));
  for (const [name, q] of named) {
    if (!name.endsWith('.q.w') || q.scope?.kind === 'mlp' || isStateParam(name)) continue;
    const pre = name.slice(0, -'.q.w'.length);
    const [k, v, proj] = ['.k.w', '.v.w', '.proj.w'].map((x) => named.get(pre + x));
    if (!k || !v || !proj || ![q, k, v, proj].every((p) => p.type.shape.length === 2)) continue;
    const n = q.type.shape[1];
    if (k.type.shape[1] !== n || v.type.shape[1] !== n || proj.type.shape[0] !== n) continue;
    if (!split) {
      const heads = headsOf(g, q);
      if (heads === undefined || heads % tp !== 0) continue;
    }
    for (const x of ['q', 'k', 'v']) {
      out.set(`${pre}.${x}.w`, 1);
      if (named.has(`${pre}.${x}.b`)) out.set(`${pre}.${x}.b`, 0);
    }
    out.set(pname(proj), 0);
  }
  return out;
}

/** The head count of an attention block: the reshape that splits q's projection (+ bias) into [.., heads, dh]. */
function headsOf(g: Graph, q: Node): number | undefined {
  const consumer = (id: number) => {
    const c = g.nodes.filter((n) => n.inputs.includes(id));
    return c.length === 1 ? c[0] : undefined;
  };
  let x = consumer(q.id);
  if (x?.op !== 'matmul' || x.inputs[1] !== q.id) return undefined;
  x = consumer(x.id);
  if (x?.op === 'add') x = consumer(x.id);
  if (x?.op !== 'reshape') return undefined;
  const shape = (x.attrs as AttrsOf<'reshape'>).shape;
  return shape.length >= 2 && shape[shape.length - 1] * shape[shape.length - 2] === q.type.shape[1] ? shape[shape.length - 2] : undefined;
}

/**
 * A reshape whose operand lost 1/tp of one axis (a split projection's output, or the heads merged back): the output
 * axis that starts the same row-major block loses it, so a [.., n/tp] -> [.., heads, dh] reshape keeps whole heads.
 */
function splitReshape(from: readonly number[], was: readonly number[], to: readonly number[], tp: number): number[] | undefined {
  const i = from.findIndex((d, j) => d !== was[j]);
  if (i < 0 || from.length !== was.length || from[i] * tp !== was[i]) return undefined;
  const before = was.slice(0, i).reduce((a, d) => a * d, 1);
  let p = 1;
  for (let j = 0; j < to.length; j++) {
    if (p === before && to[j] % tp === 0) return to.map((d, m) => (m === j ? d / tp : d));
    p *= to[j];
  }
  return undefined;
}

export function tensorParallel(g: Graph, tp: number): Graph {
  const shards = tensorShards(g, tp);
  if (!shards.size) return g;
  const b = new GraphBuilder();
  const map = new Map<number, number>();
  const projW = new Set(g.nodes.filter((n) => n.op === 'param' && pname(n).endsWith('.proj.w') && shards.get(pname(n)) === 0).map((n) => n.id));
  for (const n of g.nodes) {
    const opts = { ...(n.name !== undefined ? { name: n.name } : {}), ...(n.scope ? { scope: n.scope } : {}), ...(n.loc ? { loc: n.loc } : {}) };
    const axis = n.op === 'param' ? shards.get(pname(n)) : undefined;
    if (axis !== undefined) {
      const a = n.attrs as AttrsOf<'param'>;
      map.set(n.id, b.op('param', [], { ...a, shape: n.type.shape.map((s, i) => (i === axis ? s / tp : s)) }, opts));
      continue;
    }
    let attrs = n.attrs;
    if (n.op === 'reshape') {
      const from = b.type(map.get(n.inputs[0])!).shape;
      const was = g.nodes[n.inputs[0]].type.shape;
      if (from.some((d, j) => d !== was[j])) {
        const shape = splitReshape(from, was, (n.attrs as AttrsOf<'reshape'>).shape, tp);
        if (!shape) throw new KilnError(`tensor parallel (tp=${tp}): cannot split reshape %${n.id} of [${was.join(', ')}] to [${(n.attrs as AttrsOf<'reshape'>).shape.join(', ')}] along with its split operand [${from.join(', ')}]`);
        attrs = { ...(n.attrs as AttrsOf<'reshape'>), shape };
      }
    }
    let id = b.op(n.op, n.inputs.map((i) => map.get(i)!), attrs as never, opts);
    if (n.op === 'matmul' && projW.has(n.inputs[1])) id = b.op('all_reduce', [id], { size: tp }, opts);
    map.set(n.id, id);
  }
  return b.build(`${g.name}.tp${tp}`, g.outputs.map((o) => ({ ...o, id: map.get(o.id)! })));
}

registerPass(
  {
    name: 'tensor-parallel',
    summary: 'Megatron-style tensor parallelism: MLP fc and attention q/k/v (whole heads) split by columns, proj by rows, one all_reduce per block',
    level: 'graph',
    options: { tp: 'tensor-parallel degree (devices that each hold 1/tp of every MLP and of every attention block\'s heads)' },
    guarantees: ['every split MLP or attention projection is followed by an all_reduce over the tp group'],
    configure: (req) => (req.parallel && (req.parallel.tp ?? 1) > 1 ? { tp: req.parallel.tp! } : null),
    run: (s: CompileState, o) => ({ ...s, graph: tensorParallel(s.graph, o.tp) }),
  },
  { before: 'autodiff' },
);

/**
 * After the optimizer: the global gradient norm (for clipping) sums every gradient's square; a split parameter's
 * gradient is one shard per device, so its sum of squares is all-reduced (`sum(g*g)` -> `all_reduce(sum(g*g))`).
 * Optimizers that reduce over a parameter for other reasons (Adafactor's factored moments and update RMS) would
 * see only the shard: tensor parallelism refuses them.
 */
export function allReduceLocalNorms(g: Graph, tp: number): Graph {
  const b = new GraphBuilder();
  const map = new Map<number, number>();
  const local = (id: number) => g.nodes[id].rule === LOCAL_GRAD_RULE;
  for (const n of g.nodes) {
    const opts = { ...(n.name !== undefined ? { name: n.name } : {}), ...(n.scope ? { scope: n.scope } : {}), ...(n.loc ? { loc: n.loc } : {}) };
    let id = b.op(n.op, n.inputs.map((i) => map.get(i)!), n.attrs as never, opts);
    if (n.rule) b.nodes[id].rule = n.rule;
    const x = g.nodes[n.inputs[0]];
    const sq = n.op === 'sum' && n.type.shape.length === 0 && x?.op === 'mul' && x.inputs[0] === x.inputs[1] && local(x.inputs[0]);
    if (sq) id = b.op('all_reduce', [id], { size: tp }, opts);
    map.set(n.id, id);
  }
  return b.build(g.name, g.outputs.map((o) => ({ ...o, id: map.get(o.id)! })));
}

registerPass(
  {
    name: 'tp-grad-norm',
    summary: 'tensor parallel: the global gradient norm all-reduces the squared norms of split parameters\' gradients',
    level: 'graph',
    options: { tp: 'tensor-parallel degree' },
    requires: ['optimizer'],
    configure: (req) => {
      if (!req.train || !req.parallel || (req.parallel.tp ?? 1) <= 1) return null;
      if (req.train.optimizer.kind === 'adafactor') throw new KilnError('tensor parallelism needs an elementwise optimizer (sgd, adam, adamw): Adafactor reduces over whole parameters, which tp splits');
      return { tp: req.parallel.tp! };
    },
    run: (s: CompileState, o) => ({ ...s, graph: allReduceLocalNorms(s.graph, o.tp) }),
  },
  { after: 'optimizer' },
);
