/**
 * WebGPU device acquisition: one shared GPUDevice per process, from Dawn (npm `webgpu`) in Node or `navigator.gpu` in a
 * browser, with the adapter's maximum limits and the optional features Kiln uses (shader-f16, subgroups,
 * timestamp-query), and with WebGPU's asynchronous errors turned into KilnRuntimeErrors.
 *
 * On a machine without a GPU, `bash scripts/setup-webgpu.sh` installs Mesa's software Vulkan driver (lavapipe) into
 * .kiln/lavapipe/; acquireDevice points the Vulkan loader at it (VK_ICD_FILENAMES) unless the environment already
 * names a driver. Set KILN_LAVAPIPE=0 to not do that.
 *
 * Process exit — measured with webgpu 0.6.2 (Dawn) on Mesa 25.0.7 lavapipe, Node 20:
 *  - Dawn does NOT keep Node alive by itself. A script that acquires a device, runs work and awaits its results exits
 *    on its own (exit code 0), with or without device.destroy() and whether or not references are dropped; no
 *    process.exit() is needed for that.
 *  - But a process that reaches its natural end while a GPU promise is still pending (e.g. an un-awaited
 *    buffer.mapAsync of a large dispatch) dies at exit: 'terminate called after throwing std::system_error: Invalid
 *    argument' (SIGABRT, 134), a segfault (139), or, with device.lost / uncapturederror handlers registered, it hangs
 *    forever. process.exit() with work in flight exits cleanly (0); destroy() with a map pending rejects that mapAsync
 *    with an AbortError (unhandled unless awaited).
 *  So CLI code awaits all of its GPU work (every mapAsync, or `await device.queue.onSubmittedWorkDone()`), then calls
 *  destroy() and returns. A path that bails out while work may still be in flight (an error in the middle of a
 *  training step) should end with process.exit(process.exitCode ?? 1) rather than rely on the natural exit.
 *
 * Other findings on lavapipe: Dawn prints two "Warning: max...BuffersPerPipelineLayout artificially reduced" lines to
 * stderr when the adapter is created (harmless, cannot be turned off from JS). Uncaptured WebGPU errors are printed by
 * Dawn to STDOUT unless the uncapturederror event is preventDefault()ed — we do that and report them ourselves (to
 * stderr, or to onError listeners), so that stdout output such as `kiln compile --emit wgsl` stays clean.
 */
import { KilnRuntimeError } from './errors.js';

export { KilnRuntimeError };

/** The optional features Kiln asks for whenever the adapter has them. */
export const OPTIONAL_FEATURES = ['shader-f16', 'subgroups', 'timestamp-query'] as const;

/**
 * Limits requested at the adapter's best value: its maximum, or for the two alignments its minimum (WebGPU's defaults
 * are lower: 128 MiB per storage binding, 256 MiB per buffer, 16 KiB of workgroup memory, 256 invocations, 256-byte
 * offset alignment).
 */
export const MAX_LIMITS = [
  'maxStorageBufferBindingSize',
  'maxBufferSize',
  'maxComputeWorkgroupStorageSize',
  'maxStorageBuffersPerShaderStage',
  'maxComputeInvocationsPerWorkgroup',
  'maxComputeWorkgroupSizeX',
  'maxComputeWorkgroupSizeY',
  'maxComputeWorkgroupSizeZ',
  'maxComputeWorkgroupsPerDimension',
  'maxUniformBufferBindingSize',
  'maxBindGroups',
  'minStorageBufferOffsetAlignment',
  'minUniformBufferOffsetAlignment',
] as const;

export interface KilnAdapterInfo {
  vendor: string;
  architecture: string;
  device: string;
  description: string;
  /** Subgroup sizes the adapter may use (Dawn reports them; browsers may not). */
  subgroupMinSize?: number;
  subgroupMaxSize?: number;
  /** A software / CPU adapter such as lavapipe or SwiftShader. */
  isFallbackAdapter?: boolean;
}

