/**
 * In-place updates. An `update` output is the parameter's next value; the runtime must make it the
 * parameter's value after the run. Writing it straight into the parameter's buffer saves a buffer and a copy per
 * updated tensor (every weight and every optimizer moment), when that is safe:
 *   - the update's kernel is elementwise and every value it computes from the parameter reads it element for
 *     element (same shape all the way to the root, elementwise ops only), so each invocation reads the old
 *     value of exactly the element it overwrites;
 *   - no later kernel reads the parameter (it would see the new value), and the parameter is not itself an output.
 * The kernel then reads the parameter through its own output binding (WebGPU forbids binding one buffer twice
 * when one binding is writable).
 */
import { updateOutputs } from '../ir/graph.js';
import type { AttrsOf } from '../ir/op.js';
import { OPS } from '../ir/registry.js';
import { sameShape, sameType } from '../ir/types.js';
import type { Kernel, Schedule } from './schedule.js';

/** Returns the schedule with `inPlace` set on every update kernel that may write over its parameter. */
export function markInPlaceUpdates(s: Schedule): Schedule {
  const g = s.graph;
  const outputs = new Set(g.outputs.map((o) => o.id));
  const params = new Map<string, number>();
  for (const n of g.nodes) if (n.op === 'param' && s.storage[n.id] === 'leaf') params.set((n.attrs as AttrsOf<'param'>).name, n.id);
  const lastReader = new Map<number, number>();
  for (const k of s.kernels) for (const q of k.inputs) lastReader.set(q, k.id);

  const marked = new Map<number, number>();
  const taken = new Set<number>();
  for (const { param, output: o } of updateOutputs(g)) {
    const p = params.get(param);
    const ki = s.producer[o.id];
    if (p === undefined || ki < 0 || outputs.has(p) || taken.has(p)) continue;
    const k = s.kernels[ki];
    if (k.kind !== 'elementwise' || k.root !== o.id || marked.has(k.id) || !sameType(g.nodes[p].type, g.nodes[o.id].type)) continue;
    if ((lastReader.get(p) ?? -1) > k.id || !readsElementwise(s, k, p)) continue;
    marked.set(k.id, p);
    taken.add(p);
  }
  if (marked.size === 0) return s;
  return { ...s, kernels: s.kernels.map((k) => (marked.has(k.id) ? { ...k, inPlace: marked.get(k.id)! } : k)) };
}

/** Whether every node of `k` that depends on `p` is an elementwise op of the root's shape. */
function readsElementwise(s: Schedule, k: Kernel, p: number): boolean {
  const g = s.graph;
  const shape = g.nodes[k.root].type.shape;
  const depends = new Set<number>([p]);
  for (const id of k.nodes) {
    const n = g.nodes[id];
    if (!n.inputs.some((q) => depends.has(q))) continue;
    if (OPS[n.op].lower.kernel !== 'elementwise' || !sameShape(n.type.shape, shape)) return false;
    depends.add(id);
  }
  return true;
}
