/**
 * The user's side of pipeline parallelism: `--pp N --micro-batches M --pp-schedule gpipe|1f1b` (or
 * `--parallel pp=N`) on `kiln train`, and the runners of such a job.
 */
import { KilnError } from '../errors.js';
import { compileModel } from '../frontend/index.js';
import { updatedParam, type Graph } from '../ir/graph.js';
import type { StepRunner } from '../train/runner.js';
import { isStateParam, type OptimizerConfig } from '../train/optimizers.js';
import { lossEntry, type Objective } from '../train/objectives.js';
import { parallelFromFlags, parseParallel, meshSize, type ParallelConfig } from './mesh.js';
import { partitionPipeline, type PipelineProgram } from './pipeline-parallel.js';
import { bubbleFraction, PP_SCHEDULES, stashBytes, type PipelineScheduleKind } from './pipeline-schedule.js';

export interface PipelineFlags {
  pp?: string;
  microBatches?: string;
  ppSchedule?: string;
}

const posInt = (flag: string, v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new KilnError(`${flag} expects a positive integer, got '${v}'`);
  return n;
};

/** `--devices`, `--parallel`, `--zero` and the pipeline flags together; without a pipeline, parallelFromFlags' answer. */
export function meshFromFlags(devices: string | undefined, parallel: string | undefined, zero: string | undefined, f: PipelineFlags): ParallelConfig | undefined {
  const fromSpec = parallel === undefined ? undefined : parseParallel(parallel).pp;
  if (f.pp === undefined && (fromSpec ?? 1) <= 1) {
    if (f.microBatches !== undefined || f.ppSchedule !== undefined) throw new KilnError('--micro-batches and --pp-schedule split a step over pipeline stages: add --pp N (N > 1)');
    return parallelFromFlags(devices, parallel, zero);
  }
  const pp = f.pp === undefined ? fromSpec! : posInt('--pp', f.pp);
  if (fromSpec !== undefined && fromSpec !== pp) throw new KilnError(`--pp ${pp} does not match --parallel ${parallel}`);
  const mesh: ParallelConfig = { ...(parallel === undefined ? { dp: 1 } : parseParallel(parallel)), pp };
  if ((mesh.tp ?? 1) > 1) throw new KilnError(`--pp ${pp} with --parallel ${parallel}: pipeline stages combined with tensor parallelism need collectives over sub-groups of the devices, designed (docs/parallel.md) but not built`);
  if (zero !== undefined && zero !== '0') throw new KilnError('--zero shards state over data-parallel devices; a pipeline already holds each parameter on its own stage');
  if (devices !== undefined && posInt('--devices', devices) !== meshSize(mesh)) throw new KilnError(`--devices ${devices} does not match --pp ${pp}${mesh.dp > 1 ? ` x dp=${mesh.dp}` : ''} (one device per stage${mesh.dp > 1 ? ' of each replica' : ''})`);
  const kind = (f.ppSchedule ?? '1f1b') as PipelineScheduleKind;
  if (!PP_SCHEDULES.includes(kind)) throw new KilnError(`--pp-schedule must be ${PP_SCHEDULES.join(' or ')}, got '${f.ppSchedule}'`);
  return pp > 1 ? { ...mesh, microBatches: posInt('--micro-batches', f.microBatches ?? String(pp)), ppSchedule: kind } : parallelFromFlags(devices, parallel, zero);
}

interface PipelineJob {
  stepGraph: Graph;
  evalGraph: Graph;
  objective: Objective;
  dims: Record<string, number>;
  config: Record<string, unknown>;
  cfg: { file: string; seed: number; batch: number; accum: number; optimizer: OptimizerConfig; onNonFinite?: string; lora?: unknown; recompute?: unknown; fuseAttention?: boolean };
}

