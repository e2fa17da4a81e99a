import type { Graph, Node } from '../ir/graph.js';

/**
 * Rebuilds a graph from a subset of its nodes with operands redirected through `remap` (old id -> kept old id),
 * renumbering densely. Shared by the passes that drop or merge nodes.
 */
export function rebuild(g: Graph, keep: boolean[], remap: (id: number) => number = (i) => i): Graph {
  const newId = new Array<number>(g.nodes.length).fill(-1);
  const nodes: Node[] = [];
  for (const n of g.nodes) {
    if (!keep[n.id]) continue;
    newId[n.id] = nodes.length;
    nodes.push({ ...n, id: nodes.length, inputs: n.inputs.map((i) => newId[remap(i)]) });
  }
  return { name: g.name, nodes, outputs: g.outputs.map((o) => ({ ...o, id: newId[remap(o.id)] })) };
}
