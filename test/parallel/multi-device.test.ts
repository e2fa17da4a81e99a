import { afterAll, describe, expect, it } from 'vitest';
import { compileModel } from '../../src/frontend/index.js';
import type { Graph } from '../../src/ir/graph.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import { compileIR } from '../../src/passes/index.js';
import { DataParallelDeviceRunner } from '../../src/parallel/runner.js';
import { acquireDevice, type KilnDevice } from '../../src/runtime/device.js';
import { acquireDevices, MultiDeviceExecutable } from '../../src/runtime/multi.js';
import { combineCollective, shard } from '../../src/ir/ops/collective.js';
import { tensorShards } from '../../src/parallel/tensor-parallel.js';
import { DeviceRunner } from '../../src/train/runner.js';
import { Rng } from '../../src/train/rng.js';

const f32 = (v: number): HostTensor => ({ dtype: 'f32', shape: [], data: Float32Array.of(v) });
const cfg = { d: 8, heads: 2, layers: 1, vocab: 7, d_ff: 16, ctx: 4 };
const B = 4, T = 4, STEPS = 20, LR = 3e-3;
// Parameters after 20 AdamW steps: the GPU kernels sum in a different order at the per-device shapes, and Adam divides
// by the root of the second moment, so a near-zero gradient turns a last-bit difference into up to a whole step
// (lr); the bound is a tenth of one step.
const PARAM_BOUND = 0.1 * LR;

function step(batch: number, dp: number, zero = 0): Graph {
  const { graph } = compileModel('src/models/gpt.kiln', { entry: 'loss', set: cfg, dims: { B: batch, T } });
  return compileIR(graph, { train: { optimizer: { kind: 'adamw' } }, ...(dp > 1 ? { parallel: { dp, zero } } : {}) });
}

function batch(t: number): Record<string, HostTensor> {
  const r = new Rng(t % 2, 'multi');
  const ints = () => Int32Array.from({ length: B * T }, () => r.int(cfg.vocab));
  return { tokens: { dtype: 'i32', shape: [B, T], data: ints() }, targets: { dtype: 'i32', shape: [B, T], data: ints() }, lr: f32(LR), step: f32(t + 1) };
}

describe('data parallel on two WebGPU devices (one adapter) equals one device with the whole batch', () => {
  let devs: KilnDevice[] = [];
  afterAll(async () => {
    for (const d of devs) d.destroy();
    (await acquireDevice()).destroy();
  });

  for (const [zero, bucketBytes] of [[0, 0], [0, 256], [1, 0], [2, 0], [3, 0]]) it(`dp=2${zero ? `, ZeRO stage ${zero}` : ''}${bucketBytes ? ', gradients in buckets of 256 bytes' : ''}: losses and parameters after 20 AdamW steps of a tiny GPT`, async () => {
    if (!devs.length) devs = await acquireDevices(2);
    const single = await DeviceRunner.create(step(B, 1), await acquireDevice(), 0);
    const dp = await DataParallelDeviceRunner.create(step(B / 2, 2, zero), devs, 0, { dp: 2, tp: 1 }, { bucketBytes });
    try {
      for (let t = 0; t < STEPS; t++) {
        const a = (await single.run(batch(t), ['loss'])).loss.data[0];
        const b = (await dp.run(batch(t), ['loss'])).loss.data[0];
        expect(Math.abs(a - b) / a).toBeLessThan(1e-5);
      }
      if (!zero && !bucketBytes) {
        // traffic of a step: every gradient and the loss to the host, the reduced gradients back
        const gradBytes = dp.exe.programs[0].exchanges[1].reduce((s, c) => s + c.type.shape.reduce((x, y) => x * y, 1) * 4, 0);
        expect(dp.exe.exchanged.toHost).toBe(2 * gradBytes);
      }
      let worst = 0;
      const got = await dp.getParams(); // sharded optimizer state gathered from both devices
      for (const name of single.paramNames) {
        if (!name.startsWith('opt.') && zero < 3) {
          const p1 = await dp.exe.getParam(name, 1);
          expect(Array.from(p1.data)).toEqual(Array.from(got[name].data)); // the replicas agree bit for bit
        }
        const ref = (await single.getParams([name]))[name];
        expect(got[name].shape).toEqual(ref.shape);
        for (let i = 0; i < ref.data.length; i++) worst = Math.max(worst, Math.abs(ref.data[i] - got[name].data[i]));
      }
      expect(worst).toBeLessThan(PARAM_BOUND);
      const mem = dp.exe.memory();
      console.log(`dp=2${zero ? ` zero=${zero}` : ''}${bucketBytes ? ` buckets ${dp.exe.programs[0].segments.length - 1}` : ''} on lavapipe: max parameter/state difference ${worst.toExponential(2)}; per device: ${mem.map((m) => `${m.paramBytes} B parameters+state, ${m.otherBytes} B other`).join('; ')}; single device ${single.stats.deviceBytes} B`);
    } finally {
      single.destroy();
      dp.destroy();
    }
  }, 600_000);

  it('tp=2 (attention heads and MLP blocks split over the two devices): losses and parameters after 20 AdamW steps', async () => {
    if (!devs.length) devs = await acquireDevices(2);
    const { graph } = compileModel('src/models/gpt.kiln', { entry: 'loss', set: cfg, dims: { B, T } });
    const prog = compileIR(graph, { train: { optimizer: { kind: 'adamw' } }, parallel: { dp: 1, tp: 2 } });
    const split = tensorShards(prog, 2, true);
    const single = await DeviceRunner.create(step(B, 1), await acquireDevice(), 0);
    const exe = await MultiDeviceExecutable.create([prog, prog], devs, { seed: 0 });
    try {
      // split parameters start as the slices of the whole model's initialisation
      const whole = await single.getParams([...split.keys()]);
      for (const [name, axis] of split) for (let d = 0; d < 2; d++) exe.setParam(name, shard(whole[name], axis, 2, d), d);
      for (let t = 0; t < STEPS; t++) {
        const a = (await single.run(batch(t), ['loss'])).loss.data[0];
        const outs = await exe.run([batch(t), batch(t)]);
        expect(outs[1].loss.data[0]).toBe(outs[0].loss.data[0]);
        expect(Math.abs(a - outs[0].loss.data[0]) / a).toBeLessThan(1e-5);
      }
      let worst = 0;
      for (const name of single.paramNames) {
        const axis = split.get(name) ?? split.get(name.replace(/^opt\.[^.]+\./, ''));
        const parts = await Promise.all([0, 1].map((d) => exe.getParam(name, d)));
        const got = axis === undefined ? parts[0] : combineCollective('all_gather', { size: 2, axis }, parts)[0];
        if (axis === undefined) expect(Array.from(parts[1].data)).toEqual(Array.from(parts[0].data));
        const ref = (await single.getParams([name]))[name];
        for (let i = 0; i < ref.data.length; i++) worst = Math.max(worst, Math.abs(ref.data[i] - got.data[i]));
      }
      expect(worst).toBeLessThan(PARAM_BOUND);
      const mem = exe.memory();
      console.log(`tp=2 on lavapipe: max parameter/state difference ${worst.toExponential(2)}; per device: ${mem[0].paramBytes} B parameters+state, ${mem[0].otherBytes} B other; single device ${single.stats.deviceBytes} B`);
    } finally {
      single.destroy();
      exe.destroy();
    }
  }, 600_000);
});
