/**
 * The `zero` pass, stage 1: optimizer state sharded over the data-parallel group. It runs after the optimizer pass
 * on the data-parallel step (the `shard` pass's all-reduced gradients) and propagates a sharding along axis 0:
 *
 *   - every optimizer state `opt.*.<p>` of a parameter p whose first axis divides by dp becomes a parameter of
 *     the shard's shape (rank r holds rows r*n/dp .. (r+1)*n/dp);
 *   - the optimizer's elementwise arithmetic on p's shape is rebuilt on shards: the all-reduced gradient becomes
 *     `reduce_scatter` (rank r receives its rows of the sum), p itself is read at the rank's rows
 *     (`gather(reshape(p, [dp, n/dp, ...]), dp_rank)`), scalars (learning rate, bias corrections, the clip scale)
 *     stay replicated;
 *   - a full reduction of such a value (the squared gradient norm for clipping) becomes the `all_reduce` of the
 *     reductions of the shards;
 *   - p's update is the `all_gather` of its updated shards, so every replica again holds all of p.
 *
 * Anything else that would read a sharded state in full reads its `all_gather` (dead, and removed by DCE, in the
 * optimizers Kiln builds), so the rewrite is correct for any step graph and saves memory where the arithmetic is
 * elementwise (SGD, Adam, AdamW; Adafactor's factored states keep their shapes and stay replicated).
 */
import { GraphBuilder } from '../ir/builder.js';
import { updatedParam, updateOutput, type Graph, type GraphOutput, type Node } from '../ir/graph.js';
import type { AttrsOf } from '../ir/op.js';
import { OPS } from '../ir/registry.js';
import { sameType } from '../ir/types.js';
import type { CompileState } from '../passes/registry.js';
import { registerPass } from '../passes/registry.js';
import { KilnError } from '../errors.js';
import { isFloat } from '../ir/types.js';
import { DP_RANK_INPUT } from './mesh.js';
import { allReduceLocalNorms } from './tensor-parallel.js';


declare module '../passes/registry.js' {
  interface PassOptionsMap {
    zero: { stage: number; dp: number };
    'zero-params': { dp: number };
  }
}

const pname = (n: Node) => (n.attrs as AttrsOf<'param'>).name;
const stateBase = (name: string) => /^opt\.[^.]+\.(.+)$/.exec(name)?.[1];

/**
 * The parameters of a per-device program that hold one shard each (axis 0 split over dp): optimizer states whose
 * parameter's first axis is dp times theirs. Runners gather these for checkpoints and scatter them on resume.
 */
export function shardedParams(g: Graph, dp: number): Set<string> {
  const params = new Map(g.nodes.filter((n) => n.op === 'param').map((n) => [pname(n), n]));
  const out = new Set<string>();
  for (const [name, n] of params) {
    const base = stateBase(name);
    const p = base === undefined ? undefined : params.get(base);
    if (!p || dp <= 1 || p.type.shape.length !== n.type.shape.length || p.type.shape.length === 0) continue;
    if (p.type.shape[0] === dp * n.type.shape[0] && p.type.shape.slice(1).every((d, i) => d === n.type.shape[i + 1])) out.add(name);
  }
  return out;
}

