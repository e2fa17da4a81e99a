/**
 * compileGraph: schedule -> memory plan -> WGSL -> pipelines, once; then `run` many times.
 *
 * Device-resident state: every `param` leaf has a persistent buffer. A graph output named `update:<param>`
 * (same type as the param) becomes that param's value: its kernel writes the param's buffer directly where the
 * schedule marked it in place (src/schedule/inplace.ts), else it is copied there at the end of each run, in the
 * same command encoder. So optimizer steps keep weights and optimizer state (also params, e.g. `opt.m.<name>`)
 * on the device. Such outputs are not downloaded unless asked for.
 *
 * One run = uploads of the inputs, one command encoder with every dispatch (one compute pass; one pass per
 * kernel when profiling), the update copies, the download copies, one submit. Runs are serialised.
 */
import { KilnError } from '../errors.js';
import { isReadBack, updateOutputs, type Graph, type Node } from '../ir/graph.js';
import { initParam } from '../ir/init.js';
import type { AttrsOf } from '../ir/op.js';
import type { HostTensor } from '../ir/tensor.js';
import { allocData, halfFromBits, toHalfBits } from '../ir/tensor.js';
import { fmtType, isHalf, numel, sameShape, sameType } from '../ir/types.js';
import type { CodegenOptions } from '../codegen/wgsl/index.js';
import type { KernelCode, KernelPass } from '../codegen/wgsl/writer.js';
import type { MemoryPlan } from '../schedule/memory.js';
import { deviceBytes } from '../schedule/memory.js';
import type { Schedule, ScheduleOptions } from '../schedule/schedule.js';
import type { DumpOptions, Target } from '../passes/index.js';
import { runPipeline } from '../passes/pipeline.js';
import { parseByteSize } from '../passes/recompute.js';
import type { KilnDevice } from './device.js';
import { KilnRuntimeError } from './errors.js';
import type { CompiledPipeline } from './pipelines.js';
import { BufferUsage, createPipelines, programKey } from './pipelines.js';

export interface CompileOptions extends ScheduleOptions, Omit<CodegenOptions, 'deviceKey'>, DumpOptions {
  /** Seed for the params' initialisers (same values as the interpreter's); null leaves params zero. Default 0. */
  seed?: number | null;
  /**
   * Where parameter `name` lives, when it is shared with other executables on the same device (the segments of a
   * multi-device program, src/runtime/multi.ts); the executable neither allocates nor destroys such a buffer.
   */
  paramBuffer?: (name: string, bytes: number) => GPUBuffer | undefined;
  /**
   * A buffer for memory-plan slot `index` shared with executables that never run at the same time (the segments
   * of one device's program run one after the other); undefined: the executable allocates its own.
   */
  slotBuffer?: (index: number, bytes: number) => GPUBuffer | undefined;
  /**
   * A buffer shared with another executable on the same device for the input or output of this name (a value one
   * segment of a multi-device program writes and a later one reads). An input bound so is not fed by `run`.
   */
  valueBuffer?: (name: string, bytes: number) => GPUBuffer | undefined;
}

export interface RunOptions {
  /** Outputs to read back; default every output except `update:*` ones. */
  download?: string[];
  /** Per-kernel GPU time (timestamp queries, or wall-clock per submission without them). */
  profile?: boolean;
}

export interface KernelTiming {
  kernel: number;
  kind: string;
  label: string;
  ops: string;
  ms: number;
  /** 'gpu' from timestamp queries, 'wall' from per-kernel submissions. */
  source: 'gpu' | 'wall';
}

export interface RunResult {
  outputs: Record<string, HostTensor>;
  profile?: KernelTiming[];
}

export interface ExecutableStats {
  kernels: number;
  kernelsUnfused: number;
  pipelines: number;
  dispatchesPerRun: number;
  /** Device memory of intermediates (sum of slots) vs without reuse. */
  intermediateBytes: number;
  intermediateBytesNoReuse: number;
  peakLiveBytes: number;
  /** Every buffer this executable allocated (params, inputs, outputs, slots, constants). */
  deviceBytes: number;
  compileMs: { schedule: number; plan: number; codegen: number; pipelines: number; buffers: number; total: number };
  /** From the start of compileGraph to the end of the first run (null before it). */
  timeToFirstRunMs: number | null;
  firstRunMs: number | null;
}

