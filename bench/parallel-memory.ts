/**
 * Per-device memory of the partitioned training step from the memory plans (no device needed): parameters +
 * optimizer state, and activations (the intermediates' slots; for a partitioned program also the values kept
 * between its segments and the exchange buffers: what src/runtime/multi.ts allocates, segmentedMemory).
 * Single device, data parallel (also with gradient buckets), ZeRO stages 1-3 at dp = 2 and 4, tensor parallel at tp = 2.
 *   npx tsx bench/parallel-memory.ts [--set vocab=256,d=64,heads=4,layers=2,ctx=64] [--batch 8]
 */
import { compileModel } from '../src/frontend/index.js';
import type { Graph } from '../src/ir/graph.js';
import { savedForBackward } from '../src/autodiff/saved.js';
import { compileIR } from '../src/passes/index.js';
import { deviceBytes } from '../src/schedule/memory.js';
import { runPipeline } from '../src/passes/pipeline.js';
import { segmentedMemory, splitAtCollectives } from '../src/parallel/segments.js';
import { modelArgs } from './script-args.js';

const { set, B, T } = modelArgs('vocab=256,d=64,heads=4,layers=2,ctx=64');
const kib = (b: number) => (b / 1024).toFixed(0);
const planOf = (g: Graph) => runPipeline(g, { levels: ['kernels'], only: ['schedule', 'inplace', 'memory-plan'] }).plan!;

const specs: [string, number, number, number, number?][] = [
  ['single device', 1, 1, 0],
  ['dp=2', 2, 1, 0], ['dp=2, gradients in 64 KiB buckets', 2, 1, 0, 64 * 1024], ['dp=2, ZeRO-1', 2, 1, 1], ['dp=2, ZeRO-2', 2, 1, 2], ['dp=2, ZeRO-3', 2, 1, 3],
  ['dp=4', 4, 1, 0], ['dp=4, ZeRO-1', 4, 1, 1], ['dp=4, ZeRO-2', 4, 1, 2], ['dp=4, ZeRO-3', 4, 1, 3],
  ['tp=2 (attention + MLP)', 1, 2, 0],
];
const rows: string[] = [];
let base = { params: 1, act: 1, saved: 1 };
for (const [label, dp, tp, zero, bucketBytes] of specs) {
  const { graph } = compileModel('src/models/gpt.kiln', { entry: 'loss', set, dims: { B: B / dp, T } });
  const prog = compileIR(graph, { train: { optimizer: { kind: 'adamw' } }, ...(dp * tp > 1 ? { parallel: { dp, tp, zero } } : {}) });
  // forward values the backward pass reads (what recomputation or tensor parallelism divides)
  const saved = savedForBackward(prog).reduce((a, i) => a + deviceBytes(prog.nodes[i].type), 0);
  let params: number, act: number;
  if (dp * tp === 1) {
    const plan = planOf(prog);
    params = plan.paramBytes;
    act = plan.slotBytes;
    base = { params, act, saved };
  } else {
    const m = segmentedMemory(splitAtCollectives(prog, { bucketBytes }), planOf);
    params = m.paramBytes;
    act = m.activationBytes;
  }
  rows.push(`| ${label} | ${kib(params)} (${(params / base.params).toFixed(2)}x) | ${kib(act)} (${(act / base.act).toFixed(2)}x) | ${kib(saved)} (${(saved / base.saved).toFixed(2)}x) |`);
}
process.stdout.write(
  `GPT ${JSON.stringify(set)}, global batch ${B}x${T}, AdamW; per device, from the memory plans\n\n` +
    '| configuration | parameters + optimizer state (KiB) | activations, gradients, exchanged values (KiB) | saved for backward (KiB) |\n|---|---:|---:|---:|\n' +
    rows.join('\n') +
    '\n',
);
