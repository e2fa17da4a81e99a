import { writeFileSync } from 'node:fs';
import { KilnError } from '../../errors.js';
import { compileModel } from '../../frontend/index.js';
import type { Graph } from '../../ir/graph.js';
import { graphToJSON, printGraph } from '../../ir/print.js';
import type { CompileRequest, CompileState, PassName, PassSettings } from '../../passes/index.js';
import { describePipeline, passDef, PIPELINE, runPipeline } from '../../passes/index.js';
import { planBytes, recomputeFromFlags, splitPeak } from '../../passes/recompute.js';
import { OPTIMIZERS, type OptimizerKind } from '../../train/optimizers.js';
import type { ConfigValue } from '../options.js';

export interface CompileOpts {
  set: Record<string, ConfigValue>;
  dim: Record<string, number>;
  entry: string;
  emit: string;
  grad?: boolean;
  train?: boolean;
  optimizer: string;
  accum?: boolean;
  passes?: boolean;
  fuseAttention?: boolean;
  memoryBudget?: string;
  recompute?: string;
  precision?: string;
  printIrAfter?: string;
  printIrBefore?: string;
  passOption: string[];
  disablePass: string[];
  output?: string;
  parallel?: string;
  zero?: string;
  microBatches?: string;
}

/** What `--emit` prints: the IR or JSON at the end of the graph passes, what the backward keeps, or a stage's result. */
const EMITS = ['ir', 'json', 'saved', 'schedule', 'memory', 'wgsl'];
const STAGE_OF: Record<string, PassName> = { schedule: 'inplace', memory: 'memory-plan', wgsl: 'codegen' };

/** The scalar output a --grad compile differentiates: `loss` if present, else the first output. */
export function lossOutput(g: Graph): string {
  const named = g.outputs.find((o) => o.name === 'loss');
  const out = named ?? g.outputs[0];
  if (!out || g.nodes[out.id].type.shape.length !== 0) {
    throw new KilnError(`--grad needs an entry whose output 'loss' (or first output) is a scalar; ${g.name} returns ${g.outputs.map((o) => o.name).join(', ')}`);
  }
  return out.name;
}

const dumpList = (v: string | undefined) => (v === undefined ? undefined : v === 'all' ? ('all' as const) : v.split(',').map((s) => s.trim()));

/** `--pass-option NAME.KEY=VALUE` (VALUE as JSON, else a string) and `--disable-pass NAME` as per-pass settings. */
export function passSettings(options: string[] = [], disabled: string[] = []): PassSettings {
  const out: Record<string, Record<string, unknown> | false> = {};
  for (const o of options) {
    const m = /^([\w-]+)\.(\w+)=(.*)$/s.exec(o);
    if (!m) throw new KilnError(`--pass-option must be PASS.OPTION=VALUE, got '${o}'`);
    const [, pass, key, raw] = m;
    const def = passDef(pass);
    if (!(key in def.options)) throw new KilnError(`pass '${pass}' has no option '${key}' (options: ${Object.keys(def.options).join(', ') || 'none'})`);
    let value: unknown = raw;
    try {
      value = JSON.parse(raw);
    } catch {
      // a bare string
    }
    const prev = out[pass];
    out[pass] = { ...(prev === false ? {} : prev), [key]: value };
  }
  for (const d of disabled) {
    passDef(d);
    out[d] = false;
  }
  return out as PassSettings;
}

