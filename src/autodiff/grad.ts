/**
 * Reverse-mode automatic differentiation as an IR -> IR pass. The result is one joint graph: the forward
 * computation, then the backward one built from each op's gradient rule (declared beside the op in
 * src/ir/ops/), with outputs `grad:<param>` (and `grad:input:<name>`) next to the original outputs. The outputs carry
 * roles (`loss`, `grad` of a parameter, `input-grad`): later passes read those, the names are for people.
 */
import { KilnError } from '../errors.js';
import { GraphBuilder } from '../ir/builder.js';
import type { Graph, GraphOutput, Node } from '../ir/graph.js';
import type { AttrsOf } from '../ir/op.js';
import { OPS } from '../ir/registry.js';
import { fmtType, isFloat, sameShape } from '../ir/types.js';

export const GRAD_PREFIX = 'grad:';
export const INPUT_GRAD_PREFIX = 'grad:input:';

export interface GradOptions {
  /** Name of the scalar float output to differentiate. */
  loss: string;
  /** Parameters to differentiate with respect to; default: every float parameter. */
  wrt?: string[];
  /** Graph inputs to differentiate with respect to as well. */
  wrtInputs?: string[];
  /** Keep the original outputs in the joint graph (default true). */
  keepOutputs?: boolean;
  /**
   * A scalar parameter whose value seeds the backward instead of 1 (loss scaling): every gradient output is then
   * seed × the gradient. It is never differentiated itself.
   */
  seed?: string;
}

const leafName = (n: Node) => (n.attrs as AttrsOf<'param'>).name;

/** Builds the backward pass onto a copy of `g`; returns the joint graph before clean-up passes. */
export function buildJointGraph(g: Graph, opts: GradOptions): Graph {
  const lossOut = g.outputs.find((o) => o.name === opts.loss);
  if (!lossOut) throw new KilnError(`cannot differentiate ${g.name}: it has no output '${opts.loss}' (outputs: ${g.outputs.map((o) => o.name).join(', ')})`);
  const lossNode = g.nodes[lossOut.id];
  if (lossNode.type.shape.length !== 0 || !isFloat(lossNode.type.dtype)) {
    throw new KilnError(`cannot differentiate ${g.name}: output '${opts.loss}' must be a float scalar, it is ${fmtType(lossNode.type)}`);
  }
  const params = g.nodes.filter((n) => n.op === 'param');
  const wrtParams = opts.wrt
    ? opts.wrt.map((name) => {
        const p = params.find((n) => leafName(n) === name);
        if (!p) throw new KilnError(`cannot differentiate with respect to '${name}': ${g.name} has no such parameter`);
        if (!isFloat(p.type.dtype)) throw new KilnError(`cannot differentiate with respect to parameter '${name}': it is ${fmtType(p.type)}, not float`);
        return p;
      })
    : params.filter((n) => isFloat(n.type.dtype) && leafName(n) !== opts.seed);
  const wrtInputs = (opts.wrtInputs ?? []).map((name) => {
    const p = g.nodes.find((n) => n.op === 'input' && leafName(n) === name);
    if (!p) throw new KilnError(`cannot differentiate with respect to input '${name}': ${g.name} has no such input`);
    if (!isFloat(p.type.dtype)) throw new KilnError(`cannot differentiate with respect to input '${name}': it is ${fmtType(p.type)}, not float`);
    return p;
  });

  // Only values that depend on a differentiated leaf need a cotangent.
  const needs = new Array<boolean>(g.nodes.length).fill(false);
  for (const n of [...wrtParams, ...wrtInputs]) needs[n.id] = true;
  for (const n of g.nodes) {
    if (!needs[n.id] && isFloat(n.type.dtype) && n.inputs.some((i) => needs[i]) && OPS[n.op].grad !== 'zero') needs[n.id] = true;
  }

  const b = GraphBuilder.extend(g);
  const cot = new Map<number, number>();
  if (opts.seed !== undefined) {
    const s = params.find((n) => leafName(n) === opts.seed);
    if (!s || s.type.shape.length !== 0 || !isFloat(s.type.dtype)) throw new KilnError(`cannot seed the backward of ${g.name} with '${opts.seed}': no float scalar parameter of that name`);
    cot.set(lossNode.id, b.cast(s.id, lossNode.type.dtype));
  } else cot.set(lossNode.id, b.full(1, lossNode.type));
  for (let id = lossNode.id; id >= 0; id--) {
    const g0 = cot.get(id);
    const n = g.nodes[id];
    if (g0 === undefined || !needs[id] || n.inputs.length === 0) continue;
    const rule = OPS[n.op].grad;
    if (rule === 'integer' || rule === 'zero') continue;
    if (rule === 'nondiff') {
      throw new KilnError(
        `cannot differentiate through ${n.op} (%${n.id}${n.name ? ` '${n.name}'` : ''}${n.loc ? ` at ${n.loc.file}:${n.loc.line}:${n.loc.col}` : ''}): it has no gradient; wrap its operand in stop_gradient if that is intended`,
      );
    }
    b.loc = n.loc;
    b.scope = undefined;
    const grads = rule.vjp(b, n as never, g0);
    n.inputs.forEach((inp, k) => {
      const gi = grads[k];
      if (gi === null || gi === undefined || !needs[inp]) return;
      const want = g.nodes[inp].type;
      const got = b.type(gi);
      if (!sameShape(got.shape, want.shape)) {
        throw new Error(`gradient rule of ${n.op} gave ${fmtType(got)} for operand ${k} of type ${fmtType(want)} (a Kiln bug)`);
      }
      const gc = b.cast(gi, want.dtype);
      const prev = cot.get(inp);
      cot.set(inp, prev === undefined ? gc : b.add(prev, gc));
    });
  }
  b.loc = undefined;

  const asLoss = (o: GraphOutput): GraphOutput => (o.name === opts.loss ? { ...o, role: { kind: 'loss' } } : o);
  const outputs = opts.keepOutputs === false ? [asLoss(lossOut)] : g.outputs.map(asLoss);
  // Differentiating a joint graph again (composability) must not clash with its existing gradient outputs.
  const taken = new Set(outputs.map((o) => o.name));
  const unique = (name: string) => {
    while (taken.has(name)) name = GRAD_PREFIX + name;
    taken.add(name);
    return name;
  };
  for (const p of wrtParams) {
    outputs.push({ name: unique(GRAD_PREFIX + leafName(p)), id: cot.get(p.id) ?? b.full(0, p.type), role: { kind: 'grad', param: leafName(p) } });
  }
  for (const p of wrtInputs) {
    outputs.push({ name: unique(INPUT_GRAD_PREFIX + leafName(p)), id: cot.get(p.id) ?? b.full(0, p.type), role: { kind: 'input-grad', input: leafName(p) } });
  }
  return b.build(g.name, outputs);
}
