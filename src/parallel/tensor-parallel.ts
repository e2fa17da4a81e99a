/**
 * The `tensor-parallel` pass (Megatron style, MLP blocks): runs before autodiff on the forward graph. In every
 * `mlp` composite (std/layers.kiln: `fc`, optional `gate`, `proj` linears) the first linear(s) are split by
 * columns and the projection by rows over tp devices, and the projection's partial products are all-reduced:
 *
 *   h_d = act(x @ fc.w[:, shard d] + fc.b[shard d])        y = all_reduce(h_d @ proj.w[shard d, :]) + proj.b
 *
 * so the hidden activations of every MLP are 1/tp per device. Every device computes the rest of the model
 * replicated, on the whole batch. With the collective semantics (the objective is the sum of the devices'
 * losses), the `shard` pass then weights loss and gradients by 1/tp and all-reduces the gradients of replicated
 * parameters only; a split parameter's gradient is already its own (the all-reduce's gradient rule — itself an
 * all-reduce — sums the cotangents of the block's output across devices).
 *
 * Attention heads are not split yet (the attention composite reshapes to a fixed head count); see docs/parallel.md.
 */
import { KilnError } from '../errors.js';
import { GraphBuilder } from '../ir/builder.js';
import type { Graph, Node } from '../ir/graph.js';
import type { AttrsOf } from '../ir/op.js';
import type { CompileState } from '../passes/registry.js';
import { registerPass } from '../passes/registry.js';

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
  return out;
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
    let id = b.op(n.op, n.inputs.map((i) => map.get(i)!), n.attrs as never, opts);
    if (n.op === 'matmul' && projW.has(n.inputs[1])) id = b.op('all_reduce', [id], { size: tp }, opts);
    map.set(n.id, id);
  }
  return b.build(`${g.name}.tp${tp}`, g.outputs.map((o) => ({ ...o, id: map.get(o.id)! })));
}

registerPass(
  {
    name: 'tensor-parallel',
    summary: 'Megatron-style tensor parallelism of MLP blocks: fc split by columns, proj by rows, one all_reduce per block',
    level: 'graph',
    options: { tp: 'tensor-parallel degree (devices that each hold 1/tp of every MLP)' },
    guarantees: ['every split MLP projection is followed by an all_reduce over the tp group'],
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