/** The limits of the device Kiln got (after requesting the adapter's maxima for MAX_LIMITS). */
export interface KilnLimits {
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
  maxComputeWorkgroupStorageSize: number;
  maxComputeInvocationsPerWorkgroup: number;
  maxComputeWorkgroupSizeX: number;
  maxComputeWorkgroupSizeY: number;
  maxComputeWorkgroupSizeZ: number;
  maxComputeWorkgroupsPerDimension: number;
  maxStorageBuffersPerShaderStage: number;
  maxUniformBufferBindingSize: number;
  maxBindGroups: number;
  maxBindingsPerBindGroup: number;
  minStorageBufferOffsetAlignment: number;
  minUniformBufferOffsetAlignment: number;
}

export type KilnBackend = 'dawn-node' | 'browser';

export interface KilnDevice {
  device: GPUDevice;
  adapterInfo: KilnAdapterInfo;
  /** The features that were requested and granted: among OPTIONAL_FEATURES, plus any requireFeatures. */
  features: Set<string>;
  limits: KilnLimits;
  backend: KilnBackend;
  /** The npm `webgpu` version (dawn-node), when known. */
  backendVersion?: string;
  /** The Vulkan driver manifest the loader was pointed at (dawn-node), when one was. */
  vulkanIcd?: string;
  /** Rejects (never resolves) with the first uncaptured WebGPU error or with the loss of the device. */
  failure: Promise<never>;
  /** Throws the first uncaptured WebGPU error reported since the last call, or the device loss. */
  throwIfFailed(): void;
  /**
   * Awaits `p`, but rejects with a KilnRuntimeError instead of hanging if the device fails or is lost first, or if
   * `timeoutMs` passes. For mapAsync, onSubmittedWorkDone and the like.
   */
  guard<T>(p: Promise<T>, what: string, timeoutMs?: number): Promise<T>;
  /**
   * Receives uncaptured WebGPU errors and device loss. While there is no listener they are written to stderr.
   * Returns a function that removes the listener.
   */
  onError(listener: (e: KilnRuntimeError) => void): () => void;
  /** True once the device is lost or destroyed. */
  readonly lost: boolean;
  /** Destroys the device (pending maps reject with AbortError); the next acquireDevice() makes a new one. */
  destroy(): void;
}

export interface AcquireOptions {
  powerPreference?: GPUPowerPreference;
  /** Features the caller cannot do without: acquisition fails with a KilnRuntimeError when the adapter lacks one. */
  requireFeatures?: string[];
  /** A new device that the caller owns, instead of the shared one. */
  fresh?: boolean;
  /** Time allowed for requestAdapter and for requestDevice, each (default 60 s). */
  timeoutMs?: number;
}

let shared: Promise<KilnDevice> | undefined;

/**
 * The process's shared WebGPU device: repeat calls return the same promise (whatever their options) until that device
 * is destroyed or lost; `fresh: true` makes an independent one. `requireFeatures` on a repeat call is checked against
 * the shared device.
 */
export function acquireDevice(opts: AcquireOptions = {}): Promise<KilnDevice> {
  if (opts.fresh) return createKilnDevice(opts, () => {});
  if (!shared) {
    // Forget the shared device once it is destroyed or lost, so that the next call makes a new one.
    const forget = () => {
      if (shared === p) shared = undefined;
    };
    const p: Promise<KilnDevice> = createKilnDevice(opts, forget);
    shared = p;
    p.catch(() => {
      if (shared === p) shared = undefined;
    });
    return p;
  }
  const req = opts.requireFeatures ?? [];
  if (req.length === 0) return shared;
  return shared.then((d) => {
    const missing = req.filter((f) => !d.device.features.has(f));
    if (missing.length) throw new KilnRuntimeError(`the shared WebGPU device lacks required feature(s) ${missing.join(', ')}; it has: ${[...d.device.features].sort().join(', ')}`);
    return d;
  });
}

// ---------------------------------------------------------------------------------------------------------------------

function isNode(): boolean {
  return typeof process !== 'undefined' && !!process.versions?.node && typeof (globalThis as { window?: unknown }).window === 'undefined';
}

interface GpuEntry {
  gpu: GPU;
  backend: KilnBackend;
  backendVersion?: string;
  vulkanIcd?: string;
}
let gpuEntry: Promise<GpuEntry> | undefined;

function getGpu(): Promise<GpuEntry> {
  gpuEntry ??= (isNode() ? nodeGpu() : browserGpu()).catch((e) => {
    gpuEntry = undefined;
    throw e;
  });
  return gpuEntry;
}

