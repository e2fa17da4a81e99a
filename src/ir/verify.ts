/**
 * The IR verifier, run by the pass manager after every pass: ids are dense and topological, every node's
 * stored type is what its op's shape rule infers from its operands, outputs exist, names are unique.
 */
import { IRError, KilnError } from '../errors.js';
import type { Graph } from './graph.js';
import { OPS } from './registry.js';
import { fmtType, sameType } from './types.js';

export function verify(g: Graph): void {
  const where = (id: number) => `graph ${g.name}, %${id}`;
  const names = new Map<string, number>();
  g.nodes.forEach((n, i) => {
    if (n.id !== i) throw new IRError(`${where(i)}: node id ${n.id} at position ${i}`);
    const rule = OPS[n.op];
    if (!rule) throw new IRError(`${where(i)}: unknown op '${n.op}'`);
    if (rule.arity !== 'variadic' && n.inputs.length !== rule.arity) {
      throw new IRError(`${where(i)}: ${n.op} has ${n.inputs.length} operands, expects ${rule.arity}`);
    }
    for (const a of n.inputs) {
      if (!(Number.isInteger(a) && a >= 0 && a < i)) throw new IRError(`${where(i)}: operand %${a} is not defined before use`);
    }
    let inferred;
    try {
      inferred = rule.infer(
        n.inputs.map((a) => g.nodes[a].type),
        n.attrs as never,
      );
    } catch (e) {
      if (e instanceof KilnError) throw new IRError(`${where(i)}: ${e.message}`);
      throw e;
    }
    if (!sameType(inferred, n.type)) {
      throw new IRError(`${where(i)}: ${n.op} is typed ${fmtType(n.type)} but its operands give ${fmtType(inferred)}`);
    }
    if (n.op === 'input' || n.op === 'param') {
      const name = (n.attrs as { name: string }).name;
      const prev = names.get(`${n.op}:${name}`);
      if (prev !== undefined) throw new IRError(`${where(i)}: ${n.op} '${name}' is also defined at %${prev}`);
      names.set(`${n.op}:${name}`, i);
    }
  });
  const outNames = new Set<string>();
  for (const o of g.outputs) {
    if (!(o.id >= 0 && o.id < g.nodes.length)) throw new IRError(`graph ${g.name}: output '${o.name}' refers to missing %${o.id}`);
    if (outNames.has(o.name)) throw new IRError(`graph ${g.name}: output '${o.name}' appears twice`);
    outNames.add(o.name);
    const target = o.role?.kind === 'update' || o.role?.kind === 'grad' ? o.role.param : undefined;
    if (target !== undefined) {
      const p = names.get(`param:${target}`);
      if (p === undefined) throw new IRError(`graph ${g.name}: output '${o.name}' is the ${o.role!.kind} of parameter '${target}', which the graph does not have`);
      if (!sameType(g.nodes[p].type, g.nodes[o.id].type)) {
        throw new IRError(`graph ${g.name}: output '${o.name}' is ${fmtType(g.nodes[o.id].type)} but parameter '${target}' is ${fmtType(g.nodes[p].type)}`);
      }
    }
  }
}
