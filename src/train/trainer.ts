/**
 * The training job: model + objective + data + optimizer + schedule, driven step by step on a StepRunner, with
 * periodic validation, checkpoints and exact resume. Everything that decides a step's numbers (data position,
 * host RNG for masking, dropout seed, parameters, optimizer state, step count) is in the checkpoint.
 */
import { basename } from 'node:path';
import { updatedParam } from '../ir/graph.js';
import { compileIR } from '../passes/index.js';
import type { RecomputeRequest } from '../passes/recompute.js';
import type { LossScaleConfig, Precision } from '../passes/precision.js';
import { applyLora, isLoraParam, LORA_GLOBS, type LoraOptions } from '../passes/lora.js';
import { KilnError } from '../errors.js';
import { compileModel, loadModelInfo, type ModelInfo } from '../frontend/index.js';
import type { Graph } from '../ir/graph.js';
import type { AttrsOf } from '../ir/op.js';
import { hashString } from '../ir/philox.js';
import type { HostTensor } from '../ir/tensor.js';
import type { DType } from '../ir/types.js';
import { isFloat } from '../ir/types.js';
import type { ConfigValue } from '../cli/options.js';
import { loadCheckpoint, saveCheckpoint, validateCheckpoint, type Checkpoint, type ExpectedShapes } from './checkpoint.js';
import { Batcher, loadCorpus, loadLabelled, type BatcherState, type TokenStreams } from './data.js';
import { evalEntry, IGNORE, lossEntry, makeBatch, OBJECTIVE_INPUTS, OBJECTIVES, spanTargetLength, windowLength, type Objective, type ObjectiveOptions } from './objectives.js';
import { isStateParam, OPTIMIZERS, type OptimizerConfig } from './optimizers.js';
import { globMatcher } from './init-from.js';
import { Rng, type RngState } from './rng.js';
import type { StepRunner } from './runner.js';
import { learningRate, SCHEDULES, type LrSchedule } from './schedule.js';
import { makeTokenizer, type Tokenizer } from './tokenizers.js';
import { localBatch, meshSize, type ParallelConfig } from '../parallel/mesh.js';

export interface TrainConfig {
  file: string;
  set: Record<string, ConfigValue>;
  objective?: Objective;
  optimizer: OptimizerConfig;
  schedule: LrSchedule;
  batch: number;
  accum: number;
  steps: number;
  seed: number;
  data: string;
  tokenizer: string;
  objectiveOptions?: ObjectiveOptions;
  evalEvery: number;
  evalBatches: number;
  saveEvery: number;
  out?: string;
  /** Cap on corpus tokens read (tests). */
  maxTokens?: number;
  /** Partition the training step over devices (data parallel: the step graph is the model at batch / dp; tensor parallel). */
  parallel?: ParallelConfig;
  /** Train LoRA adapters of these weights instead of the weights (the lora pass); `initFrom` is the base. */
  lora?: LoraOptions;
  /** The base weights of a LoRA run (recorded in its checkpoints, which hold only the adapters). */
  initFrom?: string;
  /**
   * Flash attention kernels (the attention-fusion pass) on the step and evaluation graphs: true for every
   * attention, false for none, undefined for the pass's default (every attention; the step is compiled without a
   * device, so the CPU-adapter exception of the pass does not apply).
   */
  fuseAttention?: boolean;
  /** Gradient checkpointing of the step (the recompute pass): a policy and/or a memory budget. */
  recompute?: RecomputeRequest;
  /** Parameters to train (globs; default all) and to freeze (globs): frozen ones get no gradient, update or state. */
  trainable?: { train?: string[]; freeze?: string[] };
  /** A step with a non-finite loss or gradient norm: stop (default), or skip it (at most maxNonFinite times). */
  onNonFinite?: 'stop' | 'skip';
  maxNonFinite?: number;
  /** Settings a resume may change on purpose (`--allow-change`); see RESUME_SETTINGS. */
  allowChange?: string[];
  /** Mixed precision of the step and evaluation graphs (the precision pass); f32 (default) runs no pass. */
  precision?: Precision;
  /** f16's dynamic loss scaling settings (defaults: 65536, doubled after 2000 clean steps). */
  lossScale?: Partial<LossScaleConfig>;
}

