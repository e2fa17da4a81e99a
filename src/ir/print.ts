/** The IR's text form (for `--emit ir` and pass dumps) and its JSON form, which round-trips exactly. */
import type { Graph, Node } from './graph.js';
import type { ParamInit } from './op.js';
import { fmtType } from './types.js';

function fmtInit(init: ParamInit): string {
  const { kind, ...rest } = init as { kind: string } & Record<string, number>;
  const args = Object.entries(rest).map(([k, v]) => `${k}=${v}`);
  return `${kind}(${args.join(', ')})`;
}

function fmtAttrValue(v: unknown): string {
  if (Array.isArray(v)) return v.length > 8 ? `[${v.slice(0, 8).join(', ')}, ... ${v.length} values]` : `[${v.join(', ')}]`;
  if (typeof v === 'string') return JSON.stringify(v);
  return String(v);
}

export function printNode(n: Node): string {
  const args = n.inputs.map((i) => `%${i}`).join(', ');
  let attrs: string;
  if (n.op === 'input') attrs = JSON.stringify((n.attrs as { name: string }).name);
  else if (n.op === 'param') {
    const a = n.attrs as { name: string; init: ParamInit };
    attrs = `${JSON.stringify(a.name)} init=${fmtInit(a.init)}`;
  } else {
    attrs = Object.entries(n.attrs as Record<string, unknown>)
      .filter(([k]) => !(n.op === 'constant' && (k === 'dtype' || k === 'shape')) && !(n.op === 'iota' && (k === 'dtype' || k === 'shape')))
      .map(([k, v]) => `${k}=${fmtAttrValue(v)}`)
      .join(' ');
  }
  const parts = [n.op, args, attrs].filter((s) => s.length > 0);
  let line = `  %${n.id}: ${fmtType(n.type)} = ${parts.join(' ')}`;
  const notes: string[] = [];
  if (n.name) notes.push(n.name);
  if (n.scope) notes.push(`${n.scope.kind}#${n.scope.id}`);
  if (n.rule) notes.push(`rule=${n.rule}`);
  if (n.loc) notes.push(`${n.loc.file.split('/').pop()}:${n.loc.line}:${n.loc.col}`);
  if (notes.length) line += `  # ${notes.join(' ')}`;
  return line;
}

export function printGraph(g: Graph): string {
  const lines = [`graph ${g.name} {`, ...g.nodes.map(printNode)];
  lines.push(`  return ${g.outputs.map((o) => `${o.name}=%${o.id}`).join(', ')}`, '}');
  return lines.join('\n');
}

export function graphToJSON(g: Graph): string {
  return JSON.stringify({ format: 'kiln-ir', version: 1, ...g });
}

export function graphFromJSON(text: string): Graph {
  const o = JSON.parse(text) as { format?: string; version?: number } & Graph;
  if (o.format !== 'kiln-ir' || o.version !== 1) throw new Error('not a kiln-ir v1 JSON document');
  return { name: o.name, nodes: o.nodes, outputs: o.outputs };
}
