/**
 * Splitting a device's program at its collectives, for runtimes that cannot run a collective inside a kernel
 * sequence (WebGPU has no peer copies: values cross devices through the host).
 *
 * Every non-leaf node gets a level: a collective is one level above its operand, any other op is at the level of
 * its latest operand, or later, up to its first consumer's (so nothing crosses the host that need not). Segment k
 * holds the ordinary ops placed at level k; between segment k-1 and k the host performs the
 * collectives of level k (in node order). Leaves (inputs, parameters) are copied into every segment that reads
 * them; a value one segment computes and a later segment or a collective reads leaves that segment as an output
 * named `%<id>` and enters the reader as an input of the same name. Parameters updated by one segment and read by
 * another share one buffer per device (the runtime provides it), so no parameter crosses the host.
 *
 * `runSegmented` is the host's side of a step, written once over a `SegmentRunner`: the multi-device runtime
 * (src/runtime/multi.ts) runs segments on GPUs, `interpreterSegmentRunner` in the reference interpreter.
 */
import { KilnError } from '../errors.js';
import { GraphBuilder } from '../ir/builder.js';
import { updatedParam, type Graph, type GraphOutput, type Node } from '../ir/graph.js';
import { combineCollective, isCollective } from '../ir/ops/collective.js';
import type { AttrsOf } from '../ir/op.js';
import type { HostTensor } from '../ir/tensor.js';
import { interpret } from '../interp/interpreter.js';
import { numel } from '../ir/types.js';
import { deviceBytes, type MemoryPlan } from '../schedule/memory.js';

export const carryName = (id: number) => `%${id}`;

export interface SegmentedProgram {
  source: Graph;
  /** segments[k]: the ordinary ops of level k as a graph of their own. */
  segments: Graph[];
  /** exchanges[k]: the collectives the host performs before segment k (exchanges[0] is empty). */
  exchanges: Node[][];
  /** Outputs of the source whose value is on the host (a collective's result or a fed input), by name. */
  hostOutputs: { name: string; id: number }[];
  /**
   * Values that cross from one segment to a later one on the same device (`%<id>` names) without going through a
   * collective: the runtime keeps them on the device (the producer's output buffer is the consumer's input buffer).
   */
  deviceCarries: Set<number>;
  /** Values a collective reads: downloaded to the host. */
  hostCarries: Set<number>;
}

const isLeaf = (n: Node) => n.op === 'input' || n.op === 'param' || n.op === 'constant' || n.op === 'iota';

/**
 * A collective that reads a leaf (ZeRO-3's all-gather of a parameter shard) reads a copy of it made in the segment
 * before: segments hand the host values they compute, and a parameter stays in its buffer.
 */
function copyLeafOperands(g: Graph): Graph {
  if (!g.nodes.some((n) => isCollective(n.op) && isLeaf(g.nodes[n.inputs[0]]))) return g;
  const b = new GraphBuilder();
  const map = new Map<number, number>();
  for (const n of g.nodes) {
    let inputs = n.inputs.map((i) => map.get(i)!);
    if (isCollective(n.op) && isLeaf(g.nodes[n.inputs[0]])) inputs = [b.op('mul', [inputs[0], b.scalar(1, n.type.dtype)], {})];
    const id = b.op(n.op, inputs, n.attrs as never, { name: n.name, scope: n.scope, loc: n.loc });
    if (n.rule) b.nodes[id].rule = n.rule;
    map.set(n.id, id);
  }
  return b.build(g.name, g.outputs.map((o) => ({ ...o, id: map.get(o.id)! })));
}

export interface SplitOptions {
  /**
   * Gradient buckets: the collectives of the first exchange whose operands are tensors (the gradients of a data-
   * parallel step) are grouped, in the order the backward pass can produce their operands, into buckets of at least
   * this many bytes, and bucket b is exchanged after segment b: the backward pass is cut at bucket boundaries, so
   * a bucket's exchange runs while the device computes the next bucket's gradients (runSegmented), and only one
   * bucket of full gradients is an exchange buffer at a time. Unset: one exchange for all of them.
   */
  bucketBytes?: number;
}

