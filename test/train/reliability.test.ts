/**
 * Faults injected into training (divergence, a full disk, a second run, killed runs' leftovers, edited or
 * mismatched checkpoints): each gets a clear message and loses nothing.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { grad } from '../../src/autodiff/index.js';
import { interpret } from '../../src/interp/interpreter.js';
import { GraphBuilder } from '../../src/ir/builder.js';
import { UPDATE_PREFIX } from '../../src/ir/graph.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import { firstNonFinite, loadCheckpoint, resolveCheckpoint, saveCheckpoint } from '../../src/train/checkpoint.js';
import { buildAccumTrainStep, buildTrainStep } from '../../src/train/optimizers.js';
import { openRunFolder, removeStaleTemporaries } from '../../src/train/runfolder.js';
import { InterpreterRunner, type StepRunner } from '../../src/train/runner.js';
import { checkCheckpointFits, checkResumeSettings, loadResumeCheckpoint, prepareJob, Trainer, type TrainConfig } from '../../src/train/trainer.js';

// A switchable disk fault: while `fault.code` is set, writing a file inside a temporary checkpoint folder fails.
const fault = vi.hoisted(() => ({ code: '' }));
vi.mock('node:fs', async (orig) => {
  const fs = await orig<typeof import('node:fs')>();
  const writeFileSync = (...a: Parameters<typeof fs.writeFileSync>) => {
    if (fault.code && String(a[0]).includes('.tmp-step-')) throw Object.assign(new Error(`${fault.code}: injected`), { code: fault.code });
    return fs.writeFileSync(...a);
  };
  return { ...fs, default: { ...fs, writeFileSync }, writeFileSync };
});

const fresh = () => mkdtempSync(join(tmpdir(), 'kiln-rel-'));
const f32 = (shape: number[], data: number[]): HostTensor => ({ dtype: 'f32', shape, data: Float32Array.from(data) });
const meta = { model: { file: 'm.kiln', name: 'm', config: {} }, train: {} };
const deadPid = () => spawnSync(process.execPath, ['-e', '0']).pid!;

describe('non-finite steps', () => {
  /** loss = sum(w * x): a NaN in x makes the loss and every gradient NaN. */
  function joint() {
    const b = new GraphBuilder();
    const x = b.op('input', [], { name: 'x', dtype: 'f32', shape: [3] });
    const w = b.op('param', [], { name: 'w', dtype: 'f32', shape: [3], init: { kind: 'zeros' } });
    const loss = b.op('sum', [b.mul(w, x)], { axes: [0], keepdims: false });
    return grad(b.build('lin', [{ name: 'loss', id: loss }]), { loss: 'loss' });
  }
  const params = { w: f32([3], [1, 2, 3]), 'opt.m.w': f32([3], [0, 0, 0]), 'opt.v.w': f32([3], [0, 0, 0]), 'acc.w': f32([3], [0, 0, 0]) };
  const io = { lr: f32([], [0.1]), step: f32([], [1]), loss_weight: f32([], [1]), apply: { dtype: 'u32' as const, shape: [], data: Uint32Array.of(1) } };

  it('--on-nonfinite skip: the step graph leaves parameters and optimizer state unchanged (plain and accumulated)', () => {
    for (const g of [buildTrainStep(joint(), { kind: 'adam', clip: 0, skipNonFinite: true }), buildAccumTrainStep(joint(), { kind: 'adam', clip: 0, skipNonFinite: true })]) {
      const ok = interpret(g, { inputs: { ...io, x: f32([3], [1, 1, 1]) }, params });
      expect(Array.from(ok[UPDATE_PREFIX + 'w'].data)).not.toEqual([1, 2, 3]); // a finite step does update
      const bad = interpret(g, { inputs: { ...io, x: f32([3], [1, NaN, 1]) }, params });
      expect(bad.loss.data[0]).toBeNaN();
      expect(Array.from(bad[UPDATE_PREFIX + 'w'].data)).toEqual([1, 2, 3]);
      expect(Array.from(bad[UPDATE_PREFIX + 'opt.m.w'].data)).toEqual([0, 0, 0]);
      expect(Array.from(bad[UPDATE_PREFIX + 'opt.v.w'].data)).toEqual([0, 0, 0]);
      const inf = interpret(g, { inputs: { ...io, x: f32([3], [1, Infinity, 1]) }, params });
      expect(Array.from(inf[UPDATE_PREFIX + 'w'].data)).toEqual([1, 2, 3]);
    }
  });

  it('--on-nonfinite skip on the WebGPU device: a NaN or infinite step leaves the parameters as they were', async () => {
    const { sharedDevice } = await import('../runtime/helpers.js');
    const { DeviceRunner } = await import('../../src/train/runner.js');
    const g = buildTrainStep(joint(), { kind: 'adam', clip: 1, skipNonFinite: true });
    const runner = await DeviceRunner.create(g, await sharedDevice(), 0);
    try {
      await runner.setParams(params);
      await runner.run({ ...io, x: f32([3], [1, NaN, 1]) }, ['loss']);
      await runner.run({ ...io, x: f32([3], [1, -Infinity, 1]) }, ['loss']);
      const kept = await runner.getParams();
      expect(Array.from(kept.w.data)).toEqual([1, 2, 3]);
      expect(Array.from(kept['opt.v.w'].data)).toEqual([0, 0, 0]);
      await runner.run({ ...io, x: f32([3], [1, 1, 1]) }, ['loss']);
      const want = interpret(g, { inputs: { ...io, x: f32([3], [1, 1, 1]) }, params })[UPDATE_PREFIX + 'w'];
      const got = (await runner.getParams(['w'])).w;
      for (let i = 0; i < 3; i++) expect(got.data[i]).toBeCloseTo(want.data[i], 4);
      expect(Array.from(got.data)).not.toEqual([1, 2, 3]);
    } finally {
      runner.destroy();
    }
  });

  it('a checkpoint holding a non-finite value is never written; the previous one stays', () => {
    const dir = fresh();
    saveCheckpoint(dir, 2, { w: f32([2], [1, 2]) }, {}, meta);
    expect(() => saveCheckpoint(dir, 4, { w: f32([2], [1, NaN]) }, {}, meta)).toThrow(/refusing to write checkpoint step 4 .*'w' holds NaN at element 1/);
    expect(() => saveCheckpoint(dir, 4, { w: f32([2], [1, 2]) }, { 'opt.v.w': f32([2], [Infinity, 0]) }, meta)).toThrow(/'opt.v.w' holds Infinity/);
    expect(resolveCheckpoint(dir)).toBe(join(dir, 'step-0000002'));
    expect(readdirSync(dir).sort()).toEqual(['latest', 'step-0000002']);
  });

  it('kiln train: a diverging run stops with exit 1, names the last good checkpoint and keeps it', () => {
    const out = join(fresh(), 'run');
    const args = ['bin/kiln.js', 'train', 'src/models/gpt.kiln', '--set', 'd=16,layers=1,ctx=16,heads=2', '--batch', '2', '--steps', '12', '--warmup', '0', '--lr', '30', '--clip', '0'];
    const r = spawnSync(process.execPath, [...args, '--save-every', '2', '--eval-every', '0', '--eval-batches', '1', '--device', 'interp', '--out', out], { encoding: 'utf8' });
    expect(r.status).toBe(1);
    // the loss may still be finite when the gradient norm is not (an overflow in the backward)
    expect(r.stderr).toMatch(/error: training diverged at step 4: loss \S+, gradient norm \S+ \(a non-finite loss or gradient norm\)\. The last good checkpoint is /);
    expect(r.stderr).toContain(`The last good checkpoint is ${join(out, 'step-0000002')}`);
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect(readdirSync(out).filter((f) => f.startsWith('step-'))).toEqual(['step-0000002']);
    const ck = loadCheckpoint(out);
    expect(ck.state.step).toBe(2);
    expect(firstNonFinite(ck.params)).toBeUndefined();
    expect(existsSync(join(out, '.lock'))).toBe(false); // released on the way out
  });
});

