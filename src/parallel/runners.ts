/** The step and evaluation runners of a partitioned job (`kiln train --devices N --parallel dp=N|tp=N`). */
import type { Graph } from '../ir/graph.js';
import type { StepRunner } from '../train/runner.js';
import type { ParallelConfig } from './mesh.js';
import { DataParallelDeviceRunner, DataParallelInterpreterRunner } from './runner.js';

export async function makeParallelRunners(
  job: { stepGraph: Graph; evalGraph: Graph; cfg: { seed: number } },
  device: string,
  p: ParallelConfig,
): Promise<{ runner: StepRunner; evalRunner: StepRunner; describe: string }> {
  const { DeviceRunner, InterpreterRunner } = await import('../train/runner.js');
  const mesh = { dp: p.dp, tp: p.tp ?? 1 };
  const n = mesh.dp * mesh.tp;
  const how = mesh.tp > 1 ? `tensor parallel (tp=${mesh.tp}, attention heads and MLP blocks)` : `data parallel (dp=${p.dp}${p.zero ? `, ZeRO stage ${p.zero}` : ''})`;
  if (device === 'interp') {
    return {
      runner: new DataParallelInterpreterRunner(job.stepGraph, p.dp, job.cfg.seed, mesh),
      evalRunner: new InterpreterRunner(job.evalGraph, job.cfg.seed),
      describe: `devices: ${n} simulated in the reference interpreter (CPU), ${how}`,
    };
  }
  const { acquireDevice } = await import('../runtime/device.js');
  const { acquireDevices } = await import('../runtime/multi.js');
  const devs = await acquireDevices(n);
  const runner = await DataParallelDeviceRunner.create(job.stepGraph, devs, job.cfg.seed, mesh);
  // Validation runs on the process's shared device, with the whole batch, from the replicas' (equal) parameters.
  const evalRunner = await DeviceRunner.create(job.evalGraph, await acquireDevice(), job.cfg.seed);
  const kib = (b: number) => (b / 1024).toFixed(1);
  const mem = runner.exe.memory()[0];
  const a = devs[0].adapterInfo;
  const destroy = runner.destroy.bind(runner);
  runner.destroy = () => {
    destroy();
    for (const d of devs) d.destroy();
  };
  return {
    runner,
    evalRunner,
    describe:
      `devices: ${n} x ${a.description || a.device || a.vendor}, ${how}; per device: ` +
      `${kib(mem.paramBytes)} KiB parameters and optimizer state, ${kib(mem.otherBytes)} KiB activations, gradients and buffers`,
  };
}
