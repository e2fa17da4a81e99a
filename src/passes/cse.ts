import type { Graph } from '../ir/graph.js';
import { rebuild } from './rebuild.js';

/**
 * Common-subexpression elimination: two nodes with the same op, operands and attributes are one value.
 * Inputs and parameters are never merged (they are distinct by name anyway). Dropout with the same seed, stream
 * and operand is the same mask, so it merges too.
 */
export function cse(g: Graph): Graph {
  const canon = new Array<number>(g.nodes.length);
  const seen = new Map<string, number>();
  let merged = false;
  for (const n of g.nodes) {
    canon[n.id] = n.id;
    if (n.op === 'input' || n.op === 'param') continue;
    const key = `${n.op}|${n.inputs.map((i) => canon[i]).join(',')}|${JSON.stringify(n.attrs)}|${n.type.dtype}[${n.type.shape.join(',')}]`;
    const prev = seen.get(key);
    if (prev === undefined) seen.set(key, n.id);
    else {
      canon[n.id] = prev;
      merged = true;
    }
  }
  if (!merged) return g;
  const keep = g.nodes.map((n) => canon[n.id] === n.id);
  return rebuild(g, keep, (i) => canon[i]);
}