/** A runner that reports a non-finite loss at chosen steps (what the device reports for a diverged step). */
class FaultyRunner implements StepRunner {
  calls = 0;
  constructor(
    private readonly inner: InterpreterRunner,
    private readonly bad: Set<number>,
  ) {}
  get paramNames() {
    return this.inner.paramNames;
  }
  async run(inputs: Record<string, HostTensor>, download: string[]) {
    const step = ++this.calls;
    if (!this.bad.has(step)) return this.inner.run(inputs, download);
    return { loss: f32([], [NaN]), grad_norm: f32([], [NaN]) };
  }
  getParams(names?: string[]) {
    return this.inner.getParams(names);
  }
  setParams(p: Record<string, HostTensor>) {
    return this.inner.setParams(p);
  }
  destroy() {}
}

describe('the trainer', () => {
  const dir = fresh();
  writeFileSync(join(dir, 'tiny.txt'), 'the cat sat on the mat. '.repeat(60));
  const cfg = (over: Partial<TrainConfig> = {}): TrainConfig => ({
    file: 'src/models/gpt.kiln',
    set: { d: 16, layers: 1, ctx: 8, heads: 2 },
    optimizer: { kind: 'adamw' },
    schedule: { kind: 'constant', peak: 1e-2, warmup: 0, total: 6 },
    batch: 2,
    accum: 1,
    steps: 6,
    seed: 3,
    data: join(dir, 'tiny.txt'),
    tokenizer: 'bytes',
    evalEvery: 0,
    evalBatches: 1,
    saveEvery: 2,
    ...over,
  });

  it('skips non-finite steps up to --max-nonfinite, then stops naming the last good checkpoint', async () => {
    const job = await prepareJob(cfg({ onNonFinite: 'skip', maxNonFinite: 1, out: join(dir, 'skip') }));
    const t = new Trainer(job, new FaultyRunner(new InterpreterRunner(job.stepGraph, 3), new Set([3, 5])), new InterpreterRunner(job.evalGraph, 3));
    const seen: boolean[] = [];
    await expect(t.run({ onStep: (r) => seen.push(!!r.skipped) })).rejects.toThrow(
      `training diverged at step 5: loss NaN, gradient norm NaN (2 non-finite steps skipped, more than --max-nonfinite 1). The last good checkpoint is ${join(dir, 'skip', 'step-0000004')}`,
    );
    expect(seen).toEqual([false, false, true, false]);
    const ck = loadCheckpoint(join(dir, 'skip'));
    expect(ck.state.step).toBe(4);
    expect((ck.state.train as { skipped: number }).skipped).toBe(1);
  });

  it('resume refuses every changed setting naming both values, allows the changeable ones with --allow-change, and says when --steps has nothing to train', async () => {
    const out = join(dir, 'base');
    const job = await prepareJob(cfg({ steps: 2, schedule: { kind: 'constant', peak: 1e-2, warmup: 0, total: 2 }, out }));
    await new Trainer(job, new InterpreterRunner(job.stepGraph, 3), new InterpreterRunner(job.evalGraph, 3)).run();
    const attempt = async (over: Partial<TrainConfig>) => {
      const j = await prepareJob(cfg({ steps: 2, schedule: { kind: 'constant', peak: 1e-2, warmup: 0, total: 2 }, ...over }));
      return checkResumeSettings(j, loadResumeCheckpoint(j, out));
    };
    await expect(attempt({ batch: 3 })).rejects.toThrow(`cannot resume ${join(out, 'step-0000002')}: batch: the checkpoint has 2, this run has 3 (to change it on purpose, pass --allow-change batch)`);
    await expect(attempt({ seed: 4 })).rejects.toThrow(/seed: the checkpoint has 3, this run has 4/);
    await expect(attempt({ data: 'moby-dick', maxTokens: 2000 })).rejects.toThrow(/data: the checkpoint has ".*tiny.txt", this run has "moby-dick"/);
    await expect(attempt({ optimizer: { kind: 'adam' } })).rejects.toThrow(/optimizer: the checkpoint has \{"kind":"adamw"\}, this run has \{"kind":"adam"\}$/);
    await expect(attempt({ optimizer: { kind: 'adamw' }, allowChange: ['optimizer'] })).rejects.toThrow(/--allow-change: 'optimizer' cannot change on resume/);
    await expect(attempt({ steps: 6 })).rejects.toThrow(/steps: the checkpoint has 2, this run has 6 \(to change it on purpose, pass --allow-change steps\)/);
    expect(await attempt({ steps: 6, allowChange: ['steps'] })).toEqual(['steps 2 -> 6']);
    await expect(attempt({ steps: 1, allowChange: ['steps'] })).rejects.toThrow(/--steps 1: the checkpoint .* is already at step 2, nothing to train/);
    await expect(attempt({})).rejects.toThrow(/--steps 2: .* already at step 2, nothing to train/);
  });

  it('one validator for every verb: a checkpoint with a parameter missing or an extra tensor is refused by eval/sample as by resume', async () => {
    const job = await prepareJob(cfg({ out: join(dir, 'v'), steps: 1, schedule: { kind: 'constant', peak: 1e-2, warmup: 0, total: 1 } }));
    await new Trainer(job, new InterpreterRunner(job.stepGraph, 3), new InterpreterRunner(job.evalGraph, 3)).run();
    const ck = loadCheckpoint(join(dir, 'v'));
    expect(() => checkCheckpointFits(ck, job.evalGraph, job.modelName)).not.toThrow();
    const name = Object.keys(ck.params)[0];
    const missing = { ...ck, params: { ...ck.params } };
    delete missing.params[name];
    expect(() => checkCheckpointFits(missing, job.evalGraph, job.modelName)).toThrow(`checkpoint ${ck.dir} does not match the model: parameter '${name}' is missing`);
    const extra = { ...ck, params: { ...ck.params, stray: f32([1], [0]) } };
    expect(() => checkCheckpointFits(extra, job.evalGraph, job.modelName)).toThrow(`checkpoint ${ck.dir} does not match the model: unexpected parameter 'stray'`);
    expect(() => checkCheckpointFits(ck, job.evalGraph, 'bert')).toThrow(`is of model 'gpt', not 'bert'`);
  });

  it('--eval-every 0 evaluates once, at the end', async () => {
    const job = await prepareJob(cfg({ evalEvery: 0, steps: 3, saveEvery: 0 }));
    const evals: number[] = [];
    await new Trainer(job, new InterpreterRunner(job.stepGraph, 3), new InterpreterRunner(job.evalGraph, 3)).run({ onEval: (s) => evals.push(s) });
    expect(evals).toEqual([3]);
  });

  it('state.json is covered by a checksum: an edited step is refused', () => {
    const d = fresh();
    const step = saveCheckpoint(d, 3, { w: f32([1], [1]) }, {}, meta);
    const p = join(step, 'state.json');
    writeFileSync(p, readFileSync(p, 'utf8').replace('"step": 3', '"step": -5'));
    expect(() => loadCheckpoint(d)).toThrow(`checkpoint ${step}: state.json was edited or is corrupt (checksum mismatch)`);
  });
});

