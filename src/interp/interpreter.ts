/**
 * The reference interpreter: runs any IR graph on the CPU, op by op, with each op's `evaluate`.
 * It is the oracle every kernel and pass is tested against, so it does nothing clever.
 */
import { KilnError } from '../errors.js';
import type { Graph } from '../ir/graph.js';
import { initParam } from '../ir/init.js';
import type { EvalContext, ParamInit } from '../ir/op.js';
import { OPS } from '../ir/registry.js';
import type { HostTensor } from '../ir/tensor.js';
import { roundHalfInPlace, withFloat64 } from '../ir/tensor.js';
import type { TensorType } from '../ir/types.js';
import { fmtType, isHalf, sameShape } from '../ir/types.js';

export interface RunOptions {
  /** Values of graph inputs by name. */
  inputs?: Record<string, HostTensor>;
  /** Values of parameters by name; missing ones are initialised from their initialiser with `seed`. */
  params?: Record<string, HostTensor>;
  seed?: number;
  /** Called after each node (tests use it to inspect intermediates). */
  onNode?: (id: number, value: HostTensor) => void;
  /** Compute f32 values in double precision (gradient checking). */
  float64?: boolean;
}

function checkFeed(kind: string, name: string, want: TensorType, got: HostTensor): HostTensor {
  if (got.dtype !== want.dtype || !sameShape(got.shape, want.shape)) {
    throw new KilnError(`${kind} '${name}' expects ${fmtType(want)}, got ${fmtType(got)}`);
  }
  return got;
}

export function interpret(g: Graph, opts: RunOptions = {}): Record<string, HostTensor> {
  return opts.float64 ? withFloat64(() => run(g, opts)) : run(g, opts);
}

/** How leaves read their values: fed inputs, fed parameters or their initialisers (also the sharded interpreter's). */
export function leafContext(opts: RunOptions): EvalContext {
  const seed = opts.seed ?? 0;
  return {
    input(name, type) {
      const v = opts.inputs?.[name];
      if (!v) throw new KilnError(`missing input '${name}' (${fmtType(type)})`);
      return checkFeed('input', name, type, v);
    },
    param(name: string, type: TensorType, init: ParamInit) {
      const v = opts.params?.[name];
      return v ? checkFeed('parameter', name, type, v) : initParam(init, type, name, seed);
    },
  };
}

function run(g: Graph, opts: RunOptions): Record<string, HostTensor> {
  const ctx = leafContext(opts);
  const values: HostTensor[] = new Array(g.nodes.length);
  // Free each value after its last use so large graphs fit in memory.
  const lastUse = new Array<number>(g.nodes.length).fill(-1);
  g.nodes.forEach((n) => n.inputs.forEach((i) => (lastUse[i] = n.id)));
  const keep = new Set(g.outputs.map((o) => o.id));
  for (const n of g.nodes) {
    const rule = OPS[n.op];
    const args = n.inputs.map((i) => values[i]);
    let v = rule.evaluate(args, n.attrs as never, n.type, ctx);
    if (isHalf(n.type.dtype) && v.dtype === n.type.dtype && (n.op === 'input' || n.op === 'param')) {
      const copy = v.data.slice() as Float32Array;
      roundHalfInPlace(n.type.dtype, copy);
      v = { ...v, data: copy };
    }
    values[n.id] = v;
    opts.onNode?.(n.id, v);
    for (const i of n.inputs) if (lastUse[i] === n.id && !keep.has(i)) values[i] = undefined as never;
  }
  const out: Record<string, HostTensor> = {};
  for (const o of g.outputs) out[o.name] = values[o.id];
  return out;
}