/**
 * The level below which each gradient collective is exchanged (its bucket, counted from the gradients' own level):
 * operands ordered by their depth (longest path from the leaves: the backward pass reaches the last layer's weight
 * gradients first), buckets filled up to `bytes` each.
 */
function gradientBuckets(g: Graph, bytes: number): Map<number, number> {
  const depth = new Array<number>(g.nodes.length).fill(0);
  const level = new Array<number>(g.nodes.length).fill(0);
  for (const n of g.nodes) {
    const ins = n.inputs.filter((i) => !isLeaf(g.nodes[i]));
    depth[n.id] = isLeaf(n) ? 0 : 1 + Math.max(0, ...ins.map((i) => depth[i]));
    const l = Math.max(0, ...ins.map((i) => level[i]));
    level[n.id] = isLeaf(n) ? 0 : isCollective(n.op) ? l + 1 : l;
  }
  // the gradients' exchange is the loss's (ZeRO-3 gathers parameters in an exchange before it)
  const loss = g.outputs.find((o) => o.role?.kind === 'loss');
  const at = loss && isCollective(g.nodes[loss.id].op) ? level[loss.id] : 1;
  const grads = g.nodes.filter((n) => isCollective(n.op) && level[n.id] === at && g.nodes[n.inputs[0]].type.shape.length > 0);
  grads.sort((a, b) => depth[a.inputs[0]] - depth[b.inputs[0]] || a.id - b.id);
  const out = new Map<number, number>();
  let b = at - 1;
  let filled = 0;
  for (const c of grads) {
    if (filled >= bytes) [b, filled] = [b + 1, 0];
    out.set(c.id, b);
    filled += numel(g.nodes[c.inputs[0]].type.shape) * 4;
  }
  return out;
}