describe('the run folder', () => {
  it('a full disk at save time: a clear message, the temporary folder removed, the previous checkpoint intact', () => {
    const dir = fresh();
    saveCheckpoint(dir, 2, { w: f32([2], [1, 2]) }, {}, meta);
    for (const code of ['ENOSPC', 'EROFS', 'EIO']) {
      fault.code = code;
      try {
        expect(() => saveCheckpoint(dir, 4, { w: f32([2], [3, 4]) }, {}, meta)).toThrow(
          new RegExp(`cannot write checkpoint step 4 to ${dir}: ${code}: .*; the previous checkpoint ${join(dir, 'step-0000002')} is intact`),
        );
      } finally {
        fault.code = '';
      }
    }
    expect(readdirSync(dir).sort()).toEqual(['latest', 'step-0000002']);
    expect(Array.from(loadCheckpoint(dir).params.w.data)).toEqual([1, 2]);
  });

  it('is locked: a live owner is refused at once, a dead owner\'s lock is taken over with a message', () => {
    const dir = fresh();
    writeFileSync(join(dir, '.lock'), JSON.stringify({ pid: process.ppid, host: hostname(), started: 'then' }));
    expect(() => openRunFolder(dir)).toThrow(`--out ${dir} is in use by another run (process ${process.ppid}, since then); use another --out, or wait for it to finish`);
    const dead = deadPid();
    writeFileSync(join(dir, '.lock'), JSON.stringify({ pid: dead, host: hostname(), started: 'then' }));
    const f = openRunFolder(dir);
    expect(f.notes).toEqual([`taking over the stale lock of ${dir}: process ${dead} (started then) is no longer running`]);
    expect(JSON.parse(readFileSync(join(dir, '.lock'), 'utf8')).pid).toBe(process.pid);
    f.release();
    expect(existsSync(join(dir, '.lock'))).toBe(false);
  });

  it('temporary checkpoint folders of dead runs are removed, a live run\'s are kept', () => {
    const dir = fresh();
    const dead = deadPid();
    mkdirSync(join(dir, `.tmp-step-0000004-${dead}`));
    writeFileSync(join(dir, `.tmp-step-0000004-${dead}`, 'params.safetensors'), 'half');
    writeFileSync(join(dir, `.latest-${dead}`), 'step-0000004\n');
    mkdirSync(join(dir, `.tmp-step-0000006-${process.ppid}`));
    expect(removeStaleTemporaries(dir).sort()).toEqual([`.latest-${dead}`, `.tmp-step-0000004-${dead}`]);
    expect(readdirSync(dir)).toEqual([`.tmp-step-0000006-${process.ppid}`]);
  });

  it('kiln train: --out below a file is refused before compiling; a second run on a busy folder is refused at once and the first finishes intact', async () => {
    const base = fresh();
    writeFileSync(join(base, 'file'), 'x');
    const cli = (out: string, extra: string[] = []) => [
      'bin/kiln.js', 'train', 'src/models/gpt.kiln', '--set', 'd=16,layers=1,ctx=16,heads=2', '--batch', '2', '--warmup', '0',
      '--eval-every', '0', '--eval-batches', '1', '--device', 'interp', '--data', 'moby-dick', '--out', out, ...extra,
    ];
    const below = spawnSync(process.execPath, cli(join(base, 'file', 'run'), ['--steps', '2']), { encoding: 'utf8' });
    expect(below.status).toBe(1);
    expect(below.stderr).toMatch(/--out .*file\/run: cannot create the run folder: (ENOTDIR|EEXIST): /);
    expect(below.stdout).not.toMatch(/model gpt/); // nothing was compiled
    const out = join(base, 'run');
    const first = spawn(process.execPath, cli(out, ['--steps', '40', '--save-every', '20', '--json']), { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    first.stdout.on('data', (d) => (stdout += d));
    const exited = new Promise<number | null>((r) => first.on('exit', r));
    while (!existsSync(join(out, '.lock'))) await new Promise((r) => setTimeout(r, 20));
    const second = spawnSync(process.execPath, cli(out, ['--steps', '2']), { encoding: 'utf8' });
    expect(second.status).toBe(1);
    expect(second.stderr).toContain(`error: --out ${out} is in use by another run (process ${first.pid}`);
    expect(await exited).toBe(0);
    // SIGTERM mid-run releases the lock on the way out
    const third = spawn(process.execPath, cli(out, ['--steps', '400', '--allow-change', 'steps', '--resume', out]), { stdio: 'ignore' });
    const thirdExit = new Promise((r) => third.on('exit', (code, sig) => r(sig)));
    while (!existsSync(join(out, '.lock'))) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 300));
    third.kill('SIGTERM');
    expect(await thirdExit).toBe('SIGTERM');
    expect(existsSync(join(out, '.lock'))).toBe(false);
    expect(loadCheckpoint(out).state.step).toBeGreaterThanOrEqual(40);
    expect(JSON.parse(stdout.trim().split('\n').at(-1)!).steps).toBe(40);
    expect(loadCheckpoint(out).state.step).toBe(40);
    expect(existsSync(join(out, '.lock'))).toBe(false);
  }, 60_000);
});
