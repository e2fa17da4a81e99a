import { KilnError } from '../../errors.js';
import type { Graph } from '../../ir/graph.js';
import { DeviceRunner, InterpreterRunner, type StepRunner } from '../../train/runner.js';
import type { ParallelConfig } from '../../parallel/mesh.js';

/** The step runner and the evaluation runner of a job, on the device or in the interpreter. */
export async function makeRunners(
  job: { stepGraph: Graph; evalGraph: Graph; cfg: { seed: number; parallel?: ParallelConfig } },
  device: string,
): Promise<{ runner: StepRunner; evalRunner: StepRunner; describe: string }> {
  if (job.cfg.parallel && (job.cfg.parallel.pp ?? 1) > 1) return (await import('../../parallel/pipeline-cli.js')).makePipelineRunners(job as never, device, job.cfg.parallel);
  if (job.cfg.parallel && job.cfg.parallel.dp * (job.cfg.parallel.tp ?? 1) > 1) return (await import('../../parallel/runners.js')).makeParallelRunners(job, device, job.cfg.parallel);
  if (device === 'interp') {
    return { runner: new InterpreterRunner(job.stepGraph, job.cfg.seed), evalRunner: new InterpreterRunner(job.evalGraph, job.cfg.seed), describe: 'device: reference interpreter (CPU)' };
  }
  if (device !== 'webgpu') throw new KilnError(`--device must be webgpu or interp, got '${device}'`);
  const { acquireDevice } = await import('../../runtime/device.js');
  const dev = await acquireDevice();
  const [runner, evalRunner] = await Promise.all([DeviceRunner.create(job.stepGraph, dev, job.cfg.seed), DeviceRunner.create(job.evalGraph, dev, job.cfg.seed)]);
  const s = runner.stats;
  const mib = (b: number) => (b / 2 ** 20).toFixed(2);
  return {
    runner,
    evalRunner,
    describe: `device: ${dev.adapterInfo.description || dev.adapterInfo.device || dev.adapterInfo.vendor}; training step: ${s.kernels} kernels (${s.kernelsUnfused} before fusion), ${s.pipelines} pipelines, ${mib(s.deviceBytes)} MiB on the device`,
  };
}