export function splitAtCollectives(source: Graph, opts: SplitOptions = {}): SegmentedProgram {
  const g = copyLeafOperands(source);
  const bucket = opts.bucketBytes ? gradientBuckets(g, opts.bucketBytes) : new Map<number, number>();
  const level = new Array<number>(g.nodes.length).fill(0);
  for (const n of g.nodes) {
    const l = Math.max(0, ...n.inputs.filter((i) => !isLeaf(g.nodes[i])).map((i) => level[i]));
    level[n.id] = isLeaf(n) ? 0 : isCollective(n.op) ? Math.max(l, bucket.get(n.id) ?? 0) + 1 : l;
  }
  const K = 1 + Math.max(0, ...g.nodes.filter((n) => isCollective(n.op)).map((n) => level[n.id]));
  const exchanges: Node[][] = Array.from({ length: K }, () => []);
  for (const n of g.nodes) if (isCollective(n.op)) exchanges[level[n.id]].push(n);

  // An op runs in the last segment it can (its consumers' earliest): the optimizer's weight decay reads only a
  // parameter, so it is level 0, but computing it before the exchange would carry it through the host.
  const place = [...level];
  const isOut = new Set(g.outputs.map((o) => o.id));
  const consumers: number[][] = g.nodes.map(() => []);
  for (const n of g.nodes) for (const i of n.inputs) consumers[i].push(n.id);
  for (let id = g.nodes.length - 1; id >= 0; id--) {
    const n = g.nodes[id];
    if (isLeaf(n) || isCollective(n.op) || isOut.has(id) || !consumers[id].length) continue;
    const latest = Math.min(...consumers[id].map((c) => (isCollective(g.nodes[c].op) ? level[c] - 1 : place[c])));
    // ... except a matmul whose result is smaller than the computed values it reads (a weight gradient from two
    // activations): it runs as early as it can, so what stays on the device until the later segment is its result.
    const read = n.inputs.filter((i) => !isLeaf(g.nodes[i])).reduce((s, i) => s + numel(g.nodes[i].type.shape), 0);
    place[id] = n.op === 'matmul' && latest > level[id] && numel(n.type.shape) < read ? level[id] : latest;
  }
  // Which segment computes each value (-1: the host holds it: a collective's result or a graph input; -2: a leaf).
  const home = g.nodes.map((n) => (isCollective(n.op) || n.op === 'input' ? -1 : isLeaf(n) ? -2 : place[n.id]));
  const carried = new Set<number>(); // values a segment must output for a later segment or a collective
  const deviceCarries = new Set<number>();
  const hostCarries = new Set<number>();
  const read = (reader: number, i: number) => {
    if (home[i] >= 0 && home[i] < reader) {
      carried.add(i);
      deviceCarries.add(i);
    }
  };
  for (const n of g.nodes) {
    if (isCollective(n.op)) {
      const i = n.inputs[0];
      if (home[i] === -2) throw new KilnError(`${n.op} %${n.id} reads leaf %${i} directly: copy it through an op first`);
      if (home[i] >= 0) {
        carried.add(i);
        hostCarries.add(i);
      }
    } else if (home[n.id] >= 0) for (const i of n.inputs) read(home[n.id], i);
  }

  const outputsBySeg: GraphOutput[][] = Array.from({ length: K }, () => []);
  const hostOutputs: { name: string; id: number }[] = [];
  for (const o of g.outputs) {
    const h = home[o.id];
    const hostUpdate = updatedParam(o) !== undefined && h === -1;
    if (hostUpdate && !isCollective(g.nodes[o.id].op)) throw new KilnError(`update output '${o.name}' is a graph input; the segmented runtime wants it from a segment or a collective`);
    // a parameter set from a collective's result (ZeRO's all-gathered parameters): the segment after the exchange
    // takes the value as an input and writes it into the parameter's buffer
    if (hostUpdate) outputsBySeg[level[o.id]].push(o);
    else if (h >= 0) outputsBySeg[h].push(o);
    else if (h === -2) outputsBySeg[0].push(o);
    else hostOutputs.push({ name: o.name, id: o.id });
  }

  // A parameter must be read before it is written: updates land at the end of their segment's run.
  for (const [k, outs] of outputsBySeg.entries()) {
    for (const o of outs) {
      const p = updatedParam(o);
      const late = p === undefined ? undefined : g.nodes.find((n) => home[n.id] > k && n.inputs.some((i) => g.nodes[i].op === 'param' && (g.nodes[i].attrs as AttrsOf<'param'>).name === p));
      if (late) throw new KilnError(`parameter '${p}' is updated in segment ${k} but read after it (by %${late.id}, segment ${home[late.id]})`);
    }
  }
  const segments = outputsBySeg.map((outs, k) => {
    const b = new GraphBuilder();
    const map = new Map<number, number>();
    const get = (i: number): number => {
      let m = map.get(i);
      if (m !== undefined) return m;
      const src = g.nodes[i];
      if (isLeaf(src)) m = b.op(src.op, [], src.attrs as never, src.name !== undefined ? { name: src.name } : {});
      else m = b.op('input', [], { name: carryName(i), dtype: src.type.dtype, shape: [...src.type.shape] });
      map.set(i, m);
      return m;
    };
    for (const n of g.nodes) {
      if (home[n.id] !== k) continue;
      const id = b.op(n.op, n.inputs.map(get), n.attrs as never, { name: n.name, scope: n.scope, loc: n.loc });
      map.set(n.id, id);
    }
    const params = new Map(g.nodes.filter((n) => n.op === 'param').map((n) => [(n.attrs as AttrsOf<'param'>).name, n.id]));
    for (const o of outs) {
      const p = updatedParam(o);
      if (p !== undefined) get(params.get(p)!); // the parameter it writes must be in the segment
    }
    const carries = [...carried].filter((i) => home[i] === k).map((i) => ({ name: carryName(i), id: get(i) }));
    return b.build(`${g.name}.seg${k}`, [...outs.map((o) => ({ ...o, id: get(o.id) })), ...carries]);
  });
  return { source: g, segments, exchanges, hostOutputs, deviceCarries, hostCarries };
}

/**
 * Runs segment k of device d's program on its inputs; downloads the named outputs (parameters stay where they live,
 * and so do device carries: the runner feeds a segment's `%<id>` inputs of `deviceCarries` itself).
 */
export type SegmentRunner = (device: number, k: number, inputs: Record<string, HostTensor>, download: string[]) => Promise<Record<string, HostTensor>>;

