/**
 * `kiln export`: compiles entries of a .kiln model into a folder that is an npm package — an ES module with the
 * precompiled kernels and a small runtime (src/export/runtime/, bundled by esbuild: no parser, no compiler
 * passes), the weights as safetensors beside it, package.json with `exports`, and index.d.ts (ts-morph).
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { KilnError } from '../errors.js';
import { compileModel, loadModelInfo, type ConfigValue } from '../frontend/index.js';
import type { AttrsOf } from '../ir/op.js';
import { initParam } from '../ir/init.js';
import type { HostTensor } from '../ir/tensor.js';
import { loadCheckpoint } from '../train/checkpoint.js';
import { encodeSafetensors } from '../io/safetensors.js';
import type { KernelStrategy } from '../codegen/wgsl/index.js';
import type { Graph } from '../ir/graph.js';
import type { OptimizerKind } from '../train/optimizers.js';
import { runPipeline } from '../passes/index.js';
import { writeDts } from './dts.js';
import { exportTarget, planEntry } from './plan.js';
import type { EntryPlan, ModulePlan, TensorSpec } from './runtime/format.js';

export interface ExportOptions {
  entries: string[];
  out: string;
  checkpoint?: string;
  set?: Record<string, ConfigValue>;
  dims?: Record<string, number>;
  /** Seed of the initialisers when there is no checkpoint. */
  seed?: number;
  strategy?: KernelStrategy;
  /** npm package name; default `<model>-kiln`. */
  name?: string;
  minify?: boolean;
  /**
   * Also export a training step `train_step` of the `loss` entry with this optimizer: inputs of `loss` plus `lr`
   * and `step`, outputs `loss` and `grad_norm`; parameters and optimizer state stay on the device.
   */
  train?: OptimizerKind;
}

export interface ExportResult {
  dir: string;
  plan: ModulePlan;
  /** Bytes of the JavaScript (runtime + plan), without the weights. */
  jsBytes: number;
  weightsBytes: number;
}

const RESERVED = new Set(['load', 'destroy', 'entries', 'generate', 'default']);
export const entryFunction = (e: string) => {
  const id = e.replace(/[^\w$]/g, '_').replace(/^(\d)/, '_$1');
  return RESERVED.has(id) ? `${id}_` : id;
};

/** Bundles the runtime (src/export/runtime/model.ts) into one ES module. */
async function bundleRuntime(minify: boolean): Promise<string> {
  let esbuild: typeof import('esbuild');
  try {
    esbuild = await import('esbuild');
  } catch {
    throw new KilnError('kiln export needs the esbuild package to bundle the runtime (npm install esbuild)');
  }
  const here = dirname(fileURLToPath(import.meta.url));
  const r = await esbuild.build({
    // the TypeScript source when run from a checkout (tsx), its compiled form in a built package (dist/)
    entryPoints: [existsSync(join(here, 'runtime', 'model.ts')) ? join(here, 'runtime', 'model.ts') : join(here, 'runtime', 'model.js')],
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    target: 'es2022',
    minify,
    write: false,
    external: ['node:*', 'webgpu'],
    logLevel: 'silent',
  });
  return r.outputFiles[0].text;
}

/**
 * plan.js: the plan with its WGSL stored as a table of distinct lines plus each shader's line numbers. Kernels
 * share most of their lines (bindings, index helpers, Philox, f16 rounding), so this is about a third of the size
 * of the shaders written out; the module rebuilds the sources on import.
 */
function planModule(plan: ModulePlan): string {
  const lines: string[] = [];
  const index = new Map<string, number>();
  const shaders = plan.shaders.map((src) =>
    src.split('\n').map((l) => {
      let i = index.get(l);
      if (i === undefined) index.set(l, (i = lines.push(l) - 1));
      return i;
    }),
  );
  return [
    `const lines = ${JSON.stringify(lines)};`,
    `const plan = ${JSON.stringify({ ...plan, shaders: [] })};`,
    `plan.shaders = ${JSON.stringify(shaders)}.map((s) => s.map((i) => lines[i]).join('\\n'));`,
    'export default plan;',
    '',
  ].join('\n');
}