export interface StepRecord {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  tokens: number;
  ms: number;
  /** The step's loss or gradient norm was not finite and its update was not applied (--on-nonfinite skip). */
  skipped?: boolean;
  /** f16 loss scaling: the scale this step used, and whether the step overflowed (skipped; the scale halved). */
  lossScale?: number;
  overflow?: boolean;
  /** Steps skipped for overflow so far in the run (checkpointed). */
  overflows?: number;
}

const DEFAULT_OBJECTIVE: Record<string, Objective> = { gpt: 'clm', bert: 'mlm', prefixlm: 'prefix', t5: 'span' };

export function defaultObjective(file: string): Objective {
  return DEFAULT_OBJECTIVE[basename(file).replace(/\.kiln$/, '')] ?? 'clm';
}

export interface PreparedJob {
  cfg: TrainConfig;
  objective: Objective;
  tok: Tokenizer;
  dims: { B: number; T: number; S?: number };
  modelName: string;
  config: Record<string, ConfigValue>;
  /** The loss entry with dropout off: validation and evaluation. */
  evalGraph: Graph;
  stepGraph: Graph;
  streams: TokenStreams;
}

/** Compiles everything a job needs; no device work, so errors in the model or options surface first. */
export async function prepareJob(cfg: TrainConfig): Promise<PreparedJob> {
  const objective = cfg.objective ?? defaultObjective(cfg.file);
  if (!OBJECTIVES.includes(objective)) throw new KilnError(`unknown objective '${objective}' (expected ${OBJECTIVES.join(', ')})`);
  if (!SCHEDULES.includes(cfg.schedule.kind)) throw new KilnError(`unknown schedule '${cfg.schedule.kind}' (expected ${SCHEDULES.join(', ')})`);
  if (!OPTIMIZERS.includes(cfg.optimizer.kind)) throw new KilnError(`unknown optimizer '${cfg.optimizer.kind}' (expected ${OPTIMIZERS.join(', ')})`);
  if (!(cfg.batch >= 1 && cfg.accum >= 1 && cfg.steps >= 1)) throw new KilnError('--batch, --accum and --steps must be positive');
  const tok = await makeTokenizer(cfg.tokenizer);
  const info0 = loadModelInfo(cfg.file, { set: cfg.set });
  checkObjectiveFits(objective, info0);
  const vocab = cfg.set.vocab ?? tok.vocabSize;
  if (typeof vocab !== 'number' || vocab < tok.vocabSize) throw new KilnError(`--set vocab=${vocab} is smaller than the ${tok.name} tokenizer's ${tok.vocabSize} tokens`);
  const ctx = Number(info0.config.ctx ?? 64);
  // classification reads labelled lines; the model's `classes` follows the data's labels unless set
  const labelled = objective === 'cls' ? loadLabelled(cfg.data, tok, ctx) : undefined;
  if (labelled && cfg.set.classes !== undefined && Number(cfg.set.classes) < labelled.classes.length) {
    throw new KilnError(`--set classes=${cfg.set.classes} is fewer than the ${labelled.classes.length} labels of ${cfg.data} (${labelled.classes.slice(0, 6).join(', ')})`);
  }
  const set = { ...cfg.set, vocab, ...(labelled && cfg.set.classes === undefined ? { classes: labelled.classes.length } : {}) };
  const dims: PreparedJob['dims'] = objective === 'span' ? { B: cfg.batch, S: ctx, T: spanTargetLength(ctx, cfg.objectiveOptions) } : { B: cfg.batch, T: ctx };
  const entry = lossEntry(objective);
  const { graph, model } = compileModel(cfg.file, { entry, set, dims });
  const fusion = cfg.fuseAttention === undefined ? undefined : { 'attention-fusion': cfg.fuseAttention ? {} : (false as const) };
  const lora = cfg.lora;
  const evalSet = 'dropout' in info0.config ? { ...set, dropout: 0 } : set;
  if (cfg.precision !== undefined && !['f32', 'f16', 'bf16'].includes(cfg.precision)) throw new KilnError(`--precision must be f32, f16 or bf16, got '${cfg.precision}'`);
  const half = cfg.precision === 'f16' || cfg.precision === 'bf16' ? cfg.precision : undefined;
  const evalGraph = compileIR(evalEntry(objective) === entry && evalSet === set ? graph : compileModel(cfg.file, { entry: evalEntry(objective), set: evalSet, dims }).graph, {
    passes: fusion,
    lora,
    precision: half ? { dtype: half, lossScale: false } : undefined,
  });
  const par = cfg.parallel && meshSize(cfg.parallel) > 1 ? cfg.parallel : undefined;
  const perDevice = par && par.dp > 1 ? compileModel(cfg.file, { entry, set, dims: { ...dims, B: localBatch(cfg.batch, par) } }).graph : graph;
  if (cfg.onNonFinite !== undefined && cfg.onNonFinite !== 'stop' && cfg.onNonFinite !== 'skip') throw new KilnError(`--on-nonfinite must be stop or skip, got '${cfg.onNonFinite}'`);
  const optimizer = cfg.onNonFinite === 'skip' ? { ...cfg.optimizer, skipNonFinite: true } : cfg.optimizer;
  // with LoRA only the adapters train (narrowed further by --train/--freeze if given)
  const wrt = lora ? trainableNames(applyLora(graph, lora), { train: cfg.trainable?.train ?? [...LORA_GLOBS], freeze: cfg.trainable?.freeze }) : trainableNames(graph, cfg.trainable);
  const precision = half ? { dtype: half, lossScale: cfg.lossScale } : undefined;
  const stepGraph = compileIR(perDevice, { grad: { loss: 'loss', wrt }, train: { optimizer, accumulate: cfg.accum > 1 }, parallel: par, passes: fusion, lora, recompute: cfg.recompute, precision });
  const streams = labelled ?? loadCorpus(cfg.data, tok, { maxTokens: cfg.maxTokens });
  return { cfg, objective, tok, dims, modelName: model.name, config: model.config, evalGraph, stepGraph, streams };
}

