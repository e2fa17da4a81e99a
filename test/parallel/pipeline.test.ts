import { describe, expect, it } from 'vitest';
import { compileModel } from '../../src/frontend/index.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import { compileIR } from '../../src/passes/index.js';
import { partitionPipeline } from '../../src/parallel/pipeline-parallel.js';
import { PipelineInterpreterRunner } from '../../src/parallel/pipeline-runner.js';
import { bubbleFraction, pipelineSchedule, runPipelineStep, type StagePrograms } from '../../src/parallel/pipeline-schedule.js';
import { InterpreterRunner } from '../../src/train/runner.js';
import { Rng } from '../../src/train/rng.js';
import { emptyGraph } from './pipeline-helpers.js';

const cfg = { d: 16, heads: 2, layers: 2, vocab: 11, d_ff: 32, ctx: 8 };
const B = 4, T = 8, STEPS = 20;
const f32 = (v: number): HostTensor => ({ dtype: 'f32', shape: [], data: Float32Array.of(v) });
const model = (batch: number, set = cfg) => compileModel('src/models/gpt.kiln', { entry: 'loss', set, dims: { B: batch, T } }).graph;
const optimizer = { kind: 'adamw' as const };

/** Step t's batch: repeating every 4 steps; a few ignored targets in the first half only, so micro-batches weigh differently. */
function batch(t: number): Record<string, HostTensor> {
  const r = new Rng(100 + (t % 4), 'pp-data');
  const tokens = Int32Array.from({ length: B * T }, () => r.int(cfg.vocab));
  const targets = Int32Array.from({ length: B * T }, (_, i) => (i % 7 === 3 && i < (B * T) / 2 ? -100 : r.int(cfg.vocab)));
  return { tokens: { dtype: 'i32', shape: [B, T], data: tokens }, targets: { dtype: 'i32', shape: [B, T], data: targets }, lr: f32(3e-3), step: f32(t + 1) };
}

function maxAbs(a: HostTensor, b: HostTensor): number {
  let m = 0;
  for (let i = 0; i < a.data.length; i++) m = Math.max(m, Math.abs((a.data[i] as number) - (b.data[i] as number)));
  return m;
}

describe('pipeline schedules', () => {
  it('GPipe and 1F1B: every action once, forwards before their backwards; the counted bubble is (pp-1)/(M+pp-1)', async () => {
    for (const kind of ['gpipe', '1f1b'] as const) {
      for (const [pp, M] of [[2, 1], [2, 4], [3, 5], [4, 8], [4, 2]]) {
        const sched = pipelineSchedule(kind, pp, M);
        for (const acts of sched) {
          expect(acts.length).toBe(2 * M);
          for (let m = 0; m < M; m++) expect(acts.findIndex((a) => a.kind === 'F' && a.mb === m)).toBeLessThan(acts.findIndex((a) => a.kind === 'B' && a.mb === m));
        }
        // a chain of pp empty stages, each passing a value on: tick counts only
        const stages: StagePrograms[] = Array.from({ length: pp }, (_, s) => emptyGraph(s, pp));
        const micro = Array.from({ length: M }, () => ({}));
        const r = await runPipelineStep(stages, sched, micro, {}, async (s, ph, _in, download) => Object.fromEntries(download.map((d) => [d, f32(ph === 'update' ? 1 : 0)])));
        expect(r.ticks).toBe(2 * (M + pp - 1));
        for (const idle of r.idleTicks) expect(idle / r.ticks).toBeCloseTo(bubbleFraction(pp, M), 12);
        // saved activations in flight: M on every stage for GPipe, pp - s for 1F1B
        r.stashPeak.forEach((p, s) => expect(p).toBe(kind === 'gpipe' ? M : Math.min(M, pp - s)));
      }
    }
  });
});