interface BoundPass {
  pass: KernelPass;
  kernel: KernelCode;
  pipeline: GPUComputePipeline;
  bindGroup: GPUBindGroup;
}

const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());

function toDeviceData(t: HostTensor): ArrayBufferView {
  switch (t.dtype) {
    case 'bool':
      return Uint32Array.from(t.data as Uint8Array);
    case 'f16':
    case 'bf16':
      return toHalfBits(t.dtype, t.data);
    case 'f32':
      return t.data instanceof Float32Array ? t.data : Float32Array.from(t.data);
    case 'i32':
      return t.data instanceof Int32Array ? t.data : Int32Array.from(t.data);
    case 'u32':
      return t.data instanceof Uint32Array ? t.data : Uint32Array.from(t.data);
  }
}

function fromDeviceData(n: Node, bytes: ArrayBuffer): HostTensor {
  const count = numel(n.type.shape);
  const data = allocData(n.type.dtype, count);
  const d = n.type.dtype;
  if (isHalf(d)) {
    const h = new Uint16Array(bytes, 0, count);
    for (let i = 0; i < count; i++) data[i] = halfFromBits(d, h[i]);
  } else {
    data.set(d === 'i32' ? new Int32Array(bytes, 0, count) : d === 'u32' || d === 'bool' ? new Uint32Array(bytes, 0, count) : new Float32Array(bytes, 0, count));
  }
  return { dtype: n.type.dtype, shape: [...n.type.shape], data };
}

const opsOf = (g: Graph, k: KernelCode) =>
  k.kernel.nodes
    .map((id) => g.nodes[id])
    .filter((n) => !['input', 'param', 'constant', 'iota'].includes(n.op))
    .map((n) => `${n.op} %${n.id}`)
    .join(', ');

/** A kernel pass with work to do: one writing a zero-size tensor is never launched (nor its pipeline created). */
const launched = (p: KernelPass): boolean => p.dispatch.every((d) => d > 0);

/** A software (CPU) implementation of WebGPU: lavapipe/llvmpipe, SwiftShader, or an adapter that says it is a fallback. */
export function isCpuAdapter(dev: KilnDevice): boolean {
  const i = dev.adapterInfo;
  return !!i.isFallbackAdapter || /llvmpipe|lavapipe|swiftshader/i.test([i.vendor, i.architecture, i.device, i.description].join(' '));
}

/** A stable key for a device in caches (matmul tiles). */
export function deviceKey(dev: KilnDevice): string {
  const i = dev.adapterInfo;
  return [i.vendor, i.architecture, i.device, i.description].filter(Boolean).join('/') || 'unknown';
}

export class Executable {
  readonly paramNames: string[];
  readonly inputNames: string[];
  readonly outputNames: string[];
  readonly stats: ExecutableStats;
  /** Inputs whose buffer another executable writes (CompileOptions.valueBuffer): not fed by `run`. */
  boundInputs: ReadonlySet<string> = new Set();
  private readonly device: GPUDevice;
  private readonly buffers: GPUBuffer[] = [];
  private readonly staging = new Map<number, GPUBuffer>();
  private chain: Promise<unknown> = Promise.resolve();
  private lost: string | null = null;
  private destroyed = false;
  private readonly compileStart: number;

  constructor(
    readonly graph: Graph,
    readonly schedule: Schedule,
    readonly plan: MemoryPlan,
    readonly kernels: KernelCode[],
    private readonly passes: BoundPass[],
    private readonly nodeBuffer: Map<number, GPUBuffer>,
    private readonly updates: { param: Node<'param'>; output: number }[],
    private readonly dev: KilnDevice,
    stats: ExecutableStats,
    compileStart: number,
    allBuffers: GPUBuffer[],
  ) {
    this.device = dev.device;
    this.stats = stats;
    this.compileStart = compileStart;
    this.buffers = allBuffers;
    this.paramNames = graph.nodes.filter((n) => n.op === 'param' && schedule.storage[n.id] !== 'dead').map((n) => (n.attrs as AttrsOf<'param'>).name);
    this.inputNames = graph.nodes.filter((n) => n.op === 'input' && schedule.storage[n.id] !== 'dead').map((n) => (n.attrs as AttrsOf<'input'>).name);
    this.outputNames = graph.outputs.map((o) => o.name);
    this.device.lost.then((info) => {
      this.lost = `${info.reason}: ${info.message}`;
    });
  }