/** Host bytes exchanged by the last `runSegmented` call (device -> host and host -> device). */
export interface ExchangeStats {
  toHost: number;
  toDevice: number;
  /** Host time spent combining collectives while the devices ran the next segment. */
  overlappedMs?: number;
}

/**
 * One step of N devices: segment 0 on every device, the level-1 collectives on the host, segment 1 ..., and
 * the outputs of every device by name (the read-back ones: `update` outputs stay on the devices).
 */
export async function runSegmented(
  programs: SegmentedProgram[],
  feeds: Record<string, HostTensor>[],
  run: SegmentRunner,
  stats?: ExchangeStats,
): Promise<Record<string, HostTensor>[]> {
  const K = programs[0].segments.length;
  for (const p of programs) if (p.segments.length !== K) throw new KilnError(`the devices' programs have different numbers of segments (${K} vs ${p.segments.length})`);
  const host = feeds.map((f, d) => {
    const m = new Map<number, HostTensor>();
    for (const n of programs[d].source.nodes) if (n.op === 'input' && f[(n.attrs as AttrsOf<'input'>).name]) m.set(n.id, f[(n.attrs as AttrsOf<'input'>).name]);
    return m;
  });
  const results: Record<string, HostTensor>[] = feeds.map(() => ({}));
  const bytes = (t: HostTensor) => t.data.length * 4;
  for (let k = 0; k < K; k++) {
    const ex = programs.map((p) => p.exchanges[k]);
    const combine = (j: number) => {
      const c = ex[0][j];
      const xs = ex.map((e, d) => {
        const v = host[d].get(e[j]?.inputs[0] ?? -1);
        if (!e[j] || e[j].op !== c.op || !v) throw new KilnError(`device ${d} does not take part in ${c.op} %${c.id}`);
        return v;
      });
      const out = combineCollective(c.op as never, c.attrs as never, xs);
      ex.forEach((e, d) => host[d].set(e[j].id, out[d]));
    };
    // Collectives whose results segment k does not read (a gradient bucket the optimizer reads at the end) are
    // combined after segment k has been submitted, while the devices compute it.
    const reads = programs.map((p) => new Set(p.segments[k].nodes.filter((n) => n.op === 'input').map((n) => (n.attrs as AttrsOf<'input'>).name)));
    const now = ex[0].map((_, j) => j).filter((j) => ex.some((e, d) => e[j] && reads[d].has(carryName(e[j].id))));
    const later = ex[0].map((_, j) => j).filter((j) => !now.includes(j));
    now.forEach(combine);
    const running = Promise.all(
      programs.map(async (p, d) => {
        const seg = p.segments[k];
        if (!seg.outputs.length) return;
        const inputs: Record<string, HostTensor> = {};
        for (const n of seg.nodes) {
          if (n.op !== 'input') continue;
          const name = (n.attrs as AttrsOf<'input'>).name;
          if (name.startsWith('%') && p.deviceCarries.has(Number(name.slice(1)))) continue; // already on the device
          const v = name.startsWith('%') ? host[d].get(Number(name.slice(1))) : feeds[d][name];
          if (!v) throw new KilnError(`missing input '${name}' for segment ${k} of device ${d}`);
          inputs[name] = v;
          if (name.startsWith('%') && stats) stats.toDevice += bytes(v);
        }
        const download = seg.outputs
          .filter((o) => updatedParam(o) === undefined && !(o.name.startsWith('%') && !p.hostCarries.has(Number(o.name.slice(1)))))
          .map((o) => o.name);
        const out = await run(d, k, inputs, download);
        for (const name of download) {
          if (name.startsWith('%')) {
            host[d].set(Number(name.slice(1)), out[name]);
            if (stats) stats.toHost += bytes(out[name]);
          } else results[d][name] = out[name];
        }
      }),
    );
    if (later.length) {
      // let every device's run submit its work first (its encoding runs up to the queue submit before any await)
      await new Promise((r) => (typeof setImmediate === 'function' ? setImmediate(r) : setTimeout(r, 0)));
      const t0 = performance.now();
      later.forEach(combine);
      if (stats) stats.overlappedMs = (stats.overlappedMs ?? 0) + performance.now() - t0;
    }
    await running;
  }
  programs.forEach((p, d) => {
    for (const o of p.hostOutputs) results[d][o.name] = host[d].get(o.id)!;
  });
  return results;
}

