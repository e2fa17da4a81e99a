/**
 * The pass registry and the one declared pipeline every compile runs through.
 *
 * A pass is a `PassDef`: a name, a one-line summary, typed options (documented one by one, so `kiln compile
 * --passes` can list them), what it requires (passes that must have run before it) and what it guarantees, and
 * `configure`, which says from a compile request whether the pass runs and with which options. The pipeline is a
 * list of pass names in order (`PIPELINE`); the pass manager (pipeline.ts) walks it, skipping passes a request does
 * not configure, verifying the IR between stages and dumping it where asked.
 *
 * Options are typed through `PassOptionsMap`, an interface a new pass extends by declaration merging:
 *
 *   declare module '../passes/registry.js' { interface PassOptionsMap { 'my-pass': { factor: number } } }
 *   registerPass({ name: 'my-pass', ..., run: (s, o) => ... }, { after: 'optimizer' });
 *
 * after which every verb runs it, since every verb compiles through `runPipeline`.
 */
import { IRError, KilnError } from '../errors.js';
import type { Graph } from '../ir/graph.js';
import type { GradOptions } from '../autodiff/grad.js';
import type { OptimizerConfig } from '../train/optimizers.js';
import type { Schedule, ScheduleOptions } from '../schedule/schedule.js';
import type { MemoryPlan } from '../schedule/memory.js';
import type { KernelCode } from '../codegen/wgsl/writer.js';
import type { HalfStorage, KernelStrategy } from '../codegen/wgsl/types.js';
import type { TileConfig } from '../codegen/wgsl/tiles.js';
import type { LoraOptions } from './lora.js';
import type { LossScaleConfig, PrecisionOptions } from './precision.js';

/** What the kernel-level stages compile for: a device's limits and features, or generic defaults. */
export interface Target {
  /** Key of the device in caches (matmul tiles). */
  deviceKey: string;
  strategy: KernelStrategy;
  subgroups: boolean;
  /** The subgroup size when the device has one fixed size (subgroupMinSize = subgroupMaxSize). */
  subgroupSize?: number;
  /** How f16 tensors sit in buffers: array<f16> with the shader-f16 feature, else packed two per u32. */
  f16?: HalfStorage;
  maxStorageBuffersPerShaderStage: number;
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
}

/** Without a device (`kiln compile --emit wgsl`): GPU-style kernels, WebGPU's default buffer count, no size limits. */
export const GENERIC_TARGET: Target = {
  deviceKey: 'default',
  strategy: 'workgroup',
  subgroups: false,
  maxStorageBuffersPerShaderStage: 8,
  maxStorageBufferBindingSize: Infinity,
  maxBufferSize: Infinity,
};

/** Options of each registered pass, by name. Extend it by declaration merging when registering a new pass. */
export interface PassOptionsMap {
  canonicalize: { disable: string[] };
  'attention-fusion': { enabled: boolean; rules: string[]; maxStorageBuffers: number; minScoreBytes: number; minQueries: number };
  lora: LoraOptions;
  'decompose-composites': Record<string, never>;
  precision: PrecisionOptions;
  autodiff: GradOptions;
  optimizer: { config: OptimizerConfig; accumulate: boolean };
  cse: Record<string, never>;
  dce: Record<string, never>;
  schedule: Required<ScheduleOptions>;
  inplace: Record<string, never>;
  'memory-plan': { verify: boolean; maxStorageBufferBindingSize: number; maxBufferSize: number };
  codegen: { strategy: KernelStrategy; subgroups: boolean; subgroupSize: number | null; deviceKey: string; matmulTiles: TileConfig | null; f16: HalfStorage };
}

export type PassName = keyof PassOptionsMap;

/** Per-pass overrides in a request: options merged over what `configure` gives, or `false` to turn the pass off. */
export type PassSettings = { [N in PassName]?: Partial<PassOptionsMap[N]> | false };

/** What a compile is asked to do. Every verb builds one of these and hands it to `runPipeline`. */
export interface CompileRequest {
  /** Differentiate (runs autodiff): the scalar output, and with respect to what. */
  grad?: GradOptions;
  /** Rewrite the selected weights' products into LoRA form (the `lora` pass). */
  lora?: LoraOptions;
  /**
   * Mixed precision (the `precision` pass): activations and matmuls in f16 or bf16, master weights f32; loss
   * scaling for f16 unless `lossScale` is false.
   */
  precision?: { dtype: 'f16' | 'bf16'; lossScale?: Partial<LossScaleConfig> | false };
  /** Append an optimizer step after autodiff (a training step). */
  train?: { optimizer: OptimizerConfig; accumulate?: boolean };
  /** Lower to kernels for this target (runs the kernel-level stages). Without it, only graph-level passes run. */
  target?: Target;
  /** Force tile configs for every matmul (the autotuner). */
  matmulTiles?: TileConfig;
  /** Run only passes of these levels (default: 'graph', plus 'kernels' when a target is given). */
  levels?: PassLevel[];
  /** Run only these passes (still in pipeline order): for tests and for looking at one pass. */
  only?: PassName[];
  passes?: PassSettings;
  printIrBefore?: string[] | 'all';
  printIrAfter?: string[] | 'all';
  /** Where IR dumps go (default: stderr). */
  sink?: (text: string) => void;
}

