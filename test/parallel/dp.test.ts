import { describe, expect, it } from 'vitest';
import { compileModel } from '../../src/frontend/index.js';
import { interpret } from '../../src/interp/interpreter.js';
import { interpretSharded } from '../../src/interp/sharded.js';
import { updatedParam, type Graph } from '../../src/ir/graph.js';
import { initParam } from '../../src/ir/init.js';
import type { AttrsOf } from '../../src/ir/op.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import { compileIR } from '../../src/passes/index.js';
import { Rng } from '../../src/train/rng.js';
import { DP_WEIGHT_INPUT } from '../../src/parallel/mesh.js';
import { shardBatch } from '../../src/parallel/feed.js';

const cfg = { d: 16, heads: 2, layers: 1, vocab: 11, d_ff: 32, ctx: 8 };
const B = 4, T = 8, STEPS = 20;
const train = { optimizer: { kind: 'adamw' as const } };
const f32 = (v: number): HostTensor => ({ dtype: 'f32', shape: [], data: Float32Array.of(v) });

function stepGraph(batch: number, dp: number): Graph {
  const { graph } = compileModel('src/models/gpt.kiln', { entry: 'loss', set: cfg, dims: { B: batch, T } });
  return compileIR(graph, dp > 1 ? { train, parallel: { dp } } : { train });
}

function initial(g: Graph): Record<string, HostTensor> {
  return Object.fromEntries(g.nodes.filter((n) => n.op === 'param').map((n) => {
    const a = n.attrs as AttrsOf<'param'>;
    return [a.name, initParam(a.init, n.type, a.name, 1)];
  }));
}

/** Step t's batch: random tokens, repeating every 4 steps (so the model learns them); targets with a few ignored
 * positions, all in the first half of the batch, so the shards count different numbers of targets. */
function batch(t: number): Record<string, HostTensor> {
  const r = new Rng(100 + (t % 4), 'dp-data');
  const tokens = Int32Array.from({ length: B * T }, () => r.int(cfg.vocab));
  const targets = Int32Array.from({ length: B * T }, (_, i) => (i % 7 === 3 && i < B * T / 2 ? -100 : r.int(cfg.vocab)));
  return { tokens: { dtype: 'i32', shape: [B, T], data: tokens }, targets: { dtype: 'i32', shape: [B, T], data: targets } };
}

const applyUpdates = (g: Graph, out: Record<string, HostTensor>, params: Record<string, HostTensor>) => {
  for (const o of g.outputs) {
    const p = updatedParam(o);
    if (p !== undefined) params[p] = out[o.name];
  }
};

function maxAbsDiff(a: HostTensor, b: HostTensor): number {
  let m = 0;
  for (let i = 0; i < a.data.length; i++) m = Math.max(m, Math.abs(a.data[i] - b.data[i]));
  return m;
}

describe('data parallel in the interpreter simulation equals single-device training on the whole batch', () => {
  const single = stepGraph(B, 1);
  const ref = { params: initial(single), losses: [] as number[] };
  for (let t = 0; t < STEPS; t++) {
    const out = interpret(single, { inputs: { ...batch(t), lr: f32(3e-3), step: f32(t + 1) }, params: ref.params });
    ref.losses.push(out.loss.data[0]);
    applyUpdates(single, out, ref.params);
  }

  for (const dp of [2, 4]) {
    it(`dp=${dp}: 20 AdamW steps of the library GPT`, () => {
      const prog = stepGraph(B / dp, dp);
      // one all_reduce per trainable parameter's gradient, one for the loss
      const trainable = prog.outputs.filter((o) => o.role?.kind === 'update' && !o.role.param.startsWith('opt.')).length;
      expect(prog.nodes.filter((n) => n.op === 'all_reduce').length).toBe(trainable + 1);
      const params = Array.from({ length: dp }, () => initial(prog));
      const losses: number[] = [];
      for (let t = 0; t < STEPS; t++) {
        const shards = shardBatch(batch(t), dp, 'targets');
        const feeds = shards.map((s, d) => ({ inputs: { ...s, lr: f32(3e-3), step: f32(t + 1) }, params: params[d] }));
        const outs = interpretSharded(Array(dp).fill(prog), { feeds });
        // every device reports the same (global) loss and ends with the same parameters, bit for bit
        for (const o of outs) expect(o.loss.data[0]).toBe(outs[0].loss.data[0]);
        losses.push(outs[0].loss.data[0]);
        outs.forEach((o, d) => applyUpdates(prog, o, params[d]));
      }
      for (let d = 1; d < dp; d++) for (const k of Object.keys(params[0])) expect(Array.from(params[d][k].data)).toEqual(Array.from(params[0][k].data));
      const lossErr = Math.max(...losses.map((l, i) => Math.abs(l - ref.losses[i]) / Math.abs(ref.losses[i])));
      const paramErr = Math.max(...Object.keys(ref.params).map((k) => maxAbsDiff(ref.params[k], params[0][k])));
      console.log(`dp=${dp}: max relative loss difference ${lossErr.toExponential(2)}, max parameter difference ${paramErr.toExponential(2)} (loss ${ref.losses[0].toFixed(4)} -> ${ref.losses[STEPS - 1].toFixed(4)})`);
      expect(ref.losses[STEPS - 1]).toBeLessThan(ref.losses[0] - 0.1); // it trains
      expect(lossErr).toBeLessThan(1e-6);
      expect(paramErr).toBeLessThan(5e-5); // one AdamW step moves a parameter by up to lr = 3e-3
    });
  }
  it('the weights are each shard\'s share of the counted targets', () => {
    const shards = shardBatch(batch(0), 2, 'targets');
    const w = shards.map((s) => s[DP_WEIGHT_INPUT].data[0]);
    expect(w[0] + w[1]).toBeCloseTo(1, 6);
    expect(w[0]).toBeLessThan(0.5); // the first half holds the ignored positions
  });
});
