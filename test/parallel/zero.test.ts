import { describe, expect, it } from 'vitest';
import { compileModel } from '../../src/frontend/index.js';
import { interpretSharded } from '../../src/interp/sharded.js';
import { updatedParam, type Graph } from '../../src/ir/graph.js';
import type { AttrsOf } from '../../src/ir/op.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import { numel } from '../../src/ir/types.js';
import { compileIR } from '../../src/passes/index.js';
import { rowsOf, shardBatch } from '../../src/parallel/feed.js';
import { DataParallelInterpreterRunner, splitParams } from '../../src/parallel/runner.js';
import { interpreterSegmentRunner, runSegmented, splitAtCollectives } from '../../src/parallel/segments.js';
import { shardedParams, zeroShardedParams } from '../../src/parallel/zero.js';
import { InterpreterRunner } from '../../src/train/runner.js';
import { Rng } from '../../src/train/rng.js';

const cfg = { d: 16, heads: 2, layers: 1, vocab: 12, d_ff: 32, ctx: 8 };
const B = 4, T = 8, STEPS = 20;
const f32 = (v: number): HostTensor => ({ dtype: 'f32', shape: [], data: Float32Array.of(v) });

function stepGraph(batch: number, dp: number, zero: number): Graph {
  const { graph } = compileModel('src/models/gpt.kiln', { entry: 'loss', set: cfg, dims: { B: batch, T } });
  return compileIR(graph, { train: { optimizer: { kind: 'adamw' } }, ...(dp > 1 ? { parallel: { dp, zero } } : {}) });
}

function batch(t: number): Record<string, HostTensor> {
  const r = new Rng(200 + (t % 4), 'zero-data');
  const ints = () => Int32Array.from({ length: B * T }, () => r.int(cfg.vocab));
  return { tokens: { dtype: 'i32', shape: [B, T], data: ints() }, targets: { dtype: 'i32', shape: [B, T], data: ints() }, lr: f32(3e-3), step: f32(t + 1) };
}

const stateBytes = (g: Graph) => g.nodes.filter((n) => n.op === 'param').reduce((s, n) => s + numel(n.type.shape) * 4, 0);

