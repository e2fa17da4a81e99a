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
  /** The rewrite rule that made this node (shown in IR dumps). */
  rule?: string;
  /** Set on a forward node the recompute pass cloned into the backward (1): CSE must not merge it with the original. */
  recompute?: number;
}

/**
 * What a graph output is for. Passes, the scheduler, the runtime and the optimizers read roles, never names:
 *   - `output`: a value the caller reads (the default when `role` is absent);
 *   - `loss`: the scalar a training step minimises (read back every step);
 *   - `metric`: a scalar the caller reads beside the loss (the gradient norm...);
 *   - `grad`: the gradient of parameter `param` (or of graph input `input`);
 *   - `update`: the value parameter `param` takes after the run (an optimizer step, an accumulator): the runtime
 *     writes it into the parameter's buffer and does not download it unless asked.
 */
export type OutputRole =
  | { kind: 'output' }
  | { kind: 'loss' }
  | { kind: 'metric' }
  | { kind: 'grad'; param: string }
  | { kind: 'input-grad'; input: string }
  | { kind: 'update'; param: string };

export interface GraphOutput {
  name: string;
  id: number;
  /** Absent means `{ kind: 'output' }`. */
  role?: OutputRole;
}

/** The name given to an `update` output of parameter p (a name only: code reads the role). */
export const UPDATE_PREFIX = 'update:';

export const roleOf = (o: GraphOutput): OutputRole => o.role ?? { kind: 'output' };

/** The parameter an output updates, if it is an `update` output. */
export function updatedParam(o: GraphOutput): string | undefined {
  return o.role?.kind === 'update' ? o.role.param : undefined;
}

/** The parameter whose gradient an output is, if it is a `grad` output. */
export function gradParam(o: GraphOutput): string | undefined {
  return o.role?.kind === 'grad' ? o.role.param : undefined;
}

/** The `update` outputs of a graph, by parameter name. */
export function updateOutputs(g: Graph): { param: string; output: GraphOutput }[] {
  return g.outputs.flatMap((o) => (o.role?.kind === 'update' ? [{ param: o.role.param, output: o }] : []));
}

/** Outputs a caller reads by default: everything but `update` outputs. */
export const isReadBack = (o: GraphOutput): boolean => o.role?.kind !== 'update';

/** An `update` output for parameter `param`, named as users see it. */
export const updateOutput = (param: string, id: number): GraphOutput => ({ name: UPDATE_PREFIX + param, id, role: { kind: 'update', param } });

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
