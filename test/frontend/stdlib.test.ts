import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileModel } from '../../src/frontend/index.js';
import { interpret } from '../../src/interp/interpreter.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import { at, FIXTURES, randTensor } from './helpers.js';

const FILE = join(FIXTURES, 'stdlib_check.kiln');
const B = 2, T = 5, N = 4, H = 2;

function run(entry: string, inputs: Record<string, HostTensor> = {}, params?: Record<string, HostTensor>): Record<string, HostTensor> {
  const { graph } = compileModel(FILE, { entry });
  return interpret(graph, { inputs, params, seed: 7 });
}

/** softmax(q k^T / sqrt(dh) with j > i masked) v, for one [T, dh] head, in plain TS. */
function refAttention(q: HostTensor, k: HostTensor, v: HostTensor, b: number, h: number, i: number, causal: boolean, S = T): number[] {
  const dh = q.shape[3];
  const s: number[] = [];
  for (let j = 0; j < S; j++) {
    let dot = 0;
    for (let c = 0; c < dh; c++) dot += at(q, b, h, i, c) * at(k, b, h, j, c);
    s.push(causal && j > i ? -Infinity : dot / Math.sqrt(dh));
  }
  const m = Math.max(...s);
  const e = s.map((x) => Math.exp(x - m));
  const z = e.reduce((a, c) => a + c, 0);
  return Array.from({ length: dh }, (_, c) => e.reduce((acc, w, j) => acc + (w / z) * at(v, b, h, j, c), 0));
}

