import { describe, expect, it } from 'vitest';
import { compileModel } from '../../src/frontend/index.js';
import { interpretSharded } from '../../src/interp/sharded.js';
import { interpret } from '../../src/interp/interpreter.js';
import { updatedParam, type Graph } from '../../src/ir/graph.js';
import { initParam } from '../../src/ir/init.js';
import type { AttrsOf } from '../../src/ir/op.js';
import { combineCollective, shard } from '../../src/ir/ops/collective.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import { compileIR } from '../../src/passes/index.js';
import { tensorShards } from '../../src/parallel/tensor-parallel.js';
import { Rng } from '../../src/train/rng.js';

const cfg = { d: 8, heads: 2, layers: 2, vocab: 11, d_ff: 16, ctx: 4 };
const B = 2, T = 4, STEPS = 20, tp = 2;
const f32 = (v: number): HostTensor => ({ dtype: 'f32', shape: [], data: Float32Array.of(v) });
const forward = () => compileModel('src/models/gpt.kiln', { entry: 'loss', set: cfg, dims: { B, T } }).graph;
const train = { optimizer: { kind: 'adamw' as const } };

function params(g: Graph): Record<string, HostTensor> {
  return Object.fromEntries(g.nodes.filter((n) => n.op === 'param').map((n) => {
    const a = n.attrs as AttrsOf<'param'>;
    return [a.name, initParam(a.init, n.type, a.name, 2)];
  }));
}

function batch(t: number): Record<string, HostTensor> {
  const r = new Rng(300 + (t % 2), 'tp');
  const ints = () => Int32Array.from({ length: B * T }, () => r.int(cfg.vocab));
  return { tokens: { dtype: 'i32', shape: [B, T], data: ints() }, targets: { dtype: 'i32', shape: [B, T], data: ints() }, lr: f32(3e-3), step: f32(t + 1) };
}

const apply = (g: Graph, out: Record<string, HostTensor>, ps: Record<string, HostTensor>) => {
  for (const o of g.outputs) if (updatedParam(o) !== undefined) ps[updatedParam(o)!] = out[o.name];
};

describe('tensor parallel (Megatron attention heads and MLP split) in the interpreter simulation equals one device', () => {
  const single = compileIR(forward(), { train });
  const prog = compileIR(forward(), { train, parallel: { dp: 1, tp } });
  const split = tensorShards(prog, tp, true);

  it('splits q/k/v and fc by columns and the projections by rows in every block, one all_reduce per attention and per MLP forward and one each backward', () => {
    const block = (i: number) => [
      [`h.${i}.attn.k.b`, 0], [`h.${i}.attn.k.w`, 1], [`h.${i}.attn.proj.w`, 0], [`h.${i}.attn.q.b`, 0], [`h.${i}.attn.q.w`, 1], [`h.${i}.attn.v.b`, 0], [`h.${i}.attn.v.w`, 1],
      [`h.${i}.mlp.fc.b`, 0], [`h.${i}.mlp.fc.w`, 1], [`h.${i}.mlp.proj.w`, 0],
    ];
    expect([...split.entries()].sort()).toEqual([...block(0), ...block(1)]);
    const shapeOf = (g: Graph, name: string) => g.nodes.find((n) => n.op === 'param' && (n.attrs as AttrsOf<'param'>).name === name)!.type.shape;
    expect(shapeOf(prog, 'h.0.mlp.fc.w')).toEqual([8, 8]);
    expect(shapeOf(prog, 'h.0.mlp.proj.w')).toEqual([8, 8]);
    expect(shapeOf(prog, 'h.0.attn.q.w')).toEqual([8, 4]); // one of the two heads
    expect(shapeOf(prog, 'h.0.attn.proj.w')).toEqual([4, 8]);
    // the attention (fused: flash_attention [B, H, T, dh]; unfused: its softmax [B, H, T, T]) holds this device's heads only
    const attention = prog.nodes.filter((n) => n.op === 'flash_attention' || (n.op === 'softmax' && n.type.shape.length === 4));
    expect(attention.length).toBeGreaterThan(0);
    expect(attention.every((n) => n.type.shape[0] === B && n.type.shape[1] === 1 && n.type.shape[2] === T)).toBe(true);
    const replicatedGrads = single.nodes.filter((n) => n.op === 'param').length / 3 - split.size; // params, m, v
    // per block: one all_reduce after attention and one after the MLP in the forward pass, their gradients' in the
    // backward; one per replicated gradient; the squared norm of every split gradient (for clipping); the loss
    expect(prog.nodes.filter((n) => n.op === 'all_reduce').length).toBe(2 * 2 * cfg.layers + replicatedGrads + split.size + 1);
    expect(() => compileIR(forward(), { train: { optimizer: { kind: 'adafactor' } }, parallel: { dp: 1, tp } })).toThrow('elementwise optimizer');
  });

  it(`tp=${tp}: ${STEPS} AdamW steps of a 2-layer GPT`, () => {
    const whole = params(single);
    const dev = [0, 1].map((r) => Object.fromEntries(prog.nodes.filter((n) => n.op === 'param').map((n) => {
      const name = (n.attrs as AttrsOf<'param'>).name;
      const axis = split.get(name);
      return [name, axis !== undefined ? shard(whole[name], axis, tp, r) : whole[name].shape.length === n.type.shape.length && whole[name].shape.every((s, i) => s === n.type.shape[i]) ? whole[name] : initParam((n.attrs as AttrsOf<'param'>).init, n.type, name, 2)];
    })));
    let lossErr = 0;
    for (let t = 0; t < STEPS; t++) {
      const a = interpret(single, { inputs: batch(t), params: whole });
      apply(single, a, whole);
      const outs = interpretSharded([prog, prog], { feeds: dev.map((p) => ({ inputs: batch(t), params: p })) });
      outs.forEach((o, r) => apply(prog, o, dev[r]));
      expect(outs[1].loss.data[0]).toBe(outs[0].loss.data[0]);
      lossErr = Math.max(lossErr, Math.abs(outs[0].loss.data[0] - a.loss.data[0]) / a.loss.data[0]);
    }
    let paramErr = 0;
    for (const [name, want] of Object.entries(whole)) {
      const axis = split.get(name) ?? split.get(name.replace(/^opt\.[^.]+\./, ''));
      const got = axis !== undefined ? combineCollective('all_gather', { size: tp, axis }, dev.map((p) => p[name]))[0] : dev[0][name];
      if (axis === undefined) expect(Array.from(dev[1][name].data)).toEqual(Array.from(got.data)); // replicas agree
      expect(got.shape).toEqual(want.shape);
      for (let i = 0; i < want.data.length; i++) paramErr = Math.max(paramErr, Math.abs(want.data[i] - got.data[i]));
    }
    console.log(`tp=${tp}: max relative loss difference ${lossErr.toExponential(2)}, max parameter/state difference ${paramErr.toExponential(2)}`);
    expect(lossErr).toBeLessThan(1e-6);
    expect(paramErr).toBeLessThan(5e-5);
  });
});
