/**
 * Several WebGPU devices running one partitioned program (one graph per device, collectives inserted by the
 * `shard` pass). Each device's program is split at its collectives (src/parallel/segments.ts); each segment is
 * compiled with the ordinary compileGraph; a step runs segment k on every device at once, then the collectives
 * between k and k+1 on the host (device -> mapped staging buffer -> host sum in device order -> writeBuffer), and
 * so on. WebGPU has no peer-to-peer copies, so the host is the interconnect.
 *
 * Devices: distinct adapters where WebGPU offers them, else several devices on one adapter (`acquireDevices`).
 * A device's segments share its parameter buffers, so parameters and optimizer state never leave the device, and
 * one pool of intermediate slots, since they never run at the same time.
 */
import { KilnError } from '../errors.js';
import type { Graph } from '../ir/graph.js';
import type { HostTensor } from '../ir/tensor.js';
import { carryPool, exchangedValues, runSegmented, slotPool, splitAtCollectives, type ExchangeStats, type SegmentedProgram, type SplitOptions } from '../parallel/segments.js';
import { acquireDevice, type AcquireOptions, type KilnDevice } from './device.js';
import { compileGraph, targetOf, type CompileOptions, type Executable } from './executable.js';
import { runPipeline } from '../passes/pipeline.js';
import { BufferUsage } from './pipelines.js';

/** N independent devices. WebGPU cannot enumerate adapters, so each is a fresh request (the same adapter on one GPU). */
export async function acquireDevices(n: number, opts: Omit<AcquireOptions, 'fresh'> = {}): Promise<KilnDevice[]> {
  if (!(Number.isInteger(n) && n >= 1)) throw new KilnError(`--devices must be a positive integer, got ${n}`);
  const devs: KilnDevice[] = [];
  for (let i = 0; i < n; i++) devs.push(await acquireDevice({ ...opts, fresh: true }));
  return devs;
}

export interface DeviceMemory {
  /** Parameters and optimizer state (the shared parameter buffers). */
  paramBytes: number;
  /** Everything else: the segments' buffers, the shared slot pool and the values kept between segments. */
  otherBytes: number;
}

export class MultiDeviceExecutable {
  /** Host traffic of the last step, summed over devices. */
  readonly exchanged: ExchangeStats = { toHost: 0, toDevice: 0 };
  readonly paramNames: string[];

  private constructor(
    readonly devices: KilnDevice[],
    readonly programs: SegmentedProgram[],
    /** segs[d][k]: device d's executable for segment k (null for an empty segment). */
    private readonly segs: (Executable | null)[][],
    private readonly params: Map<string, GPUBuffer>[],
    private readonly slots: GPUBuffer[][],
  ) {
    this.paramNames = [...params[0].keys()];
  }

