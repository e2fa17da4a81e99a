/**
 * Pipeline parallelism on this machine: per-device memory, step time and the bubble (analytic, counted by the
 * executor, and measured as each device's idle time) for pp = 1, 2, 4 stages of the library GPT, GPipe and 1F1B,
 * with M micro-batches. One adapter here: the stages share the same CPU cores under lavapipe, so expect no speedup.
 *   npx tsx bench/pipeline.ts [--steps 3] [--rows 1,2g2,2g8,2f8,4f8,2x2f4] [--set vocab=256,d=64,heads=4,layers=4,ctx=64] [--batch 8]
 * A row is `[<dp>x]<pp><g|f><M>` (g: GPipe, f: 1F1B; dp replicas of the pipeline); `1` is one device with the whole batch.
 */
import { compileModel } from '../src/frontend/index.js';
import type { HostTensor } from '../src/ir/tensor.js';
import { compileIR } from '../src/passes/index.js';
import { partitionPipeline } from '../src/parallel/pipeline-parallel.js';
import { PipelineDeviceRunner } from '../src/parallel/pipeline-runner.js';
import { bubbleFraction } from '../src/parallel/pipeline-schedule.js';
import { acquireDevices } from '../src/runtime/multi.js';
import { DeviceRunner } from '../src/train/runner.js';
import { Rng } from '../src/train/rng.js';
import { arg, modelArgs } from './script-args.js';

const { set, B, T } = modelArgs('vocab=256,d=64,heads=4,layers=4,ctx=64');
const steps = Number(arg('--steps', '3'));
const f32 = (v: number): HostTensor => ({ dtype: 'f32', shape: [], data: Float32Array.of(v) });
const kib = (b: number) => (b / 1024).toFixed(0);
const optimizer = { kind: 'adamw' as const };

const rows: string[] = [];
for (const spec of arg('--rows', '1,2g2,2g8,2f8,4f8,2x2f4').split(',')) {
  const m = /^(?:(\d+)x)?(\d+)(?:([gf])(\d+))?$/.exec(spec);
  if (!m) throw new Error(`bad row '${spec}'`);
  const dp = Number(m[1] ?? 1);
  const pp = Number(m[2]);
  const kind = m[3] === 'g' ? 'gpipe' : '1f1b';
  const M = Number(m[4] ?? 1);
  const r = new Rng(1, 'bench');
  const ints = () => Int32Array.from({ length: B * T }, () => r.int(Number(set.vocab)));
  const batch = () => ({ tokens: { dtype: 'i32' as const, shape: [B, T], data: ints() }, targets: { dtype: 'i32' as const, shape: [B, T], data: ints() }, lr: f32(1e-3), step: f32(1) });
  const devs = await acquireDevices(dp * pp);
  const t0 = performance.now();
  let run: (b: Record<string, HostTensor>) => Promise<unknown>;
  let mem: { paramBytes: number; otherBytes: number; stashBytes?: number }[];
  let bubble = () => '-';
  let memOf = () => mem;
  let destroy: () => void;
  if (pp === 1) {
    const one = await DeviceRunner.create(compileIR(compileModel('src/models/gpt.kiln', { entry: 'loss', set, dims: { B, T } }).graph, { train: { optimizer } }), devs[0], 0);
    run = (b) => one.run(b, ['loss']);
    mem = [{ paramBytes: NaN, otherBytes: one.stats.deviceBytes }];
    destroy = () => one.destroy();
  } else {
    const prog = partitionPipeline(compileModel('src/models/gpt.kiln', { entry: 'loss', set, dims: { B: B / (dp * M), T } }).graph, { pp, dp, optimizer });
    const runner = await PipelineDeviceRunner.create(prog, kind, M, devs, 0);
    run = (b) => runner.run(b, ['loss']);
    mem = [];
    memOf = () => runner.memory();
    bubble = () => {
      const l = runner.stats.last!;
      return `${(bubbleFraction(pp, M) * 100).toFixed(1)}% / ${((l.idleTicks[0] / l.ticks) * 100).toFixed(1)}% / ${l.idleMs.map((x) => ((x / l.wallMs) * 100).toFixed(0) + '%').join(', ')}`;
    };
    destroy = () => runner.destroy();
  }
  const compileS = (performance.now() - t0) / 1000;
  await run(batch()); // warm-up (lavapipe compiles shaders on first dispatch)
  const t1 = performance.now();
  for (let i = 0; i < steps; i++) await run(batch());
  const ms = (performance.now() - t1) / steps;
  mem = memOf().map((x) => ({ ...x, otherBytes: x.otherBytes + (x.stashBytes ?? 0) }));
  const worst = mem.reduce((a, x) => (x.paramBytes + x.otherBytes > a.paramBytes + a.otherBytes ? x : a));
  const per = pp === 1 ? `${kib(worst.otherBytes)} (all)` : `${kib(worst.paramBytes)} + ${kib(worst.otherBytes)} = ${kib(worst.paramBytes + worst.otherBytes)}`;
  rows.push(`| ${dp > 1 ? `${dp} x ${pp} (${dp * pp})` : pp} | ${pp === 1 ? '-' : kind === 'gpipe' ? 'GPipe' : '1F1B'} | ${pp === 1 ? '-' : M} | ${per} | ${ms.toFixed(0)} | ${Math.round((B * T) / (ms / 1000))} | ${bubble()} | ${compileS.toFixed(1)} |`);
  process.stderr.write(`${spec} done\n`);
  destroy();
  for (const d of devs) d.destroy();
}
process.stdout.write(
  `GPT ${JSON.stringify(set)}, global batch ${B}x${T}, AdamW\n\n` +
    '| stages (devices; dp x pp) | schedule | micro-batches (per replica) | per device, the largest: parameters+state+accumulators + activations, saved activations and buffers (KiB) | step (ms) | tokens/s | bubble: analytic / counted / measured idle per device | compile (s) |\n' +
    '|---:|---|---:|---:|---:|---:|---|---:|\n' +
    rows.join('\n') +
    '\n',
);
