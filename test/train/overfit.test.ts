import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { acquireDevice } from '../../src/runtime/device.js';
import { DeviceRunner } from '../../src/train/runner.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import { makeBatch } from '../../src/train/objectives.js';
import { Rng } from '../../src/train/rng.js';
import { learningRate } from '../../src/train/schedule.js';
import { prepareJob, Trainer } from '../../src/train/trainer.js';

const f32 = (v: number): HostTensor => ({ dtype: 'f32', shape: [], data: Float32Array.of(v) });

// A tiny corpus of exactly four 16-token windows: every batch is the same four sequences, so a model can memorise them.
const dir = mkdtempSync(join(tmpdir(), 'kiln-overfit-'));
const text = 'the whale swam. the ship sailed on the grey sea. call me ishmael, said he.'.slice(0, 65);
writeFileSync(join(dir, 'tiny.txt'), text);

const small = { d: 32, heads: 2, layers: 1, d_ff: 64, ctx: 16 };

describe('overfitting a tiny batch on WebGPU drives the loss towards zero', () => {
  afterAll(async () => (await acquireDevice()).destroy());
  const cases: [string, number][] = [
    ['gpt', 0.05],
    ['prefixlm', 0.05],
    ['bert', 0.05],
    ['t5', 0.05],
  ];
  for (const [model, bound] of cases) {
    it(`${model}`, async () => {
      const job = await prepareJob({
        file: `src/models/${model}.kiln`,
        set: model === 't5' ? { ...small, enc_layers: 1, dec_layers: 1 } : small,
        optimizer: { kind: 'adamw', weightDecay: 0 },
        schedule: { kind: 'constant', peak: 1e-2, warmup: 5, total: 150 },
        batch: 4,
        accum: 1,
        steps: 150,
        seed: 1,
        data: join(dir, 'tiny.txt'),
        tokenizer: 'bytes',
        evalEvery: 0,
        evalBatches: 1,
        saveEvery: 0,
      });
      const dev = await acquireDevice();
      const runner = await DeviceRunner.create(job.stepGraph, dev, 1);
      try {
        // one batch, drawn once through the model's objective (masks and spans included), repeated every step
        const t = new Trainer(job, runner);
        const seqs = t.train.next(4);
        const batch = makeBatch(job.objective, seqs, job.dims, job.tok, new Rng(7), {});
        const losses: number[] = [];
        for (let step = 0; step < 150; step++) {
          const out = await runner.run(
            { ...batch, lr: f32(learningRate(job.cfg.schedule, step)), step: f32(step + 1), rng_seed: { dtype: 'u32', shape: [], data: Uint32Array.of(step) } },
            ['loss'],
          );
          losses.push(out.loss.data[0]);
        }
        const first = losses[0];
        const last = losses.slice(-5).reduce((a, b) => a + b, 0) / 5;
        expect(first).toBeGreaterThan(4); // ~ln(vocab) at initialisation
        expect(last).toBeLessThan(bound);
      } finally {
        runner.destroy();
      }
    });
  }
});
