/**
 * Data parallelism on this machine: per-device memory and step time for dp = 1, 2, 4 devices of the library GPT
 * (one adapter here, so expect no speedup: the devices share the same CPU cores under lavapipe).
 * `2z1`, `4z3`, ...: dp = 2 or 4 with ZeRO stage 1, 2 or 3 (optimizer state / + gradients / + parameters sharded over
 * the dp devices); `2t`: tensor parallel (attention heads and MLP blocks split over the devices, the whole batch on each);
 * `2b`: dp = 2 with the gradients exchanged in buckets of --bucket-kib KiB while the backward pass runs.
 *   npx tsx bench/parallel.ts [--steps 3] [--dp 1,2,4,2b,2z1,2z2,2z3,4z1,4z2,4z3,2t] [--bucket-kib 64] [--set d=64,layers=2,ctx=64] [--batch 8]
 */
import { compileModel } from '../src/frontend/index.js';
import type { HostTensor } from '../src/ir/tensor.js';
import { compileIR } from '../src/passes/index.js';
import { DataParallelDeviceRunner } from '../src/parallel/runner.js';
import { acquireDevices } from '../src/runtime/multi.js';
import { Rng } from '../src/train/rng.js';
import { arg, modelArgs } from './script-args.js';

const { set, B, T } = modelArgs('vocab=256,d=64,heads=4,layers=2,ctx=64');
const steps = Number(arg('--steps', '3'));
const f32 = (v: number): HostTensor => ({ dtype: 'f32', shape: [], data: Float32Array.of(v) });
const kib = (b: number) => (b / 1024).toFixed(0);

const rows: string[] = [];
let base = 1;
let baseOther = 1;
for (const spec of arg('--dp', '1,2,4,2b,2z1,2z2,2z3,4z1,4z2,4z3,2t').split(',')) {
  const n = parseInt(spec, 10);
  const zero = /z(\d)$/.exec(spec) ? Number(/z(\d)$/.exec(spec)![1]) : 0;
  const tp = spec.endsWith('t') ? n : 1;
  const dp = tp > 1 ? 1 : n;
  const { graph } = compileModel('src/models/gpt.kiln', { entry: 'loss', set, dims: { B: B / dp, T } });
  const prog = compileIR(graph, { train: { optimizer: { kind: 'adamw' } }, ...(n > 1 ? { parallel: { dp, zero, tp } } : {}) });
  const devs = await acquireDevices(n);
  const t0 = performance.now();
  const bucketBytes = spec.endsWith('b') ? Number(arg('--bucket-kib', '64')) * 1024 : 0;
  const runner = await DataParallelDeviceRunner.create(prog, devs, 0, { dp, tp }, { bucketBytes });
  const exe = runner.exe;
  const run = (b: Record<string, HostTensor>) => runner.run(b, ['loss']);
  const compileS = (performance.now() - t0) / 1000;
  const r = new Rng(1, 'bench');
  const ints = () => Int32Array.from({ length: B * T }, () => r.int(Number(set.vocab)));
  const batch = () => ({ tokens: { dtype: 'i32' as const, shape: [B, T], data: ints() }, targets: { dtype: 'i32' as const, shape: [B, T], data: ints() }, lr: f32(1e-3), step: f32(1) });
  await run(batch()); // warm-up (lavapipe compiles shaders on first dispatch)
  const t1 = performance.now();
  for (let i = 0; i < steps; i++) await run(batch());
  const ms = (performance.now() - t1) / steps;
  const m = exe.memory()[0];
  const x = exe.exchanged;
  if (n === 1) { base = m.paramBytes; baseOther = m.otherBytes; }
  rows.push(`| ${n} | ${zero ? `dp, ZeRO-${zero}` : tp > 1 ? 'tp (attention + MLP)' : bucketBytes ? `dp, ${exe.programs[0].segments.length - 1} gradient buckets` : n > 1 ? 'dp' : '-'} | ${kib(m.paramBytes)} (${(m.paramBytes / base).toFixed(2)}x) | ${kib(m.otherBytes)} (${(m.otherBytes / baseOther).toFixed(2)}x) | ${kib(m.paramBytes + m.otherBytes)} | ${kib(x.toHost / n)} | ${ms.toFixed(0)} | ${(x.overlappedMs ?? 0).toFixed(1)} | ${Math.round((B * T) / (ms / 1000))} | ${compileS.toFixed(1)} |`);
  process.stderr.write(`${spec} done\n`);
  exe.destroy();
  for (const d of devs) d.destroy();
}
process.stdout.write(
  `GPT ${JSON.stringify(set)}, global batch ${B}x${T}, AdamW\n\n` +
    '| devices | partitioning | params + optimizer state per device (KiB) | activations, gradients, buffers per device (KiB) | total per device (KiB) | host traffic per device per step, each way (KiB) | step (ms) | host combine during the next segment (ms) | tokens/s | compile (s) |\n' +
    '|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|\n' +
    rows.join('\n') +
    '\n',
);
