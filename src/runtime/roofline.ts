/**
 * The device's own limits, measured with micro-kernels: peak f32 FMA throughput (many independent vec4 FMA chains
 * per invocation, so neither latency nor memory limits it), storage-buffer bandwidth (a vec4 copy: one read and one
 * write per element) and the cost of launching an empty dispatch. A kernel's roofline bound is then
 * min(peak FLOP/s, bandwidth x its arithmetic intensity); `kiln run --profile` and `kiln bench` report every
 * kernel as a fraction of it. Results are cached per device in .kiln/roofline.json (Node), like the tile cache.
 *
 * Timing is wall-clock around one submission of `reps` back-to-back dispatches (the same work each time), minus
 * the same submission with one dispatch, so submission and readback overheads cancel.
 */
import { KilnError } from '../errors.js';
import type { KilnDevice } from './device.js';
import { deviceKey } from './executable.js';
import { BufferUsage, createPipelineChecked } from './pipelines.js';

export interface Roofline {
  device: string;
  /** Peak f32 FMA throughput, GFLOP/s (an FMA counts as 2 FLOPs). */
  gflops: number;
  /** Storage-buffer bandwidth, GB/s (bytes read + bytes written per second). */
  gbps: number;
  /** Cost of one empty dispatch inside a compute pass, microseconds. */
  launchUs: number;
  /** ISO date of the measurement. */
  measured: string;
  /** The timings behind the figures: ms of one FMA dispatch, one copy dispatch, one empty dispatch. */
  ms?: { fma: number; copy: number; empty: number };
}

export interface RooflineOptions {
  /** FMA kernel: workgroups of 64 invocations, each running `fmaIters` iterations of 8 independent vec4 FMAs. */
  fmaWorkgroups?: number;
  fmaIters?: number;
  /** Copy kernel: bytes copied (rounded to whole vec4 workgroups). */
  copyBytes?: number;
  /** Dispatches per timed submission; empty dispatches for the launch overhead. */
  reps?: number;
  launches?: number;
  /** Timed submissions per figure (the fastest is kept). */
  trials?: number;
}

/** Sizes of `kiln doctor --roofline`: a few seconds per figure on lavapipe, enough to hide submission overhead. */
export const FULL_ROOFLINE: Required<RooflineOptions> = { fmaWorkgroups: 64, fmaIters: 4096, copyBytes: 32 << 20, reps: 8, launches: 400, trials: 5 };

const CHAINS = 8;
const WG = 64;

/** Floating-point operations of one FMA kernel dispatch. */
export const fmaFlops = (workgroups: number, iters: number): number => workgroups * WG * iters * CHAINS * 4 * 2;

// The multiplier is read from a buffer (so nothing folds) and is ~1 so the chains stay finite for any length.
const fmaWgsl = (iters: number) => `// roofline: ${CHAINS} independent vec4 FMA chains per invocation, ${iters} iterations
@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let m = src[0];
  let c = src[1];
${Array.from({ length: CHAINS }, (_, i) => `  var a${i} = src[2] + vec4<f32>(f32(gid.x + ${i}u) * 1e-7);`).join('\n')}
  for (var i = 0u; i < ${iters}u; i++) {
${Array.from({ length: CHAINS }, (_, i) => `    a${i} = fma(a${i}, m, c);`).join('\n')}
  }
  dst[gid.x] = ${Array.from({ length: CHAINS }, (_, i) => `a${i}`).join(' + ')};
}
`;

const copyWgsl = `// roofline: storage-buffer copy, one vec4 per invocation
@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  dst[gid.x] = src[gid.x];
}
`;

const emptyWgsl = `// roofline: an empty dispatch
@group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
@compute @workgroup_size(1)
fn main() {}
`;