  private paramNode(name: string): Node<'param'> {
    const n = this.graph.nodes.find((x) => x.op === 'param' && (x.attrs as AttrsOf<'param'>).name === name && this.schedule.storage[x.id] !== 'dead');
    if (!n) throw new KilnError(`graph '${this.graph.name}' has no parameter '${name}' (has ${this.paramNames.join(', ') || 'none'})`);
    return n as Node<'param'>;
  }

  private check(): void {
    if (this.destroyed) throw new KilnRuntimeError('this executable was destroyed');
    if (this.lost || this.dev.lost) throw new KilnRuntimeError(`the GPU device was lost${this.lost ? ` (${this.lost})` : ''}`);
  }

  /** Serialises device work so that staging buffers are never mapped twice. */
  private serial<T>(f: () => Promise<T>): Promise<T> {
    const r = this.chain.then(f, f);
    this.chain = r.catch(() => undefined);
    return r;
  }

  private upload(n: Node, t: HostTensor, kind: string, name: string): void {
    if (t.dtype !== n.type.dtype || !sameShape(t.shape, n.type.shape)) {
      throw new KilnError(`${kind} '${name}' expects ${fmtType(n.type)}, got ${fmtType(t)}`);
    }
    if (numel(t.shape) === 0) return;
    const buf = this.nodeBuffer.get(n.id);
    if (!buf) return; // not needed by any output
    const d = toDeviceData(t);
    this.device.queue.writeBuffer(buf, 0, d.buffer, d.byteOffset, d.byteLength);
  }

  setParam(name: string, t: HostTensor): void {
    this.check();
    this.upload(this.paramNode(name), t, 'parameter', name);
  }

  /** Uploads every parameter's initial value, drawn exactly as the interpreter's initParam does. */
  initParams(seed: number): void {
    this.check();
    for (const name of this.paramNames) {
      const n = this.paramNode(name);
      const a = n.attrs as AttrsOf<'param'>;
      this.upload(n, initParam(a.init, n.type, a.name, seed), 'parameter', name);
    }
  }

  getParam(name: string): Promise<HostTensor> {
    const n = this.paramNode(name);
    return this.serial(async () => {
      this.check();
      const enc = this.device.createCommandEncoder({ label: `read ${name}` });
      const st = this.stagingFor(n);
      enc.copyBufferToBuffer(this.nodeBuffer.get(n.id)!, 0, st, 0, deviceBytes(n.type));
      this.device.queue.submit([enc.finish()]);
      return (await this.readBack([n]))[0];
    });
  }

