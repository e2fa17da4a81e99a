import { describe, expect, it } from 'vitest';
import { grad } from '../../src/autodiff/index.js';
import { interpret } from '../../src/interp/interpreter.js';
import { GraphBuilder } from '../../src/ir/builder.js';
import type { Graph } from '../../src/ir/graph.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import { buildAccumTrainStep, buildTrainStep, stateParams, type OptimizerConfig } from '../../src/train/optimizers.js';
import { UPDATE_PREFIX as UPDATE } from '../../src/ir/graph.js';
import { initialParams } from '../runtime/graphs.js';
import { Rng } from '../../src/train/rng.js';

/** A tiny classifier: logits = x @ W + b, mean cross-entropy over labels (-100 ignored). */
function tinyModel(B: number, n: number, k: number): Graph {
  const b = new GraphBuilder();
  const x = b.op('input', [], { name: 'x', dtype: 'f32', shape: [B, n] });
  const y = b.op('input', [], { name: 'y', dtype: 'i32', shape: [B] });
  const W = b.op('param', [], { name: 'W', dtype: 'f32', shape: [n, k], init: { kind: 'normal', std: 0.5 } });
  const bias = b.op('param', [], { name: 'b', dtype: 'f32', shape: [k], init: { kind: 'normal', std: 0.5 } });
  const logits = b.add(b.op('matmul', [x, W], { transA: false, transB: false }), bias);
  const per = b.op('cross_entropy', [logits, y], { ignore_index: -100 });
  const count = b.op('sum', [b.op('cast', [b.op('ne', [y, b.scalar(-100, 'i32')], {})], { to: 'f32' })], { axes: [0], keepdims: false });
  const loss = b.div(b.op('sum', [per], { axes: [0], keepdims: false }), count);
  return b.build('tiny', [{ name: 'loss', id: loss }]);
}

function data(B: number, n: number, k: number, seed: number): Record<string, HostTensor> {
  const r = new Rng(seed, 'data');
  return {
    x: { dtype: 'f32', shape: [B, n], data: Float32Array.from({ length: B * n }, () => r.next() * 2 - 1) },
    y: { dtype: 'i32', shape: [B], data: Int32Array.from({ length: B }, (_, i) => (i === 1 ? -100 : r.int(k))) },
  };
}

const scalar = (v: number): HostTensor => ({ dtype: 'f32', shape: [], data: Float32Array.of(v) });

/** Plain-TypeScript reference optimizers, written from the papers, on Float64 arrays. */
function referenceStep(cfg: OptimizerConfig, p: Float64Array, g: Float64Array, st: Record<string, Float64Array>, t: number, lr: number, shape: number[]): void {
  const wd = cfg.weightDecay ?? (cfg.kind === 'adamw' ? 0.01 : 0);
  const decays = shape.length >= 2;
  const n = p.length;
  if (cfg.kind === 'sgd') {
    const mu = cfg.momentum ?? 0.9;
    st.buf ??= new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const gi = g[i] + (decays ? wd * p[i] : 0);
      st.buf[i] = mu * st.buf[i] + gi;
      p[i] -= lr * st.buf[i];
    }
  } else if (cfg.kind === 'adam' || cfg.kind === 'adamw') {
    const [b1, b2, eps] = [cfg.beta1 ?? 0.9, cfg.beta2 ?? 0.999, cfg.eps ?? 1e-8];
    st.m ??= new Float64Array(n);
    st.v ??= new Float64Array(n);
    for (let i = 0; i < n; i++) {
      const gi = g[i] + (cfg.kind === 'adam' && decays ? wd * p[i] : 0);
      st.m[i] = b1 * st.m[i] + (1 - b1) * gi;
      st.v[i] = b2 * st.v[i] + (1 - b2) * gi * gi;
      const mh = st.m[i] / (1 - b1 ** t);
      const vh = st.v[i] / (1 - b2 ** t);
      p[i] -= lr * (mh / (Math.sqrt(vh) + eps) + (cfg.kind === 'adamw' && decays ? wd * p[i] : 0));
    }
  } else {
    const beta2t = 1 - t ** -0.8;
    const g2 = Array.from(g, (v) => v * v + 1e-30);
    const u = new Float64Array(n);
    if (shape.length === 2) {
      const [R, C] = shape;
      st.r ??= new Float64Array(R);
      st.c ??= new Float64Array(C);
      for (let i = 0; i < R; i++) {
        let s = 0;
        for (let j = 0; j < C; j++) s += g2[i * C + j];
        st.r[i] = beta2t * st.r[i] + (1 - beta2t) * (s / C);
      }
      for (let j = 0; j < C; j++) {
        let s = 0;
        for (let i = 0; i < R; i++) s += g2[i * C + j];
        st.c[j] = beta2t * st.c[j] + (1 - beta2t) * (s / R);
      }
      const rmean = st.r.reduce((a, b) => a + b, 0) / R;
      for (let i = 0; i < R; i++) for (let j = 0; j < C; j++) u[i * C + j] = g[i * C + j] / Math.sqrt((st.r[i] / rmean) * st.c[j]);
    } else {
      st.v ??= new Float64Array(n);
      for (let i = 0; i < n; i++) {
        st.v[i] = beta2t * st.v[i] + (1 - beta2t) * g2[i];
        u[i] = g[i] / Math.sqrt(st.v[i]);
      }
    }
    const rms = Math.sqrt(u.reduce((a, b) => a + b * b, 0) / n);
    const scale = 1 / Math.max(1, rms / 1.0);
    for (let i = 0; i < n; i++) p[i] -= lr * u[i] * scale;
  }
}