/** The stage programs of a training job: its loss at the micro-batch size, partitioned. */
export function pipelineOfJob(job: PipelineJob, p: ParallelConfig): PipelineProgram {
  const M = p.microBatches ?? p.pp!;
  const c = job.cfg;
  if (c.lora || c.recompute || c.fuseAttention !== undefined) throw new KilnError('--pp: LoRA, recomputation and --fuse-attention / --no-fuse-attention are not combined with pipeline stages yet (the stages fuse every attention, the default)');
  if (c.accum > 1) throw new KilnError('--pp splits each step into --micro-batches and accumulates their gradients: drop --accum');
  const parts = p.dp * M;
  if (c.batch % parts !== 0) throw new KilnError(`--batch ${c.batch} does not split into --micro-batches ${M}${p.dp > 1 ? ` on each of dp=${p.dp} replicas` : ''} (it must be a multiple of ${parts})`);
  const dims = { ...job.dims, B: job.dims.B / parts };
  const { graph } = compileModel(c.file, { entry: lossEntry(job.objective), set: job.config as never, dims });
  const wrt = job.stepGraph.outputs.map(updatedParam).filter((n): n is string => n !== undefined && !isStateParam(n));
  return partitionPipeline(graph, { pp: p.pp!, dp: p.dp, optimizer: { ...c.optimizer, ...(c.onNonFinite === 'skip' ? { skipNonFinite: true } : {}) }, wrt });
}

export async function makePipelineRunners(job: PipelineJob, device: string, p: ParallelConfig): Promise<{ runner: StepRunner; evalRunner: StepRunner; describe: string }> {
  const prog = pipelineOfJob(job, p);
  const M = p.microBatches ?? p.pp!;
  const kind = p.ppSchedule ?? '1f1b';
  const { PipelineDeviceRunner, PipelineInterpreterRunner } = await import('./pipeline-runner.js');
  const { DeviceRunner, InterpreterRunner } = await import('../train/runner.js');
  const how = `pipeline parallel (pp=${p.pp}${p.dp > 1 ? ` x dp=${p.dp} replicas` : ''}, blocks ${prog.blocks.map((b) => `${b[0]}-${b[b.length - 1]}`).join(' | ')}), ${M} micro-batches of ${job.cfg.batch / (M * p.dp)}${p.dp > 1 ? ' per replica' : ''}, ${kind === 'gpipe' ? 'GPipe' : '1F1B'}; bubble ${(bubbleFraction(p.pp!, M) * 100).toFixed(1)}% of the step ((pp-1)/(M+pp-1))`;
  if (device === 'interp') {
    return {
      runner: new PipelineInterpreterRunner(prog, kind, M, job.cfg.seed),
      evalRunner: new InterpreterRunner(job.evalGraph, job.cfg.seed),
      describe: `devices: ${prog.devices.length} simulated in the reference interpreter (CPU), ${how}`,
    };
  }
  const { acquireDevice } = await import('../runtime/device.js');
  const { acquireDevices } = await import('../runtime/multi.js');
  const devs = await acquireDevices(prog.devices.length);
  const runner = await PipelineDeviceRunner.create(prog, kind, M, devs, job.cfg.seed);
  const evalRunner = await DeviceRunner.create(job.evalGraph, await acquireDevice(), job.cfg.seed);
  const kib = (b: number) => (b / 1024).toFixed(1);
  const a = devs[0].adapterInfo;
  const destroy = runner.destroy.bind(runner);
  runner.destroy = () => {
    destroy();
    for (const d of devs) d.destroy();
  };
  const mem = runner.memory().map((m, s) => {
    // the stash slots are made as the schedule needs them: one per micro-batch in flight
    const slots = kind === 'gpipe' ? M : Math.min(M, p.pp! - (s % p.pp!));
    return `device ${s} (stage ${s % p.pp!}): ${kib(m.paramBytes)} KiB parameters, optimizer state and accumulators, ${kib(m.otherBytes)} KiB activations and buffers, ${kib(slots * stashBytes(prog.devices[s]))} KiB saved activations (${slots} micro-batch(es) in flight)`;
  });
  return { runner, evalRunner, describe: `devices: ${prog.devices.length} x ${a.description || a.device || a.vendor}, ${how}; per device: ${mem.join('; ')}` };
}