/** The parameters `--train` selects (all when absent) less those `--freeze` selects; a selection of none is refused. */
export function trainableNames(g: Graph, sel: TrainConfig['trainable']): string[] | undefined {
  if (!sel || (!sel.train?.length && !sel.freeze?.length)) return undefined;
  const all = g.nodes.filter((n) => n.op === 'param' && isFloat(n.type.dtype)).map((n) => (n.attrs as AttrsOf<'param'>).name);
  const inTrain = sel.train?.length ? globMatcher(sel.train) : () => true;
  const frozen = globMatcher(sel.freeze ?? []);
  for (const [flag, pats] of [['--train', sel.train], ['--freeze', sel.freeze]] as const) {
    for (const p of pats ?? []) if (!all.some(globMatcher([p]))) throw new KilnError(`${flag} '${p}' matches no parameter of the model (parameters: ${all.slice(0, 8).join(', ')}${all.length > 8 ? ', ...' : ''})`);
  }
  const names = all.filter((n) => inTrain(n) && !frozen(n));
  if (!names.length) throw new KilnError('--train/--freeze leave no parameter to train');
  return names;
}

/** Loads a checkpoint to resume `job` from, refusing one of another model, shape, optimizer state or objective. */
export function loadResumeCheckpoint(job: PreparedJob, path: string): Checkpoint {
  const trained = new Set(job.stepGraph.outputs.map(updatedParam));
  const expected: ExpectedShapes = {
    // a LoRA run's checkpoints hold what it trains (the adapters); the base comes from the file they name
    params: paramShapes(job.stepGraph, (n) => !isStateParam(n) && (!job.cfg.lora || isLoraParam(n) || trained.has(n))),
    optim: paramShapes(job.stepGraph, isStateParam),
    modelName: job.modelName,
  };
  const ck = loadCheckpoint(path, expected);
  const objective = (ck.state.train as { objective?: string }).objective;
  if (objective !== job.objective) throw new KilnError(`checkpoint ${ck.dir} was trained with objective '${objective}', not '${job.objective}'`);
  return ck;
}

/**
 * Every setting that decides how a run continues, as recorded in a checkpoint. `fixed` ones can never differ on
 * resume (the optimizer state or the batches would mean something else); the others may, with --allow-change.
 */