/**
 * The module in memory: the plan of every entry and the weights' safetensors bytes (what `kiln export` writes, and
 * what `kiln sample` loads straight into the exported runtime). `params` gives the weights directly (with `set`).
 */
export async function buildModule(file: string, o: Omit<ExportOptions, 'out'> & { params?: Record<string, HostTensor> }): Promise<{ plan: ModulePlan; bytes: Uint8Array; names: string[]; model: string }> {
  if (!o.entries.length) throw new KilnError('kiln export: no --entry given');
  let set = o.set ?? {};
  let weights: Record<string, HostTensor> | undefined = o.params;
  const info = loadModelInfo(file, { set });
  if (o.checkpoint && !weights) {
    const ck = loadCheckpoint(o.checkpoint, { modelName: info.name });
    set = { ...(ck.state.model.config as Record<string, ConfigValue>), ...set };
    if ('dropout' in set && !o.set?.dropout) set.dropout = 0;
    weights = { ...ck.params, ...ck.optim };
  }
  const TRAIN = 'train_step';
  const names = o.train ? [...o.entries, TRAIN] : o.entries;
  // through the compiler's one pipeline, like every verb, for the export's target (attention fusion's default
  // depends on it: the subgroup-free `thread` kernels fuse only what the binding limit forces)
  const target = exportTarget(o.strategy);
  const graphOf = (entry: string): Graph => {
    if (entry !== TRAIN || !o.train) return runPipeline(compileModel(file, { entry, set, dims: o.dims }).graph, { levels: ['graph'], target }).graph;
    const { graph } = compileModel(file, { entry: 'loss', set, dims: o.dims });
    return runPipeline(graph, { levels: ['graph'], target, train: { optimizer: { kind: o.train, clip: 1.0 } } }).graph;
  };
  const shaders: string[] = [];
  const entries: EntryPlan[] = [];
  const params = new Map<string, TensorSpec>();
  const features = new Set<string>();
  const inits = new Map<string, HostTensor>();
  const fns = new Set<string>();
  for (const entry of names) {
    const fn = entryFunction(entry);
    if (fns.has(fn)) throw new KilnError(`kiln export: entry '${entry}' given twice (or two entries map to the function name '${fn}')`);
    fns.add(fn);
    const graph = graphOf(entry);
    const half = graph.nodes.find((n) => (n.op === 'param' || n.op === 'input' || graph.outputs.some((o) => o.id === n.id)) && (n.type.dtype === 'f16' || n.type.dtype === 'bf16'));
    if (half) throw new KilnError(`kiln export: entry '${entry}' has ${half.type.dtype} ${half.op === 'param' || half.op === 'input' ? `${half.op} '${(half.attrs as { name: string }).name}'` : 'outputs'}; the exported runtime carries f32, i32, u32 and bool at its interface (train in --precision f16/bf16 and export the f32 master weights)`);
    const p = planEntry(graph, shaders, { strategy: o.strategy });
    p.entry.name = entry;
    entries.push(p.entry);
    p.features.forEach((f) => features.add(f));
    for (const t of p.params) {
      const prev = params.get(t.name);
      if (prev && (prev.dtype !== t.dtype || prev.shape.join() !== t.shape.join())) {
        throw new KilnError(`kiln export: parameter '${t.name}' is ${prev.dtype}[${prev.shape}] in one entry and ${t.dtype}[${t.shape}] in '${entry}'`);
      }
      params.set(t.name, t);
      if (!weights && !inits.has(t.name)) {
        const n = graph.nodes.find((x) => x.op === 'param' && (x.attrs as AttrsOf<'param'>).name === t.name)!;
        inits.set(t.name, initParam((n.attrs as AttrsOf<'param'>).init, n.type, t.name, o.seed ?? 0));
      }
    }
  }
  // the weights file holds exactly the params of the exported entries, in the device layout (f16 as f32)
  const stored: Record<string, HostTensor> = {};
  for (const t of params.values()) {
    const w = weights ? weights[t.name] : inits.get(t.name);
    if (!w) throw new KilnError(`checkpoint ${o.checkpoint} has no parameter '${t.name}' that entry ${o.entries.join('/')} needs`);
    if (w.shape.join() !== t.shape.join()) throw new KilnError(`checkpoint ${o.checkpoint}: parameter '${t.name}' is [${w.shape.join(', ')}], the model has [${t.shape.join(', ')}]`);
    stored[t.name] = t.dtype === 'f16' ? { dtype: 'f32', shape: w.shape, data: Float32Array.from(w.data) } : w;
  }
  const bytes = encodeSafetensors(stored, { model: info.name });
  const plan: ModulePlan = {
    format: 1,
    model: info.name,
    shaders,
    entries,
    params: [...params.values()].map((t) => (t.dtype === 'f16' ? { ...t, dtype: 'f32' } : t)),
    weights: { file: 'weights.safetensors', sha256: createHash('sha256').update(bytes).digest('hex'), bytes: bytes.byteLength },
    features: [...features],
    limits: {},
  };
  return { plan, bytes, names, model: info.name };
}

