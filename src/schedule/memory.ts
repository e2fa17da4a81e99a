/**
 * Memory planning: every materialised intermediate gets a slot (one device buffer) chosen by liveness, so
 * values that are never alive at the same time share memory. Graph inputs, parameters, constants and graph
 * outputs keep buffers of their own (parameters persist across runs; outputs are read back after the run).
 *
 * Liveness is measured in kernel steps: a tensor is alive from the kernel that writes it to the last kernel
 * that reads it, both inclusive, so a kernel's output never shares a slot with one of its own inputs.
 * Two assignments are computed and the one with fewer allocated bytes kept: online best-fit in kernel order (the
 * smallest free slot that is big enough, else the largest free slot grown), and offline greedy-by-size (largest
 * tensors first, each into the smallest slot that fits and is free for its whole lifetime), which packs the small
 * tensors of a backward pass into the gaps between big ones.
 */
import { IRError, KilnError } from '../errors.js';
import type { TensorType } from '../ir/types.js';
import { deviceElemBytes, fmtType, numel } from '../ir/types.js';
import type { Graph } from '../ir/graph.js';
import type { Schedule } from './schedule.js';

export interface TensorAlloc {
  node: number;
  bytes: number;
  slot: number;
  /** First and last kernel index at which the tensor is alive (inclusive). */
  start: number;
  end: number;
}

export interface MemoryPlan {
  /** Byte size of every slot (the size of its buffer). */
  slots: number[];
  /** Every materialised intermediate (not graph outputs, leaves or constants). */
  tensors: TensorAlloc[];
  /** Sum of slot sizes: device memory the intermediates really take. */
  slotBytes: number;
  /** Largest sum of live intermediate bytes at any kernel step (a lower bound for any plan). */
  peakLiveBytes: number;
  /** Sum of all intermediates' sizes: what a plan without reuse would take. */
  totalIntermediateBytes: number;
  /** Bytes of graph inputs, parameters, constants and graph outputs (own buffers). */
  inputBytes: number;
  paramBytes: number;
  constBytes: number;
  /** Graph outputs with buffers of their own (not those written in place over a parameter). */
  outputBytes: number;
  /** Bytes of `update:` outputs written in place over their parameters: what in-place updates save. */
  inPlaceBytes: number;
}

export interface DeviceMemoryLimits {
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
}

/**
 * Bytes a tensor takes on the device: 32-bit words for f32/i32/u32/bool (bool as u32), two bytes per element for
 * f16 and bf16, rounded up to whole words (WebGPU binds whole 4-byte words).
 */
export const deviceBytes = (t: TensorType): number => Math.max(4, Math.ceil((numel(t.shape) * deviceElemBytes(t.dtype)) / 4) * 4);

export function planMemory(g: Graph, s: Schedule, limits?: DeviceMemoryLimits): MemoryPlan {
  if (limits) {
    for (const n of g.nodes) {
      if (s.storage[n.id] === 'dead' || s.storage[n.id] === 'inline') continue;
      const bytes = deviceBytes(n.type);
      for (const [limit, value] of [
        ['maxStorageBufferBindingSize', limits.maxStorageBufferBindingSize],
        ['maxBufferSize', limits.maxBufferSize],
      ] as const) {
        if (bytes > value) {
          throw new KilnError(
            `tensor %${n.id}${n.name ? ` '${n.name}'` : ''} (${n.op}, ${fmtType(n.type)}) needs ${bytes} bytes, over the device limit ${limit} = ${value} bytes`,
          );
        }
      }
    }
  }
  const outputs = new Set(g.outputs.map((o) => o.id));
  const lastUse = new Array<number>(g.nodes.length).fill(-1);
  s.kernels.forEach((k, i) => k.inputs.forEach((q) => (lastUse[q] = Math.max(lastUse[q], i))));

  const slots: number[] = [];
  const free = new Set<number>();
  const tensors: TensorAlloc[] = [];
  const endingAt = new Map<number, TensorAlloc[]>();
  let live = 0;
  let peakLiveBytes = 0;
  let totalIntermediateBytes = 0;
  s.kernels.forEach((k, i) => {
    if (!outputs.has(k.root)) {
      const bytes = deviceBytes(g.nodes[k.root].type);
      let best = -1;
      for (const sl of free) if (slots[sl] >= bytes && (best < 0 || slots[sl] < slots[best])) best = sl;
      if (best < 0) for (const sl of free) if (best < 0 || slots[sl] > slots[best]) best = sl;
      if (best < 0) {
        best = slots.length;
        slots.push(bytes);
      } else {
        free.delete(best);
        slots[best] = Math.max(slots[best], bytes);
      }
      const end = Math.max(i, lastUse[k.root]);
      const t: TensorAlloc = { node: k.root, bytes, slot: best, start: i, end };
      tensors.push(t);
      endingAt.set(end, [...(endingAt.get(end) ?? []), t]);
      totalIntermediateBytes += bytes;
      live += bytes;
    }
    peakLiveBytes = Math.max(peakLiveBytes, live);
    for (const t of endingAt.get(i) ?? []) {
      free.add(t.slot);
      live -= t.bytes;
    }
  });

  const packed = packBySize(tensors);
  const online = slots.reduce((a, b) => a + b, 0);
  const offline = packed.slots.reduce((a, b) => a + b, 0);
  if (offline < online) {
    slots.splice(0, slots.length, ...packed.slots);
    tensors.forEach((t, i) => (t.slot = packed.slotOf[i]));
  }

  const inPlace = new Set(s.kernels.filter((k) => k.inPlace !== undefined).map((k) => k.root));
  const sumOf = (pred: (id: number) => boolean) =>
    g.nodes.filter((n) => s.storage[n.id] !== 'dead' && pred(n.id)).reduce((a, n) => a + deviceBytes(n.type), 0);
  return {
    slots,
    tensors,
    slotBytes: slots.reduce((a, b) => a + b, 0),
    peakLiveBytes,
    totalIntermediateBytes,
    inputBytes: sumOf((id) => g.nodes[id].op === 'input'),
    paramBytes: sumOf((id) => g.nodes[id].op === 'param'),
    constBytes: sumOf((id) => s.storage[id] === 'const'),
    outputBytes: [...outputs].filter((id) => s.storage[id] === 'kernel' && !inPlace.has(id)).reduce((a, id) => a + deviceBytes(g.nodes[id].type), 0),
    inPlaceBytes: [...inPlace].reduce((a, id) => a + deviceBytes(g.nodes[id].type), 0),
  };
}