export const RESUME_SETTINGS: Record<string, { fixed?: boolean; of: (c: TrainConfig, job: PreparedJob) => unknown }> = {
  objective: { fixed: true, of: (_c, j) => j.objective },
  tokenizer: { fixed: true, of: (c) => c.tokenizer },
  model: { fixed: true, of: (_c, j) => j.config },
  optimizer: { fixed: true, of: (c) => ({ ...c.optimizer, clip: undefined, weightDecay: undefined, skipNonFinite: undefined }) },
  'weight-decay': { of: (c) => c.optimizer.weightDecay ?? null },
  clip: { of: (c) => c.optimizer.clip ?? 1 },
  data: { of: (c) => c.data },
  batch: { of: (c) => c.batch },
  accum: { of: (c) => c.accum },
  seed: { of: (c) => c.seed },
  precision: { fixed: true, of: (c) => c.precision ?? 'f32' },
  objectiveOptions: { fixed: true, of: (c) => c.objectiveOptions ?? {} },
  steps: { of: (c) => c.steps },
  lr: { of: (c) => c.schedule.peak },
  warmup: { of: (c) => c.schedule.warmup },
  schedule: { of: (c) => c.schedule.kind },
};

const canonical = (v: unknown): string => JSON.stringify(v, (_k, x) => (x && typeof x === 'object' && !Array.isArray(x) ? Object.fromEntries(Object.entries(x).filter(([, y]) => y !== undefined).sort(([a], [b]) => a.localeCompare(b))) : x));

export function resumeSettings(job: PreparedJob): Record<string, unknown> {
  return Object.fromEntries(Object.entries(RESUME_SETTINGS).map(([k, s]) => [k, JSON.parse(canonical(s.of(job.cfg, job)))]));
}

/**
 * Compares the job's settings with the checkpoint's: a difference is refused naming both values, unless the setting
 * may change and is listed in `cfg.allowChange`. Returns the allowed changes ("steps 12 -> 20") for the summary.
 */
export function checkResumeSettings(job: PreparedJob, ck: Checkpoint): string[] {
  const saved = (ck.state.train as { settings?: Record<string, unknown> }).settings;
  if (!saved) throw new KilnError(`checkpoint ${ck.dir} records no training settings (written by an older Kiln): it cannot be resumed exactly`);
  const allow = new Set(job.cfg.allowChange ?? []);
  for (const a of allow) {
    if (!(a in RESUME_SETTINGS)) throw new KilnError(`--allow-change: unknown setting '${a}' (changeable: ${Object.keys(RESUME_SETTINGS).filter((k) => !RESUME_SETTINGS[k].fixed).join(', ')})`);
    if (RESUME_SETTINGS[a].fixed) throw new KilnError(`--allow-change: '${a}' cannot change on resume (the checkpoint's state would mean something else)`);
  }
  const now = resumeSettings(job);
  const changes: string[] = [];
  for (const [k, v] of Object.entries(now)) {
    const was = canonical(saved[k]);
    if (was === canonical(v)) continue;
    const what = `${k}: the checkpoint has ${was}, this run has ${canonical(v)}`;
    if (!allow.has(k)) {
      throw new KilnError(
        `cannot resume ${ck.dir}: ${what}` + (RESUME_SETTINGS[k].fixed ? '' : ` (to change it on purpose, pass --allow-change ${k})`),
      );
    }
    changes.push(`${k} ${was} -> ${canonical(v)}`);
  }
  if (job.cfg.steps <= ck.state.step) {
    throw new KilnError(`--steps ${job.cfg.steps}: the checkpoint ${ck.dir} is already at step ${ck.state.step}, nothing to train (pass a larger --steps and --allow-change steps)`);
  }
  return changes;
}

/** Checks a loaded checkpoint's parameters against a compiled entry of the model (eval, sample): the same rule as resume. */
export function checkCheckpointFits(ck: Checkpoint, graph: Graph, modelName: string): void {
  validateCheckpoint(ck, { modelName, params: paramShapes(graph, (n) => !isStateParam(n)) });
}