async function browserGpu(): Promise<GpuEntry> {
  const gpu = (globalThis as { navigator?: { gpu?: GPU } }).navigator?.gpu;
  if (!gpu) {
    throw new KilnRuntimeError(
      'this browser does not expose WebGPU (navigator.gpu is undefined): use a browser with WebGPU enabled (Chrome/Edge 113+, Safari 26+, Firefox 141+), over https or localhost',
    );
  }
  return { gpu, backend: 'browser' };
}

/** Points the Vulkan loader at .kiln/lavapipe/icd.json when the environment names no driver itself. */
async function configureVulkanEnv(root: string): Promise<string | undefined> {
  const fs = await import('node:fs');
  const path = await import('node:path');
  const os = await import('node:os');
  const env = process.env;
  const named = env.VK_ICD_FILENAMES || env.VK_DRIVER_FILES;
  let icd: string | undefined = named || undefined;
  if (!named && env.KILN_LAVAPIPE !== '0') {
    const candidate = path.join(root, '.kiln', 'lavapipe', 'icd.json');
    if (fs.existsSync(candidate)) {
      env.VK_ICD_FILENAMES = candidate; // Node's process.env writes through to the C environment the loader reads.
      icd = candidate;
    }
  }
  // lavapipe JIT-compiles each shader with LLVM on its first dispatch; 4-wide instead of 8-wide SIMD code cuts that
  // cold-start cost ~2.4x (a tiny GPT training step: 124 s -> 51 s with an empty shader cache) at the same steady-state
  // speed. Only llvmpipe/lavapipe read it. KILN_STOCK_DRIVER=1 keeps the driver's defaults (`kiln bench` does, so
  // that a peer sharing the process runs as it would by itself: TF.js's matmul is slower with 4-wide code).
  if (icd && env.LP_NATIVE_VECTOR_WIDTH === undefined && env.KILN_STOCK_DRIVER !== '1') env.LP_NATIVE_VECTOR_WIDTH = '128';
  if (icd && !env.XDG_RUNTIME_DIR) {
    const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
    const dir = path.join(os.tmpdir(), `kiln-xdg-${uid}`);
    try {
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
      fs.chmodSync(dir, 0o700);
      env.XDG_RUNTIME_DIR = dir;
    } catch {
      // Only used by the WSI parts of the driver; compute works without it.
    }
  }
  return icd;
}

async function nodeGpu(): Promise<GpuEntry> {
  const { fileURLToPath } = await import('node:url');
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const vulkanIcd = await configureVulkanEnv(root);
  // matmul tiles that `kiln tune` measured on this machine
  await (await import('./tune.js')).loadTileCacheFile();
  // A variable specifier keeps browser bundlers from trying to resolve the native module.
  const spec = 'webgpu';
  let mod: { create: (flags: string[]) => GPU; globals: object };
  try {
    mod = (await import(spec)) as typeof mod;
  } catch (e) {
    throw new KilnRuntimeError(`cannot load the WebGPU implementation for Node (npm package 'webgpu', Dawn): ${(e as Error).message}. Run npm install.`, { cause: e });
  }
  Object.assign(globalThis, mod.globals);
  let backendVersion: string | undefined;
  try {
    const { createRequire } = await import('node:module');
    const require = createRequire(import.meta.url);
    backendVersion = (require('webgpu/package.json') as { version?: string }).version;
  } catch {
    // only informative
  }
  return { gpu: mod.create([]), backend: 'dawn-node', backendVersion, vulkanIcd };
}

function withTimeout<T>(p: Promise<T>, ms: number, what: () => string): Promise<T> {
  if (!(ms > 0 && Number.isFinite(ms))) return p;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new KilnRuntimeError(what())), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

function noAdapterMessage(entry: GpuEntry): string {
  const lines = ['no WebGPU adapter found.'];
  if (entry.backend === 'browser') {
    lines.push('  This browser has WebGPU but offered no adapter: check that hardware acceleration is on and the GPU is not blocklisted (chrome://gpu).');
  } else {
    lines.push(`  Dawn (npm webgpu${entry.backendVersion ? ` ${entry.backendVersion}` : ''}) found no usable Vulkan driver${entry.vulkanIcd ? ` (VK_ICD_FILENAMES=${entry.vulkanIcd})` : ''}.`);
    lines.push('  Without a GPU, install software Vulkan (Mesa lavapipe, into .kiln/lavapipe/) with:');
    lines.push('      bash scripts/setup-webgpu.sh');
    lines.push('  With a GPU, check its drivers: the Vulkan loader (libvulkan1) and the vendor Vulkan driver must be installed (`vulkaninfo --summary` should list the GPU).');
    if (entry.vulkanIcd) lines.push('  If the project moved since setup, rerun the script: the driver manifest names the driver by absolute path.');
  }
  return lines.join('\n');
}

