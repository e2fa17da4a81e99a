import type { Graph } from '../../ir/graph.js';
import type { HostTensor } from '../../ir/tensor.js';
import { acquireDevice } from '../../runtime/device.js';
import { compileGraph } from '../../runtime/index.js';

/**
 * Compiles a graph for the WebGPU device, runs it once and returns its outputs. With `profile`, a second run is
 * timed per kernel (the first pays for first-use costs) and printed against the device's roofline (cached, else
 * measured once), with the time by kernel family.
 */
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
    const res = await exe.run(inputs, { download });
    if (profile) {
      const { deviceRoofline, describeRoofline, cachedRoofline } = await import('../../runtime/roofline.js');
      const { costProfile, familyProfile, formatCostProfile, formatFamilies } = await import('../../runtime/profile.js');
      if (!(await cachedRoofline(dev))) process.stderr.write('measuring the device roofline once (kiln doctor --roofline)...\n');
      const roof = await deviceRoofline(dev);
      const timed = (await exe.run(inputs, { profile: true, download: [] })).profile ?? [];
      const rows = costProfile(exe.schedule, timed, roof);
      process.stderr.write(`${describeRoofline(roof)}\n\n${formatCostProfile(rows, roof)}\n\nby kernel family:\n${formatFamilies(familyProfile(rows, roof))}\n`);
    }
    const s = exe.stats;
    process.stderr.write(`webgpu: ${JSON.stringify(s)}\n`);
    return res.outputs;
  } finally {
    exe.destroy();
    dev.destroy();
  }
}