/** The objective must make exactly the inputs the model's loss entry takes; anything else is refused up front. */
function checkObjectiveFits(objective: Objective, model: ModelInfo): void {
  const entry = lossEntry(objective);
  const loss = model.entries.find((e) => e.name === entry);
  if (!loss) throw new KilnError(`model '${model.name}' (${model.file}) has no '${entry}' entry to train${objective === 'cls' ? ' (objective cls needs cls_loss and cls_eval entries, as the library gpt and bert have)' : ''}`);
  const wanted = loss.inputs.map((i) => i.name).filter((name) => name !== 'rng_seed');
  const fits = (o: Objective) => lossEntry(o) === entry && wanted.length === OBJECTIVE_INPUTS[o].length && wanted.every((name) => OBJECTIVE_INPUTS[o].includes(name));
  if (fits(objective)) return;
  const others = OBJECTIVES.filter(fits);
  throw new KilnError(
    `objective '${objective}' makes batches of ${OBJECTIVE_INPUTS[objective].join(', ')}, but the loss entry of model '${model.name}' takes ${wanted.join(', ')}` +
      (others.length ? `: use --objective ${others.join(' or ')}` : ''),
  );
}

export function paramShapes(g: Graph, filter: (name: string) => boolean): Record<string, { dtype: DType; shape: number[] }> {
  const out: Record<string, { dtype: DType; shape: number[] }> = {};
  for (const n of g.nodes) {
    if (n.op !== 'param') continue;
    const name = (n.attrs as AttrsOf<'param'>).name;
    if (filter(name)) out[name] = { dtype: n.type.dtype, shape: [...n.type.shape] };
  }
  return out;
}

export interface TrainState {
  step: number;
  batcher: BatcherState;
  rng: RngState;
  history: StepRecord[];
  val: { step: number; loss: number; accuracy?: number }[];
  /** Steps skipped for a non-finite loss or gradient norm. */
  skipped?: number;
}

export interface TrainHooks {
  onStep?(r: StepRecord): void;
  onEval?(step: number, loss: number): void;
  onSave?(dir: string): void;
  /** Stop after this many steps of this invocation (tests simulating a crash). */
  stopAfter?: number;
}

/** Counted (non-ignored) target positions of a batch: the weight of its mean loss in an accumulated step. */
function countedTargets(batch: Record<string, HostTensor>): number {
  const t = batch.targets ?? batch.labels;
  let n = 0;
  for (const v of t.data) if (v !== IGNORE) n++;
  return n;
}

export class Trainer {
  readonly train: Batcher;
  private rng: Rng;
  state: TrainState;
  /** The newest checkpoint this run saved or resumed from: what a diverged run points the user to. */
  lastGood?: string;
  /** f16 loss scaling: steps skipped for overflow so far (the device's `opt.skipped_steps`). */
  overflows = 0;

  constructor(
    readonly job: PreparedJob,
    readonly runner: StepRunner,
    readonly evalRunner?: StepRunner,
  ) {
    const L = windowLength(job.objective, job.objective === 'span' ? job.dims.S! : job.dims.T);
    this.train = new Batcher(job.streams.train, L - (job.objective === 'span' ? 0 : 1), job.cfg.seed);
    this.rng = new Rng(job.cfg.seed, 'objective');
    this.state = { step: 0, batcher: this.train.state(), rng: this.rng.state(), history: [], val: [] };
  }

  private batchFrom(b: Batcher, rng: Rng): Record<string, HostTensor> {
    const seqs = b.next(this.job.dims.B);
    return makeBatch(this.job.objective, seqs, this.job.dims, this.job.tok, rng, this.job.cfg.objectiveOptions);
  }

  /**
   * Restores parameters, optimizer state, data position and RNGs from a checkpoint: a path, or one that
   * `loadResumeCheckpoint` already validated (so a mismatch is refused before any device work).
   */
  async resume(from: string | Checkpoint): Promise<void> {
    const ck = typeof from === 'string' ? loadResumeCheckpoint(this.job, from) : from;
    const t = ck.state.train as unknown as TrainState;
    await this.runner.setParams({ ...ck.params, ...ck.optim });
    this.overflows = ck.optim['opt.skipped_steps']?.data[0] ?? 0;
    this.train.restore(t.batcher);
    this.rng = Rng.from(t.rng);
    this.state = { step: ck.state.step, batcher: t.batcher, rng: t.rng, history: t.history ?? [], val: t.val ?? [], skipped: t.skipped ?? 0 };
    this.lastGood = ck.dir;
  }

