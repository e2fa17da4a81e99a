// One tiny WebGPU check of the recompute pass: the compiled gradient step with per-layer checkpoints gives the same
// loss and gradients, bit for bit, as the step without (the recomputed kernels are the same kernels on the same inputs).
import { describe, expect, it } from 'vitest';
import { randomInput } from '../../src/cli/commands/run.js';
import { compileModel } from '../../src/frontend/index.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import { compileIR, estimateRecompute } from '../../src/passes/index.js';
import { compileGraph } from '../../src/runtime/index.js';
import { sharedDevice } from '../runtime/helpers.js';

describe('recompute on WebGPU', () => {
  it('a gpt gradient step is bit-identical with blocks recomputation', async () => {
    const { graph, model: info } = compileModel('src/models/gpt.kiln', { entry: 'loss', set: { d: 16, heads: 2, layers: 2, vocab: 11, ctx: 8 }, dims: { B: 2, T: 8 } });
    const inputs: Record<string, HostTensor> = {};
    for (const n of graph.nodes) if (n.op === 'input') inputs[(n.attrs as { name: string }).name] = randomInput((n.attrs as { name: string }).name, n.type, 1, info.config);
    const dev = await sharedDevice();
    const outs: Record<string, HostTensor>[] = [];
    for (const recompute of [undefined, { policy: 'blocks' as const }]) {
      const g = compileIR(graph, { grad: { loss: 'loss' }, recompute });
      if (recompute) expect(g.nodes.some((n) => n.recompute)).toBe(true);
      const exe = await compileGraph(g, dev, { seed: 0 });
      try {
        outs.push((await exe.run(inputs)).outputs);
      } finally {
        exe.destroy();
      }
    }
    expect(Object.keys(outs[0]).length).toBeGreaterThan(10);
    for (const k of Object.keys(outs[0])) expect(Array.from(outs[1][k].data), k).toEqual(Array.from(outs[0][k].data));
    expect(Number.isFinite(outs[0].loss.data[0])).toBe(true);
  }, 120_000);

  it('KILN_DEVICE_MEMORY: a step that does not fit the capped device is refused; with recomputation it fits and runs', async () => {
    const { graph, model: info } = compileModel('src/models/gpt.kiln', { entry: 'loss', set: { d: 16, heads: 2, layers: 2, vocab: 11, ctx: 8 }, dims: { B: 2, T: 8 } });
    const inputs: Record<string, HostTensor> = {};
    for (const n of graph.nodes) if (n.op === 'input') inputs[(n.attrs as { name: string }).name] = randomInput((n.attrs as { name: string }).name, n.type, 1, info.config);
    const dev = await sharedDevice();
    const none = compileIR(graph, { grad: { loss: 'loss' } });
    const blocks = compileIR(graph, { grad: { loss: 'loss' }, recompute: { policy: 'blocks' } });
    const [a, b] = [estimateRecompute(none).peakBytes, estimateRecompute(blocks).peakBytes];
    expect(b).toBeLessThan(a);
    process.env.KILN_DEVICE_MEMORY = String(Math.floor((a + b) / 2));
    try {
      await expect(compileGraph(none, dev, { seed: 0 })).rejects.toThrow(/out of device memory: graph .* needs \d+ bytes, \d+ are in use and the device has \d+ \(KILN_DEVICE_MEMORY\); a training step fits in less with --memory-budget/);
      const exe = await compileGraph(blocks, dev, { seed: 0 });
      try {
        expect(Number.isFinite((await exe.run(inputs)).outputs.loss.data[0])).toBe(true);
        // a second copy does not fit next to the first: the cap counts every live executable on the device
        await expect(compileGraph(blocks, dev, { seed: 0 })).rejects.toThrow(/out of device memory/);
      } finally {
        exe.destroy();
      }
      (await compileGraph(blocks, dev, { seed: 0 })).destroy(); // destroyed executables give their bytes back
    } finally {
      delete process.env.KILN_DEVICE_MEMORY;
    }
  });
});