describe('ZeRO stages 1-3: optimizer state, gradients and parameters sharded over the data-parallel group', () => {
  const single = stepGraph(B, 1, 0);

  it('shards every AdamW state whose first axis divides, with reduce-scatter in and all-gather out', () => {
    const g = stepGraph(B / 2, 2, 1);
    const sharded = shardedParams(g, 2);
    const states = single.nodes.filter((n) => n.op === 'param' && (n.attrs as AttrsOf<'param'>).name.startsWith('opt.'));
    expect(sharded.size).toBe(states.length); // every parameter of this GPT has an even first axis
    const groups = sharded.size / 2; // m and v per parameter
    expect(g.nodes.filter((n) => n.op === 'reduce_scatter').length).toBe(groups);
    expect(g.nodes.filter((n) => n.op === 'all_gather').length).toBe(groups);
    // no full-size gradient is all-reduced any more: only the loss and the squared-norm partial sums (scalars)
    expect(g.nodes.filter((n) => n.op === 'all_reduce').every((n) => n.type.shape.length === 0)).toBe(true);
    // parameters + optimizer state per device: P + 2P/dp against 3P on one device
    expect(stateBytes(g) / stateBytes(single)).toBeCloseTo((1 + 2 / 2) / 3, 2);
    expect(stateBytes(stepGraph(1, 4, 1)) / stateBytes(single)).toBeCloseTo((1 + 2 / 4) / 3, 2);
  });

  it('stage 3: every parameter stored as a shard and gathered once; its gradient reduce-scattered; memory 3P/dp', () => {
    const g = stepGraph(B / 2, 2, 3);
    const whole = single.nodes.filter((n) => n.op === 'param' && !(n.attrs as AttrsOf<'param'>).name.startsWith('opt.'));
    const sharded = zeroShardedParams(g, 2);
    expect([...sharded].sort()).toEqual(whole.map((n) => (n.attrs as AttrsOf<'param'>).name).sort()); // all even first axes
    expect(g.nodes.filter((n) => n.op === 'all_gather').length).toBe(whole.length);
    expect(g.nodes.filter((n) => n.op === 'reduce_scatter').length).toBe(whole.length);
    // the full gradients are never all-reduced: only the loss and the clipping norm's partial sums (scalars)
    expect(g.nodes.filter((n) => n.op === 'all_reduce').every((n) => n.type.shape.length === 0)).toBe(true);
    expect(stateBytes(g) / stateBytes(single)).toBeCloseTo(1 / 2, 6);
    expect(stateBytes(stepGraph(1, 4, 3)) / stateBytes(single)).toBeCloseTo(1 / 4, 6);
    // stage 2 is stage 1's program: stage 1 already reduce-scatters the gradients (docs/parallel.md)
    expect(stepGraph(B / 2, 2, 2).nodes.length).toBe(stepGraph(B / 2, 2, 1).nodes.length);
  });

  for (const [dp, stage] of [[2, 1], [4, 1], [2, 2], [2, 3], [4, 3]]) {
    it(`dp=${dp}, zero=${stage}: 20 AdamW steps of the library GPT follow single-device training`, async () => {
      const ref = new InterpreterRunner(single, 1);
      const z = new DataParallelInterpreterRunner(stepGraph(B / dp, dp, stage), dp, 1);
      let lossErr = 0;
      for (let t = 0; t < STEPS; t++) {
        const a = (await ref.run(batch(t), ['loss'])).loss.data[0];
        const b = (await z.run(batch(t), ['loss'])).loss.data[0];
        lossErr = Math.max(lossErr, Math.abs(a - b) / a);
      }
      // the unsharded state (what a checkpoint holds) and the parameters match the single-device run's
      const want = await ref.getParams();
      const got = await z.getParams();
      let paramErr = 0;
      for (const k of Object.keys(want)) {
        expect(got[k].shape).toEqual(want[k].shape);
        for (let i = 0; i < want[k].data.length; i++) paramErr = Math.max(paramErr, Math.abs(want[k].data[i] - got[k].data[i]));
      }
      console.log(`zero=${stage} dp=${dp}: max relative loss difference ${lossErr.toExponential(2)}, max parameter and optimizer-state difference ${paramErr.toExponential(2)}`);
      expect(lossErr).toBeLessThan(1e-6);
      expect(paramErr).toBeLessThan(5e-5);
    });
  }

  for (const stage of [1, 3]) it(`stage ${stage} split at its collectives (4 segments${stage === 1 ? ', the all-gathered parameters written from the host' : ', the shards copied out for their all-gather'}), bit-identical to the simulation`, async () => {
    const g = stepGraph(B / 2, 2, stage);
    const split = splitAtCollectives(g);
    expect(split.segments.length).toBe(4);
    // each device's initial parameters: replicated ones whole, sharded ones at its rows
    const whole = await new DataParallelInterpreterRunner(g, 2, 0).getParams();
    const axes = splitParams(g, { dp: 2, tp: 1 });
    expect(axes.size).toBe(stage === 1 ? shardedParams(g, 2).size : Object.keys(whole).length);
    const params = [0, 1].map((d) => Object.fromEntries(Object.entries(whole).map(([k, v]) => [k, axes.has(k) ? rowsOf(v, 2, d) : v])));
    const simParams = params.map((p) => ({ ...p }));
    const run = interpreterSegmentRunner([split, split], params);
    for (let t = 0; t < 2; t++) {
      const shards = shardBatch(batch(t), 2, 'targets');
      const a = interpretSharded([g, g], { feeds: shards.map((s, d) => ({ inputs: s, params: simParams[d] })) });
      a.forEach((o, d) => g.outputs.forEach((x) => updatedParam(x) !== undefined && (simParams[d][updatedParam(x)!] = o[x.name])));
      const b = await runSegmented([split, split], shards, run);
      expect(b[0].loss.data[0]).toBe(a[0].loss.data[0]);
    }
    for (let d = 0; d < 2; d++) for (const k of Object.keys(simParams[d])) expect(Array.from(params[d][k].data)).toEqual(Array.from(simParams[d][k].data));
  });
});