  async save(dir: string): Promise<string> {
    const all = await this.runner.getParams();
    const params: Record<string, HostTensor> = {};
    const optim: Record<string, HostTensor> = {};
    const c = this.job.cfg;
    // a LoRA run's checkpoint holds the adapters and a reference to its base weights, not a copy of them
    const trained = new Set(this.job.stepGraph.outputs.map(updatedParam));
    for (const [k, v] of Object.entries(all)) if (!c.lora || isStateParam(k) || isLoraParam(k) || trained.has(k)) (isStateParam(k) ? optim : params)[k] = v;
    const saved = saveCheckpoint(dir, this.state.step, params, optim, {
      model: { file: c.file, name: this.job.modelName, config: this.job.config },
      train: {
        ...this.state,
        batcher: this.train.state(),
        rng: this.rng.state(),
        objective: this.job.objective,
        optimizer: c.optimizer.kind,
        tokenizer: c.tokenizer,
        data: c.data,
        seed: c.seed,
        dims: this.job.dims,
        schedule: c.schedule,
        settings: resumeSettings(this.job),
        ...(c.lora ? { lora: { ...c.lora, base: c.initFrom ?? null } } : {}),
      },
    });
    this.lastGood = saved;
    return saved;
  }

  /** The error of a diverged run: what went wrong, and the checkpoint to go back to. */
  private diverged(step: number, loss: number, gradNorm: number, why: string): KilnError {
    const c = this.job.cfg;
    return new KilnError(
      `training diverged at step ${step}: loss ${loss}, gradient norm ${gradNorm} (${why}). ` +
        (this.lastGood ? `The last good checkpoint is ${this.lastGood}` : 'No checkpoint was written before it') +
        '; nothing non-finite was saved. Try a lower --lr, a --clip, more --warmup' +
        (c.onNonFinite === 'skip' ? '' : ', or --on-nonfinite skip to skip such steps') +
        '.',
    );
  }

  /** One optimizer step (accum micro-batches). */
  async step(): Promise<StepRecord> {
    const c = this.job.cfg;
    const step = this.state.step;
    const lr = learningRate(c.schedule, step);
    const t0 = performance.now();
    const micro = Array.from({ length: c.accum }, () => this.batchFrom(this.train, this.rng));
    const total = micro.reduce((s, b) => s + countedTargets(b), 0);
    let loss = 0;
    let gradNorm = 0;
    let finite = true;
    const scaled = this.job.stepGraph.outputs.some((o) => o.name === 'loss_scale');
    let lossScale: number | undefined;
    let skippedAfter: number | undefined;
    for (let k = 0; k < c.accum; k++) {
      const w = c.accum > 1 ? countedTargets(micro[k]) / Math.max(1, total) : 1;
      const inputs: Record<string, HostTensor> = {
        ...micro[k],
        lr: { dtype: 'f32', shape: [], data: Float32Array.of(lr) },
        step: { dtype: 'f32', shape: [], data: Float32Array.of(step + 1) },
        loss_weight: { dtype: 'f32', shape: [], data: Float32Array.of(w) },
        apply: { dtype: 'u32', shape: [], data: Uint32Array.of(k === c.accum - 1 ? 1 : 0) },
        rng_seed: { dtype: 'u32', shape: [], data: Uint32Array.of(hashString(`${c.seed}:${step}:${k}`)) },
      };
      const out = await this.runner.run(inputs, scaled ? ['loss', 'grad_norm', 'loss_scale', 'skipped_steps'] : ['loss', 'grad_norm']);
      loss += w * out.loss.data[0];
      gradNorm = out.grad_norm.data[0];
      finite &&= Number.isFinite(out.loss.data[0]);
      if (scaled) {
        lossScale = out.loss_scale.data[0];
        skippedAfter = out.skipped_steps.data[0];
      }
    }
    // f16 loss scaling: a gradient that overflowed is an expected event the step already handled (update skipped,
    // scale halved), not a divergence; a non-finite loss still is one
    const overflow = scaled && skippedAfter! > this.overflows;
    if (scaled) this.overflows = skippedAfter!;
    // overflowing at a scale of 1 is not a range problem any more: the gradients themselves are not finite
    finite &&= Number.isFinite(loss) && ((overflow && lossScale! > 1) || Number.isFinite(gradNorm));
    // the parameters on the device are already non-finite in 'stop' mode: stop before anything can save them
    if (!finite && c.onNonFinite !== 'skip') throw this.diverged(step + 1, loss, gradNorm, 'a non-finite loss or gradient norm');
    this.state.step++;
    const rec: StepRecord = { step: this.state.step, loss, lr, gradNorm, tokens: c.batch * c.accum * this.job.dims.T, ms: performance.now() - t0 };
    if (scaled) {
      rec.lossScale = lossScale;
      rec.overflow = overflow;
      rec.overflows = this.overflows;
      if (overflow) rec.skipped = true;
    }
    if (!finite) {
      rec.skipped = true;
      this.state.skipped = (this.state.skipped ?? 0) + 1;
      const max = c.maxNonFinite ?? 10;
      if (this.state.skipped > max) throw this.diverged(this.state.step, loss, gradNorm, `${this.state.skipped} non-finite steps skipped, more than --max-nonfinite ${max}`);
    }
    this.state.history.push(rec);
    return rec;
  }