export function zeroStage1(g: Graph, dp: number): Graph {
  const params = new Map(g.nodes.filter((n) => n.op === 'param').map((n) => [pname(n), n]));
  const updated = new Set(g.outputs.map(updatedParam).filter((x): x is string => x !== undefined));
  const divisible = (n: Node) => n.type.shape.length >= 1 && n.type.shape[0] % dp === 0 && n.type.shape[0] > 0;
  // sharded states: opt.*.<p> of p's type, p trainable and splittable
  const states = new Set<number>();
  const groups = new Set<string>();
  for (const [name, n] of params) {
    const base = stateBase(name);
    const p = base === undefined ? undefined : params.get(base);
    if (p && updated.has(name) && updated.has(base!) && sameType(p.type, n.type) && divisible(n)) {
      states.add(n.id);
      groups.add(base!);
    }
  }
  if (!states.size) return g;

  const b = new GraphBuilder();
  const rank = b.op('input', [], { name: DP_RANK_INPUT, dtype: 'i32', shape: [] });
  const full = new Map<number, number>();
  const shard = new Map<number, number>();
  const fullOf = (i: number) => full.get(i)!;
  const shardShape = (n: Node) => [n.type.shape[0] / dp, ...n.type.shape.slice(1)];
  const isElementwise = (n: Node) => OPS[n.op].lower.kernel === 'elementwise';
  // Values whose shard is computed from shards (no full value needed): the states, the reduced gradients and
  // elementwise arithmetic over them (p itself is read at the rank's rows: local memory, no exchange).
  const native = new Map<number, boolean>();
  const isNative = (id: number): boolean => {
    let v = native.get(id);
    if (v !== undefined) return v;
    const n = g.nodes[id];
    if (states.has(id)) v = true;
    else if (n.op === 'param') v = groups.has(pname(n));
    else if (n.op === 'all_reduce') v = divisible(n);
    else if (isElementwise(n) && divisible(n)) v = n.inputs.every((i) => !rowsMatter(g.nodes[i], n) || isNative(i));
    else v = false;
    native.set(id, v);
    return v;
  };
  // Does input `x` of node `n` vary along n's axis 0 (so it needs its shard rather than its full value)?
  const rowsMatter = (x: Node, n: Node) => x.type.shape.length === n.type.shape.length && x.type.shape[0] !== 1;
  const S = (id: number): number => {
    let s = shard.get(id);
    if (s !== undefined) return s;
    const n = g.nodes[id];
    if (n.op === 'all_reduce' && divisible(n)) s = b.op('reduce_scatter', [fullOf(n.inputs[0])], { size: dp, axis: 0 });
    else if (isElementwise(n) && divisible(n) && isNative(id)) {
      s = b.op(n.op, n.inputs.map((i) => (rowsMatter(g.nodes[i], n) ? S(i) : fullOf(i))), n.attrs as never, { name: n.name, scope: n.scope });
    } else {
      // the rank's rows of a replicated value
      const rows = b.reshape(fullOf(id), [dp, ...shardShape(n)]);
      s = b.op('gather', [rows, rank], {});
    }
    shard.set(id, s);
    return s;
  };

  for (const n of g.nodes) {
    if (states.has(n.id)) {
      const a = n.attrs as AttrsOf<'param'>;
      const s = b.op('param', [], { ...a, shape: shardShape(n) });
      shard.set(n.id, s);
      full.set(n.id, b.op('all_gather', [s], { size: dp, axis: 0 }));
      continue;
    }
    const allAxes = n.op === 'sum' && (n.attrs as AttrsOf<'sum'>).axes.length === g.nodes[n.inputs[0]].type.shape.length && n.type.shape.length === 0;
    if (allAxes && divisible(g.nodes[n.inputs[0]]) && isNative(n.inputs[0])) {
      const part = b.op('sum', [S(n.inputs[0])], n.attrs as AttrsOf<'sum'>);
      full.set(n.id, b.op('all_reduce', [part], { size: dp }));
      continue;
    }
    const opts = { ...(n.name !== undefined ? { name: n.name } : {}), ...(n.scope ? { scope: n.scope } : {}), ...(n.loc ? { loc: n.loc } : {}) };
    full.set(n.id, b.op(n.op, n.inputs.map(fullOf), n.attrs as never, opts));
  }
  const outputs: GraphOutput[] = g.outputs.map((o) => {
    const p = updatedParam(o);
    if (p === undefined) return { ...o, id: fullOf(o.id) };
    const pn = params.get(p)!;
    if (states.has(pn.id)) return updateOutput(p, S(o.id));
    if (groups.has(p)) return updateOutput(p, b.op('all_gather', [S(o.id)], { size: dp, axis: 0 }));
    return { ...o, id: fullOf(o.id) };
  });
  return b.build(`${g.name}.zero1`, outputs);
}

