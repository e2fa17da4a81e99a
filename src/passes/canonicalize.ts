import type { Graph, Node } from '../ir/graph.js';
import type { AttrsOf } from '../ir/op.js';
import { sameType } from '../ir/types.js';
import type { RewriteRule, RewriteSite } from './rewrite.js';
import { rewrite } from './rewrite.js';

/**
 * Local algebraic clean-ups that gradient rules and the frontend leave behind, as rewrite rules. A fold only
 * applies when the surviving value already has the node's exact type (never when the constant broadcasts x).
 * Folding x+0 to x maps -0 to itself where IEEE gives +0: harmless for training, and the reason no rule here
 * may change a non-zero value.
 */
const isFill = (n: Node, v: number) => n.op === 'constant' && (n.attrs as AttrsOf<'constant'>).values.every((x) => x === v);
const sameAs = (s: RewriteSite, k: number) => sameType(s.arg(k).type, s.node.type);
/** Operand k when it has the node's type (the node is a no-op), else null. */
const operandIfSame = (s: RewriteSite, k: number) => (sameAs(s, k) ? s.node.inputs[k] : null);

export const CANONICALIZE_RULES: readonly RewriteRule[] = [
  { name: 'reshape-noop', ops: ['reshape'], rewrite: (s) => operandIfSame(s, 0) },
  {
    name: 'reshape-of-reshape',
    ops: ['reshape'],
    rewrite: (s) => (s.arg(0).op === 'reshape' ? s.b.op('reshape', [s.arg(0).inputs[0]], s.node.attrs as AttrsOf<'reshape'>) : null),
  },
  {
    name: 'transpose-identity',
    ops: ['transpose'],
    rewrite: (s) => ((s.node.attrs as AttrsOf<'transpose'>).perm.every((p, i) => p === i) ? s.node.inputs[0] : null),
  },
  {
    name: 'transpose-of-transpose',
    ops: ['transpose'],
    rewrite: (s) => {
      const x = s.arg(0);
      if (x.op !== 'transpose') return null;
      const inner = (x.attrs as AttrsOf<'transpose'>).perm;
      const perm = (s.node.attrs as AttrsOf<'transpose'>).perm.map((p) => inner[p]);
      return perm.every((p, i) => p === i) ? x.inputs[0] : s.b.op('transpose', [x.inputs[0]], { perm });
    },
  },
  { name: 'broadcast-noop', ops: ['broadcast'], rewrite: (s) => operandIfSame(s, 0) },
  {
    name: 'broadcast-of-broadcast',
    ops: ['broadcast'],
    rewrite: (s) => (s.arg(0).op === 'broadcast' ? s.b.op('broadcast', [s.arg(0).inputs[0]], s.node.attrs as AttrsOf<'broadcast'>) : null),
  },
  { name: 'slice-noop', ops: ['slice'], rewrite: (s) => operandIfSame(s, 0) },
  { name: 'cast-noop', ops: ['cast'], rewrite: (s) => operandIfSame(s, 0) },
  { name: 'concat-single', ops: ['concat'], rewrite: (s) => (s.node.inputs.length === 1 ? s.node.inputs[0] : null) },
  { name: 'neg-neg', ops: ['neg'], rewrite: (s) => (s.arg(0).op === 'neg' ? s.arg(0).inputs[0] : null) },
  { name: 'stop-gradient-twice', ops: ['stop_gradient'], rewrite: (s) => (s.arg(0).op === 'stop_gradient' ? s.node.inputs[0] : null) },
  { name: 'select-same', ops: ['select'], rewrite: (s) => (s.node.inputs[1] === s.node.inputs[2] ? operandIfSame(s, 1) : null) },
  { name: 'mul-one', ops: ['mul'], rewrite: (s) => (isFill(s.arg(1), 1) ? operandIfSame(s, 0) : isFill(s.arg(0), 1) ? operandIfSame(s, 1) : null) },
  { name: 'add-zero', ops: ['add'], rewrite: (s) => (isFill(s.arg(1), 0) ? operandIfSame(s, 0) : isFill(s.arg(0), 0) ? operandIfSame(s, 1) : null) },
  { name: 'sub-zero', ops: ['sub'], rewrite: (s) => (isFill(s.arg(1), 0) ? operandIfSame(s, 0) : null) },
  { name: 'div-one', ops: ['div'], rewrite: (s) => (isFill(s.arg(1), 1) ? operandIfSame(s, 0) : null) },
];

/** Applies the canonicalization rules (less those named in `disable`) to a fixed point. */
export function canonicalize(g: Graph, disable: readonly string[] = []): Graph {
  return rewrite(g, disable.length ? CANONICALIZE_RULES.filter((r) => !disable.includes(r.name)) : CANONICALIZE_RULES).graph;
}