  /** Mean loss over the first `batches` validation batches (always the same ones, so evaluations compare). */
  /** Accuracy of the last evaluation (classification objectives). */
  lastAccuracy: number | undefined;

  async evaluate(batches: number): Promise<number> {
    const runner = this.evalRunner;
    if (!runner) throw new Error('no evaluation runner');
    const names = runner.paramNames;
    await runner.setParams(await this.runner.getParams(names));
    const L = windowLength(this.job.objective, this.job.objective === 'span' ? this.job.dims.S! : this.job.dims.T);
    const vb = new Batcher(this.job.streams.val, L - (this.job.objective === 'span' ? 0 : 1), 1234);
    const vr = new Rng(1234, 'validation');
    let sum = 0;
    let n = 0;
    // a classification evaluation also counts correct predictions (accuracy)
    const counts = this.job.evalGraph.outputs.some((o) => o.name === 'correct');
    let correct = 0;
    let examples = 0;
    for (let i = 0; i < Math.min(batches, Math.ceil(vb.windows / this.job.dims.B)); i++) {
      const batch = this.batchFrom(vb, vr);
      const w = countedTargets(batch);
      const out = await runner.run({ ...batch, rng_seed: { dtype: 'u32', shape: [], data: Uint32Array.of(0) } }, counts ? ['loss', 'correct'] : ['loss']);
      sum += out.loss.data[0] * w;
      n += w;
      if (counts) {
        correct += out.correct.data[0];
        examples += batch.labels.shape[0];
      }
    }
    this.lastAccuracy = counts ? correct / Math.max(1, examples) : undefined;
    return sum / Math.max(1, n);
  }

  async run(hooks: TrainHooks = {}): Promise<void> {
    const c = this.job.cfg;
    let done = 0;
    while (this.state.step < c.steps) {
      // let the event loop run between steps (the interpreter never waits on anything): a signal is handled at once
      await new Promise((r) => setImmediate(r));
      const rec = await this.step();
      hooks.onStep?.(rec);
      const last = this.state.step === c.steps;
      // --eval-every 0: only at the end
      if (this.evalRunner && ((c.evalEvery > 0 && this.state.step % c.evalEvery === 0) || last)) {
        const v = await this.evaluate(c.evalBatches);
        this.state.val.push(this.lastAccuracy === undefined ? { step: this.state.step, loss: v } : { step: this.state.step, loss: v, accuracy: this.lastAccuracy });
        hooks.onEval?.(this.state.step, v);
      }
      if (c.out && ((c.saveEvery > 0 && this.state.step % c.saveEvery === 0) || last)) {
        // saved whether or not a hook listens (`hooks.onSave?.(await ...)` would skip the save without one)
        const dir = await this.save(c.out);
        hooks.onSave?.(dir);
      }
      if (hooks.stopAfter !== undefined && ++done >= hooks.stopAfter) return;
    }
  }
}

/** Entropy (nats/token) of the corpus' unigram distribution: the loss a model that ignores context can reach. */
export function unigramEntropy(stream: Int32Array): number {
  const counts = new Map<number, number>();
  for (const t of stream) counts.set(t, (counts.get(t) ?? 0) + 1);
  let h = 0;
  for (const c of counts.values()) {
    const p = c / stream.length;
    h -= p * Math.log(p);
  }
  return h;
}
