/**
 * How the scheduler sees each op. "Pointwise" ops can compute any one element of their result from a flat
 * index alone (elementwise math, layout remaps, gather, one_hot, dropout, iota, constants), so they inline
 * into whatever kernel consumes them. "Anchor" ops (reductions, matmul, row-wise primitives, scatter) own a
 * kernel: they need loops, workgroup cooperation or several passes.
 */
import type { Node } from '../ir/graph.js';
import type { OpKind } from '../ir/op.js';
import { OPS } from '../ir/registry.js';

export type AnchorKind = 'reduce' | 'matmul' | 'rowwise' | 'scatter' | 'attention';

export function anchorKind(op: OpKind): AnchorKind | null {
  const k = OPS[op].lower.kernel;
  return k === 'reduce' || k === 'matmul' || k === 'rowwise' || k === 'scatter' || k === 'attention' ? k : null;
}

export const isLeafBuffer = (n: Node): boolean => n.op === 'input' || n.op === 'param';

/** A constant with one value per element is uploaded as a buffer; a splat constant inlines as a literal. */
export const isConstBuffer = (n: Node): boolean =>
  n.op === 'constant' && (n.attrs as { values: number[] }).values.length > 1;

/** Ops whose value costs nothing to recompute beyond index arithmetic (and the loads underneath). */
export function isFree(op: OpKind): boolean {
  const k = OPS[op].lower.kernel;
  return k === 'layout' || k === 'leaf' || op === 'stop_gradient';
}

const EXPENSIVE = new Set<OpKind>(['exp', 'log', 'tanh', 'sigmoid', 'gelu', 'silu', 'erf', 'pow', 'sin', 'cos', 'sqrt', 'rsqrt']);

/** Rough arithmetic cost of one element of this op on its own (inputs excluded). */
export function ownCost(op: OpKind): number {
  if (isFree(op)) return 0;
  if (op === 'dropout') return 8;
  if (op === 'gather' || op === 'one_hot') return 1;
  return EXPENSIVE.has(op) ? 2 : 1;
}