describe('pipeline parallel (pp=2) in the interpreter simulation equals single-device training on the whole batch', () => {
  const single = compileIR(model(B), { grad: { loss: 'loss' }, train: { optimizer } });
  const ref = new InterpreterRunner(single, 1);
  const refLosses: number[] = [];
  const refReady = (async () => {
    for (let t = 0; t < STEPS; t++) refLosses.push((await ref.run(batch(t), ['loss'])).loss.data[0]);
  })();

  it('the pass: one program per stage, blocks split, activations sent forward and their gradients back', () => {
    const prog = partitionPipeline(model(B / 2), { pp: 2, optimizer });
    expect(prog.blocks).toEqual([[0], [1]]);
    const [s0, s1] = prog.devices;
    const ops = (g: StagePrograms['fwd'], op: string) => g.nodes.filter((n) => n.op === op).map((n) => n.attrs as Record<string, unknown>);
    expect(ops(s0.fwd, 'send').map((a) => a.to)).toEqual([1]);
    expect(ops(s1.fwd, 'recv').map((a) => a.from)).toEqual([0]);
    expect(ops(s1.bwd, 'send').map((a) => a.to)).toEqual([0]);
    expect(ops(s0.bwd, 'recv').map((a) => a.from)).toEqual([1]);
    expect(ops(s0.fwd, 'recv')).toEqual([]);
    // the tied embedding is held by both ends and its gradient exchanged once per step
    expect(prog.holders.get('wte')).toEqual([0, 1]);
    expect(prog.holders.get('h.0.attn.q.w')).toEqual([0]);
    expect(prog.holders.get('ln_f.g')).toEqual([1]);
    expect(s0.tie!.outputs.map((o) => o.name)).toEqual(['send:0:tie.wte', 'send:1:tie.wte']); // to itself too: every holder sums the same shape
  });

  for (const [kind, M] of [['gpipe', 2], ['1f1b', 4]] as const) {
    it(`${kind}, ${M} micro-batches: 20 AdamW steps of the library GPT (2 blocks)`, async () => {
      await refReady;
      const prog = partitionPipeline(model(B / M), { pp: 2, optimizer });
      const pp = new PipelineInterpreterRunner(prog, kind, M, 1);
      const losses: number[] = [];
      for (let t = 0; t < STEPS; t++) losses.push((await pp.run(batch(t), ['loss'])).loss.data[0]);
      // the tied embedding's two copies stay equal bit for bit
      const where = (pp as unknown as { params: Record<string, HostTensor>[] }).params;
      expect(Array.from(where[1].wte.data)).toEqual(Array.from(where[0].wte.data));
      const got = await pp.getParams();
      const want = await ref.getParams();
      expect(Object.keys(got).sort()).toEqual(Object.keys(want).sort()); // whole tensors, no accumulators
      const lossErr = Math.max(...losses.map((l, i) => Math.abs(l - refLosses[i]) / refLosses[i]));
      const paramErr = Math.max(...Object.keys(want).map((k) => maxAbs(got[k], want[k])));
      console.log(`pp=2 ${kind} M=${M}: max relative loss difference ${lossErr.toExponential(2)}, max parameter/state difference ${paramErr.toExponential(2)} (loss ${refLosses[0].toFixed(4)} -> ${refLosses[STEPS - 1].toFixed(4)}); bubble counted ${(pp.stats.last!.idleTicks[0] / pp.stats.last!.ticks).toFixed(3)}`);
      expect(refLosses[STEPS - 1]).toBeLessThan(refLosses[0] - 0.1);
      expect(lossErr).toBeLessThan(1e-6);
      expect(paramErr).toBeLessThan(5e-5);
    }, 300_000);
  }

  it('pp=4 over 4 blocks (middle stages hold no shared parameter), 1F1B, 4 micro-batches: 5 steps', async () => {
    const set = { ...cfg, layers: 4 };
    const one = new InterpreterRunner(compileIR(model(B, set), { grad: { loss: 'loss' }, train: { optimizer } }), 2);
    const prog = partitionPipeline(model(1, set), { pp: 4, optimizer });
    expect(prog.blocks).toEqual([[0], [1], [2], [3]]);
    expect(prog.holders.get('wte')).toEqual([0, 3]);
    const pp = new PipelineInterpreterRunner(prog, '1f1b', 4, 2);
    for (let t = 0; t < 5; t++) {
      const a = (await one.run(batch(t), ['loss'])).loss.data[0];
      const b = (await pp.run(batch(t), ['loss'])).loss.data[0];
      expect(Math.abs(a - b) / a).toBeLessThan(1e-6);
    }
    const got = await pp.getParams();
    const want = await one.getParams();
    expect(Math.max(...Object.keys(want).map((k) => maxAbs(got[k], want[k])))).toBeLessThan(5e-5);
    expect(pp.stats.last!.stashPeak).toEqual([4, 3, 2, 1]);
  }, 300_000);

  it('pp=2 x dp=2 (4 devices: two replicas of the pipeline), 1F1B, 2 micro-batches each: 20 steps; the replicas stay equal', async () => {
    await refReady;
    const prog = partitionPipeline(model(B / 4), { pp: 2, dp: 2, optimizer });
    expect(prog.devices.length).toBe(4);
    // replica 1's stage 0 (device 2) sends its activations to device 3, its accumulators to device 0
    const d2 = prog.devices[2];
    expect(d2.fwd.nodes.filter((n) => n.op === 'send').map((n) => (n.attrs as { to: number }).to)).toEqual([3]);
    expect(new Set(d2.dpsync!.nodes.filter((n) => n.op === 'send').map((n) => (n.attrs as { to: number }).to))).toEqual(new Set([0, 2]));
    const pp = new PipelineInterpreterRunner(prog, '1f1b', 2, 1);
    const losses: number[] = [];
    for (let t = 0; t < STEPS; t++) losses.push((await pp.run(batch(t), ['loss'])).loss.data[0]);
    const params = (pp as unknown as { params: Record<string, HostTensor>[] }).params;
    for (const [a, b] of [[0, 2], [1, 3]]) for (const k of Object.keys(params[a])) expect(Array.from(params[b][k].data)).toEqual(Array.from(params[a][k].data));
    const got = await pp.getParams();
    const want = await ref.getParams();
    const lossErr = Math.max(...losses.map((l, i) => Math.abs(l - refLosses[i]) / refLosses[i]));
    const paramErr = Math.max(...Object.keys(want).map((k) => maxAbs(got[k], want[k])));
    console.log(`pp=2 x dp=2 1f1b M=2: max relative loss difference ${lossErr.toExponential(2)}, max parameter/state difference ${paramErr.toExponential(2)}`);
    expect(lossErr).toBeLessThan(1e-6);
    expect(paramErr).toBeLessThan(5e-5);
  }, 300_000);

  it('GPipe and 1F1B accumulate in the same order: bit-identical; a pp run resumes from its whole-tensor state on one device and the other way', async () => {
    const M = 2;
    const prog = partitionPipeline(model(B / M), { pp: 2, optimizer });
    const a = new PipelineInterpreterRunner(prog, 'gpipe', M, 3);
    const b = new PipelineInterpreterRunner(prog, '1f1b', M, 3);
    for (let t = 0; t < 3; t++) {
      const la = (await a.run(batch(t), ['loss', 'grad_norm']));
      const lb = (await b.run(batch(t), ['loss', 'grad_norm']));
      expect(lb.loss.data[0]).toBe(la.loss.data[0]);
      expect(lb.grad_norm.data[0]).toBe(la.grad_norm.data[0]);
    }
    const state = await a.getParams();
    // pipeline -> one device
    const one = new InterpreterRunner(single, 0);
    await one.setParams(state);
    // one device -> pipeline
    const back = new PipelineInterpreterRunner(prog, '1f1b', M, 0);
    await back.setParams(state);
    const want = (await a.run(batch(3), ['loss'])).loss.data[0];
    for (const r of [one, back]) {
      const got = (await r.run(batch(3), ['loss'])).loss.data[0];
      expect(Math.abs(got - want) / want).toBeLessThan(1e-6);
      const p = await r.getParams(['wte', 'h.1.mlp.fc.w']);
      const q = await a.getParams(['wte', 'h.1.mlp.fc.w']);
      for (const k of Object.keys(q)) expect(maxAbs(p[k], q[k])).toBeLessThan(1e-5);
    }
  });
});
