/**
 * The runtime of an exported module: replays a ModulePlan (precompiled WGSL, buffer plan, dispatches) on a
 * WebGPU device. It imports nothing of the compiler (no parser, no passes), so esbuild bundles it small; the same
 * code runs in browsers (`navigator.gpu`) and in Node (Dawn, npm `webgpu`, a peer dependency of the module).
 *
 * Loading is all-or-nothing: the weights are read, checksummed and checked against the plan (names, dtypes,
 * shapes) before the first GPU object is made, and every buffer made is destroyed again if a later step fails.
 */
import type { EntryPlan, ModulePlan, PlanDType, TensorSpec } from './format.js';
import { generateTokens, type CachedStepper, type GenerateOptions, type WindowStepper } from './generate.js';

export type { GenerateOptions };

export class KilnModelError extends Error {
  override name = 'KilnModelError';
}

export type TypedArray = Float32Array | Int32Array | Uint32Array | Uint8Array;

export interface LoadOptions {
  /** A GPUDevice of the app's; default: one from `navigator.gpu`, or from Dawn (`webgpu`) in Node. */
  device?: GPUDevice;
  /** The weights: a URL or path, or their bytes; default `weights.safetensors` beside the module. */
  weights?: string | URL | ArrayBuffer | Uint8Array;
}

const USAGE = { MAP_READ: 1, COPY_SRC: 4, COPY_DST: 8, STORAGE: 128 };
const ARRAY: Record<PlanDType, { name: string; make: (n: number) => TypedArray; is: (a: unknown) => boolean }> = {
  f32: { name: 'Float32Array', make: (n) => new Float32Array(n), is: (a) => a instanceof Float32Array },
  f16: { name: 'Float32Array', make: (n) => new Float32Array(n), is: (a) => a instanceof Float32Array },
  bf16: { name: 'Float32Array', make: (n) => new Float32Array(n), is: (a) => a instanceof Float32Array },
  i32: { name: 'Int32Array', make: (n) => new Int32Array(n), is: (a) => a instanceof Int32Array },
  u32: { name: 'Uint32Array', make: (n) => new Uint32Array(n), is: (a) => a instanceof Uint32Array },
  bool: { name: 'Uint8Array', make: (n) => new Uint8Array(n), is: (a) => a instanceof Uint8Array },
};
/**
 * Dawn (Node) does not keep the process alive while GPU work is pending, and a process that ends with a GPU promise
 * outstanding aborts; a timer held for the duration of each awaited GPU promise keeps Node running until it settles.
 */
function alive<T>(p: Promise<T>): Promise<T> {
  const t = setInterval(() => {}, 1000);
  return p.finally(() => clearInterval(t));
}
const numel = (shape: number[]) => shape.reduce((a, b) => a * b, 1);
const fmt = (t: { dtype: string; shape: number[] }) => `${t.dtype}[${t.shape.join(', ')}]`;
const hex = (b: ArrayBuffer) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, '0')).join('');

/** Device layout of a host array: bool as u32 words, f16 as f32 (Kiln computes f16 in f32 storage). */
function toWords(dtype: PlanDType, a: TypedArray): ArrayBufferView {
  return dtype === 'bool' ? Uint32Array.from(a as Uint8Array) : a;
}

function fromWords(t: TensorSpec, bytes: ArrayBuffer): TypedArray {
  const n = numel(t.shape);
  const out = ARRAY[t.dtype].make(n);
  const src = t.dtype === 'i32' ? new Int32Array(bytes, 0, n) : t.dtype === 'u32' || t.dtype === 'bool' ? new Uint32Array(bytes, 0, n) : new Float32Array(bytes, 0, n);
  out.set(src);
  return out;
}

