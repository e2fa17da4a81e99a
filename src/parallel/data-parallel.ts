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
import { DP_WEIGHT_INPUT, type ParallelConfig } from './mesh.js';

declare module '../passes/registry.js' {
  interface PassOptionsMap {
    shard: { dp: number; weightInput: string };
  }
  interface CompileRequest {
    /** The device mesh to partition the program over (the `shard` pass runs when a degree is above 1). */
    parallel?: ParallelConfig;
  }
}

export function dataParallel(joint: Graph, dp: number, weightInput = DP_WEIGHT_INPUT): Graph {
  const b = GraphBuilder.extend(joint);
  const w = b.op('input', [], { name: weightInput, dtype: 'f32', shape: [] });
  const reduce = (id: number) => {
    const t = b.type(id);
    const wt = t.dtype === 'f32' ? w : b.op('cast', [w], { to: t.dtype });
    return b.op('all_reduce', [b.mul(id, wt)], { size: dp });
  };
  const outputs: GraphOutput[] = joint.outputs.map((o) => (o.role?.kind === 'grad' || o.role?.kind === 'loss' ? { ...o, id: reduce(o.id) } : o));
  return b.build(`${joint.name}.dp${dp}`, outputs);
}

registerPass(
  {
    name: 'shard',
    summary: 'partitions the program over a device mesh: data parallel (per-device batch, gradients and loss all-reduced before the optimizer)',
    level: 'graph',
    options: {
      dp: 'data-parallel degree (devices that each run 1/dp of the batch)',
      weightInput: 'scalar input weighting each device\'s loss and gradients (its share of the counted tokens)',
    },
    requires: ['autodiff'],
    guarantees: ['every `grad` and `loss` output is an all_reduce over the dp group'],
    configure: (req) => (req.parallel && req.parallel.dp > 1 ? { dp: req.parallel.dp, weightInput: DP_WEIGHT_INPUT } : null),
    run: (s: CompileState, o) => ({ ...s, graph: dataParallel(s.graph, o.dp, o.weightInput) }),
    check: (s) => {
      const bad = s.graph.outputs.find((o) => (o.role?.kind === 'grad' || o.role?.kind === 'loss') && s.graph.nodes[o.id].op !== 'all_reduce');
      return bad ? `output '${bad.name}' is not all-reduced` : null;
    },
  },
  { after: 'autodiff' },
);
