/**
 * The rewrite engine: rules that match IR patterns (by op, attributes and composite scope) and replace them,
 * applied to a fixed point. Rules are data — a list of named rules — so a pass is its list, a dump shows which
 * rule made which node (`rule=<name>`), and a rule can be added without touching the engine.
 *
 * One sweep walks the nodes in order, rebuilding the graph: each node, with operands already rewritten, is offered
 * to the rules that look at its op; the first rule that returns a value replaces it (nodes the rule emits are
 * tagged with its name). Sweeps repeat until none fires, since one rewrite can enable another; nodes a rewrite
 * orphans are removed by DCE.
 */
import { IRError } from '../errors.js';
import { GraphBuilder } from '../ir/builder.js';
import type { Graph, Node } from '../ir/graph.js';
import type { OpKind } from '../ir/op.js';
import { dce } from './dce.js';

export interface RewriteSite {
  /** The node offered, with its operands already mapped into `b` (its id is where it would go in `b`). */
  node: Node;
  /** The graph being built: emit replacement nodes here (its scope and location default to the node's). */
  b: GraphBuilder;
  /** Operand k of the node, as a node of `b`. */
  arg(k: number): Node;
}

export interface RewriteRule {
  name: string;
  /** Ops the rule looks at: it is only offered nodes of these ops. */
  ops: readonly OpKind[];
  /** Only nodes inside a composite scope of this kind (e.g. 'attention'). */
  scope?: string;
  /** The id in `b` of a value equal to the node, or null when the rule does not apply (then it must emit nothing). */
  rewrite(site: RewriteSite): number | null;
}

export interface RewriteResult {
  graph: Graph;
  /** How many times each rule fired. */
  hits: Record<string, number>;
}

function sweep(g: Graph, byOp: Map<string, RewriteRule[]>, hits: Record<string, number>): { graph: Graph; fired: boolean } {
  const b = new GraphBuilder([]);
  const alias = new Array<number>(g.nodes.length);
  let fired = false;
  for (const n of g.nodes) {
    const node: Node = { ...n, id: b.nodes.length, inputs: n.inputs.map((i) => alias[i]) };
    const site: RewriteSite = { node, b, arg: (k) => b.nodes[node.inputs[k]] };
    let replaced: number | null = null;
    for (const rule of byOp.get(n.op) ?? []) {
      if (rule.scope !== undefined && n.scope?.kind !== rule.scope) continue;
      const before = b.nodes.length;
      b.scope = n.scope;
      b.loc = n.loc;
      replaced = rule.rewrite(site);
      b.scope = undefined;
      b.loc = undefined;
      if (replaced === null) {
        if (b.nodes.length !== before) throw new IRError(`rewrite rule '${rule.name}' emitted nodes but did not apply`);
        continue;
      }
      for (let id = before; id < b.nodes.length; id++) b.nodes[id] = { ...b.nodes[id], rule: rule.name, ...(n.name && !b.nodes[id].name ? { name: n.name } : {}) };
      hits[rule.name] = (hits[rule.name] ?? 0) + 1;
      fired = true;
      break;
    }
    if (replaced === null) {
      b.nodes.push(node);
      replaced = node.id;
    }
    alias[n.id] = replaced;
  }
  return { graph: { name: g.name, nodes: b.nodes, outputs: g.outputs.map((o) => ({ ...o, id: alias[o.id] })) }, fired };
}

/** Applies `rules` to a fixed point (at most `maxSweeps` sweeps), then removes what the rewrites orphaned. */
export function rewrite(g: Graph, rules: readonly RewriteRule[], maxSweeps = 16): RewriteResult {
  const byOp = new Map<string, RewriteRule[]>();
  for (const r of rules) for (const op of r.ops) byOp.set(op, [...(byOp.get(op) ?? []), r]);
  const hits: Record<string, number> = {};
  let graph = g;
  let any = false;
  for (let i = 0; i < maxSweeps; i++) {
    const r = sweep(graph, byOp, hits);
    if (!r.fired) break;
    graph = r.graph;
    any = true;
  }
  return { graph: any ? dce(graph) : g, hits };
}