/**
 * ZeRO stage 3, before autodiff: every float parameter whose first axis divides by dp is stored as its rank's rows
 * (`param p: [n/dp, ...]`) and read through `all_gather(p, axis 0)`, one gather per parameter shared by all its
 * uses. The all-gather's gradient rule is a reduce-scatter, so autodiff gives each rank the gradient of its own
 * rows only (the `shard` pass then weights the reduce-scatter's operand by the device's share of the batch), the
 * optimizer that follows updates shards with shard-shaped state, and nothing is gathered after the update.
 */
export function zeroShardParams(g: Graph, dp: number): Graph {
  const b = new GraphBuilder();
  const map = new Map<number, number>();
  for (const n of g.nodes) {
    const opts = { ...(n.name !== undefined ? { name: n.name } : {}), ...(n.scope ? { scope: n.scope } : {}), ...(n.loc ? { loc: n.loc } : {}) };
    const shape = n.type.shape;
    if (n.op === 'param' && isFloat(n.type.dtype) && shape.length >= 1 && shape[0] > 0 && shape[0] % dp === 0) {
      const s = b.op('param', [], { ...(n.attrs as AttrsOf<'param'>), shape: [shape[0] / dp, ...shape.slice(1)] }, opts);
      map.set(n.id, b.op('all_gather', [s], { size: dp, axis: 0 }, opts));
      continue;
    }
    const id = b.op(n.op, n.inputs.map((i) => map.get(i)!), n.attrs as never, opts);
    if (n.rule) b.nodes[id].rule = n.rule;
    map.set(n.id, id);
  }
  return b.build(`${g.name}.zero3`, g.outputs.map((o) => ({ ...o, id: map.get(o.id)! })));
}

/** The parameters ZeRO stage 3 stores as shards (read through an all_gather over dp along axis 0). */
export function zeroShardedParams(g: Graph, dp: number): Set<string> {
  const out = new Set<string>();
  if (dp <= 1) return out;
  for (const n of g.nodes) {
    if (n.op !== 'all_gather') continue;
    const a = n.attrs as AttrsOf<'all_gather'>;
    const x = g.nodes[n.inputs[0]];
    if (x.op === 'param' && a.size === dp && a.axis === 0) out.add(pname(x));
  }
  return out;
}

registerPass(
  {
    name: 'zero-params',
    summary: 'ZeRO stage 3: parameters stored as dp shards and all-gathered where they are read (their gradients come out reduce-scattered)',
    level: 'graph',
    options: { dp: 'data-parallel degree (the group the parameters are sharded over)' },
    guarantees: ['every sharded parameter is read only through one all_gather'],
    configure: (req) => {
      if (!req.parallel || req.parallel.dp <= 1 || (req.parallel.zero ?? 0) < 3) return null;
      if (req.train?.optimizer.kind === 'adafactor') throw new KilnError('--zero 3 needs an elementwise optimizer (sgd, adam, adamw): Adafactor reduces over whole parameters, which stage 3 splits');
      return { dp: req.parallel.dp };
    },
    run: (s: CompileState, o) => ({ ...s, graph: zeroShardParams(s.graph, o.dp) }),
  },
  { before: 'autodiff' },
);

registerPass(
  {
    name: 'zero',
    summary: 'ZeRO: optimizer state sharded over the dp group (stages 1, 2: gradients reduce-scattered, parameters all-gathered after the update; stage 3: the gradient norm sums the shards)',
    level: 'graph',
    options: { stage: 'ZeRO stage (1: optimizer state, 2: and gradients, 3: and parameters)', dp: 'data-parallel degree (the group the state is sharded over)' },
    requires: ['shard', 'optimizer'],
    guarantees: ['every sharded optimizer state is updated from shards only'],
    configure: (req) => (req.parallel && req.parallel.dp > 1 && (req.parallel.zero ?? 0) >= 1 ? { stage: req.parallel.zero!, dp: req.parallel.dp } : null),
    // Stage 3's optimizer already runs on shards (zero-params): only the clipping norm's partial sums need summing.
    run: (s: CompileState, o) => ({ ...s, graph: o.stage >= 3 ? allReduceLocalNorms(s.graph, o.dp) : zeroStage1(s.graph, o.dp) }),
  },
  { after: 'optimizer' },
);
