// Step time of a GPT training step (adamw) per recomputation policy on this machine's WebGPU device.
// Usage: npx tsx bench/recompute-step.ts LAYERS D T B [REPEATS]
import { randomInput } from '../src/cli/commands/run.js';
import { compileModel } from '../src/frontend/index.js';
import type { HostTensor } from '../src/ir/tensor.js';
import { compileIR } from '../src/passes/index.js';
import { estimate as estimateRecompute, type RecomputeRequest } from '../src/passes/recompute.js';
import { acquireDevice } from '../src/runtime/device.js';
import { compileGraph } from '../src/runtime/index.js';

const [layers, d, T, B, repeats = 5] = process.argv.slice(2).map(Number);
const { graph, model } = compileModel('src/models/gpt.kiln', { entry: 'loss', set: { d, heads: 4, layers, vocab: 256, ctx: T }, dims: { B, T } });
const inputs: Record<string, HostTensor> = {};
for (const n of graph.nodes) if (n.op === 'input') inputs[(n.attrs as { name: string }).name] = randomInput((n.attrs as { name: string }).name, n.type, 0, model.config);
const train = { optimizer: { kind: 'adamw' as const } };
const dev = await acquireDevice();
const base = estimateRecompute(compileIR(graph, { grad: { loss: 'loss' }, train })).peakBytes;
const requests: [string, RecomputeRequest | undefined][] = [['none', undefined], ['blocks', { policy: 'blocks' }], ['sqrt', { policy: 'sqrt' }], ['selective', { policy: 'selective' }], ['budget 0.8x', { budgetBytes: Math.floor(base * 0.8) }], ['budget 0.6x', { budgetBytes: Math.floor(base * 0.6) }], ['none (again: the noise)', undefined]];
console.log(`GPT ${layers}L d${d} T${T} B${B} adamw step on ${dev.adapterInfo?.description ?? 'webgpu'}; median of ${repeats}`);
console.log('| policy | peak MiB | recomputed GFLOPs | step ms | vs none | kernels |');
let t0 = 0;
for (const [name, recompute] of requests) {
  let g;
  try {
    g = compileIR(graph, { grad: { loss: 'loss' }, train, recompute });
  } catch (e) {
    console.log(`| ${name} | ${(e as Error).message} |`);
    continue;
  }
  // the step's scalar inputs (learning rate, step count...): a small constant
  for (const n of g.nodes) {
    const name = (n.attrs as { name?: string }).name!;
    if (n.op === 'input' && !inputs[name]) inputs[name] = { dtype: 'f32', shape: n.type.shape, data: new Float32Array(n.type.shape.reduce((a, b) => a * b, 1)).fill(name === 'lr' ? 1e-3 : 1) } as HostTensor;
  }
  const e = estimateRecompute(g);
  const exe = await compileGraph(g, dev, { seed: 0 });
  await exe.run(inputs);
  const ms: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t = performance.now();
    await exe.run(inputs);
    ms.push(performance.now() - t);
  }
  exe.destroy();
  const med = ms.sort((a, b) => a - b)[Math.floor(ms.length / 2)];
  if (name === 'none') t0 = med;
  const kernels = exe.stats.kernels;
  console.log(`| ${name} | ${(e.peakBytes / (1 << 20)).toFixed(2)} | ${(e.recomputedFlops / 1e9).toFixed(3)} | ${med.toFixed(1)} | ${(med / t0).toFixed(2)} | ${kernels} |`);
}
process.exit(0);
