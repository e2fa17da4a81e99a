import type { Graph } from '../../ir/graph.js';
import type { HostTensor } from '../../ir/tensor.js';
import { acquireDevice } from '../../runtime/device.js';
import { compileGraph, formatProfile } from '../../runtime/index.js';

/** Compiles a graph for the WebGPU device, runs it once and returns its outputs (and prints a profile if asked). */
export async function runOnDevice(
  graph: Graph,
  inputs: Record<string, HostTensor>,
  params: Record<string, HostTensor> | undefined,
  seed: number,
  profile: boolean,
  download?: string[],
): Promise<Record<string, HostTensor>> {
  const dev = await acquireDevice();
  const exe = await compileGraph(graph, dev, { seed, subgroups: dev.features.has('subgroups') });
  try {
    for (const [name, t] of Object.entries(params ?? {})) if (exe.paramNames.includes(name)) exe.setParam(name, t);
    const res = await exe.run(inputs, { profile, download });
    if (profile && res.profile) process.stderr.write(formatProfile(res.profile) + '\n');
    const s = exe.stats;
    process.stderr.write(`webgpu: ${JSON.stringify(s)}\n`);
    return res.outputs;
  } finally {
    exe.destroy();
    dev.destroy();
  }
}