export async function exportModel(file: string, o: ExportOptions): Promise<ExportResult> {
  const { plan, bytes, names, model } = await buildModule(file, o);
  const info = { name: model };
  const runtime = await bundleRuntime(o.minify ?? true);
  const planJs = planModule(plan);
  const indexJs = [
    `// Generated by \`kiln export\` for model '${info.name}'. Do not edit.`,
    `import { createModule, KilnModelError } from './runtime.js';`,
    `import plan from './plan.js';`,
    `const m = createModule(plan, import.meta.url);`,
    `export { KilnModelError };`,
    `export const load = async (options) => void (await m.load(options));`,
    `export const destroy = m.destroy;`,
    `export const entries = ${JSON.stringify(names)};`,
    ...names.map((e) => `export const ${entryFunction(e)} = (inputs) => m.run(${JSON.stringify(e)}, inputs);`),
    ...(names.includes('decode') ? ['export const generate = (promptIds, options) => m.generate(promptIds, options);'] : []),
    '',
  ].join('\n');
  const dts = writeDts(plan, entryFunction).replace(/^(\/\/.*\n)/, `$1export declare class KilnModelError extends Error {}\n`);
  const pkg = {
    name: o.name ?? `${info.name.toLowerCase().replace(/[^a-z0-9-]/g, '-')}-kiln`,
    version: '0.0.0',
    description: `Model '${info.name}' compiled by Kiln: ${names.join(', ')}`,
    type: 'module',
    exports: { '.': { types: './index.d.ts', default: './index.js' }, './weights.safetensors': './weights.safetensors', './package.json': './package.json' },
    types: './index.d.ts',
    files: ['index.js', 'index.d.ts', 'runtime.js', 'plan.js', 'weights.safetensors'],
    peerDependencies: { webgpu: '>=0.2.0' },
    peerDependenciesMeta: { webgpu: { optional: true } },
  };
  mkdirSync(o.out, { recursive: true });
  writeFileSync(join(o.out, 'runtime.js'), runtime);
  writeFileSync(join(o.out, 'plan.js'), planJs);
  writeFileSync(join(o.out, 'index.js'), indexJs);
  writeFileSync(join(o.out, 'index.d.ts'), dts);
  writeFileSync(join(o.out, 'weights.safetensors'), bytes);
  writeFileSync(join(o.out, 'package.json'), JSON.stringify(pkg, null, 2) + '\n');
  return { dir: o.out, plan, jsBytes: Buffer.byteLength(runtime) + Buffer.byteLength(planJs) + Buffer.byteLength(indexJs), weightsBytes: bytes.byteLength };
}
