/**
 * Pipeline creation. Every generated shader must pass validation; one that does not is a compiler bug, so the
 * error carries the kernel's WGSL source and the IR ops it came from. Identical sources share one pipeline.
 */
import { KilnRuntimeError } from './errors.js';
import type { BufferBinding } from '../codegen/wgsl/writer.js';

/** WebGPU enum values, spelled out so this file does not depend on platform globals being installed. */
export const BufferUsage = { MAP_READ: 1, COPY_SRC: 4, COPY_DST: 8, STORAGE: 128, QUERY_RESOLVE: 512 } as const;
const SHADER_STAGE_COMPUTE = 4;

export interface PipelineRequest {
  wgsl: string;
  bindings: readonly BufferBinding[];
  /** For error messages: which kernel, which IR ops. */
  label: string;
  ops: string;
}

export interface CompiledPipeline {
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
}

function formatMessages(info: GPUCompilationInfo | undefined): string {
  if (!info) return '';
  return info.messages
    .filter((m) => m.type === 'error')
    .map((m) => `  line ${m.lineNum}:${m.linePos}: ${m.message}`)
    .join('\n');
}

function numbered(src: string): string {
  return src
    .split('\n')
    .map((l, i) => `${String(i + 1).padStart(4)} | ${l}`)
    .join('\n');
}

/** Writes a failed kernel's source and messages to a temporary file (Node); null where there is no file system. */
async function dumpSource(req: PipelineRequest, messages: string): Promise<string | null> {
  if (typeof process === 'undefined' || !process.versions?.node) return null;
  try {
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const file = join(mkdtempSync(join(tmpdir(), 'kiln-ice-')), `${req.label.replace(/[^\w.-]+/g, '_')}.wgsl`);
    writeFileSync(file, `// ${req.label} (IR ops: ${req.ops})\n${messages.split('\n').map((l) => `// ${l}`).join('\n')}\n${req.wgsl}`);
    return file;
  } catch {
    return null;
  }
}

/** Creates one compute pipeline inside validation error scopes; a failure becomes a KilnRuntimeError with the source. */
export async function createPipelineChecked(device: GPUDevice, req: PipelineRequest): Promise<CompiledPipeline> {
  device.pushErrorScope('validation');
  const layout = device.createBindGroupLayout({
    label: req.label,
    entries: req.bindings.map((b) => ({
      binding: b.binding,
      visibility: SHADER_STAGE_COMPUTE,
      buffer: { type: b.access === 'read' ? 'read-only-storage' : 'storage' },
    })),
  });
  const module = device.createShaderModule({ label: req.label, code: req.wgsl });
  // Everything up to popErrorScope runs synchronously, so pipelines created in parallel never share a scope.
  const pending = device.createComputePipelineAsync({
    label: req.label,
    layout: device.createPipelineLayout({ bindGroupLayouts: [layout] }),
    compute: { module, entryPoint: 'main' },
  });
  const scope = device.popErrorScope();
  let pipeline: GPUComputePipeline | undefined;
  let failure: unknown;
  try {
    pipeline = await pending;
  } catch (e) {
    failure = e;
  }
  const scoped = await scope;
  if (failure || scoped || !pipeline) {
    let details = '';
    try {
      details = formatMessages(await module.getCompilationInfo());
    } catch {
      // compilation info is best-effort
    }
    // The first error line is the message; the whole source goes to a file for the bug report, not to the terminal.
    const why = details || [(failure as Error | undefined)?.message, scoped?.message].filter(Boolean).join('\n').split('\n').find((l) => /error/i.test(l)) || 'unknown error';
    const dumped = await dumpSource(req, [(failure as Error | undefined)?.message, scoped?.message, details].filter(Boolean).join('\n'));
    throw new KilnRuntimeError(
      `internal compiler error (a bug in Kiln, please report it): the WGSL of kernel ${req.label} (IR ops: ${req.ops}) failed validation:\n${why.trim()}\n${dumped ? `the kernel's WGSL and the full message: ${dumped}` : `--- WGSL source ---\n${numbered(req.wgsl)}`}`,
    );
  }
  return { pipeline, layout };
}

/**
 * The identity of a kernel program: its WGSL without comments (which name ops and shapes for readers) and without
 * indentation. Kernels with equal keys share one shader module and one pipeline.
 */
export function programKey(wgsl: string): string {
  return wgsl
    .split('\n')
    .map((l) => l.replace(/\/\/.*$/, '').trim())
    .filter(Boolean)
    .join('\n');
}

/**
 * Pipelines already created (or being created) on each device, by program: executables on one device share them,
 * so the evaluation graph of a training job, or a second compile of a model, costs no shader compilation again.
 */
const deviceCache = new WeakMap<GPUDevice, Map<string, Promise<CompiledPipeline>>>();

/** Creates the pipelines for many kernels in parallel, one per distinct program (see programKey) and device. */
export async function createPipelines(device: GPUDevice, reqs: readonly PipelineRequest[]): Promise<Map<string, CompiledPipeline>> {
  let cache = deviceCache.get(device);
  if (!cache) deviceCache.set(device, (cache = new Map()));
  const wanted = new Map<string, Promise<CompiledPipeline>>();
  for (const r of reqs) {
    const key = programKey(r.wgsl);
    if (wanted.has(key)) continue;
    let p = cache.get(key);
    if (!p) {
      p = createPipelineChecked(device, r);
      cache.set(key, p);
      // a failed program is not cached: the error is reported to this compile, and a later one tries again
      p.catch(() => cache!.delete(key));
    }
    wanted.set(key, p);
  }
  const entries = await Promise.all([...wanted].map(async ([key, p]) => [key, await p] as const));
  return new Map(entries);
}