async function createKilnDevice(opts: AcquireOptions, forget: () => void): Promise<KilnDevice> {
  const entry = await getGpu();
  const timeoutMs = opts.timeoutMs ?? 60_000;
  let adapter: GPUAdapter | null;
  try {
    adapter = await withTimeout(
      entry.gpu.requestAdapter(opts.powerPreference ? { powerPreference: opts.powerPreference } : undefined),
      timeoutMs,
      () => `requesting a WebGPU adapter took more than ${timeoutMs / 1000} s`,
    );
  } catch (e) {
    if (e instanceof KilnRuntimeError) throw e;
    throw new KilnRuntimeError(`${noAdapterMessage(entry)}\n  (requestAdapter failed: ${(e as Error).message})`, { cause: e });
  }
  if (!adapter) throw new KilnRuntimeError(noAdapterMessage(entry));

  const a = adapter as GPUAdapter & { requestAdapterInfo?: () => Promise<GPUAdapterInfo> };
  const rawInfo: Partial<GPUAdapterInfo> & { isFallbackAdapter?: boolean } =
    a.info ?? (typeof a.requestAdapterInfo === 'function' ? await a.requestAdapterInfo() : {});
  const adapterInfo: KilnAdapterInfo = {
    vendor: rawInfo.vendor ?? '',
    architecture: rawInfo.architecture ?? '',
    device: rawInfo.device ?? '',
    description: rawInfo.description ?? '',
  };
  if (typeof rawInfo.subgroupMinSize === 'number') adapterInfo.subgroupMinSize = rawInfo.subgroupMinSize;
  if (typeof rawInfo.subgroupMaxSize === 'number') adapterInfo.subgroupMaxSize = rawInfo.subgroupMaxSize;
  const fallback = rawInfo.isFallbackAdapter ?? (adapter as { isFallbackAdapter?: boolean }).isFallbackAdapter;
  if (typeof fallback === 'boolean') adapterInfo.isFallbackAdapter = fallback;

  const required = opts.requireFeatures ?? [];
  const missing = required.filter((f) => !adapter.features.has(f));
  if (missing.length) {
    throw new KilnRuntimeError(
      `the WebGPU adapter (${describeAdapter(adapterInfo)}) lacks required feature(s) ${missing.join(', ')}; it has: ${[...adapter.features].sort().join(', ')}`,
    );
  }
  const wanted = [...new Set<string>([...OPTIONAL_FEATURES.filter((f) => adapter.features.has(f)), ...required])];
  const requiredLimits: Record<string, number> = {};
  const al = adapter.limits as unknown as Record<string, number | undefined>;
  for (const k of MAX_LIMITS) {
    const v = al[k];
    if (typeof v === 'number' && v > 0) requiredLimits[k] = v;
  }

  let device: GPUDevice;
  try {
    device = await withTimeout(
      adapter.requestDevice({ label: 'kiln', requiredFeatures: wanted as GPUFeatureName[], requiredLimits }),
      timeoutMs,
      () => `requesting a WebGPU device took more than ${timeoutMs / 1000} s`,
    );
  } catch (e) {
    if (e instanceof KilnRuntimeError) throw e;
    throw new KilnRuntimeError(`requesting a WebGPU device from ${describeAdapter(adapterInfo)} failed: ${(e as Error).message}`, { cause: e });
  }

  const dl = device.limits as unknown as Record<string, number>;
  const limits: KilnLimits = {
    maxStorageBufferBindingSize: dl.maxStorageBufferBindingSize,
    maxBufferSize: dl.maxBufferSize,
    maxComputeWorkgroupStorageSize: dl.maxComputeWorkgroupStorageSize,
    maxComputeInvocationsPerWorkgroup: dl.maxComputeInvocationsPerWorkgroup,
    maxComputeWorkgroupSizeX: dl.maxComputeWorkgroupSizeX,
    maxComputeWorkgroupSizeY: dl.maxComputeWorkgroupSizeY,
    maxComputeWorkgroupSizeZ: dl.maxComputeWorkgroupSizeZ,
    maxComputeWorkgroupsPerDimension: dl.maxComputeWorkgroupsPerDimension,
    maxStorageBuffersPerShaderStage: dl.maxStorageBuffersPerShaderStage,
    maxUniformBufferBindingSize: dl.maxUniformBufferBindingSize,
    maxBindGroups: dl.maxBindGroups,
    maxBindingsPerBindGroup: dl.maxBindingsPerBindGroup,
    minStorageBufferOffsetAlignment: dl.minStorageBufferOffsetAlignment,
    minUniformBufferOffsetAlignment: dl.minUniformBufferOffsetAlignment,
  };
  const features = new Set<string>(wanted.filter((f) => device.features.has(f)));

  // --- error plumbing ---
  const pending: KilnRuntimeError[] = [];
  const listeners = new Set<(e: KilnRuntimeError) => void>();
  let lostError: KilnRuntimeError | undefined;
  let isLost = false;
  let destroyedByUs = false;
  let rejectFailure!: (e: KilnRuntimeError) => void;
  let failed = false;
  const failure = new Promise<never>((_, reject) => {
    rejectFailure = reject;
  });
  failure.catch(() => {}); // observed through guard()/throwIfFailed(); never an unhandled rejection
  const report = (e: KilnRuntimeError) => {
    if (!failed) {
      failed = true;
      rejectFailure(e);
    }
    if (listeners.size) {
      for (const l of listeners) {
        try {
          l(e);
        } catch {
          // a listener's own failure must not hide the GPU error
        }
      }
    } else if (typeof process !== 'undefined' && process.stderr) {
      process.stderr.write(`kiln: ${e.message}\n`);
    } else {
      console.error(e);
    }
  };

  device.addEventListener('uncapturederror', (ev: Event) => {
    ev.preventDefault(); // Dawn would otherwise print it to stdout
    const err = (ev as GPUUncapturedErrorEvent).error;
    const kind =
      typeof GPUOutOfMemoryError !== 'undefined' && err instanceof GPUOutOfMemoryError
        ? 'out-of-memory error'
        : typeof GPUValidationError !== 'undefined' && err instanceof GPUValidationError
          ? 'validation error'
          : typeof GPUInternalError !== 'undefined' && err instanceof GPUInternalError
            ? 'internal error'
            : 'error';
    const e = new KilnRuntimeError(`WebGPU ${kind}: ${err.message.trimEnd()}`, { cause: err });
    pending.push(e);
    report(e);
  });

  device.lost.then((info) => {
    isLost = true;
    forget();
    if (destroyedByUs) return;
    lostError = new KilnRuntimeError(
      `the WebGPU device was lost (${info.reason}${info.message ? `: ${info.message.trimEnd()}` : ''}); a new one can be acquired, but this one's buffers and pipelines are gone`,
      { cause: info },
    );
    report(lostError);
  });

  const kd: KilnDevice = {
    device,
    adapterInfo,
    features,
    limits,
    backend: entry.backend,
    backendVersion: entry.backendVersion,
    vulkanIcd: entry.vulkanIcd,
    failure,
    get lost() {
      return isLost || destroyedByUs;
    },
    throwIfFailed() {
      if (pending.length) {
        const first = pending[0];
        pending.length = 0;
        throw first;
      }
      if (lostError) throw lostError;
      if (destroyedByUs) throw new KilnRuntimeError('the WebGPU device was destroyed');
    },
    guard<T>(p: Promise<T>, what: string, ms?: number): Promise<T> {
      const wrapped = p.catch((e: unknown) => {
        if (e instanceof KilnRuntimeError) throw e;
        const why = lostError ? ` (${lostError.message})` : destroyedByUs ? ' (the device was destroyed)' : '';
        throw new KilnRuntimeError(`${what} failed${why}: ${(e as Error)?.message ?? String(e)}`, { cause: e });
      });
      const onFailure = failure.catch((e: KilnRuntimeError) => {
        throw new KilnRuntimeError(`${what} failed: ${e.message}`, { cause: e });
      });
      const raced = Promise.race([wrapped, onFailure]);
      return ms === undefined ? raced : withTimeout(raced, ms, () => `${what} took more than ${ms / 1000} s (the GPU did not answer)`);
    },
    onError(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    destroy() {
      if (destroyedByUs) return;
      destroyedByUs = true;
      forget();
      device.destroy();
    },
  };
  return kd;
}

function describeAdapter(i: KilnAdapterInfo): string {
  return i.description || [i.vendor, i.architecture, i.device].filter(Boolean).join(' ') || 'unknown adapter';
}

function fmtBytes(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  const s = Number.isInteger(v) ? String(v) : v.toFixed(2);
  return u === 0 ? `${n} B` : `${s} ${units[u]} (${n})`;
}

/** A multi-line, human-readable report of the device, for `kiln doctor`. */
export function describeDevice(d: KilnDevice): string {
  const i = d.adapterInfo;
  const out: string[] = [];
  out.push(`adapter:      ${describeAdapter(i)}`);
  out.push(`  vendor:       ${i.vendor || '?'}`);
  out.push(`  architecture: ${i.architecture || '?'}`);
  out.push(`  device:       ${i.device || '?'}`);
  if (i.isFallbackAdapter !== undefined) {
    out.push(`  software:     ${i.isFallbackAdapter ? 'yes (a CPU implementation: correct but much slower than a GPU)' : 'no'}`);
  }
  const backend = d.backend === 'dawn-node' ? `dawn-node (npm webgpu${d.backendVersion ? ` ${d.backendVersion}` : ''}, Dawn)` : 'browser (navigator.gpu)';
  out.push(`backend:      ${backend}`);
  if (d.vulkanIcd) out.push(`vulkan ICD:   ${d.vulkanIcd}`);
  const optional = OPTIONAL_FEATURES.map((f) => `${f} ${d.features.has(f) ? 'yes' : 'no'}`).join(', ');
  out.push(`features:     ${optional}`);
  out.push(`half floats:  f16 ${d.features.has('shader-f16') ? 'native (array<f16> buffers, shader-f16)' : 'packed two per u32 word (no shader-f16: unpacked to f32 for math)'}; bf16 packed two per u32 word (WGSL has no bf16)`);
  const extra = [...d.features].filter((f) => !(OPTIONAL_FEATURES as readonly string[]).includes(f));
  if (extra.length) out.push(`  also required: ${extra.join(', ')}`);
  if (i.subgroupMinSize !== undefined || i.subgroupMaxSize !== undefined) {
    const lo = i.subgroupMinSize ?? '?';
    const hi = i.subgroupMaxSize ?? '?';
    out.push(`subgroup size: ${lo === hi ? lo : `${lo}..${hi}`}`);
  }
  out.push('limits:');
  const L = d.limits;
  const rows: [string, string][] = [
    ['maxStorageBufferBindingSize', fmtBytes(L.maxStorageBufferBindingSize)],
    ['maxBufferSize', fmtBytes(L.maxBufferSize)],
    ['maxComputeWorkgroupStorageSize', fmtBytes(L.maxComputeWorkgroupStorageSize)],
    ['maxComputeInvocationsPerWorkgroup', String(L.maxComputeInvocationsPerWorkgroup)],
    ['maxComputeWorkgroupSize (x, y, z)', `${L.maxComputeWorkgroupSizeX}, ${L.maxComputeWorkgroupSizeY}, ${L.maxComputeWorkgroupSizeZ}`],
    ['maxComputeWorkgroupsPerDimension', String(L.maxComputeWorkgroupsPerDimension)],
    ['maxStorageBuffersPerShaderStage', String(L.maxStorageBuffersPerShaderStage)],
    ['maxUniformBufferBindingSize', fmtBytes(L.maxUniformBufferBindingSize)],
    ['maxBindGroups', String(L.maxBindGroups)],
    ['minStorageBufferOffsetAlignment', String(L.minStorageBufferOffsetAlignment)],
  ];
  const w = Math.max(...rows.map((r) => r[0].length));
  for (const [k, v] of rows) out.push(`  ${k.padEnd(w)}  ${v}`);
  return out.join('\n');
}
