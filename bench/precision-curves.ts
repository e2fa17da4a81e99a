/**
 * The default GPT (`npm start`'s run: bytes, Moby-Dick, AdamW, warmup + cosine) trained in f32, f16 and bf16 with
 * the same seed, one after another on this device: loss curves in one plot (docs/precision-loss.svg) and a JSON
 * summary per precision (final losses, device memory, median step time, steps skipped for overflow).
 *   npx tsx bench/precision-curves.ts [steps=500] [out=out/precision]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Precision } from '../src/passes/precision.js';
import { acquireDevice } from '../src/runtime/device.js';
import { lossCurveSvg } from '../src/train/plot.js';
import { DeviceRunner } from '../src/train/runner.js';
import { prepareJob, Trainer } from '../src/train/trainer.js';

const steps = Number(process.argv[2] ?? 500);
const out = process.argv[3] ?? 'out/precision';
mkdirSync(out, { recursive: true });
const dev = await acquireDevice();
const curves: Record<string, { step: number; loss: number }[]> = {};
const summary: Record<string, unknown>[] = [];
for (const precision of ['f32', 'f16', 'bf16'] as Precision[]) {
  const job = await prepareJob({
    file: 'src/models/gpt.kiln',
    set: {},
    optimizer: { kind: 'adamw' },
    schedule: { kind: 'cosine', peak: 3e-3, warmup: 20, total: steps },
    batch: 8,
    accum: 1,
    steps,
    seed: 0,
    data: 'moby-dick',
    tokenizer: 'bytes',
    evalEvery: 0,
    evalBatches: 8,
    saveEvery: 0,
    precision,
  });
  const runner = await DeviceRunner.create(job.stepGraph, dev, 0);
  const evalRunner = await DeviceRunner.create(job.evalGraph, dev, 0);
  const t = new Trainer(job, runner, evalRunner);
  const t0 = performance.now();
  await t.run({ onStep: (r) => r.step % 50 === 0 && process.stderr.write(`${precision} step ${r.step} loss ${r.loss.toFixed(4)}${r.lossScale ? ` scale ${r.lossScale}` : ''}\n`) });
  const h = t.state.history;
  const ms = h.slice(10).map((r) => r.ms).sort((a, b) => a - b);
  curves[precision] = h.map((r) => ({ step: r.step, loss: r.loss }));
  summary.push({
    precision,
    lastLoss: h.slice(-20).reduce((s, r) => s + r.loss, 0) / 20,
    validationLoss: t.state.val.at(-1)?.loss,
    deviceMiB: runner.stats.deviceBytes / 2 ** 20,
    medianStepMs: ms[Math.floor(ms.length / 2)],
    overflowSkipped: t.overflows,
    finalLossScale: h.at(-1)?.lossScale,
    seconds: (performance.now() - t0) / 1000,
  });
  process.stderr.write(JSON.stringify(summary.at(-1)) + '\n');
  runner.destroy();
  evalRunner.destroy();
}
writeFileSync(join(out, 'summary.json'), JSON.stringify(summary, null, 2));
writeFileSync(
  join(out, 'precision-loss.svg'),
  lossCurveSvg({
    title: `default GPT · clm · moby-dick · ${steps} steps: f32, f16 (loss-scaled), bf16`,
    train: curves.f32,
    trainLabel: 'f32',
    more: [{ label: 'f16', points: curves.f16 }, { label: 'bf16', points: curves.bf16 }],
    val: [],
  }),
);
console.log(JSON.stringify(summary, null, 2));
dev.destroy();