async function readWeights(src: LoadOptions['weights'], base: string, file: string): Promise<Uint8Array> {
  if (src instanceof Uint8Array) return src;
  if (src instanceof ArrayBuffer) return new Uint8Array(src);
  const url = src === undefined ? new URL(`./${file}`, base) : src instanceof URL ? src : /^[a-z][\w+.-]*:/i.test(src) && !/^[a-z]:[\\/]/i.test(src) ? new URL(src) : null;
  try {
    if (url && url.protocol !== 'file:') {
      const r = await fetch(url);
      if (!r.ok) throw new Error(`HTTP ${r.status}`);
      return new Uint8Array(await r.arrayBuffer());
    }
    const fs = 'node:fs/promises';
    const { readFile } = (await import(/* @vite-ignore */ fs)) as { readFile: (p: string | URL) => Promise<Uint8Array> };
    return new Uint8Array(await readFile(url ?? (src as string)));
  } catch (e) {
    throw new KilnModelError(`cannot read the weights from ${String(url ?? src)}: ${(e as Error).message}`);
  }
}

/** Parses safetensors and checks it holds exactly the plan's parameters; returns each one's device words. */
function decodeWeights(bytes: Uint8Array, plan: ModulePlan): Map<string, ArrayBufferView> {
  const where = `weights for '${plan.model}'`;
  if (bytes.byteLength < 8) throw new KilnModelError(`${where}: not a safetensors file (${bytes.byteLength} bytes)`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const hlen = Number(dv.getBigUint64(0, true));
  if (8 + hlen > bytes.byteLength) throw new KilnModelError(`${where}: truncated safetensors header`);
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  try {
    header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + hlen)));
  } catch {
    throw new KilnModelError(`${where}: the safetensors header is not JSON`);
  }
  const base = 8 + hlen;
  const out = new Map<string, ArrayBufferView>();
  const ST: Record<PlanDType, string> = { f32: 'F32', f16: 'F16', bf16: 'BF16', i32: 'I32', u32: 'U32', bool: 'BOOL' };
  for (const p of plan.params) {
    const h = header[p.name];
    if (!h) throw new KilnModelError(`${where}: parameter '${p.name}' (${fmt(p)}) is missing from the weights`);
    const want = p.dtype === 'f16' ? 'F32' : ST[p.dtype];
    if (h.dtype !== want || h.shape.join() !== p.shape.join()) {
      throw new KilnModelError(`${where}: parameter '${p.name}' is ${h.dtype.toLowerCase()}[${h.shape.join(', ')}] in the weights, the module expects ${fmt(p)}`);
    }
    const [b, e] = h.data_offsets;
    if (e - b !== numel(p.shape) * (want === 'BOOL' ? 1 : 4) || base + e > bytes.byteLength) throw new KilnModelError(`${where}: parameter '${p.name}' has a wrong byte range`);
    const raw = bytes.slice(base + b, base + e);
    out.set(p.name, want === 'BOOL' ? Uint32Array.from(raw) : raw);
  }
  const extra = Object.keys(header).filter((k) => k !== '__metadata__' && !plan.params.some((p) => p.name === k));
  if (extra.length) throw new KilnModelError(`${where}: the weights hold parameters the module does not have: ${extra.join(', ')}`);
  return out;
}

/** Dawn's GPU instance, held for the life of the process: a collected instance takes its devices down with it. */
let dawnGpu: GPU | undefined;

async function defaultDevice(plan: ModulePlan): Promise<GPUDevice> {
  let gpu: GPU | undefined = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu ?? dawnGpu;
  if (!gpu) {
    try {
      const mod = 'webgpu';
      const dawn = (await import(/* @vite-ignore */ mod)) as { create: (o: string[]) => GPU };
      gpu = dawnGpu = dawn.create([]);
    } catch (e) {
      throw new KilnModelError(`no WebGPU: no navigator.gpu, and the 'webgpu' package (Dawn, for Node) could not be loaded (${(e as Error).message}); install it or pass { device }`);
    }
  }
  const adapter = await alive(gpu.requestAdapter());
  if (!adapter) throw new KilnModelError('no WebGPU adapter is available');
  const missing = plan.features.filter((f) => !adapter.features.has(f));
  if (missing.length) throw new KilnModelError(`the WebGPU adapter lacks feature(s) the module needs: ${missing.join(', ')}`);
  return alive(adapter.requestDevice({ requiredFeatures: plan.features as GPUFeatureName[] }));
}

interface LoadedEntry {
  plan: EntryPlan;
  buffers: GPUBuffer[];
  staging: GPUBuffer[];
  passes: { pipeline: GPUComputePipeline; bindGroup: GPUBindGroup; dispatch: [number, number, number] }[];
}