/** Greedy-by-size packing: biggest tensors first, each into the smallest slot that fits and is free throughout. */
function packBySize(tensors: readonly TensorAlloc[]): { slots: number[]; slotOf: number[] } {
  const order = tensors.map((_, i) => i).sort((a, b) => tensors[b].bytes - tensors[a].bytes || tensors[a].start - tensors[b].start);
  const slots: number[] = [];
  const busy: { start: number; end: number }[][] = [];
  const slotOf = new Array<number>(tensors.length);
  for (const i of order) {
    const t = tensors[i];
    let best = -1;
    for (let sl = 0; sl < slots.length; sl++) {
      if (slots[sl] < t.bytes || (best >= 0 && slots[sl] >= slots[best])) continue;
      if (busy[sl].every((u) => u.end < t.start || t.end < u.start)) best = sl;
    }
    if (best < 0) {
      best = slots.length;
      slots.push(t.bytes);
      busy.push([]);
    }
    busy[best].push({ start: t.start, end: t.end });
    slotOf[i] = best;
  }
  return { slots, slotOf };
}

/** Throws an IRError if two tensors alive at the same kernel step share a slot, or a slot is too small. */
export function verifyMemoryPlan(plan: MemoryPlan): void {
  const bySlot = new Map<number, TensorAlloc[]>();
  for (const t of plan.tensors) {
    if (!(t.slot >= 0 && t.slot < plan.slots.length)) throw new IRError(`memory plan: %${t.node} uses missing slot ${t.slot}`);
    if (plan.slots[t.slot] < t.bytes) throw new IRError(`memory plan: %${t.node} (${t.bytes} bytes) does not fit slot ${t.slot} (${plan.slots[t.slot]} bytes)`);
    if (t.end < t.start) throw new IRError(`memory plan: %${t.node} dies (${t.end}) before it is written (${t.start})`);
    bySlot.set(t.slot, [...(bySlot.get(t.slot) ?? []), t]);
  }
  for (const [slot, ts] of bySlot) {
    const sorted = [...ts].sort((a, b) => a.start - b.start);
    for (let i = 1; i < sorted.length; i++) {
      const a = sorted[i - 1];
      const b = sorted[i];
      if (b.start <= a.end) {
        throw new IRError(`memory plan: %${a.node} (kernels ${a.start}..${a.end}) and %${b.node} (kernels ${b.start}..${b.end}) are alive together in slot ${slot}`);
      }
    }
  }
}

const kib = (b: number) => (b >= 1 << 20 ? `${(b / (1 << 20)).toFixed(2)} MiB` : `${(b / 1024).toFixed(1)} KiB`);

/** Text form for `kiln compile --emit memory`. */
export function describeMemory(plan: MemoryPlan, s?: Schedule): string {
  const lines = [
    `memory plan: ${plan.tensors.length} intermediates in ${plan.slots.length} slots`,
    `  intermediates: ${kib(plan.slotBytes)} allocated (peak live ${kib(plan.peakLiveBytes)}) vs ${kib(plan.totalIntermediateBytes)} without reuse`,
    `  own buffers: inputs ${kib(plan.inputBytes)}, params ${kib(plan.paramBytes)}, constants ${kib(plan.constBytes)}, outputs ${kib(plan.outputBytes)}${plan.inPlaceBytes ? ` (+ ${kib(plan.inPlaceBytes)} of updates written in place over their parameters)` : ''}`,
  ];
  plan.slots.forEach((bytes, sl) => {
    const users = plan.tensors.filter((t) => t.slot === sl);
    const desc = users.map((t) => `%${t.node}${s ? ` ${s.graph.nodes[t.node].op}` : ''} [k${t.start}..k${t.end}]`).join(', ');
    lines.push(`  slot ${sl} ${kib(bytes)}: ${desc}`);
  });
  return lines.join('\n');
}
