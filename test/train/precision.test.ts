/**
 * Mixed precision: the precision pass's policy, the loss-scaled training step (skip and halve on overflow, grow
 * after clean steps), the compiled step on the device against the interpreter, checkpoints with f32 master
 * weights and the scale, an exact resume, and 300 steps of a GPT in f16 and bf16 against f32.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { interpret } from '../../src/interp/interpreter.js';
import type { AttrsOf } from '../../src/ir/op.js';
import { initParam } from '../../src/ir/init.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import { compileIR } from '../../src/passes/pipeline.js';
import { LOSS_SCALE } from '../../src/passes/precision.js';
import { acquireDevice } from '../../src/runtime/device.js';
import { loadCheckpoint } from '../../src/train/checkpoint.js';
import { DeviceRunner, InterpreterRunner } from '../../src/train/runner.js';
import { prepareJob, Trainer, type TrainConfig } from '../../src/train/trainer.js';
import { randTensor, tinyGpt } from '../runtime/graphs.js';

const scalar = (v: number): HostTensor => ({ dtype: 'f32', shape: [], data: Float32Array.of(v) });
const dir = mkdtempSync(join(tmpdir(), 'kiln-precision-'));
writeFileSync(join(dir, 'tiny.txt'), 'the cat sat on the mat and the dog sat on the log. '.repeat(40));

function initial(g: ReturnType<typeof compileIR>): Record<string, HostTensor> {
  const p: Record<string, HostTensor> = {};
  for (const n of g.nodes) if (n.op === 'param') p[(n.attrs as AttrsOf<'param'>).name] = initParam((n.attrs as AttrsOf<'param'>).init, n.type, (n.attrs as AttrsOf<'param'>).name, 0);
  return p;
}
const gptInputs = () => ({ tokens: randTensor('i32', [2, 5], 1, { lo: 0, hi: 11 }), labels: randTensor('i32', [2, 5], 2, { lo: 0, hi: 11 }), lr: scalar(1e-2), step: scalar(1) });

describe('the precision pass', () => {
  it('runs matmuls and activations in half, norms and the loss in f32, reads f32 master weights through casts', () => {
    for (const dtype of ['f16', 'bf16'] as const) {
      const g = compileIR(tinyGpt(), { precision: { dtype } });
      const of = (op: string) => g.nodes.filter((n) => n.op === op);
      expect(of('matmul').every((n) => n.type.dtype === dtype)).toBe(true);
      expect(of('softmax').every((n) => n.type.dtype === dtype)).toBe(true);
      expect(of('layer_norm').every((n) => n.type.dtype === 'f32')).toBe(true);
      expect(of('cross_entropy').every((n) => n.type.dtype === 'f32')).toBe(true);
      expect(of('param').filter((n) => (n.attrs as AttrsOf<'param'>).name !== LOSS_SCALE).every((n) => n.type.dtype === 'f32')).toBe(true);
      // one cast per (value, dtype)
      const casts = of('cast').map((n) => `${n.inputs[0]}:${n.type.dtype}`);
      expect(new Set(casts).size).toBe(casts.length);
      // the interface is unchanged; f16 adds the loss-scale state, bf16 does not
      expect(g.outputs.map((o) => g.nodes[o.id].type.dtype)).toEqual(tinyGpt().outputs.map((o) => tinyGpt().nodes[o.id].type.dtype));
      expect(g.nodes.some((n) => n.op === 'param' && (n.attrs as AttrsOf<'param'>).name === LOSS_SCALE)).toBe(dtype === 'f16');
    }
  });

  it('the loss arithmetic after the cross-entropy stays f32; the residual stream is half (library GPT)', async () => {
    const { compileModel } = await import('../../src/frontend/index.js');
    const { graph } = compileModel('src/models/gpt.kiln', { entry: 'loss', set: { d: 16, heads: 2, layers: 1, ctx: 8, vocab: 32 }, dims: { B: 2, T: 8 } });
    const g = compileIR(graph, { precision: { dtype: 'bf16' } });
    const after = new Set<number>();
    for (const n of g.nodes) if (n.op === 'cross_entropy' || n.inputs.some((q) => after.has(q))) after.add(n.id);
    expect(after.size).toBeGreaterThan(1);
    for (const id of after) if (g.nodes[id].type.dtype !== 'bool' && g.nodes[id].type.dtype !== 'i32') expect(g.nodes[id].type.dtype, `${g.nodes[id].op} %${id}`).toBe('f32');
    // the adds of the residual stream (same shape as the embeddings) are bf16
    const emb = g.nodes.find((n) => n.op === 'gather' && n.type.shape.length === 3)!;
    expect(emb.type.dtype).toBe('bf16');
    expect(g.nodes.filter((n) => n.op === 'add' && n.type.shape.join() === emb.type.shape.join()).every((n) => n.type.dtype === 'bf16')).toBe(true);
  });

  it('a step in f16 and bf16 follows the f32 step closely (interpreter)', () => {
    const losses: Record<string, number[]> = {};
    for (const p of ['f32', 'f16', 'bf16'] as const) {
      const step = compileIR(tinyGpt(), { train: { optimizer: { kind: 'adamw' } }, precision: p === 'f32' ? undefined : { dtype: p } });
      const params = initial(step);
      losses[p] = [];
      for (let s = 0; s < 3; s++) {
        const out = interpret(step, { inputs: gptInputs(), params });
        for (const o of step.outputs) if (o.role?.kind === 'update') params[o.role.param] = out[o.name];
        losses[p].push(out.loss.data[0]);
      }
    }
    for (let s = 0; s < 3; s++) {
      expect(Math.abs(losses.f16[s] - losses.f32[s])).toBeLessThan(2e-3);
      expect(Math.abs(losses.bf16[s] - losses.f32[s])).toBeLessThan(1e-2);
    }
    expect(losses.f16[2]).toBeLessThan(losses.f16[0]);
  });
});

describe('the --precision flag', () => {
  it('kiln compile shows the pass in the IR; an unknown precision is a clear error', () => {
    const run = (...a: string[]) => spawnSync(process.execPath, ['bin/kiln.js', 'compile', 'src/models/gpt.kiln', '--entry', 'loss', '--dim', 'B=1', '--dim', 'T=4', '--set', 'd=16,heads=2,layers=1,ctx=4', '--train', ...a], { encoding: 'utf8' });
    const ok = run('--precision', 'bf16', '--print-ir-after', 'precision', '-o', '/dev/null');
    expect(ok.status, ok.stderr).toBe(0);
    expect(ok.stderr).toMatch(/matmul .*bf16\[1, 4, 16\].*rule=precision|bf16\[1, 4, 16\] = matmul/);
    // with tensor parallelism (2 simulated devices) the mixed-precision step follows the single-device one
    const train = (...a: string[]) => spawnSync(process.execPath, ['bin/kiln.js', 'train', 'src/models/gpt.kiln', '--device', 'interp', '--set', 'd=16,heads=2,layers=1,ctx=8', '--batch', '2', '--steps', '2', '--eval-every', '0', '--save-every', '0', '--json', '--precision', 'f16', '--data', join(dir, 'tiny.txt'), ...a], { encoding: 'utf8' });
    const losses = (r: ReturnType<typeof train>) => r.stdout.split('\n').filter((l) => l.includes('"type":"step"')).map((l) => JSON.parse(l).loss as number);
    const one = train('--out', join(dir, 'tp1'));
    const two = train('--out', join(dir, 'tp2'), '--parallel', 'tp=2');
    expect(two.status, two.stderr).toBe(0);
    expect(losses(two).length).toBe(2);
    losses(two).forEach((l, i) => expect(Math.abs(l - losses(one)[i])).toBeLessThan(2e-3));
    const pp = train('--out', join(dir, 'pp'), '--pp', '2', '--set', 'd=16,heads=2,layers=2,ctx=8');
    expect(pp.status).toBe(1);
    expect(pp.stderr).toMatch(/--precision f16\/bf16 is not supported with pipeline parallelism yet/);
    const bad = run('--precision', 'f8');
    expect(bad.status).toBe(1);
    expect(bad.stderr.trim()).toBe("error: --precision must be f32, f16 or bf16, got 'f8'");
  });
});

describe('dynamic loss scaling in the compiled step', () => {
  const build = (growthInterval: number) =>
    compileIR(tinyGpt(), { train: { optimizer: { kind: 'adamw' } }, precision: { dtype: 'f16', lossScale: { init: 1024, growthInterval } } });

  it('an overflowing step is skipped (parameters and moments unchanged) and halves the scale', () => {
    const step = build(1000);
    const params = initial(step);
    params[LOSS_SCALE] = scalar(2 ** 40); // every scaled gradient is far past f16's 65504
    const out = interpret(step, { inputs: gptInputs(), params });
    expect(Number.isFinite(out.loss.data[0])).toBe(true);
    expect(Number.isFinite(out.grad_norm.data[0])).toBe(false);
    for (const o of step.outputs) {
      if (o.role?.kind !== 'update') continue;
      const p = o.role.param;
      if (p === LOSS_SCALE) expect(out[o.name].data[0]).toBe(2 ** 39);
      else if (p === 'opt.skipped_steps') expect(out[o.name].data[0]).toBe(1);
      else expect(Array.from(out[o.name].data), p).toEqual(Array.from(params[p].data));
    }
    expect(out.skipped_steps.data[0]).toBe(1);
  });

  it('with gradient accumulation, the scale only moves on the applying micro-batch, and an overflow skips the update', () => {
    const step = compileIR(tinyGpt(), { train: { optimizer: { kind: 'adamw' }, accumulate: true }, precision: { dtype: 'f16', lossScale: { init: 1024, growthInterval: 1000 } } });
    const params = initial(step);
    params[LOSS_SCALE] = scalar(2 ** 40);
    const io = (apply: number) => ({ ...gptInputs(), loss_weight: scalar(0.5), apply: { dtype: 'u32' as const, shape: [], data: Uint32Array.of(apply) } });
    const upd = (out: Record<string, HostTensor>, p: string) => out[step.outputs.find((o) => o.role?.kind === 'update' && o.role.param === p)!.name];
    const first = interpret(step, { inputs: io(0), params });
    expect(upd(first, LOSS_SCALE).data[0]).toBe(2 ** 40); // not an applying micro-batch: unchanged
    const next = { ...params };
    for (const o of step.outputs) if (o.role?.kind === 'update') next[o.role.param] = first[o.name];
    const second = interpret(step, { inputs: io(1), params: next });
    expect(upd(second, LOSS_SCALE).data[0]).toBe(2 ** 39);
    expect(upd(second, 'opt.skipped_steps').data[0]).toBe(1);
    for (const name of Object.keys(params).filter((n) => !n.startsWith('opt.') && !n.startsWith('acc.'))) {
      expect(Array.from(upd(second, name).data), name).toEqual(Array.from(params[name].data));
      expect(Array.from(upd(second, `acc.${name}`).data).every((v) => v === 0), `acc.${name} zeroed`).toBe(true);
    }
  });

  it('gradients are unscaled: a clean step matches the step at scale 1, and the scale doubles after growthInterval clean steps', () => {
    const step = build(2);
    const a = initial(step);
    const b = { ...a, [LOSS_SCALE]: scalar(1) };
    const outA = interpret(step, { inputs: gptInputs(), params: a });
    const outB = interpret(step, { inputs: gptInputs(), params: b });
    // powers of two scale exactly, so the unscaled gradient norms agree to rounding of the half backward
    expect(outA.grad_norm.data[0]).toBeCloseTo(outB.grad_norm.data[0], 2);
    const next = (out: Record<string, HostTensor>, p: string) => out[step.outputs.find((o) => o.role?.kind === 'update' && o.role.param === p)!.name].data[0];
    expect(next(outA, LOSS_SCALE)).toBe(1024); // one clean step: not yet
    expect(next(outA, `${LOSS_SCALE}.good_steps`)).toBe(1);
    const after = { ...a, [`${LOSS_SCALE}.good_steps`]: scalar(1) };
    const out2 = interpret(step, { inputs: gptInputs(), params: after });
    expect(next(out2, LOSS_SCALE)).toBe(2048);
    expect(next(out2, `${LOSS_SCALE}.good_steps`)).toBe(0);
  });
});

describe('training in half precision', () => {
  afterAll(async () => (await acquireDevice()).destroy());
  const cfg = (over: Partial<TrainConfig>): TrainConfig => ({
    file: 'src/models/gpt.kiln',
    set: { d: 32, heads: 2, layers: 1, d_ff: 64, ctx: 16 },
    optimizer: { kind: 'adamw' },
    schedule: { kind: 'cosine', peak: 1e-2, warmup: 10, total: 300 },
    batch: 4,
    accum: 1,
    steps: 300,
    seed: 1,
    data: join(dir, 'tiny.txt'),
    tokenizer: 'bytes',
    evalEvery: 0,
    evalBatches: 1,
    saveEvery: 0,
    ...over,
  });

  it('the compiled f16 and bf16 steps equal the interpreter on the device (3 steps)', async () => {
    const dev = await acquireDevice();
    for (const precision of ['f16', 'bf16'] as const) {
      const job = await prepareJob(cfg({ precision, steps: 3 }));
      const dr = await DeviceRunner.create(job.stepGraph, dev, 1);
      try {
        const a = new Trainer(job, dr);
        const b = new Trainer(job, new InterpreterRunner(job.stepGraph, 1));
        for (let s = 0; s < 3; s++) {
          const [ra, rb] = [await a.step(), await b.step()];
          expect(Math.abs(ra.loss - rb.loss), `${precision} step ${s}`).toBeLessThan(precision === 'f16' ? 2e-3 : 1e-2);
          if (precision === 'f16') expect(ra.lossScale).toBe(rb.lossScale);
        }
      } finally {
        dr.destroy();
      }
    }
  });

  it('checkpoints hold f32 master weights and the scale; a resumed f16 run continues exactly (interpreter)', async () => {
    const out = join(dir, 'resume');
    const c = cfg({ precision: 'f16', steps: 4, saveEvery: 2, out, lossScale: { init: 1024, growthInterval: 1 }, schedule: { kind: 'constant', peak: 1e-2, warmup: 0, total: 4 } });
    const job = await prepareJob(c);
    const full = new Trainer(job, new InterpreterRunner(job.stepGraph, 1));
    await full.run();
    const ck = loadCheckpoint(join(out, 'step-0000002'));
    expect(Object.values(ck.params).every((t) => t.dtype === 'f32')).toBe(true);
    expect(ck.optim[LOSS_SCALE].data[0]).toBe(4096); // growthInterval 1: doubled after each clean step
    const again = new Trainer(job, new InterpreterRunner(job.stepGraph, 1));
    await again.resume(join(out, 'step-0000002'));
    await again.run();
    expect(again.state.history.slice(-2).map((r) => [r.loss, r.lossScale])).toEqual(full.state.history.slice(-2).map((r) => [r.loss, r.lossScale]));
  });

  it('300 steps of a GPT in f16 and bf16 end within 0.05 nats of the f32 run (WebGPU)', async () => {
    const dev = await acquireDevice();
    const final: Record<string, number> = {};
    for (const precision of ['f32', 'f16', 'bf16'] as const) {
      const job = await prepareJob(cfg({ precision }));
      const runner = await DeviceRunner.create(job.stepGraph, dev, 1);
      try {
        const t = new Trainer(job, runner);
        await t.run();
        const tail = t.state.history.slice(-30);
        final[precision] = tail.reduce((s, r) => s + r.loss, 0) / tail.length;
      } finally {
        runner.destroy();
      }
    }
    expect(final.f32).toBeLessThan(1.5); // it learned (the corpus repeats one sentence)
    expect(Math.abs(final.f16 - final.f32)).toBeLessThan(0.05);
    expect(Math.abs(final.bf16 - final.f32)).toBeLessThan(0.05);
  });
});
