/**
 * The `shard` pass, data-parallel axis: turns the joint (forward + backward) graph of the model at its per-device
 * batch into the SPMD program every data-parallel device runs. It sits between autodiff and the optimizer, so the
 * optimizer (and its global-norm clipping) reads gradients that are already the whole batch's:
 *
 *   grad(p)  ->  all_reduce(dp_weight * grad(p))        loss  ->  all_reduce(dp_weight * loss)
 *
 * `dp_weight` is a scalar input the host sets per device to that device's share of the batch's counted tokens
 * (1/dp when every shard counts as many), so the weighted sum of the per-device mean losses (and of their
 * gradients) is the mean loss of the whole batch, with or without ignored positions. Every device then applies the
 * same optimizer step to the same gradients and its parameters stay equal to the others' bit for bit.
 *
 * The batch itself is split by the caller: the model is compiled at batch B/dp and each device is fed its shard.
 */
import { GraphBuilder } from '../ir/builder.js';
import type { Graph, GraphOutput } from '../ir/graph.js';
import type { CompileState } from '../passes/registry.js';
import { registerPass } from '../passes/registry.js';
import { KilnError } from '../errors.js';
import { DP_WEIGHT_INPUT, type ParallelConfig } from './mesh.js';
import { LOCAL_GRAD_RULE, tensorShards } from './tensor-parallel.js';
import { zeroShardedParams } from './zero.js';

declare module '../passes/registry.js' {
  interface PassOptionsMap {
    shard: { dp: number; tp: number; weightInput: string };
  }
  interface CompileRequest {
    /** The device mesh to partition the program over (the `shard` pass runs when a degree is above 1). */
    parallel?: ParallelConfig;
  }
}

/**
 * `size` devices, each weighted by input `weightInput` (data parallel: its share of the batch) or by the constant
 * 1/size (tensor parallel: every device computes the same loss). Gradients of `local` parameters (split by tensor
 * parallelism: each device's shard is its own variable) are weighted but not all-reduced.
 */
export function dataParallel(joint: Graph, size: number, weightInput: string | null = DP_WEIGHT_INPUT, local: ReadonlySet<string> = new Set(), zeroSharded: ReadonlySet<string> = new Set()): Graph {
  const b = GraphBuilder.extend(joint);
  const w = weightInput === null ? b.scalar(1 / size) : b.op('input', [], { name: weightInput, dtype: 'f32', shape: [] });
  const weighted = (id: number) => {
    const t = b.type(id);
    return b.mul(id, t.dtype === 'f32' ? w : b.op('cast', [w], { to: t.dtype }));
  };
  const outputs: GraphOutput[] = joint.outputs.map((o) => {
    if (o.role?.kind === 'grad' && zeroSharded.has(o.role.param)) {
      // ZeRO-3: the gradient of a sharded parameter is already the reduce-scatter of its gather's cotangent; the
      // weight goes inside it (each device's share of the batch), and its square is summed over devices for clipping
      const rs = joint.nodes[o.id];
      if (rs.op !== 'reduce_scatter') throw new KilnError(`internal error: the gradient of ZeRO-3 shard '${o.role.param}' is ${rs.op}, not a reduce_scatter`);
      const id = b.op('reduce_scatter', [weighted(rs.inputs[0])], rs.attrs as never);
      b.nodes[id].rule = LOCAL_GRAD_RULE;
      return { ...o, id };
    }
    if (o.role?.kind === 'grad' && local.has(o.role.param)) {
      const id = weighted(o.id);
      b.nodes[id].rule = LOCAL_GRAD_RULE; // the global gradient norm must all-reduce its square (tensor-parallel.ts)
      return { ...o, id };
    }
    if (o.role?.kind === 'grad' || o.role?.kind === 'loss') return { ...o, id: b.op('all_reduce', [weighted(o.id)], { size }) };
    return o;
  });
  return b.build(weightInput === null ? joint.name : `${joint.name}.dp${size}`, outputs);
}

registerPass(
  {
    name: 'shard',
    summary: 'partitions the program over the devices: loss and replicated gradients weighted and all-reduced before the optimizer (dp: per-device batch; tp: after tensor-parallel)',
    level: 'graph',
    options: {
      dp: 'data-parallel degree (devices that each run 1/dp of the batch)',
      tp: 'tensor-parallel degree (devices that each hold 1/tp of every MLP; loss weighted 1/tp, replicated gradients all-reduced)',
      weightInput: 'scalar input weighting each device\'s loss and gradients (its share of the counted tokens)',
    },
    requires: ['autodiff'],
    guarantees: ['the `loss` output and every gradient of a replicated parameter are all_reduces over the group'],
    configure: (req) => {
      const p = req.parallel;
      const tp = p?.tp ?? 1;
      if (!p || (p.dp <= 1 && tp <= 1)) return null;
      if (p.dp > 1 && tp > 1) throw new KilnError(`dp=${p.dp} with tp=${tp} needs collectives over sub-groups of the devices, which are designed (docs/parallel.md) but not built`);
      return { dp: p.dp, tp, weightInput: DP_WEIGHT_INPUT };
    },
    run: (s: CompileState, o) => {
      if (o.tp > 1) return { ...s, graph: dataParallel(s.graph, o.tp, null, new Set(tensorShards(s.graph, o.tp, true).keys())) };
      return { ...s, graph: dataParallel(s.graph, o.dp, o.weightInput, new Set(), zeroShardedParams(s.graph, o.dp)) };
    },
    check: (s) => {
      const bad = s.graph.outputs.find((o) => o.role?.kind === 'loss' && s.graph.nodes[o.id].op !== 'all_reduce');
      return bad ? `output '${bad.name}' is not all-reduced` : null;
    },
  },
  { after: 'autodiff' },
);