  private stagingFor(n: Node): GPUBuffer {
    let b = this.staging.get(n.id);
    if (!b) {
      b = this.device.createBuffer({ label: `staging %${n.id}`, size: deviceBytes(n.type), usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
      this.staging.set(n.id, b);
      this.buffers.push(b);
    }
    return b;
  }

  private async readBack(nodes: Node[]): Promise<HostTensor[]> {
    const uniq = [...new Set(nodes)];
    try {
      await this.dev.guard(Promise.all(uniq.map((n) => this.stagingFor(n).mapAsync(1 /* GPUMapMode.READ */))), `reading results of '${this.graph.name}'`);
    } catch (e) {
      if (e instanceof KilnRuntimeError) throw e;
      throw new KilnRuntimeError(`reading results back from the GPU failed${this.lost ? ` (device lost: ${this.lost})` : ''}: ${(e as Error).message}`, { cause: e });
    }
    const out = new Map<Node, HostTensor>();
    for (const n of uniq) {
      const st = this.stagingFor(n);
      out.set(n, fromDeviceData(n, st.getMappedRange().slice(0)));
      st.unmap();
    }
    return nodes.map((n) => out.get(n)!);
  }

  run(inputs: Record<string, HostTensor>, opts: RunOptions = {}): Promise<RunResult> {
    return this.serial(() => this.runNow(inputs, opts));
  }

  private async runNow(inputs: Record<string, HostTensor>, opts: RunOptions): Promise<RunResult> {
    this.check();
    const t0 = now();
    const g = this.graph;
    for (const n of g.nodes) {
      if (n.op !== 'input' || this.schedule.storage[n.id] === 'dead') continue;
      const name = (n.attrs as AttrsOf<'input'>).name;
      const v = inputs[name];
      if (!v && this.boundInputs.has(name)) continue;
      if (!v) throw new KilnError(`missing input '${name}' (${fmtType(n.type)})`);
      this.upload(n, v, 'input', name);
    }
    const wanted = opts.download ?? g.outputs.filter(isReadBack).map((o) => o.name);
    const downloads = wanted.map((name) => {
      const o = g.outputs.find((x) => x.name === name);
      if (!o) throw new KilnError(`graph '${g.name}' has no output '${name}' (has ${this.outputNames.join(', ')})`);
      return { name, node: g.nodes[o.id] };
    });

    this.device.pushErrorScope('validation');
    let profile: KernelTiming[] | undefined;
    const enc = this.device.createCommandEncoder({ label: `run ${g.name}` });
    const gpuTimes = opts.profile && this.device.features.has('timestamp-query');
    let querySet: GPUQuerySet | undefined;
    let resolve: GPUBuffer | undefined;
    let resolveRead: GPUBuffer | undefined;
    if (opts.profile && !gpuTimes) {
      profile = await this.profileWallClock();
    } else if (gpuTimes) {
      const count = this.passes.length * 2;
      querySet = this.device.createQuerySet({ type: 'timestamp', count });
      resolve = this.device.createBuffer({ size: count * 8, usage: BufferUsage.QUERY_RESOLVE | BufferUsage.COPY_SRC });
      resolveRead = this.device.createBuffer({ size: count * 8, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
      this.passes.forEach((p, i) => {
        const pass = enc.beginComputePass({ label: p.pass.label, timestampWrites: { querySet: querySet!, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 } });
        this.encodeOne(pass, p);
        pass.end();
      });
      enc.resolveQuerySet(querySet, 0, count, resolve, 0);
      enc.copyBufferToBuffer(resolve, 0, resolveRead, 0, count * 8);
    } else {
      const pass = enc.beginComputePass({ label: g.name });
      for (const p of this.passes) this.encodeOne(pass, p);
      pass.end();
    }
    // Downloads first, so an output that is a param leaf is read before this run's updates land.
    for (const d of downloads) enc.copyBufferToBuffer(this.nodeBuffer.get(d.node.id)!, 0, this.stagingFor(d.node), 0, deviceBytes(d.node.type));
    for (const u of this.updates) {
      const src = this.nodeBuffer.get(u.output)!;
      const dst = this.nodeBuffer.get(u.param.id);
      if (dst && src !== dst) enc.copyBufferToBuffer(src, 0, dst, 0, deviceBytes(u.param.type));
    }
    this.device.queue.submit([enc.finish()]);
    const scopeErr = await this.device.popErrorScope();
    if (scopeErr) throw new KilnRuntimeError(`internal error while encoding run of '${g.name}': ${scopeErr.message}`);

    const values = await this.readBack(downloads.map((d) => d.node));
    const outputs: Record<string, HostTensor> = {};
    downloads.forEach((d, i) => (outputs[d.name] = values[i]));
    if (gpuTimes && resolveRead) {
      await this.dev.guard(resolveRead.mapAsync(1), 'reading kernel timestamps');
      const ts = new BigInt64Array(resolveRead.getMappedRange().slice(0));
      resolveRead.unmap();
      const byKernel = new Map<number, number>();
      this.passes.forEach((p, i) => {
        const ns = Number(ts[2 * i + 1] - ts[2 * i]);
        byKernel.set(p.kernel.kernel.id, (byKernel.get(p.kernel.kernel.id) ?? 0) + ns / 1e6);
      });
      profile = this.kernels.map((k) => this.timing(k, byKernel.get(k.kernel.id) ?? 0, 'gpu'));
      querySet?.destroy();
      resolve?.destroy();
      resolveRead.destroy();
    }
    const dt = now() - t0;
    if (this.stats.firstRunMs === null) {
      this.stats.firstRunMs = dt;
      this.stats.timeToFirstRunMs = now() - this.compileStart;
    }
    return profile ? { outputs, profile } : { outputs };
  }

  private timing(k: KernelCode, ms: number, source: 'gpu' | 'wall'): KernelTiming {
    return { kernel: k.kernel.id, kind: k.kernel.kind, label: `k${k.kernel.id}`, ops: opsOf(this.graph, k), ms, source };
  }

  private encodeOne(pass: GPUComputePassEncoder, p: BoundPass): void {
    const [x, y, z] = p.pass.dispatch;
    if (x === 0 || y === 0 || z === 0) return;
    pass.setPipeline(p.pipeline);
    pass.setBindGroup(0, p.bindGroup);
    pass.dispatchWorkgroups(x, y, z);
  }

  /** Without timestamp queries: one submission per kernel, timed on the host (includes submission overhead). */
  private async profileWallClock(): Promise<KernelTiming[]> {
    const out: KernelTiming[] = [];
    for (const k of this.kernels) {
      const t0 = now();
      const enc = this.device.createCommandEncoder();
      const pass = enc.beginComputePass();
      for (const p of this.passes.filter((x) => x.kernel === k)) this.encodeOne(pass, p);
      pass.end();
      this.device.queue.submit([enc.finish()]);
      await this.dev.guard(this.device.queue.onSubmittedWorkDone(), `profiling ${this.graph.name}`);
      out.push(this.timing(k, now() - t0, 'wall'));
    }
    return out;
  }

  /** Every kernel's WGSL, for `kiln compile --emit wgsl`. */
  wgsl(): string {
    return this.kernels.flatMap((k) => k.passes.map((p) => p.wgsl)).join('\n');
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const b of this.buffers) b.destroy();
    inUse.set(this.device, (inUse.get(this.device) ?? 0) - this.stats.deviceBytes);
  }
}

/**
 * KILN_DEVICE_MEMORY=64MiB makes the device behave as one with that much memory: an executable whose buffers would
 * take the bytes in use by the live executables on it past the cap is refused. A stand-in for a small GPU on a
 * machine whose device memory is the host's (lavapipe), to show what fits where.
 */
const inUse = new WeakMap<GPUDevice, number>();
function deviceMemoryCap(): number {
  const v = process.env.KILN_DEVICE_MEMORY;
  return v ? parseByteSize(v, 'KILN_DEVICE_MEMORY') : Infinity;
}

/** The kernel-level target of a device: its limits and features, and the kernel strategy for its kind. */
export function targetOf(dev: KilnDevice, opts: Pick<CompileOptions, 'subgroups' | 'strategy' | 'maxStorageBuffers' | 'f16'> = {}): Target {
  const limits = dev.device.limits;
  return {
    deviceKey: deviceKey(dev),
    strategy: opts.strategy ?? (isCpuAdapter(dev) ? 'thread' : 'workgroup'),
    subgroups: (opts.subgroups ?? true) && dev.device.features.has('subgroups'),
    subgroupSize: dev.adapterInfo.subgroupMinSize !== undefined && dev.adapterInfo.subgroupMinSize === dev.adapterInfo.subgroupMaxSize ? dev.adapterInfo.subgroupMinSize : undefined,
    f16: opts.f16 ?? (dev.device.features.has('shader-f16') ? 'native' : 'packed'),
    maxStorageBuffersPerShaderStage: Math.min(opts.maxStorageBuffers ?? Infinity, limits.maxStorageBuffersPerShaderStage),
    maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
    maxBufferSize: limits.maxBufferSize,
  };
}

/**
 * Lowers a graph (the output of the graph-level pipeline, `compileIR`) for a device: the pipeline's kernel-level
 * stages (schedule, in-place, memory plan, codegen), then pipelines, buffers and bind groups.
 */
export async function compileGraph(g: Graph, dev: KilnDevice, opts: CompileOptions = {}): Promise<Executable> {
  const start = now();
  const device = dev.device;
  const scheduleOpts = Object.fromEntries(
    (['fuse', 'maxRowwisePrologue'] as const).filter((k) => opts[k] !== undefined).map((k) => [k, opts[k]]),
  ) as Partial<ScheduleOptions>;
  const state = runPipeline(g, {
    target: targetOf(dev, opts),
    levels: ['kernels'],
    matmulTiles: opts.matmulTiles,
    passes: { schedule: scheduleOpts },
    printIrAfter: opts.printIrAfter,
    printIrBefore: opts.printIrBefore,
    sink: opts.sink,
  });
  const s = state.schedule!;
  const plan = state.plan!;
  const kernels = state.kernels!;
  const t3 = now();

  // update:<param> outputs
  const updates: { param: Node<'param'>; output: number }[] = [];
  for (const { param: pname, output: o } of updateOutputs(g)) {
    const p = g.nodes.find((n) => n.op === 'param' && (n.attrs as AttrsOf<'param'>).name === pname) as Node<'param'> | undefined;
    if (!p) throw new KilnError(`output '${o.name}' updates parameter '${pname}', which graph '${g.name}' does not have`);
    if (!sameType(p.type, g.nodes[o.id].type)) {
      throw new KilnError(`output '${o.name}' is ${fmtType(g.nodes[o.id].type)} but parameter '${pname}' is ${fmtType(p.type)}`);
    }
    updates.push({ param: p, output: o.id });
  }
  // Params that get updated must have a buffer even if no output reads them.
  const storage = s.storage;

  const pipelinesP = createPipelines(
    device,
    kernels.flatMap((k) => k.passes.filter(launched).map((p) => ({ wgsl: p.wgsl, bindings: p.bindings, label: p.label, ops: opsOf(g, k) }))),
  );

  // Buffers.
  const t4 = now();
  device.pushErrorScope('out-of-memory');
  device.pushErrorScope('validation');
  const all: GPUBuffer[] = [];
  const make = (label: string, bytes: number, usage: number) => {
    const b = device.createBuffer({ label, size: Math.max(4, Math.ceil(bytes / 4) * 4), usage });
    all.push(b);
    return b;
  };
  const rw = BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST;
  const nodeBuffer = new Map<number, GPUBuffer>();
  const inPlace = new Map(s.kernels.filter((k) => k.inPlace !== undefined).map((k) => [k.root, k.inPlace!]));
  const outputIds = new Set(g.outputs.map((o) => o.id));
  const external = new Set<string>(); // inputs bound to shared buffers (valueBuffer)
  for (const n of g.nodes) {
    const st = storage[n.id];
    const bytes = deviceBytes(n.type);
    if (n.op === 'param' && (st !== 'dead' || updates.some((u) => u.param.id === n.id))) {
      const pname = (n.attrs as AttrsOf<'param'>).name;
      nodeBuffer.set(n.id, opts.paramBuffer?.(pname, bytes) ?? make(`param ${pname}`, bytes, rw));
    } else if (st === 'leaf') {
      const iname = (n.attrs as AttrsOf<'input'>).name;
      const shared = opts.valueBuffer?.(iname, bytes);
      if (shared) external.add(iname);
      nodeBuffer.set(n.id, shared ?? make(`input ${iname}`, bytes, rw));
    }
    else if (st === 'const') {
      const b = make(`constant %${n.id}`, bytes, rw);
      const a = n.attrs as AttrsOf<'constant'>;
      const host: HostTensor = { dtype: n.type.dtype, shape: n.type.shape, data: allocData(n.type.dtype, numel(n.type.shape)) };
      host.data.set(a.values);
      const d = toDeviceData(host);
      device.queue.writeBuffer(b, 0, d.buffer, d.byteOffset, d.byteLength);
      nodeBuffer.set(n.id, b);
    } else if (st === 'kernel' && outputIds.has(n.id) && !inPlace.has(n.id)) {
      const shared = opts.valueBuffer && g.outputs.filter((o) => o.id === n.id).map((o) => opts.valueBuffer!(o.name, bytes)).find((b) => b);
      nodeBuffer.set(n.id, shared || make(`output %${n.id}`, bytes, rw));
    }
  }
  for (const [o, p] of inPlace) nodeBuffer.set(o, nodeBuffer.get(p)!);
  const slotBuffers = plan.slots.map((bytes, i) => opts.slotBuffer?.(i, bytes) ?? make(`slot ${i}`, bytes, rw));
  for (const t of plan.tensors) nodeBuffer.set(t.node, slotBuffers[t.slot]);
  // kernel-private work space (scatter_add's duplicate chains), one buffer per kernel and name
  const scratch = new Map<string, GPUBuffer>();
  for (const k of kernels) {
    for (const b of k.passes.flatMap((p) => p.bindings)) {
      const key = b.scratch && `k${k.kernel.id} ${b.scratch.name}`;
      if (key && !scratch.has(key)) scratch.set(key, make(`scratch ${key}`, b.scratch!.words * 4, BufferUsage.STORAGE));
    }
  }
  const validation = await device.popErrorScope();
  const oom = await device.popErrorScope();
  const totalBytes = all.reduce((a, b) => a + b.size, 0);
  if (oom || validation) {
    for (const b of all) b.destroy();
    throw new KilnRuntimeError(
      `could not allocate ${totalBytes} bytes of device memory for graph '${g.name}'${oom ? ' (out of memory)' : ''}: ${(oom ?? validation)!.message}`,
    );
  }
  const cap = typeof process === 'undefined' ? Infinity : deviceMemoryCap();
  const used = inUse.get(device) ?? 0;
  if (used + totalBytes > cap) {
    for (const b of all) b.destroy();
    throw new KilnError(
      `out of device memory: graph '${g.name}' needs ${totalBytes} bytes, ${used} are in use and the device has ${cap} (KILN_DEVICE_MEMORY)` +
        (g.nodes.some((n) => n.recompute) ? '' : '; a training step fits in less with --memory-budget (recomputation)'),
    );
  }
  inUse.set(device, used + totalBytes);
  const t5 = now();

  const pipelines = await pipelinesP.catch((e) => {
    for (const b of all) b.destroy();
    inUse.set(device, (inUse.get(device) ?? 0) - totalBytes);
    throw e;
  });
  const t6 = now();

  const passes: BoundPass[] = [];
  for (const k of kernels) {
    for (const p of k.passes.filter(launched)) {
      const cp = pipelines.get(programKey(p.wgsl)) as CompiledPipeline;
      const bindGroup = device.createBindGroup({
        label: p.label,
        layout: cp.layout,
        entries: p.bindings.map((b) => {
          if (b.scratch) {
            const buffer = scratch.get(`k${k.kernel.id} ${b.scratch.name}`)!;
            return { binding: b.binding, resource: { buffer, offset: 0, size: buffer.size } };
          }
          const buffer = nodeBuffer.get(b.node);
          if (!buffer) throw new KilnRuntimeError(`internal error: no buffer for %${b.node} in ${p.label}`);
          return { binding: b.binding, resource: { buffer, offset: 0, size: deviceBytes(g.nodes[b.node].type) } };
        }),
      });
      passes.push({ pass: p, kernel: k, pipeline: cp.pipeline, bindGroup });
    }
  }

  const stats: ExecutableStats = {
    kernels: s.kernels.length,
    kernelsUnfused: s.unfusedKernelCount,
    pipelines: pipelines.size,
    dispatchesPerRun: passes.filter((p) => p.pass.dispatch.every((d) => d > 0)).length,
    intermediateBytes: plan.slotBytes,
    intermediateBytesNoReuse: plan.totalIntermediateBytes,
    peakLiveBytes: plan.peakLiveBytes,
    deviceBytes: totalBytes,
    compileMs: { schedule: (state.ms.schedule ?? 0) + (state.ms.inplace ?? 0), plan: state.ms['memory-plan'] ?? 0, codegen: state.ms.codegen ?? 0, buffers: t5 - t4, pipelines: t6 - t3, total: now() - start },
    timeToFirstRunMs: null,
    firstRunMs: null,
  };
  const exe = new Executable(g, s, plan, kernels, passes, nodeBuffer, updates, dev, stats, start, all);
  exe.boundInputs = external;
  if (opts.seed !== null) exe.initParams(opts.seed ?? 0);
  return exe;
}

/** A table of kernels by GPU time, longest first. */
export function formatProfile(timings: KernelTiming[], top = 30): string {
  const total = timings.reduce((a, t) => a + t.ms, 0);
  const rows = [...timings].sort((a, b) => b.ms - a.ms).slice(0, top);
  const src = timings[0]?.source === 'gpu' ? 'GPU timestamps' : 'wall clock per submission';
  const lines = [`kernel  kind         time ms      %  ops   (${src}; total ${total.toFixed(3)} ms)`];
  for (const t of rows) {
    const ops = t.ops.length > 70 ? `${t.ops.slice(0, 67)}...` : t.ops;
    lines.push(`${t.label.padEnd(7)} ${t.kind.padEnd(11)} ${t.ms.toFixed(3).padStart(8)} ${((100 * t.ms) / (total || 1)).toFixed(1).padStart(6)}  ${ops}`);
  }
  if (timings.length > rows.length) lines.push(`... ${timings.length - rows.length} more kernels`);
  return lines.join('\n');
}