/** The request the compile verb (and `kiln tune`) makes of the pipeline. */
export function compileRequest(graph: Graph, o: Partial<Pick<CompileOpts, 'grad' | 'train' | 'optimizer' | 'accum' | 'printIrAfter' | 'printIrBefore' | 'passOption' | 'disablePass' | 'fuseAttention' | 'memoryBudget' | 'recompute' | 'precision'>>): CompileRequest {
  if (o.optimizer !== undefined && !OPTIMIZERS.includes(o.optimizer as OptimizerKind)) throw new KilnError(`--optimizer must be one of ${OPTIMIZERS.join(', ')}, got '${o.optimizer}'`);
  const differentiate = o.grad || o.train;
  if ((o.memoryBudget !== undefined || o.recompute !== undefined) && !differentiate) throw new KilnError('--memory-budget and --recompute choose what the backward recomputes: add --train (or --grad)');
  if (o.precision !== undefined && !['f32', 'f16', 'bf16'].includes(o.precision)) throw new KilnError(`--precision must be f32, f16 or bf16, got '${o.precision}'`);
  const half = o.precision === 'f16' || o.precision === 'bf16' ? o.precision : undefined;
  return {
    precision: half ? { dtype: half } : undefined,
    grad: differentiate ? { loss: lossOutput(graph) } : undefined,
    train: o.train ? { optimizer: { kind: (o.optimizer ?? 'adamw') as OptimizerKind }, accumulate: !!o.accum } : undefined,
    recompute: recomputeFromFlags(o.memoryBudget, o.recompute),
    passes: { ...(o.fuseAttention === undefined ? {} : { 'attention-fusion': o.fuseAttention ? {} : (false as const) }), ...passSettings(o.passOption, o.disablePass) },
    printIrAfter: dumpList(o.printIrAfter),
    printIrBefore: dumpList(o.printIrBefore),
    sink: (s: string) => process.stderr.write(s + '\n'),
  };
}

/** `--emit memory` of a training step: the peak with the recomputation asked for and without any. */
function recomputeSummary(graph: Graph, req: CompileRequest, state: CompileState): string {
  const mib = (b: number) => `${(b / (1 << 20)).toFixed(2)} MiB (${b} bytes)`;
  const split = splitPeak(state.graph, state.plan!);
  const peak = split.peakBytes;
  // the part recomputation cannot cut, so that a budget can be judged against it
  const parts = `fixed ${mib(split.fixedBytes)} (parameters, optimizer state, gradients, inputs/outputs), activations ${mib(split.activationBytes)}`;
  if (!req.recompute) return `peak device memory: ${mib(peak)} (no recomputation: --memory-budget or --recompute to trade compute for memory)\n  ${parts}`;
  const quiet = { ...req, recompute: undefined, printIrAfter: undefined, printIrBefore: undefined, only: undefined, levels: ['graph', 'kernels'] as const, passes: { ...req.passes, codegen: false as const } };
  const w = runPipeline(graph, { ...quiet, levels: [...quiet.levels] });
  const without = splitPeak(w.graph, w.plan!);
  return (
    `peak device memory: ${mib(peak)} with recomputation (${req.recompute.policy ?? 'budget'}), ${mib(without.peakBytes)} without (${(peak / without.peakBytes).toFixed(3)}x)\n` +
    `  ${parts}; without: activations ${mib(without.activationBytes)} (${(split.activationBytes / without.activationBytes).toFixed(3)}x)`
  );
}

