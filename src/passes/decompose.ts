import { GraphBuilder } from '../ir/builder.js';
import type { Graph, Node } from '../ir/graph.js';
import { OPS } from '../ir/registry.js';

/**
 * Expands every composite primitive (softmax, log_softmax, layer_norm, rms_norm, cross_entropy) into the plain
 * ops its `decompose` rule gives: the "naive chain" the fused gradient rules are tested against, and a fallback
 * for back ends without a kernel for the primitive.
 */
export function decomposeComposites(g: Graph): Graph {
  if (!g.nodes.some((n) => OPS[n.op].decompose)) return g;
  const b = new GraphBuilder();
  const map = new Array<number>(g.nodes.length);
  for (const n of g.nodes) {
    const inputs = n.inputs.map((i) => map[i]);
    const rule = OPS[n.op];
    b.loc = n.loc;
    b.scope = n.scope;
    if (rule.decompose) {
      const moved: Node = { ...n, id: -1, inputs };
      map[n.id] = rule.decompose(b, moved as never);
    } else {
      map[n.id] = b.op(n.op, inputs, n.attrs as never, { name: n.name, scope: n.scope, loc: n.loc });
    }
  }
  return b.build(g.name, g.outputs.map((o) => ({ ...o, id: map[o.id] })));
}