  static async create(programs: Graph[], devices: KilnDevice[], opts: Pick<CompileOptions, 'seed' | 'fuse'> & SplitOptions = {}): Promise<MultiDeviceExecutable> {
    if (programs.length !== devices.length) throw new KilnError(`${programs.length} programs for ${devices.length} devices`);
    const split = programs.map((g) => splitAtCollectives(g, { bucketBytes: opts.bucketBytes }));
    const params = devices.map(() => new Map<string, GPUBuffer>());
    const slots = devices.map(() => [] as GPUBuffer[]);
    const values = devices.map(() => new Map<string, GPUBuffer>());
    const usage = BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST;
    const segs = await Promise.all(
      split.map((p, d) => {
        const dev = devices[d];
        const paramBuffer = (name: string, bytes: number) => {
          let b = params[d].get(name);
          if (!b) {
            b = dev.device.createBuffer({ label: `param ${name}`, size: Math.ceil(bytes / 4) * 4, usage });
            params[d].set(name, b);
          }
          return b;
        };
        // A device runs its segments one after the other, so they share one pool of intermediate slots (slotPool:
        // each segment's slots largest first; memory plans made first, as compileGraph makes them).
        const target = targetOf(dev);
        const planned = p.segments.map((seg) =>
          seg.outputs.length ? runPipeline(seg, { target, levels: ['kernels'], only: ['schedule', 'inplace', 'memory-plan'], passes: { schedule: opts.fuse === undefined ? {} : { fuse: opts.fuse } } }).plan!.slots : null,
        );
        const pool = slotPool(planned);
        slots[d] = pool.sizes.map((bytes, i) => dev.device.createBuffer({ label: `shared slot ${i}`, size: Math.max(4, Math.ceil(bytes / 4) * 4), usage }));
        const slotBuffer = (k: number) => (i: number, bytes: number) => {
          const j = pool.index[k][i];
          return j !== undefined && slots[d][j].size >= bytes ? slots[d][j] : undefined;
        };
        // Values that cross the host (collective operands out, collective results in) live only while their own
        // segment runs, so the segments share one pool of exchange buffers: index j of segment k's host values.
        const ioSizes: number[] = [];
        for (const seg of p.segments) exchangedValues(p, seg).forEach((v, j) => (ioSizes[j] = Math.max(ioSizes[j] ?? 0, v.bytes)));
        const exchange = ioSizes.map((bytes, j) => dev.device.createBuffer({ label: `exchange ${j}`, size: Math.max(4, Math.ceil(bytes / 4) * 4), usage }));
        slots[d].push(...exchange);
        // Values one segment computes and a later one reads stay on the device: the producer's output buffer is the
        // consumer's input buffer; values whose lives (producer to last reader) do not overlap share one (carryPool).
        const cpool = carryPool(p);
        const carries = new Map<string, GPUBuffer>(cpool.sizes.map((bytes, j) => [`carry ${j}`, dev.device.createBuffer({ label: `carry ${j}`, size: Math.max(4, Math.ceil(bytes / 4) * 4), usage })]));
        values[d] = carries;
        const valueBuffer = (seg: Graph) => (name: string, bytes: number) => {
          if (!name.startsWith('%')) return undefined;
          if (!p.deviceCarries.has(Number(name.slice(1)))) {
            const j = exchangedValues(p, seg).findIndex((v) => v.name === name);
            return j >= 0 && exchange[j].size >= bytes ? exchange[j] : undefined;
          }
          const j = cpool.index.get(Number(name.slice(1)));
          const b = j === undefined ? undefined : carries.get(`carry ${j}`);
          if (!b) throw new KilnError(`internal error: segment input ${name} of device ${d} has no producer buffer`);
          return b;
        };
        // Segments one after the other: each initialises the parameters it holds into the shared buffers.
        return p.segments.reduce<Promise<(Executable | null)[]>>(
          async (acc, seg, k) => [...(await acc), seg.outputs.length ? await compileGraph(seg, dev, { ...opts, paramBuffer, slotBuffer: slotBuffer(k), valueBuffer: valueBuffer(seg) }) : null],
          Promise.resolve([]),
        );
      }),
    );
    return new MultiDeviceExecutable(devices, split, segs, params, [...slots.map((x, d) => [...x, ...values[d].values()])]);
  }

  /** One step: `feeds[d]` are device d's inputs; returns every device's read-back outputs. */
  async run(feeds: Record<string, HostTensor>[]): Promise<Record<string, HostTensor>[]> {
    this.exchanged.toHost = 0;
    this.exchanged.toDevice = 0;
    this.exchanged.overlappedMs = 0;
    return runSegmented(this.programs, feeds, async (d, k, inputs, download) => (await this.segs[d][k]!.run(inputs, { download })).outputs, this.exchanged);
  }

  private holder(d: number, name: string): Executable {
    const e = this.segs[d].find((x) => x?.paramNames.includes(name));
    if (!e) throw new KilnError(`no device program has parameter '${name}' (has ${this.paramNames.join(', ')})`);
    return e;
  }

  /** A parameter as device `d` holds it. */
  getParam(name: string, d = 0): Promise<HostTensor> {
    return this.holder(d, name).getParam(name);
  }

  /** Sets a parameter on every device, or on device `d` only. */
  setParam(name: string, t: HostTensor, d?: number): void {
    this.devices.forEach((_, i) => (d === undefined || d === i) && this.holder(i, name).setParam(name, t));
  }

  /** Device memory per device: parameter buffers (shared by the segments) and everything else. */
  memory(): DeviceMemory[] {
    return this.segs.map((segs, d) => ({
      paramBytes: [...this.params[d].values()].reduce((s, b) => s + b.size, 0),
      otherBytes: segs.reduce((s, e) => s + (e?.stats.deviceBytes ?? 0), 0) + this.slots[d].reduce((s, b) => s + b.size, 0),
    }));
  }

  destroy(): void {
    for (const segs of this.segs) for (const e of segs) e?.destroy();
    for (const m of this.params) for (const b of m.values()) b.destroy();
    for (const s of this.slots) for (const b of s) b.destroy();
  }
}
