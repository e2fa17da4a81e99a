/**
 * Compile-time half of `kiln export`: runs the same schedule -> memory plan -> WGSL pipeline as compileGraph, but
 * instead of creating GPU objects writes down what compileGraph would create (buffers, their roles and sizes,
 * each pass's shader, bindings and dispatch) as a ModulePlan entry the dependency-free runtime replays.
 *
 * Codegen is fixed at export time, not per device: subgroups off and at most WebGPU's default 8 storage buffers per
 * kernel, so the module runs on any WebGPU device; the kernel strategy (`workgroup` for GPUs, `thread` for CPU
 * adapters such as lavapipe) is an export option.
 */
import { KilnError } from '../errors.js';
import { isReadBack, updateOutputs, type Graph, type Node } from '../ir/graph.js';
import type { AttrsOf } from '../ir/op.js';
import { allocData, roundF16InPlace } from '../ir/tensor.js';
import { fmtType, numel, sameType } from '../ir/types.js';
import type { KernelStrategy } from '../codegen/wgsl/index.js';
import { deviceBytes } from '../schedule/memory.js';
import { GENERIC_TARGET, runPipeline, type Target } from '../passes/index.js';
import type { BufferSpec, EntryPlan, PassSpec, TensorSpec } from './runtime/format.js';

/** WebGPU's default limits: what an exported plan may assume of any device. */
export const PORTABLE_LIMITS = { maxStorageBuffersPerShaderStage: 8, maxStorageBufferBindingSize: 134217728, maxBufferSize: 268435456 };

export interface PlanOptions {
  strategy?: KernelStrategy;
}

/** The portable target an export compiles for: any WebGPU device's guaranteed limits, no subgroups. */
export const exportTarget = (strategy: KernelStrategy = 'workgroup'): Target => ({ ...GENERIC_TARGET, deviceKey: 'export', strategy, subgroups: false, ...PORTABLE_LIMITS });

/** WGSL without comments, indentation or blank lines (WGSL has no string literals, so `//` always starts a comment). */
export const compactWgsl = (src: string) =>
  src
    .split('\n')
    .map((l) => l.replace(/\/\/.*$/, '').trim())
    .filter(Boolean)
    .join('\n');

const spec = (name: string, n: Node): TensorSpec => ({ name, dtype: n.type.dtype, shape: [...n.type.shape] });

