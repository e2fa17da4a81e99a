import type { SourceLoc } from '../errors.js';
import type { AttrsOf, OpKind } from './op.js';
import type { TensorType } from './types.js';

/** Marks nodes that came from one call of a composite (attention, mlp...), so passes can recognise them. */
export interface Scope {
  kind: string;
  id: number;
}

/**
 * One SSA value and the op that defines it. Every op has exactly one result; inputs and parameters
 * are leaf nodes (op 'input' / 'param'). Invariant: nodes[i].id === i and inputs refer to earlier nodes.
 */
export interface Node<K extends OpKind = OpKind> {
  id: number;
  op: K;
  inputs: number[];
  attrs: AttrsOf<K>;
  type: TensorType;
  /** The let-binding or parameter path it came from, for dumps and error messages. */
  name?: string;
  scope?: Scope;
  loc?: SourceLoc;
}

export interface GraphOutput {
  name: string;
  id: number;
}

/** An output named `update:<param>` is that parameter's value after the run (an optimizer step, an accumulator). */
export const UPDATE_PREFIX = 'update:';

export interface Graph {
  name: string;
  nodes: Node[];
  outputs: GraphOutput[];
}

export function inputsOf(g: Graph): Node<'input'>[] {
  return g.nodes.filter((n): n is Node<'input'> => n.op === 'input');
}

export function paramsOf(g: Graph): Node<'param'>[] {
  return g.nodes.filter((n): n is Node<'param'> => n.op === 'param');
}

export function outputId(g: Graph, name: string): number {
  const o = g.outputs.find((x) => x.name === name);
  if (!o) throw new Error(`graph ${g.name} has no output '${name}' (has ${g.outputs.map((x) => x.name).join(', ')})`);
  return o.id;
}

/** Number of uses of each node (by other nodes and by graph outputs). */
export function useCounts(g: Graph): number[] {
  const uses = new Array<number>(g.nodes.length).fill(0);
  for (const n of g.nodes) for (const i of n.inputs) uses[i]++;
  for (const o of g.outputs) uses[o.id]++;
  return uses;
}