/** Measures the three figures on `dev`. */
export async function measureRoofline(dev: KilnDevice, opts: RooflineOptions = {}): Promise<Roofline> {
  const o = { ...FULL_ROOFLINE, ...opts };
  const device = dev.device;
  const bindings = [
    { binding: 0, node: 0, access: 'read' as const },
    { binding: 1, node: 1, access: 'read_write' as const },
  ];
  const copyGroups = Math.max(1, Math.floor(o.copyBytes / (WG * 16)));
  const words = Math.max(copyGroups * WG, o.fmaWorkgroups * WG, 4) * 4;
  const src = device.createBuffer({ size: words * 4, usage: BufferUsage.STORAGE | BufferUsage.COPY_DST });
  const dst = device.createBuffer({ size: words * 4, usage: BufferUsage.STORAGE });
  const init = new Float32Array(words).fill(0.5);
  init.set([0.999, 0.999, 0.999, 0.999, 1e-4, 1e-4, 1e-4, 1e-4], 0);
  device.queue.writeBuffer(src, 0, init);
  try {
    // Time `n` dispatches of `wgsl` in one submission, `trials` times.
    const timer = async (wgsl: string, groups: number, label: string) => {
      const cp = await createPipelineChecked(device, { wgsl, bindings, label, ops: label });
      const bindGroup = device.createBindGroup({ layout: cp.layout, entries: [{ binding: 0, resource: { buffer: src } }, { binding: 1, resource: { buffer: dst } }] });
      return async (n: number) => {
        const t0 = performance.now();
        const enc = device.createCommandEncoder({ label });
        const pass = enc.beginComputePass({ label });
        pass.setPipeline(cp.pipeline);
        pass.setBindGroup(0, bindGroup);
        for (let i = 0; i < n; i++) pass.dispatchWorkgroups(groups);
        pass.end();
        device.queue.submit([enc.finish()]);
        await dev.guard(device.queue.onSubmittedWorkDone(), `roofline ${label}`);
        return performance.now() - t0;
      };
    };
    // Seconds of one dispatch: (time of reps dispatches - time of one) / (reps - 1), the best trial.
    const perDispatch = async (run: (n: number) => Promise<number>, reps: number) => {
      await run(1); // warm-up (first use compiles and pages in the buffers)
      const xs: number[] = [];
      for (let t = 0; t < o.trials; t++) {
        const one = await run(1);
        const many = await run(reps);
        xs.push(Math.max(1e-6, (many - one) / (reps - 1)) / 1000);
      }
      return Math.min(...xs); // the best trial: a limit, not a typical run (the machine may be shared)
    };
    const fma = await perDispatch(await timer(fmaWgsl(o.fmaIters), o.fmaWorkgroups, 'fma'), o.reps);
    const copy = await perDispatch(await timer(copyWgsl, copyGroups, 'copy'), o.reps);
    const empty = await perDispatch(await timer(emptyWgsl, 1, 'empty'), o.launches);
    return {
      device: deviceKey(dev),
      gflops: fmaFlops(o.fmaWorkgroups, o.fmaIters) / fma / 1e9,
      gbps: (2 * copyGroups * WG * 16) / copy / 1e9,
      launchUs: empty * 1e6,
      measured: new Date().toISOString(),
      ms: { fma: fma * 1e3, copy: copy * 1e3, empty: empty * 1e3 },
    };
  } finally {
    src.destroy();
    dst.destroy();
  }
}

/** The roofline bound of a kernel doing `flops` FLOPs over `bytes` bytes, in milliseconds (launch included). */
export function boundMs(r: Pick<Roofline, 'gflops' | 'gbps' | 'launchUs'>, flops: number, bytes: number): number {
  return Math.max(flops / (r.gflops * 1e6), bytes / (r.gbps * 1e6)) + r.launchUs / 1000;
}

export function describeRoofline(r: Roofline): string {
  const ridge = r.gflops / r.gbps;
  return [
    `roofline of ${r.device} (measured ${r.measured}):`,
    `  peak f32 FMA       ${r.gflops.toFixed(2)} GFLOP/s   (${CHAINS} independent vec4 FMA chains per invocation)`,
    `  storage bandwidth  ${r.gbps.toFixed(2)} GB/s      (vec4 copy; bytes read + written)`,
    `  empty dispatch     ${r.launchUs.toFixed(1)} µs`,
    `  ridge point        ${ridge.toFixed(2)} FLOP/byte (kernels below it are bandwidth-bound)`,
  ].join('\n');
}

// ---- the per-device cache (Node) ----

/** Where the roofline cache lives: $KILN_ROOFLINE_CACHE, else .kiln/roofline.json in the Kiln checkout. */
export async function rooflineCachePath(): Promise<string> {
  if (process.env.KILN_ROOFLINE_CACHE) return process.env.KILN_ROOFLINE_CACHE;
  const { fileURLToPath } = await import('node:url');
  return fileURLToPath(new URL('../../.kiln/roofline.json', import.meta.url));
}

const validRoofline = (r: unknown): r is Roofline => {
  const x = r as Roofline;
  return !!x && typeof x.device === 'string' && [x.gflops, x.gbps, x.launchUs].every((v) => typeof v === 'number' && Number.isFinite(v) && v > 0);
};

async function readCache(file: string): Promise<Record<string, Roofline>> {
  const fs = await import('node:fs');
  if (!fs.existsSync(file)) return {};
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, Roofline>;
  } catch (e) {
    throw new KilnError(`the roofline cache ${file} is not valid JSON (${(e as Error).message}); delete it or run kiln doctor --roofline again`);
  }
}

/** The cached roofline of this device, if any. */
export async function cachedRoofline(dev: KilnDevice, path?: string): Promise<Roofline | undefined> {
  const r = (await readCache(path ?? (await rooflineCachePath())))[deviceKey(dev)];
  return validRoofline(r) ? r : undefined;
}

/** Writes `r` into the cache file under its device (atomically), keeping other devices' entries. */
export async function saveRoofline(r: Roofline, path?: string): Promise<string> {
  const fs = await import('node:fs');
  const { dirname } = await import('node:path');
  const file = path ?? (await rooflineCachePath());
  const all = await readCache(file);
  all[r.device] = r;
  fs.mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, JSON.stringify(all, null, 1) + '\n');
  fs.renameSync(tmp, file);
  return file;
}

/** The cached roofline, else one measured now (and cached). */
export async function deviceRoofline(dev: KilnDevice, opts: { force?: boolean; path?: string } & RooflineOptions = {}): Promise<Roofline> {
  if (!opts.force) {
    const c = await cachedRoofline(dev, opts.path);
    if (c) return c;
  }
  const r = await measureRoofline(dev, opts);
  await saveRoofline(r, opts.path);
  return r;
}