export class LoadedModel {
  private lost: string | null = null;
  private destroyed = false;
  private chain: Promise<unknown> = Promise.resolve();

  private constructor(
    readonly plan: ModulePlan,
    readonly device: GPUDevice,
    private readonly entries: Map<string, LoadedEntry>,
    private readonly owned: GPUBuffer[],
  ) {
    device.lost.then((info) => (this.lost = `${info.reason}: ${info.message}`));
  }

  static async load(plan: ModulePlan, base: string, opts: LoadOptions = {}): Promise<LoadedModel> {
    const bytes = await readWeights(opts.weights, base, plan.weights.file);
    // names and shapes first (the more telling message), then the checksum (same names and shapes, other values)
    const weights = decodeWeights(bytes, plan);
    if (typeof crypto !== 'undefined' && crypto.subtle) {
      const sum = hex(await crypto.subtle.digest('SHA-256', bytes as Uint8Array<ArrayBuffer>));
      if (sum !== plan.weights.sha256) throw new KilnModelError(`the weights do not match the module '${plan.model}' (SHA-256 ${sum}, the module was exported with ${plan.weights.sha256}): weights of another training run?`);
    }
    const device = opts.device ?? (await defaultDevice(plan));
    const missing = plan.features.filter((f) => !device.features.has(f));
    if (missing.length) throw new KilnModelError(`the GPU device lacks feature(s) the module needs: ${missing.join(', ')}`);
    for (const [k, v] of Object.entries(plan.limits)) {
      const have = (device.limits as unknown as Record<string, number>)[k];
      if (have < v) throw new KilnModelError(`the GPU device's ${k} is ${have}, the module needs ${v}`);
    }

    const owned: GPUBuffer[] = [];
    const rw = USAGE.STORAGE | USAGE.COPY_SRC | USAGE.COPY_DST;
    const make = (label: string, size: number, usage = rw) => {
      const b = device.createBuffer({ label, size, usage });
      owned.push(b);
      return b;
    };
    device.pushErrorScope('out-of-memory');
    device.pushErrorScope('validation');
    try {
      const paramBuf = new Map<string, GPUBuffer>();
      for (const p of plan.params) {
        const b = make(`param ${p.name}`, Math.max(4, numel(p.shape) * 4));
        const w = weights.get(p.name)!;
        device.queue.writeBuffer(b, 0, w.buffer as ArrayBuffer, w.byteOffset, w.byteLength);
        paramBuf.set(p.name, b);
      }
      const modules = new Map<number, GPUShaderModule>();
      const pending: Promise<unknown>[] = [];
      const entries = new Map<string, LoadedEntry>();
      for (const e of plan.entries) {
        const buffers = e.buffers.map((s, i) => {
          if (s.role === 'param') return paramBuf.get(s.param!)!;
          const b = make(`${e.name} ${s.role} ${i}`, s.bytes, s.role === 'scratch' ? USAGE.STORAGE : rw);
          if (s.words) {
            const a = s.words.dtype === 'f32' ? Float32Array.from(s.words.values) : s.words.dtype === 'i32' ? Int32Array.from(s.words.values) : Uint32Array.from(s.words.values);
            device.queue.writeBuffer(b, 0, a.buffer, 0, a.byteLength);
          }
          return b;
        });
        const staging = e.outputs.map((o) => make(`${e.name} read ${o.name}`, Math.max(4, numel(o.shape) * 4), USAGE.MAP_READ | USAGE.COPY_DST));
        const passes = e.passes.map((p) => {
          const layout = device.createBindGroupLayout({
            label: p.label,
            entries: p.bindings.map((b) => ({ binding: b.binding, visibility: 4, buffer: { type: b.access === 'read' ? 'read-only-storage' : 'storage' } })),
          });
          let module = modules.get(p.shader);
          if (!module) modules.set(p.shader, (module = device.createShaderModule({ label: p.label, code: plan.shaders[p.shader] })));
          const pipeline = device.createComputePipelineAsync({ label: p.label, layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }), compute: { module, entryPoint: 'main' } });
          pending.push(pipeline);
          const bindGroup = device.createBindGroup({ label: p.label, layout, entries: p.bindings.map((b) => ({ binding: b.binding, resource: { buffer: buffers[b.buffer], offset: 0, size: b.size } })) });
          return { pipeline: pipeline as unknown as GPUComputePipeline, bindGroup, dispatch: p.dispatch };
        });
        entries.set(e.name, { plan: e, buffers, staging, passes });
      }
      const validation = await alive(device.popErrorScope());
      const oom = await alive(device.popErrorScope());
      if (oom || validation) throw new KilnModelError(`could not set up '${plan.model}' on the GPU${oom ? ' (out of memory)' : ''}: ${(oom ?? validation)!.message}`);
      const ready = await alive(Promise.all(pending));
      let i = 0;
      for (const e of entries.values()) for (const p of e.passes) p.pipeline = ready[i++] as GPUComputePipeline;
      await alive(device.queue.onSubmittedWorkDone());
      return new LoadedModel(plan, device, entries, owned);
    } catch (e) {
      for (const b of owned) b.destroy();
      if (e instanceof KilnModelError) throw e;
      throw new KilnModelError(`could not set up '${plan.model}' on the GPU: ${(e as Error).message}`);
    }
  }

  /** Runs one entry: checks and uploads inputs, one command encoder with every dispatch, reads the outputs back. */
  async run(name: string, inputs: Record<string, TypedArray>): Promise<Record<string, TypedArray>> {
    const e = this.entries.get(name);
    if (!e) throw new KilnModelError(`the module has no entry '${name}' (has ${[...this.entries.keys()].join(', ')})`);
    this.check();
    if (typeof inputs !== 'object' || inputs === null) throw new KilnModelError(`${name}: expected an object of inputs { ${e.plan.inputs.map((i) => i.name).join(', ')} }`);
    for (const i of e.plan.inputs) {
      const a = inputs[i.name];
      const t = ARRAY[i.dtype];
      if (a === undefined) throw new KilnModelError(`${name}: missing input '${i.name}' (${t.name} of shape [${i.shape.join(', ')}])`);
      if (!t.is(a)) throw new KilnModelError(`${name}: input '${i.name}' must be a ${t.name} (${fmt(i)}), got ${(a as object)?.constructor?.name ?? typeof a}`);
      if (a.length !== numel(i.shape)) throw new KilnModelError(`${name}: input '${i.name}' must have shape [${i.shape.join(', ')}] (${numel(i.shape)} elements), got ${a.length} elements`);
    }
    const unknown = Object.keys(inputs).filter((k) => !e.plan.inputs.some((i) => i.name === k));
    if (unknown.length) throw new KilnModelError(`${name}: unknown input(s) ${unknown.join(', ')} (inputs: ${e.plan.inputs.map((i) => i.name).join(', ')})`);
    const r = this.chain.then(() => this.runNow(e, inputs));
    this.chain = r.catch(() => undefined);
    return r;
  }

  private check(): void {
    if (this.destroyed) throw new KilnModelError(`the model '${this.plan.model}' was destroyed`);
    if (this.lost) throw new KilnModelError(`the GPU device was lost (${this.lost}); load the model again`);
  }

  private async runNow(e: LoadedEntry, inputs: Record<string, TypedArray>): Promise<Record<string, TypedArray>> {
    this.check();
    const q = this.device.queue;
    for (const i of e.plan.inputs) {
      const d = toWords(i.dtype, inputs[i.name]);
      if (d.byteLength) q.writeBuffer(e.buffers[i.buffer], 0, d.buffer as ArrayBuffer, d.byteOffset, d.byteLength);
    }
    const enc = this.encode(e);
    e.plan.outputs.forEach((o, k) => enc.copyBufferToBuffer(e.buffers[o.buffer], 0, e.staging[k], 0, e.staging[k].size));
    const paramBuf = (n: string) => e.buffers[e.plan.buffers.findIndex((b) => b.role === 'param' && b.param === n)];
    for (const u of e.plan.updates) {
      const dst = paramBuf(u.param);
      if (dst && dst !== e.buffers[u.buffer]) enc.copyBufferToBuffer(e.buffers[u.buffer], 0, dst, 0, dst.size);
    }
    q.submit([enc.finish()]);
    try {
      await alive(Promise.all(e.staging.map((s) => s.mapAsync(1))));
    } catch (err) {
      throw new KilnModelError(`reading the results of '${e.plan.name}' failed${this.lost ? ` (the GPU device was lost: ${this.lost})` : ''}: ${(err as Error).message}`);
    }
    const out: Record<string, TypedArray> = {};
    e.plan.outputs.forEach((o, k) => {
      out[o.name] = fromWords(o, e.staging[k].getMappedRange());
      e.staging[k].unmap();
    });
    return out;
  }

  /** A command encoder with every dispatch of entry `e` in one compute pass. */
  private encode(e: LoadedEntry): GPUCommandEncoder {
    const enc = this.device.createCommandEncoder({ label: e.plan.name });
    const pass = enc.beginComputePass({ label: e.plan.name });
    for (const p of e.passes) {
      if (p.dispatch.some((x) => x === 0)) continue;
      pass.setPipeline(p.pipeline);
      pass.setBindGroup(0, p.bindGroup);
      pass.dispatchWorkgroups(...p.dispatch);
    }
    pass.end();
    return enc;
  }

  /**
   * Continues the token ids `promptIds` by `maxTokens` tokens. With `cache` (the default) it runs the `decode`
   * entry one token per step, its key/value caches staying on the device (each step's cache outputs are copied
   * into its cache inputs, nothing but the logits is read back); with `cache: false` it runs `forward` over the
   * whole window for every token (what the cache saves).
   */
  async generate(promptIds: ArrayLike<number>, o: GenerateOptions & { cache?: boolean } = {}): Promise<number[]> {
    this.check();
    const stepper = o.cache === false ? this.windowStepper() : this.cachedStepper();
    const V = stepper.vocab;
    if (!promptIds || typeof promptIds.length !== 'number' || promptIds.length === 0) throw new KilnModelError('generate: the prompt must be a non-empty array of token ids');
    for (let i = 0; i < promptIds.length; i++) {
      const t = promptIds[i];
      if (!Number.isInteger(t) || t < 0 || t >= V) throw new KilnModelError(`generate: prompt token ${i} is ${t}, not a token id in [0, ${V})`);
    }
    const bad = (k: keyof GenerateOptions, ok: (v: number) => boolean, what: string) => {
      const v = o[k];
      if (v !== undefined && !(typeof v === 'number' && ok(v))) throw new KilnModelError(`generate: ${k} must be ${what}, got ${String(v)}`);
    };
    bad('maxTokens', (v) => Number.isInteger(v) && v >= 0, 'an integer >= 0');
    bad('topK', (v) => Number.isInteger(v) && v >= 0, 'an integer >= 0 (0: all tokens)');
    bad('temperature', (v) => v >= 0 && Number.isFinite(v), 'a number >= 0');
    bad('seed', (v) => Number.isFinite(v), 'a number');
    const r = o.range;
    if (r && !(Number.isInteger(r[0]) && Number.isInteger(r[1]) && 0 <= r[0] && r[0] < r[1] && r[1] <= V)) throw new KilnModelError(`generate: range [${r.join(', ')}] is not within [0, ${V})`);
    const run = this.chain.then(() => generateTokens(stepper.s, promptIds, V, o));
    this.chain = run.catch(() => undefined);
    return run;
  }

  private entryFor(name: string, why: string): LoadedEntry {
    const e = this.entries.get(name);
    if (!e) throw new KilnModelError(`generate${why}: the module has no '${name}' entry (has ${[...this.entries.keys()].join(', ')}); export it with --entry ${name}`);
    return e;
  }

  private cachedStepper(): { s: CachedStepper; vocab: number } {
    const e = this.entryFor('decode', '');
    const input = (n: string) => e.plan.inputs.find((i) => i.name === n);
    const tok = input('token');
    const pos = input('pos');
    const logits = e.plan.outputs.findIndex((o) => o.name === 'logits');
    if (!tok || !pos || logits < 0 || !e.plan.carry?.length || numel(tok.shape) !== 1 || numel(pos.shape) !== 1) {
      throw new KilnModelError(`generate: entry 'decode' must take token: i32[1, 1] and pos: i32[1] (export with --dim B=1) and carry its caches (an input and an output of the same name), has ${e.plan.inputs.map(fmt).join(', ')}`);
    }
    const carried = e.plan.carry.map((n) => ({ input: e.buffers[input(n)!.buffer], output: e.buffers[e.plan.outputs.find((o) => o.name === n)!.buffer] }));
    const ctx = e.plan.inputs.find((i) => i.name === e.plan.carry![0])!.shape.at(-2)!;
    const q = this.device.queue;
    const s: CachedStepper = {
      ctx,
      reset: () => {
        const enc = this.device.createCommandEncoder({ label: 'reset caches' });
        for (const c of carried) enc.clearBuffer(c.input);
        q.submit([enc.finish()]);
      },
      step: async (id, p, want) => {
        this.check();
        q.writeBuffer(e.buffers[tok.buffer], 0, Int32Array.of(id));
        q.writeBuffer(e.buffers[pos.buffer], 0, Int32Array.of(p));
        const enc = this.encode(e);
        for (const c of carried) enc.copyBufferToBuffer(c.output, 0, c.input, 0, c.input.size);
        const st = e.staging[logits];
        if (want) enc.copyBufferToBuffer(e.buffers[e.plan.outputs[logits].buffer], 0, st, 0, st.size);
        q.submit([enc.finish()]);
        if (!want) return undefined;
        return this.readRow(e, st, e.plan.outputs[logits]);
      },
    };
    return { s, vocab: e.plan.outputs[logits].shape.at(-1)! };
  }

  private windowStepper(): { s: WindowStepper; vocab: number } {
    const e = this.entryFor('forward', ' with cache: false');
    const tokens = e.plan.inputs.find((i) => i.name === 'tokens');
    const logits = e.plan.outputs.findIndex((o) => o.name === 'logits');
    if (!tokens || logits < 0 || tokens.shape.length !== 2 || tokens.shape[0] !== 1) {
      throw new KilnModelError(`generate: entry 'forward' must take tokens: i32[1, T] (export with --dim B=1), has ${e.plan.inputs.map(fmt).join(', ')}`);
    }
    const T = tokens.shape[1];
    const V = e.plan.outputs[logits].shape.at(-1)!;
    const q = this.device.queue;
    const s: WindowStepper = {
      ctx: T,
      window: async (ids) => {
        this.check();
        const data = new Int32Array(T);
        data.set(ids);
        q.writeBuffer(e.buffers[tokens.buffer], 0, data);
        const enc = this.encode(e);
        const st = e.staging[logits];
        enc.copyBufferToBuffer(e.buffers[e.plan.outputs[logits].buffer], 0, st, 0, st.size);
        q.submit([enc.finish()]);
        return (await this.readRow(e, st, e.plan.outputs[logits])).subarray((ids.length - 1) * V, ids.length * V);
      },
    };
    return { s, vocab: V };
  }

  private async readRow(e: LoadedEntry, st: GPUBuffer, o: TensorSpec): Promise<Float32Array> {
    try {
      await alive(st.mapAsync(1));
    } catch (err) {
      throw new KilnModelError(`reading the results of '${e.plan.name}' failed${this.lost ? ` (the GPU device was lost: ${this.lost})` : ''}: ${(err as Error).message}`);
    }
    const out = fromWords(o, st.getMappedRange()) as Float32Array;
    st.unmap();
    return out;
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    for (const b of this.owned) b.destroy();
  }
}

/** What the generated index.js calls: a lazily loaded model shared by every entry function. */
export function createModule(plan: ModulePlan, base: string) {
  let model: Promise<LoadedModel> | undefined;
  const load = (opts: LoadOptions = {}) => {
    const m = LoadedModel.load(plan, base, opts);
    model = m;
    m.catch(() => {
      if (model === m) model = undefined;
    });
    return m;
  };
  return {
    load,
    run: async (entry: string, inputs: Record<string, TypedArray>) => (await (model ?? load())).run(entry, inputs),
    generate: async (promptIds: ArrayLike<number>, o?: GenerateOptions) => (await (model ?? load())).generate(promptIds, o),
    destroy: async () => {
      const m = model;
      model = undefined;
      (await m?.catch(() => undefined))?.destroy();
    },
  };
}