export type PassLevel = 'graph' | 'kernels';

/** The artefacts of a compile so far. Graph passes map `graph`; kernel-level stages add the rest. */
export interface CompileState {
  graph: Graph;
  schedule?: Schedule;
  plan?: MemoryPlan;
  kernels?: KernelCode[];
  /** Names of the passes that ran, in order. */
  ran: string[];
  /** Milliseconds per pass. */
  ms: Record<string, number>;
}

export interface PassContext {
  request: CompileRequest;
}

export interface PassDef<N extends PassName = PassName> {
  name: N;
  summary: string;
  level: PassLevel;
  /** One line per option (every option must be documented: a missing one is a compile error). */
  options: { [K in keyof PassOptionsMap[N]]-?: string };
  /** Passes that must have run before this one, when it runs. */
  requires?: PassName[];
  /** What holds after it runs (listed by `kiln compile --passes`; `check` verifies what can be checked). */
  guarantees?: string[];
  /** Whether a request runs this pass, and with which options (null: it does not run). */
  configure(req: CompileRequest): PassOptionsMap[N] | null;
  run(state: CompileState, options: PassOptionsMap[N], ctx: PassContext): CompileState;
  /** Verifies the pass's guarantees on its result: a message when one does not hold. */
  check?(state: CompileState): string | null;
  /** What `--print-ir-after` shows for this pass (default: the graph's text IR). */
  show?(state: CompileState): string;
}

type AnyPassDef = { [N in PassName]: PassDef<N> }[PassName];

const registry = new Map<string, AnyPassDef>();
const pipeline: PassName[] = [];

/** Registers a pass and places it in the pipeline: at the end, or after/before a registered pass. */
export function registerPass<N extends PassName>(def: PassDef<N>, where: { after?: PassName; before?: PassName } = {}): void {
  if (registry.has(def.name)) throw new IRError(`pass '${def.name}' is registered twice`);
  registry.set(def.name, def as unknown as AnyPassDef);
  const anchor = where.after ?? where.before;
  if (anchor === undefined) {
    pipeline.push(def.name);
    return;
  }
  const at = pipeline.indexOf(anchor);
  if (at < 0) throw new IRError(`cannot place pass '${def.name}' ${where.after ? 'after' : 'before'} '${anchor}': no such pass in the pipeline`);
  pipeline.splice(where.after ? at + 1 : at, 0, def.name);
}

/** Removes a registered pass (tests that register their own). */
export function unregisterPass(name: PassName): void {
  registry.delete(name);
  const at = pipeline.indexOf(name);
  if (at >= 0) pipeline.splice(at, 1);
}

export function passDef(name: string): AnyPassDef {
  const d = registry.get(name);
  if (!d) throw new KilnError(`unknown pass '${name}' (known: ${[...registry.keys()].join(', ')})`);
  return d;
}

/** The pipeline: every registered pass in the order a compile runs them. */
export const PIPELINE: readonly PassName[] = pipeline;

export const registeredPasses = (): AnyPassDef[] => pipeline.map((n) => registry.get(n)!);

/** `kiln compile --passes`: the pipeline as the registry holds it, with summaries and options. */
export function describePipeline(): string {
  const w = Math.max(8, ...pipeline.map((n) => n.length));
  const lines = [`${'frontend'.padEnd(w)}  .kiln source -> IR graph (parse, check, lower; src/frontend)  [source]`];
  for (const d of registeredPasses()) {
    lines.push(`${d.name.padEnd(w)}  ${d.summary}  [${d.level}]`);
    for (const [k, doc] of Object.entries(d.options as Record<string, string>)) lines.push(`    option ${d.name}.${k}: ${doc}`);
    if (d.requires?.length) lines.push(`    requires: ${d.requires.join(', ')}`);
    if (d.guarantees?.length) lines.push(`    guarantees: ${d.guarantees.join('; ')}`);
  }
  return lines.join('\n');
}
