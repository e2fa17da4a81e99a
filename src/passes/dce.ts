import type { Graph } from '../ir/graph.js';
import { rebuild } from './rebuild.js';

/**
 * Dead-code elimination: drops every node no output depends on. Graph inputs and parameters stay even when
 * unused, so a graph's interface (what a caller feeds, what a checkpoint holds) does not change under a pass.
 */
export function dce(g: Graph): Graph {
  const live = new Array<boolean>(g.nodes.length).fill(false);
  for (const o of g.outputs) live[o.id] = true;
  for (let i = g.nodes.length - 1; i >= 0; i--) {
    const n = g.nodes[i];
    if (n.op === 'input' || n.op === 'param') live[i] = true;
    if (live[i]) for (const a of n.inputs) live[a] = true;
  }
  return live.every(Boolean) ? g : rebuild(g, live);
}