/** Segments run by the reference interpreter, each device's parameters held on the host (tests of the splitter). */
export function interpreterSegmentRunner(programs: SegmentedProgram[], params: Record<string, HostTensor>[]): SegmentRunner {
  const kept = programs.map(() => new Map<string, HostTensor>()); // device carries, as a device would keep them
  return async (d, k, inputs, download) => {
    const seg = programs[d].segments[k];
    const out = interpret(seg, { inputs: { ...Object.fromEntries(kept[d]), ...inputs }, params: params[d] });
    for (const o of seg.outputs) if (o.name.startsWith('%') && programs[d].deviceCarries.has(Number(o.name.slice(1)))) kept[d].set(o.name, out[o.name]);
    for (const o of seg.outputs) {
      const p = updatedParam(o);
      if (p !== undefined) params[d][p] = out[o.name];
    }
    return Object.fromEntries(download.map((n) => [n, out[n]]));
  };
}

/**
 * The values of segment `seg` that cross the host: its `%<id>` inputs fed from the host (collective results) and its
 * `%<id>` outputs read back (collective operands). They live only while the segment runs, so a device's segments
 * share one pool of buffers for them: index j of every segment's list, largest first (src/runtime/multi.ts).
 */
export function exchangedValues(p: SegmentedProgram, seg: Graph): { name: string; bytes: number }[] {
  const ins = seg.nodes.filter((n) => n.op === 'input').map((n) => ({ name: (n.attrs as AttrsOf<'input'>).name, type: n.type }));
  const outs = seg.outputs.map((o) => ({ name: o.name, type: seg.nodes[o.id].type }));
  const vals = [...ins, ...outs].filter((v) => v.name.startsWith('%') && !p.deviceCarries.has(Number(v.name.slice(1)))).map((v) => ({ name: v.name, bytes: deviceBytes(v.type) }));
  return vals.sort((a, b) => b.bytes - a.bytes); // largest first in every segment, so the pool buffers fit closely
}

/** Device memory of one device's segmented program, from the segments' memory plans (as the runtime allocates it). */
export interface SegmentedMemory {
  /** Parameters and optimizer state (one buffer each, shared by the segments). */
  paramBytes: number;
  /** The shared pool of intermediate slots: slot i as large as its largest use in any segment. */
  slotBytes: number;
  /** Values a segment computes and a later one reads (activations the backward pass needs across an exchange; carryPool). */
  carryBytes: number;
  /** The shared pool of exchange buffers (exchangedValues). */
  exchangeBytes: number;
  /** Activations, gradients and exchanged values: slots + carries + exchange buffers. */
  activationBytes: number;
}

/**
 * One pool of intermediate slots for segments that run one after the other: each segment's slots in order of size,
 * largest first, so pool buffer j is the j-th largest slot of whichever segment needs most there. `index[k][i]` is
 * the pool buffer of slot i of segment k's memory plan (null: an empty segment).
 */
export function slotPool(slotsBySegment: (readonly number[] | null)[]): { sizes: number[]; index: number[][] } {
  const sizes: number[] = [];
  const index = slotsBySegment.map((slots) => {
    if (!slots) return [];
    const order = slots.map((_, i) => i).sort((a, b) => slots[b] - slots[a] || a - b);
    const at: number[] = [];
    order.forEach((i, j) => {
      at[i] = j;
      sizes[j] = Math.max(sizes[j] ?? 0, slots[i]);
    });
    return at;
  });
  return { sizes, index };
}

/**
 * Buffers for the device carries: a carry lives from the segment that computes it to the last segment that reads
 * it, and carries whose lives do not overlap share a buffer (first fit by size). `index` maps a carried value's id
 * to its buffer.
 */
