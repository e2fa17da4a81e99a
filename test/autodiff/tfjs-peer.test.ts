// A peer library as a second oracle: TensorFlow.js (CPU backend) computes the loss and gradients of the same small
// GPT (library gpt.kiln: embeddings, pre-LN block with causal multi-head attention and a GELU(tanh) MLP, final LN,
// tied head, mean cross-entropy) with the same weights and inputs; Kiln's joint graph must agree.
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
import { beforeAll, describe, expect, it } from 'vitest';
import { grad } from '../../src/autodiff/index.js';
import { compileModel } from '../../src/frontend/index.js';
import { interpret } from '../../src/interp/interpreter.js';
import { initParam } from '../../src/ir/init.js';
import type { AttrsOf } from '../../src/ir/op.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import { tfGptLoss } from '../../bench/peers/tfjs-gpt.js';

const cfg = { vocab: 13, d: 16, heads: 2, layers: 1, d_ff: 32, ctx: 8 };
const B = 2, T = 6;

describe('GPT loss and gradients agree with TensorFlow.js', () => {
  beforeAll(async () => {
    await tf.setBackend('cpu');
  });

  it('to ~1e-5 relative', () => {
    const { graph } = compileModel('src/models/gpt.kiln', { entry: 'loss', set: cfg, dims: { B, T } });
    const params: Record<string, HostTensor> = {};
    for (const n of graph.nodes) {
      if (n.op !== 'param') continue;
      const a = n.attrs as AttrsOf<'param'>;
      // larger weights than the default init so that every path contributes visibly
      const init = a.init.kind === 'normal' ? { kind: 'normal' as const, std: 0.3 } : a.init.kind === 'ones' ? { kind: 'uniform' as const, low: 0.5, high: 1.5 } : { kind: 'uniform' as const, low: -0.3, high: 0.3 };
      params[a.name] = initParam(init, n.type, a.name, 11);
    }
    const tokens = Int32Array.from({ length: B * T }, (_, i) => (i * 5 + 3) % cfg.vocab);
    const targets = Int32Array.from({ length: B * T }, (_, i) => (i % 4 === 3 ? -100 : (i * 7 + 1) % cfg.vocab));
    const kiln = interpret(grad(graph, { loss: 'loss' }), {
      inputs: { tokens: { dtype: 'i32', shape: [B, T], data: tokens }, targets: { dtype: 'i32', shape: [B, T], data: targets } },
      params,
    });

    const names = Object.keys(params);
    const vars = Object.fromEntries(names.map((k) => [k, tf.tensor(Array.from(params[k].data), [...params[k].shape])]));
    const tokensT = tf.tensor(Array.from(tokens), [B, T], 'int32');
    const lossFn = (...ws: tf.Tensor[]) =>
      tfGptLoss(tf, Object.fromEntries(names.map((k, i) => [k, ws[i]])), tokensT, targets, { ...cfg, B, T });
    const { value, grads } = tf.valueAndGrads(lossFn)(names.map((k) => vars[k]));
    expect(names).toContain('h.0.attn.q.w');
    expect(kiln.loss.data[0]).toBeCloseTo(value.dataSync()[0], 5);
    names.forEach((k, i) => {
      const ref = grads[i].dataSync();
      const got = kiln[`grad:${k}`].data;
      let num = 0, den = 0;
      for (let j = 0; j < ref.length; j++) {
        num += (ref[j] - got[j]) ** 2;
        den += ref[j] ** 2;
      }
      // relative to the gradient's norm, with a floor: the key bias's gradient is exactly zero in theory (softmax
      // ignores a per-query constant), so both sides hold only rounding noise there
      expect(Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-2), k).toBeLessThan(2e-5);
    });
  });
});
