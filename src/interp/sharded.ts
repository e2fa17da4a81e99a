/**
 * The reference semantics of a multi-device program: one graph per simulated device, run op by op with the
 * reference interpreter's rules, in lockstep at collectives. Every device runs until its next collective; when all
 * have reached one (the k-th collective of every program meets the k-th of the others, which must agree on op,
 * attributes and type) the values are combined on the host (`combineCollective`: sums in device order 0..N-1)
 * and every device continues. This is the oracle for the sharding pass and the multi-device runtime.
 */
import { KilnError } from '../errors.js';
import type { Graph, Node } from '../ir/graph.js';
import { combineCollective, isCollective } from '../ir/ops/collective.js';
import { OPS } from '../ir/registry.js';
import type { HostTensor } from '../ir/tensor.js';
import { roundHalfInPlace, withFloat64 } from '../ir/tensor.js';
import { fmtType, isHalf } from '../ir/types.js';
import { leafContext, type RunOptions } from './interpreter.js';

export interface ShardedRunOptions {
  /** Per device: its inputs, parameters, seed. */
  feeds: Omit<RunOptions, 'float64' | 'onNode'>[];
  float64?: boolean;
}

/** Runs `programs[d]` on simulated device d; returns each device's outputs by name. */
export function interpretSharded(programs: Graph[], opts: ShardedRunOptions): Record<string, HostTensor>[] {
  return opts.float64 ? withFloat64(() => run(programs, opts)) : run(programs, opts);
}

const describeColl = (n: Node) => `${n.op} ${JSON.stringify(n.attrs)} of ${fmtType(n.type)}`;

function run(programs: Graph[], opts: ShardedRunOptions): Record<string, HostTensor>[] {
  const N = programs.length;
  if (opts.feeds.length !== N) throw new KilnError(`${N} programs but ${opts.feeds.length} feeds`);
  const ctxs = opts.feeds.map((f) => leafContext(f));
  const values = programs.map((g) => new Array<HostTensor>(g.nodes.length));
  const pc = new Array<number>(N).fill(0);
  const evalNode = (d: number, n: Node) => {
    let v = OPS[n.op].evaluate(n.inputs.map((i) => values[d][i]), n.attrs as never, n.type, ctxs[d]);
    if (isHalf(n.type.dtype) && (n.op === 'input' || n.op === 'param')) {
      const copy = v.data.slice() as Float32Array;
      roundHalfInPlace(n.type.dtype, copy);
      v = { ...v, data: copy };
    }
    values[d][n.id] = v;
  };
  for (let meeting = 0; ; meeting++) {
    // every device runs to its next collective (or its end)
    for (let d = 0; d < N; d++) {
      const g = programs[d];
      while (pc[d] < g.nodes.length && !isCollective(g.nodes[pc[d]].op)) evalNode(d, g.nodes[pc[d]++]);
    }
    const at = programs.map((g, d) => (pc[d] < g.nodes.length ? g.nodes[pc[d]] : null));
    if (at.every((n) => n === null)) break;
    const first = at.find((n) => n !== null)!;
    at.forEach((n, d) => {
      if (!n || describeColl(n) !== describeColl(first)) {
        throw new KilnError(`collective #${meeting + 1}: device ${d} is at ${n ? describeColl(n) : 'the end of its program'}, another device at ${describeColl(first)}`);
      }
    });
    const size = (first.attrs as { size: number }).size;
    if (size !== N) throw new KilnError(`${first.op} over ${size} devices in a run of ${N} programs (groups must span every device)`);
    const out = combineCollective(first.op as never, first.attrs as never, at.map((n, d) => values[d][n!.inputs[0]]));
    at.forEach((n, d) => {
      values[d][n!.id] = out[d];
      pc[d]++;
    });
  }
  return programs.map((g, d) => Object.fromEntries(g.outputs.map((o) => [o.name, values[d][o.id]])));
}