describe('optimizers compiled into the step graph match plain-TypeScript references', () => {
  const B = 4, n = 5, k = 3;
  const model = tinyModel(B, n, k);
  for (const kind of ['sgd', 'adam', 'adamw', 'adafactor'] as const) {
    it(`${kind}: 4 steps`, () => {
      const cfg: OptimizerConfig = { kind, clip: 0, weightDecay: kind === 'adam' || kind === 'sgd' ? 0.05 : undefined };
      const step = buildTrainStep(grad(model, { loss: 'loss' }), cfg);
      const gradGraph = grad(model, { loss: 'loss' });
      // parameters from their initialisers (seed 3); optimizer state starts at zero
      const params = initialParams(step, 3);
      const refP: Record<string, Float64Array> = {};
      const refS: Record<string, Record<string, Float64Array>> = { W: {}, b: {} };
      refP.W = Float64Array.from(params.W.data);
      refP.b = Float64Array.from(params.b.data);
      for (let t = 1; t <= 4; t++) {
        const lr = 0.1 / t;
        const inputs = data(B, n, k, t);
        // reference gradients from the (independently tested) joint graph at the reference parameters
        const g = interpret(gradGraph, { inputs, params: { W: f32(refP.W, [n, k]), b: f32(refP.b, [k]) } });
        const out = interpret(step, { inputs: { ...inputs, lr: scalar(lr), step: scalar(t) }, params });
        for (const [name, v] of Object.entries(out)) if (name.startsWith(UPDATE)) params[name.slice(UPDATE.length)] = v;
        referenceStep(cfg, refP.W, Float64Array.from(g['grad:W'].data), refS.W, t, lr, [n, k]);
        referenceStep(cfg, refP.b, Float64Array.from(g['grad:b'].data), refS.b, t, lr, [k]);
        for (const name of ['W', 'b']) {
          const got = params[name].data;
          refP[name].forEach((v, i) => expect(got[i]).toBeCloseTo(v, 5));
        }
      }
    });
  }

  it('adafactor keeps O(n + m) state for an n x m matrix', () => {
    const step = buildTrainStep(grad(tinyModel(2, 7, 9), { loss: 'loss' }), { kind: 'adafactor' });
    const shapes = Object.fromEntries(stateParams(step).map((p) => [p.attrs.name, p.type.shape]));
    expect(shapes).toEqual({ 'opt.r.W': [7], 'opt.c.W': [9], 'opt.v.b': [9] });
  });

  it('gradient clipping scales the update to the global norm limit', () => {
    const joint = grad(model, { loss: 'loss' });
    const step = buildTrainStep(joint, { kind: 'sgd', momentum: 0, clip: 1e-3 });
    const inputs = data(B, n, k, 7);
    const g = interpret(joint, { inputs, seed: 1 });
    const norm = Math.hypot(...g['grad:W'].data, ...g['grad:b'].data);
    const out = interpret(step, { inputs: { ...inputs, lr: scalar(1), step: scalar(1) }, seed: 1 });
    expect(out.grad_norm.data[0]).toBeCloseTo(norm, 5);
    const p0 = initialParams(step, 1);
    let moved = 0;
    for (const name of ['W', 'b']) p0[name].data.forEach((v, i) => (moved += (v - out[`update:${name}`].data[i]) ** 2));
    expect(Math.sqrt(moved)).toBeCloseTo(1e-3, 6);
  });

  it('accumulating micro-batches equals one big batch (token-weighted means)', () => {
    const bigB = 8;
    const big = tinyModel(bigB, n, k);
    const small = tinyModel(bigB / 2, n, k);
    const cfg: OptimizerConfig = { kind: 'adamw' };
    const bigStep = buildTrainStep(grad(big, { loss: 'loss' }), cfg);
    const accStep = buildAccumTrainStep(grad(small, { loss: 'loss' }), cfg);
    const all = data(bigB, n, k, 11);
    all.y.data[5] = -100; // uneven ignored positions between the halves
    const half = (h: number): Record<string, HostTensor> => ({
      x: { dtype: 'f32', shape: [4, n], data: all.x.data.slice(h * 4 * n, (h + 1) * 4 * n) },
      y: { dtype: 'i32', shape: [4], data: all.y.data.slice(h * 4, (h + 1) * 4) },
    });
    const counted = (t: HostTensor) => Array.from(t.data).filter((v) => v !== -100).length;
    const total = counted(all.y);
    const bigOut = interpret(bigStep, { inputs: { ...all, lr: scalar(0.05), step: scalar(1) }, seed: 5 });
    const params = initialParams(accStep, 5);
    for (let h = 0; h < 2; h++) {
      const inp = half(h);
      const out = interpret(accStep, {
        inputs: { ...inp, lr: scalar(0.05), step: scalar(1), loss_weight: scalar(counted(inp.y) / total), apply: { dtype: 'u32', shape: [], data: Uint32Array.of(h) } },
        params,
      });
      for (const [name, v] of Object.entries(out)) if (name.startsWith(UPDATE)) params[name.slice(UPDATE.length)] = v;
      if (h === 0) expect(Array.from(params.W.data)).toEqual(Array.from(initialParams(accStep, 5).W.data));
    }
    for (const name of ['W', 'b']) {
      const want = bigOut[`update:${name}`].data;
      params[name].data.forEach((v, i) => expect(v).toBeCloseTo(want[i], 6));
    }
    expect(Array.from(params['acc.W'].data).every((v) => v === 0)).toBe(true);
  });
});

function f32(a: Float64Array, shape: number[]): HostTensor {
  return { dtype: 'f32', shape, data: Float32Array.from(a) };
}

