import type { Graph, Node } from '../ir/graph.js';
import type { AttrsOf } from '../ir/op.js';
import { sameType } from '../ir/types.js';
import { dce } from './dce.js';

/**
 * Local algebraic clean-ups that gradient rules and the frontend leave behind: reshape of reshape, transpose of
 * transpose (composed; dropped when the identity), no-op reshape / broadcast / transpose / slice / cast / concat,
 * broadcast of broadcast, x*1, 1*x, x/1, x+0, 0+x, x-0, neg(neg x), stop_gradient(stop_gradient x), select(c, x, x).
 * A fold only applies when the surviving value already has the node's exact type (never when the constant
 * broadcasts x). Folding x+0 to x maps -0 to itself where IEEE gives +0: harmless for training, and the reason
 * this is not applied to anything that could change a non-zero value. Nodes a fold orphans are removed by DCE.
 */
export function canonicalize(g: Graph): Graph {
  const alias = new Array<number>(g.nodes.length);
  const nodes: Node[] = [];
  let changed = false;
  for (const n of g.nodes) {
    const m: Node = { ...n, inputs: n.inputs.map((i) => alias[i]) };
    // A rewrite (e.g. reshape of reshape to one reshape) can enable another fold of the same node.
    let r: Node | number = m;
    for (let prev: Node | undefined; typeof r !== 'number' && r !== prev; ) {
      prev = r;
      r = simplify(r, nodes);
    }
    if (typeof r === 'number') {
      alias[n.id] = r;
      nodes.push(m);
      changed = true;
    } else {
      alias[n.id] = n.id;
      if (r !== m) changed = true;
      nodes.push(r);
    }
  }
  if (!changed) return g;
  return dce({ name: g.name, nodes, outputs: g.outputs.map((o) => ({ name: o.name, id: alias[o.id] })) });
}

const isFill = (n: Node, v: number) => n.op === 'constant' && (n.attrs as AttrsOf<'constant'>).values.every((x) => x === v);

/** Returns an existing id the node equals, a rewritten node, or the node itself. */
function simplify(n: Node, nodes: Node[]): Node | number {
  const arg = (k: number) => nodes[n.inputs[k]];
  const sameAs = (k: number) => sameType(arg(k).type, n.type);
  switch (n.op) {
    case 'reshape': {
      if (sameAs(0)) return n.inputs[0];
      if (arg(0).op === 'reshape') return { ...n, inputs: [arg(0).inputs[0]] };
      return n;
    }
    case 'transpose': {
      const perm = (n.attrs as AttrsOf<'transpose'>).perm;
      const x = arg(0);
      if (x.op === 'transpose') {
        const inner = (x.attrs as AttrsOf<'transpose'>).perm;
        const q = perm.map((p) => inner[p]);
        if (q.every((p, i) => p === i)) return x.inputs[0];
        return { ...n, inputs: [x.inputs[0]], attrs: { perm: q } };
      }
      return perm.every((p, i) => p === i) ? n.inputs[0] : n;
    }
    case 'broadcast':
      if (sameAs(0)) return n.inputs[0];
      if (arg(0).op === 'broadcast') return { ...n, inputs: [arg(0).inputs[0]] };
      return n;
    case 'slice':
    case 'cast':
      return sameAs(0) ? n.inputs[0] : n;
    case 'concat':
      return n.inputs.length === 1 ? n.inputs[0] : n;
    case 'neg':
      return arg(0).op === 'neg' ? arg(0).inputs[0] : n;
    case 'stop_gradient':
      return arg(0).op === 'stop_gradient' ? n.inputs[0] : n;
    case 'select':
      return n.inputs[1] === n.inputs[2] && sameAs(1) ? n.inputs[1] : n;
    case 'mul':
      if (isFill(arg(1), 1) && sameAs(0)) return n.inputs[0];
      if (isFill(arg(0), 1) && sameAs(1)) return n.inputs[1];
      return n;
    case 'add':
      if (isFill(arg(1), 0) && sameAs(0)) return n.inputs[0];
      if (isFill(arg(0), 0) && sameAs(1)) return n.inputs[1];
      return n;
    case 'sub':
      return isFill(arg(1), 0) && sameAs(0) ? n.inputs[0] : n;
    case 'div':
      return isFill(arg(1), 1) && sameAs(0) ? n.inputs[0] : n;
    default:
      return n;
  }
}

