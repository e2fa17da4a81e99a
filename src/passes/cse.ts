import type { Graph, Node } from '../ir/graph.js';
import { rebuild } from './rebuild.js';

/**
 * A key for attribute values that tells apart what JSON.stringify conflates: Infinity, -Infinity and NaN (all
 * `null` in JSON) and -0 (`0`), so constants such as +inf and -inf masks never merge. Object keys are sorted so
 * attribute order does not matter.
 */
function attrKey(v: unknown): string {
  if (typeof v === 'number') return Object.is(v, -0) ? '-0' : String(v);
  if (Array.isArray(v)) return `[${v.map(attrKey).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const o = v as Record<string, unknown>;
    return `{${Object.keys(o)
      .sort()
      .map((k) => `${k}:${attrKey(o[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(v) ?? 'undefined';
}

/** The identity of a node's value: op, canonical operands, attributes and result type. */
export function valueKey(n: Node, operand: (id: number) => number = (i) => i): string {
  return `${n.op}|${n.inputs.map(operand).join(',')}|${attrKey(n.attrs)}|${n.type.dtype}[${n.type.shape.join(',')}]${n.recompute ? `|recompute${n.recompute}` : ''}`;
}

/**
 * Common-subexpression elimination: two nodes with the same op, operands and attributes are one value (the first
 * keeps its name and scope). Constants with equal values merge. Inputs and parameters are never merged (they are
 * distinct by name anyway). Dropout with the same seed operand, stream, p and input draws the same mask, so it
 * is the same value and merges too: that is what lets the backward's dropout share the forward's mask.
 */
export function cse(g: Graph): Graph {
  const canon = new Array<number>(g.nodes.length);
  const seen = new Map<string, number>();
  let merged = false;
  for (const n of g.nodes) {
    canon[n.id] = n.id;
    if (n.op === 'input' || n.op === 'param') continue;
    const key = valueKey(n, (i) => canon[i]);
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