/** Plans one graph; shaders are interned into `shaders` (shared by every entry of a module). */
export function planEntry(g: Graph, shaders: string[], opts: PlanOptions = {}): { entry: EntryPlan; params: TensorSpec[]; features: string[] } {
  // the pipeline's kernel-level stages for the portable target
  const st = runPipeline(g, { levels: ['kernels'], target: exportTarget(opts.strategy) });
  const s = st.schedule!;
  const plan = st.plan!;
  const kernels = st.kernels!;

  const updates: { param: Node<'param'>; output: number }[] = [];
  for (const { param: pname, output: o } of updateOutputs(g)) {
    const p = g.nodes.find((n) => n.op === 'param' && (n.attrs as AttrsOf<'param'>).name === pname) as Node<'param'> | undefined;
    if (!p || !sameType(p.type, g.nodes[o.id].type)) throw new KilnError(`output '${o.name}' does not match a parameter of '${g.name}'`);
    updates.push({ param: p, output: o.id });
  }

  const buffers: BufferSpec[] = [];
  const nodeBuffer = new Map<number, number>();
  const add = (b: BufferSpec) => buffers.push({ ...b, bytes: Math.max(4, Math.ceil(b.bytes / 4) * 4) }) - 1;
  const inPlace = new Map(s.kernels.filter((k) => k.inPlace !== undefined).map((k) => [k.root, k.inPlace!]));
  const outputIds = new Set(g.outputs.map((o) => o.id));
  const params: TensorSpec[] = [];
  const inputs: EntryPlan['inputs'] = [];
  for (const n of g.nodes) {
    const st = s.storage[n.id];
    const bytes = deviceBytes(n.type);
    if (n.op === 'param' && (st !== 'dead' || updates.some((u) => u.param.id === n.id))) {
      const name = (n.attrs as AttrsOf<'param'>).name;
      nodeBuffer.set(n.id, add({ role: 'param', bytes, param: name }));
      params.push(spec(name, n));
    } else if (st === 'leaf') {
      const name = (n.attrs as AttrsOf<'input'>).name;
      nodeBuffer.set(n.id, add({ role: 'input', bytes }));
      inputs.push({ ...spec(name, n), buffer: nodeBuffer.get(n.id)! });
    } else if (st === 'const') {
      const a = n.attrs as AttrsOf<'constant'>;
      const data = allocData(n.type.dtype, numel(n.type.shape));
      data.set(a.values);
      if (n.type.dtype === 'f16') roundF16InPlace(data as Float32Array);
      const dtype = n.type.dtype === 'i32' ? 'i32' : n.type.dtype === 'u32' || n.type.dtype === 'bool' ? 'u32' : 'f32';
      nodeBuffer.set(n.id, add({ role: 'const', bytes, words: { dtype, values: Array.from(data) } }));
    } else if (st === 'kernel' && outputIds.has(n.id) && !inPlace.has(n.id)) nodeBuffer.set(n.id, add({ role: 'output', bytes }));
  }
  for (const [o, p] of inPlace) nodeBuffer.set(o, nodeBuffer.get(p)!);
  const slots = plan.slots.map((bytes) => add({ role: 'slot', bytes }));
  for (const t of plan.tensors) nodeBuffer.set(t.node, slots[t.slot]);

  const scratch = new Map<string, number>();
  const passes: PassSpec[] = [];
  const features = new Set<string>();
  for (const k of kernels) {
    for (const p of k.passes) {
      const wgsl = compactWgsl(p.wgsl);
      let shader = shaders.indexOf(wgsl);
      if (shader < 0) shader = shaders.push(wgsl) - 1;
      for (const m of p.wgsl.matchAll(/^\s*enable\s+([\w-]+)\s*;/gm)) features.add(m[1] === 'f16' ? 'shader-f16' : m[1]);
      const bindings = p.bindings.map((b) => {
        if (b.scratch) {
          const key = `k${k.kernel.id} ${b.scratch.name}`;
          if (!scratch.has(key)) scratch.set(key, add({ role: 'scratch', bytes: b.scratch.words * 4 }));
          const buffer = scratch.get(key)!;
          return { binding: b.binding, buffer, size: buffers[buffer].bytes, access: b.access };
        }
        const buffer = nodeBuffer.get(b.node);
        if (buffer === undefined) throw new KilnError(`internal error: no buffer for %${b.node} in ${p.label}`);
        return { binding: b.binding, buffer, size: deviceBytes(g.nodes[b.node].type), access: b.access };
      });
      passes.push({ label: p.label, shader, bindings, dispatch: [...p.dispatch] });
    }
  }
  const outputs = g.outputs
    .filter(isReadBack)
    .map((o) => {
      const buffer = nodeBuffer.get(o.id);
      if (buffer === undefined) throw new KilnError(`entry '${g.name}': output '${o.name}' (${fmtType(g.nodes[o.id].type)}) has no device buffer`);
      return { ...spec(o.name, g.nodes[o.id]), buffer };
    });
  const upd = updates.map((u) => ({ param: (u.param.attrs as AttrsOf<'param'>).name, buffer: nodeBuffer.get(u.output)! }));
  const carry = outputs.filter((o) => inputs.some((i) => i.name === o.name && i.dtype === o.dtype && i.shape.join() === o.shape.join())).map((o) => o.name);
  return { entry: { name: g.name, inputs, outputs, updates: upd, buffers, passes, ...(carry.length ? { carry } : {}) }, params, features: [...features] };
}