export function carryPool(p: SegmentedProgram): { sizes: number[]; index: Map<number, number> } {
  const span = new Map<number, [number, number]>();
  const carried = (name: string) => name.startsWith('%') && p.deviceCarries.has(Number(name.slice(1)));
  p.segments.forEach((seg, k) => {
    for (const o of seg.outputs) if (carried(o.name)) span.set(Number(o.name.slice(1)), [k, k]);
  });
  p.segments.forEach((seg, k) => {
    for (const n of seg.nodes) {
      const name = n.op === 'input' ? (n.attrs as AttrsOf<'input'>).name : '';
      const s = carried(name) ? span.get(Number(name.slice(1))) : undefined;
      if (s) s[1] = Math.max(s[1], k);
    }
  });
  const bytes = (id: number) => deviceBytes(p.source.nodes[id].type);
  const sizes: number[] = [];
  const ends: number[] = [];
  const index = new Map<number, number>();
  for (const [id, [a, b]] of [...span].sort((x, y) => x[1][0] - y[1][0] || bytes(y[0]) - bytes(x[0]) || x[0] - y[0])) {
    const free = sizes.map((_, j) => j).filter((j) => ends[j] < a);
    const fits = free.filter((j) => sizes[j] >= bytes(id)).sort((x, y) => sizes[x] - sizes[y]);
    const j = fits[0] ?? free.sort((x, y) => sizes[y] - sizes[x])[0] ?? sizes.length;
    sizes[j] = Math.max(sizes[j] ?? 0, bytes(id));
    ends[j] = b;
    index.set(id, j);
  }
  return { sizes, index };
}

export function segmentedMemory(p: SegmentedProgram, planOf: (segment: Graph) => MemoryPlan): SegmentedMemory {
  const exchange: number[] = [];
  for (const seg of p.segments) {
    if (!seg.outputs.length) continue;
    exchangedValues(p, seg).forEach((v, j) => (exchange[j] = Math.max(exchange[j] ?? 0, v.bytes)));
  }
  const slots = slotPool(p.segments.map((seg) => (seg.outputs.length ? planOf(seg).slots : null))).sizes;
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const paramBytes = sum(p.source.nodes.filter((n) => n.op === 'param').map((n) => deviceBytes(n.type)));
  const carryBytes = sum(carryPool(p).sizes);
  const m = { paramBytes, slotBytes: sum(slots), carryBytes, exchangeBytes: sum(exchange) };
  return { ...m, activationBytes: m.slotBytes + m.carryBytes + m.exchangeBytes };
}

/**
 * `kiln compile --parallel ... --emit schedule|memory|wgsl`: every segment as `show` prints it, with the exchanges
 * between, and the memory a device needs (from the segments' memory plans, when `planOf` is given).
 */
export function describeSegmentedProgram(g: Graph, show: (segment: Graph) => string, planOf?: (segment: Graph) => MemoryPlan, opts: SplitOptions = {}): string {
  const p = splitAtCollectives(g, opts);
  const out = [`per-device program ${g.name} (every device runs it): ${p.segments.length} segment(s), collectives on the host between them`];
  p.segments.forEach((seg, k) => {
    const ex = p.exchanges[k];
    if (ex.length) {
      const kinds = [...new Set(ex.map((c) => c.op))].map((op) => `${ex.filter((c) => c.op === op).length} ${op}`).join(', ');
      const bytes = ex.reduce((s, c) => s + c.inputs.reduce((a, i) => a + p.source.nodes[i].type.shape.reduce((x, y) => x * y, 1) * 4, 0), 0);
      out.push(`// ----- exchange ${k}: ${kinds} (${bytes} bytes from each device) -----`);
    }
    out.push(`// ----- segment ${k}: ${seg.nodes.length} nodes, ${seg.outputs.length} outputs -----`);
    out.push(seg.outputs.length ? show(seg) : '(empty)');
  });
  if (planOf) {
    const m = segmentedMemory(p, planOf);
    const kib = (b: number) => `${(b / 1024).toFixed(1)} KiB`;
    out.push(
      `// ----- memory per device: ${kib(m.paramBytes)} parameters and optimizer state; ${kib(m.activationBytes)} activations, gradients and exchanged values ` +
        `(${kib(m.slotBytes)} shared slots, ${kib(m.carryBytes)} kept between segments, ${kib(m.exchangeBytes)} exchange buffers) -----`,
    );
  }
  return out.join('\n');
}