describe('stdlib against plain-TS references', () => {
  it('linear is x @ w + b', () => {
    const x = randTensor([B, T, N], 1);
    const w = randTensor([N, 3], 2);
    const bias = randTensor([3], 3);
    const y = run('lin', { x }, { 'lin.w': w, 'lin.b': bias }).y;
    expect(y.shape).toEqual([B, T, 3]);
    for (let b = 0; b < B; b++)
      for (let t = 0; t < T; t++)
        for (let o = 0; o < 3; o++) {
          let acc = bias.data[o];
          for (let i = 0; i < N; i++) acc += at(x, b, t, i) * at(w, i, o);
          expect(at(y, b, t, o)).toBeCloseTo(acc, 5);
        }
  });

  it('layer_norm and rms_norm normalise the last axis (unit gain, zero bias at init)', () => {
    const x = randTensor([B, T, N], 4);
    const ln = run('lnorm', { x }).out;
    const rn = run('rnorm', { x }).out;
    for (let r = 0; r < B * T; r++) {
      const row = Array.from(x.data.slice(r * N, r * N + N));
      const mu = row.reduce((a, c) => a + c, 0) / N;
      const v = row.reduce((a, c) => a + (c - mu) ** 2, 0) / N;
      const ms = row.reduce((a, c) => a + c * c, 0) / N;
      row.forEach((c, i) => {
        expect(ln.data[r * N + i]).toBeCloseTo((c - mu) / Math.sqrt(v + 1e-5), 4);
        expect(rn.data[r * N + i]).toBeCloseTo(c / Math.sqrt(ms + 1e-6), 4);
      });
    }
  });

  it('causal attention matches the reference and ignores future keys', () => {
    const q = randTensor([B, H, T, N], 5);
    const k = randTensor([B, H, T, N], 6);
    const v = randTensor([B, H, T, N], 7);
    const o = run('causal', { q, k, v }).out;
    for (let b = 0; b < B; b++)
      for (let h = 0; h < H; h++)
        for (let i = 0; i < T; i++) refAttention(q, k, v, b, h, i, true).forEach((r, c) => expect(at(o, b, h, i, c)).toBeCloseTo(r, 5));
    // Changing the last key/value changes only the last query's output.
    const v2 = { ...v, data: v.data.slice() };
    for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let c = 0; c < N; c++) v2.data[((b * H + h) * T + T - 1) * N + c] += 5;
    const o2 = run('causal', { q, k, v: v2 }).out;
    for (let b = 0; b < B; b++)
      for (let h = 0; h < H; h++)
        for (let i = 0; i < T; i++)
          for (let c = 0; c < N; c++) {
            if (i < T - 1) expect(at(o2, b, h, i, c)).toBe(at(o, b, h, i, c));
            else expect(at(o2, b, h, i, c)).not.toBe(at(o, b, h, i, c));
          }
  });

  it('hand-written attention gives the same outputs as the stdlib composite', () => {
    const inputs = { q: randTensor([B, H, T, N], 8), k: randTensor([B, H, T, N], 9), v: randTensor([B, H, T, N], 10) };
    const a = run('causal', inputs).out;
    const b = run('causal_by_hand', inputs).out;
    expect(Array.from(b.data)).toEqual(Array.from(a.data));
    // Only the stdlib version is marked as an attention composite.
    const g1 = compileModel(FILE, { entry: 'causal' }).graph;
    const g2 = compileModel(FILE, { entry: 'causal_by_hand' }).graph;
    expect(g1.nodes.filter((n) => n.scope?.kind === 'attention').length).toBeGreaterThan(3);
    expect(g2.nodes.some((n) => n.scope)).toBe(false);
  });

  it('sinusoidal table matches sin/cos of p / 10000^(2i/n)', () => {
    const pe = run('sin_table').out;
    expect(pe.shape).toEqual([T, 6]);
    for (let p = 0; p < T; p++)
      for (let i = 0; i < 3; i++) {
        const w = p / 10000 ** ((2 * i) / 6);
        expect(at(pe, p, 2 * i)).toBeCloseTo(Math.sin(w), 5);
        expect(at(pe, p, 2 * i + 1)).toBeCloseTo(Math.cos(w), 5);
      }
  });

  it('rotary embedding preserves norms, leaves position 0 alone, rotates pairs by p * theta_i', () => {
    const x = randTensor([B, H, T, N], 11);
    const y = run('rope', { x }).out;
    for (let r = 0; r < B * H * T; r++) {
      const nx = Math.hypot(...x.data.slice(r * N, r * N + N));
      const ny = Math.hypot(...y.data.slice(r * N, r * N + N));
      expect(ny).toBeCloseTo(nx, 5);
    }
    for (let c = 0; c < N; c++) expect(at(y, 1, 1, 0, c)).toBeCloseTo(at(x, 1, 1, 0, c), 6);
    const p = 3, i = 1, half = N / 2;
    const th = p * 10000 ** ((-2 * i) / N);
    const x1 = at(x, 0, 1, p, i), x2 = at(x, 0, 1, p, i + half);
    expect(at(y, 0, 1, p, i)).toBeCloseTo(x1 * Math.cos(th) - x2 * Math.sin(th), 5);
    expect(at(y, 0, 1, p, i + half)).toBeCloseTo(x1 * Math.sin(th) + x2 * Math.cos(th), 5);
  });

  it('ALiBi slopes are 2^(-8h/H) and the bias is -m_h (i - j)', () => {
    const { slopes, bias } = run('alibi');
    expect(Array.from(slopes.data)).toEqual([2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8]);
    for (let h = 0; h < 4; h++) for (let i = 0; i < T; i++) for (let j = 0; j < T; j++) expect(at(bias, h, i, j)).toBeCloseTo(-(2 ** (-2 * (h + 1))) * (i - j), 6);
  });

  it('prefix mask is bidirectional inside the prefix and causal after it', () => {
    const m = run('pmask', { prefix_len: { dtype: 'i32', shape: [B], data: Int32Array.from([0, 3]) } }).out;
    expect(m.shape).toEqual([B, 1, T, T]);
    for (let b = 0; b < B; b++)
      for (let i = 0; i < T; i++) for (let j = 0; j < T; j++) expect(at(m, b, 0, i, j)).toBe(j <= i || j < [0, 3][b] ? 1 : 0);
  });

  it('cross_entropy is the mean over positions whose target is not -100', () => {
    const logits = randTensor([B, T, 7], 12);
    const targets = randTensor([B, T], 13, 'i32', 7);
    targets.data[1] = -100;
    targets.data[6] = -100;
    const loss = run('xent', { logits, targets }).loss.data[0];
    let s = 0, n = 0;
    for (let r = 0; r < B * T; r++) {
      const y = targets.data[r];
      if (y === -100) continue;
      const row = Array.from(logits.data.slice(r * 7, r * 7 + 7));
      const m = Math.max(...row);
      s += Math.log(row.reduce((a, c) => a + Math.exp(c - m), 0)) + m - row[y];
      n++;
    }
    expect(loss).toBeCloseTo(s / n, 5);
    // Every target ignored: 0, not NaN.
    const none = run('xent', { logits, targets: { ...targets, data: new Int32Array(B * T).fill(-100) } }).loss.data[0];
    expect(none).toBe(0);
  });

  it('cross-attention reads keys and values from the memory sequence', () => {
    const { graph } = compileModel(FILE, { entry: 'cross' });
    const names = graph.nodes.filter((n) => n.op === 'param').map((n) => (n.attrs as { name: string }).name);
    expect(names).toEqual(['xa.q.w', 'xa.q.b', 'xa.k.w', 'xa.k.b', 'xa.v.w', 'xa.v.b', 'xa.proj.w', 'xa.proj.b']);
    const x = randTensor([B, T, N], 14);
    const mem = randTensor([B, 3, N], 15);
    const y1 = interpret(graph, { inputs: { x, mem }, seed: 1 }).y;
    const mem2 = { ...mem, data: mem.data.map((v) => v * 2) };
    const y2 = interpret(graph, { inputs: { x, mem: mem2 }, seed: 1 }).y;
    expect(y1.shape).toEqual([B, T, N]);
    expect(Array.from(y1.data)).not.toEqual(Array.from(y2.data));
  });
});