export async function compile(file: string | undefined, o: CompileOpts): Promise<void> {
  if (o.passes) {
    process.stdout.write(describePipeline() + '\n');
    return;
  }
  if (!file) throw new KilnError('kiln compile needs a .kiln file (or --passes to list the pipeline)');
  const stage = EMITS.includes(o.emit) ? STAGE_OF[o.emit] : (o.emit as PassName);
  if (!EMITS.includes(o.emit) && !PIPELINE.includes(stage)) {
    throw new KilnError(`--emit must be one of ${EMITS.join(', ')} or a pipeline stage (${PIPELINE.join(', ')}), got '${o.emit}'`);
  }
  if (o.emit === 'saved' && !o.grad && !o.train) throw new KilnError('--emit saved lists what the backward pass keeps alive: add --grad or --train');
  const { graph } = compileModel(file, { entry: o.entry, set: o.set, dims: o.dim });
  const req = compileRequest(graph, o);
  if (o.parallel !== undefined || (o.zero ?? '0') !== '0') {
    const { parallelFromFlags } = await import('../../parallel/mesh.js');
    req.parallel = parallelFromFlags(undefined, o.parallel, o.zero);
    if (!o.grad && !o.train) throw new KilnError('--parallel partitions a training step: add --train (or --grad)');
  }
  if ((req.parallel?.pp ?? 1) > 1) {
    // one program per pipeline stage and phase, each shown as the asked stage of the pipeline makes it
    const { describePipelineProgram } = await import('../../parallel/pipeline-describe.js');
    const { hostExchangeProgram } = await import('../../parallel/pipeline-runner.js');
    if (!o.train) throw new KilnError('--parallel pp=N partitions a training step: add --train');
    const M = Number(o.microBatches ?? req.parallel!.pp);
    if (!Number.isInteger(M) || M < 1) throw new KilnError(`--micro-batches expects a positive integer, got '${o.microBatches}'`);
    const prog = runPipeline(graph, { ...req, levels: ['graph'], only: PIPELINE.slice(0, PIPELINE.indexOf('pipeline') + 1) }).pipeline!;
    const kernelsOnly = stage !== undefined && passDef(stage).level === 'kernels';
    const text = describePipelineProgram(prog, M, (g) => {
      if (!kernelsOnly) return { text: printGraph(g) };
      const st = runPipeline(hostExchangeProgram(g), { target: req.target, levels: ['kernels'], only: PIPELINE.slice(0, PIPELINE.indexOf(stage) + 1) });
      const def = passDef(stage);
      return { text: def.show ? def.show(st) : printGraph(st.graph), peakBytes: st.plan ? planBytes(st.plan) : undefined };
    });
    if (o.output) writeFileSync(o.output, text + '\n');
    else process.stdout.write(text + '\n');
    return;
  }
  // Kernel-level stages run when the output needs them, or when a dump asks for one of them.
  const dumps = [req.printIrAfter, req.printIrBefore];
  const wantsKernels =
    (stage !== undefined && passDef(stage).level === 'kernels') ||
    dumps.some((d) => d === 'all' || (d ?? []).some((n) => PIPELINE.includes(n as PassName) && passDef(n).level === 'kernels'));
  // --emit STAGE stops after that stage, so its output is what that stage made
  const only = stage === undefined ? undefined : PIPELINE.slice(0, PIPELINE.indexOf(stage) + 1);
  if (wantsKernels && req.parallel && req.parallel.dp * (req.parallel.tp ?? 1) > 1) {
    // collectives are not kernels: show each segment of the per-device program and the exchanges between them
    const { describeSegmentedProgram } = await import('../../parallel/segments.js');
    const g = runPipeline(graph, { ...req, levels: ['graph'] }).graph;
    const text = describeSegmentedProgram(g, (seg) => {
      const st = runPipeline(seg, { ...req, printIrAfter: undefined, printIrBefore: undefined, levels: ['kernels'], only });
      const def = passDef(stage);
      return def.show ? def.show(st) : printGraph(st.graph);
    }, (seg) => runPipeline(seg, { ...req, printIrAfter: undefined, printIrBefore: undefined, levels: ['kernels'], only: ['schedule', 'inplace', 'memory-plan'] }).plan!);
    if (o.output) writeFileSync(o.output, text + '\n');
    else process.stdout.write(text + '\n');
    return;
  }
  const state = runPipeline(graph, { ...req, levels: wantsKernels ? ['graph', 'kernels'] : ['graph'], only });
  let text: string;
  if (o.emit === 'ir') text = printGraph(state.graph);
  else if (o.emit === 'json') text = graphToJSON(state.graph);
  else if (o.emit === 'saved') text = (await import('../../autodiff/index.js')).describeSaved(state.graph);
  else {
    const def = passDef(stage);
    if (!state.ran.includes(stage)) throw new KilnError(`stage '${stage}' does not run in this compile (add --grad or --train for autodiff/optimizer stages)`);
    text = def.show ? def.show(state) : printGraph(state.graph);
    if (o.emit === 'memory' && (o.grad || o.train)) text += '\n' + recomputeSummary(graph, req, state);
  }
  if (o.output) {
    try {
      writeFileSync(o.output, text + '\n');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new KilnError(`-o ${o.output}: cannot write: ${code === 'EISDIR' ? 'it is a folder (give a file name)' : (code ?? String(e))}`);
    }
  }
  else process.stdout.write(text + '\n');
}
