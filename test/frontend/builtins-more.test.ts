// The builtins people reach for: each against a plain-loop reference written here (the interpreter runs the
// lowered IR), their gradients against finite differences, and the WebGPU kernels against the interpreter.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { gradcheck } from '../../src/autodiff/gradcheck.js';
import { compileModel } from '../../src/frontend/index.js';
import { interpret } from '../../src/interp/interpreter.js';
import { intPow } from '../../src/ir/ops/elementwise.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import type { DType } from '../../src/ir/types.js';
import { compileIR } from '../../src/passes/index.js';
import { randTensor } from '../runtime/graphs.js';
import { checkAgainstInterpreter } from '../runtime/helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'kiln-builtins-'));
let n = 0;
/** Compiles `body` as entry `forward` with the given inputs (and `import "std/nn"`). */
function entry(inputs: string, outputs: string, body: string, params = '') {
  const file = join(dir, `m${n++}.kiln`);
  writeFileSync(file, `import "std/nn"\nmodel m {\n}\nentry forward(${inputs}) -> (${outputs}) {\n${params}${body}\n}\n`);
  return compileModel(file, { entry: 'forward' }).graph;
}
const t = (dtype: DType, shape: number[], data: ArrayLike<number>): HostTensor => {
  const T = dtype === 'f32' ? Float32Array : dtype === 'i32' ? Int32Array : Uint32Array;
  return { dtype, shape, data: T.from(data) };
};
const arr = (x: HostTensor) => Array.from(x.data);
const close = (got: HostTensor, want: number[], tol = 1e-5) => {
  expect(got.data.length).toBe(want.length);
  want.forEach((w, i) => expect(Math.abs(got.data[i] - w), `[${i}] ${got.data[i]} vs ${w}`).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(w))));
};

describe('cumsum', () => {
  const x = t('f32', [2, 4], [1, 2, 3, 4, -1, 0.5, 2, 8]);
  const ref = (row: number[], exclusive: boolean, reverse: boolean) => {
    const r = reverse ? [...row].reverse() : row;
    let s = 0;
    const out = r.map((v) => ((s += v), exclusive ? s - v : s));
    return reverse ? out.reverse() : out;
  };
  for (const [exclusive, reverse] of [[false, false], [true, false], [false, true], [true, true]]) {
    it(`exclusive=${exclusive} reverse=${reverse}, along either axis`, () => {
      const g = entry('x: f32[2, 4]', 'a: f32[2, 4], b: f32[2, 4]', `  return cumsum(x, axis=-1, exclusive=${exclusive}, reverse=${reverse}), cumsum(x, axis=0, exclusive=${exclusive}, reverse=${reverse})`);
      const out = interpret(g, { inputs: { x } });
      const rows = [arr(x).slice(0, 4), arr(x).slice(4)];
      close(out.a, rows.flatMap((r) => ref(r, exclusive, reverse)));
      const cols = [0, 1, 2, 3].map((c) => ref([x.data[c], x.data[4 + c]], exclusive, reverse));
      close(out.b, [0, 1].flatMap((r) => cols.map((c) => c[r])));
    });
  }
  it('integers stay exact; gradient is a reversed cumsum (finite differences)', () => {
    const gi = entry('x: i32[5]', 'y: i32[5]', '  return cumsum(x)');
    expect(arr(interpret(gi, { inputs: { x: t('i32', [5], [3, -7, 100000, 2, 0]) } }).y)).toEqual([3, -4, 99996, 99998, 99998]);
    const g = entry('x: f32[3]', 'loss: f32', '  return sum(cumsum(x * w, exclusive=true) * cumsum(x * w, reverse=true))', '  param w: f32[3] = normal(1.0)\n');
    expect(gradcheck(g, { inputs: { x: t('f32', [3], [0.3, -1.2, 0.7]) } }).ok).toBe(true);
  });
});

describe('einsum', () => {
  it('attention-style contractions and transposes equal loops', () => {
    const A = randTensor('f32', [2, 3, 4, 5], 1);
    const B = randTensor('f32', [2, 3, 6, 5], 2);
    const g = entry('a: f32[2, 3, 4, 5], b: f32[2, 3, 6, 5]', 's: f32[2, 3, 4, 6], t: f32[5, 4, 3, 2], o: f32[3, 4, 6]', '  return einsum("bhqd,bhkd->bhqk", a, b), einsum("bhqd->dqhb", a), einsum("bhqd,bhkd->hqk", a, b)');
    const out = interpret(g, { inputs: { a: A, b: B } });
    const at = (x: HostTensor, i: number[]) => x.data[i.reduce((p, v, k) => p * x.shape[k] + v, 0)];
    const s: number[] = [];
    const o = new Array(3 * 4 * 6).fill(0);
    for (let b = 0; b < 2; b++) for (let h = 0; h < 3; h++) for (let q = 0; q < 4; q++) for (let k = 0; k < 6; k++) {
      let v = 0;
      for (let d = 0; d < 5; d++) v += at(A, [b, h, q, d]) * at(B, [b, h, k, d]);
      s.push(v);
      o[(h * 4 + q) * 6 + k] += v;
    }
    close(out.s, s);
    close(out.o, o);
    const tr: number[] = [];
    for (let d = 0; d < 5; d++) for (let q = 0; q < 4; q++) for (let h = 0; h < 3; h++) for (let b = 0; b < 2; b++) tr.push(at(A, [b, h, q, d]));
    close(out.t, tr);
  });
  it('matrix-vector, outer product, implicit output; bad specs are refused by name', () => {
    const g = entry('m: f32[2, 3], v: f32[3], u: f32[2]', 'mv: f32[2], op: f32[2, 3], imp: f32[2]', '  return einsum("ij,j->i", m, v), einsum("i,j->ij", u, v), einsum("ij,j", m, v)');
    const M = t('f32', [2, 3], [1, 2, 3, 4, 5, 6]);
    const out = interpret(g, { inputs: { m: M, v: t('f32', [3], [1, 0, -1]), u: t('f32', [2], [2, 3]) } });
    close(out.mv, [-2, -2]);
    close(out.op, [2, 0, -2, 3, 0, -3]);
    close(out.imp, [-2, -2]);
    expect(() => entry('m: f32[2, 3]', 'y: f32[2]', '  return einsum("ii->i", m)')).toThrow(/repeated label/);
    expect(() => entry('m: f32[2, 3], v: f32[4]', 'y: f32[2]', '  return einsum("ij,j->i", m, v)')).toThrow(/label 'j' is 3 in one place and 4/);
  });
});

describe('triu, tril, broadcast_to, expand, arange', () => {
  it('equal their definitions', () => {
    const x = t('f32', [2, 3, 3], Array.from({ length: 18 }, (_, i) => i + 1));
    const g = entry('x: f32[2, 3, 3], v: f32[3, 1]', 'u: f32[2, 3, 3], l: f32[2, 3, 3], b: f32[2, 3, 4], e: f32[3, 5], r: i32[4], f: f32[3]',
      '  return triu(x, 1), tril(x, -1), broadcast_to(v, 2, 3, 4), expand(v, -1, 5), arange(10, 2, -2), arange(0.5, 2.0, 0.5)');
    const out = interpret(g, { inputs: { x, v: t('f32', [3, 1], [7, 8, 9]) } });
    close(out.u, arr(x).map((v, i) => ((i % 3) - Math.floor((i % 9) / 3) >= 1 ? v : 0)));
    close(out.l, arr(x).map((v, i) => ((i % 3) - Math.floor((i % 9) / 3) <= -1 ? v : 0)));
    close(out.b, Array.from({ length: 24 }, (_, i) => [7, 8, 9][Math.floor(i / 4) % 3]));
    close(out.e, Array.from({ length: 15 }, (_, i) => [7, 8, 9][Math.floor(i / 5)]));
    expect(arr(out.r)).toEqual([10, 8, 6, 4]);
    close(out.f, [0.5, 1, 1.5]);
  });
});

describe('indexing', () => {
  it('gather along any axis with Python negative indices; strided and reversed slices', () => {
    const x = t('f32', [2, 4, 3], Array.from({ length: 24 }, (_, i) => i));
    const g = entry('x: f32[2, 4, 3], i: i32[2]', 'g1: f32[2, 2, 3], g2: f32[2, 4, 2], s: f32[2, 2, 3], r: f32[2, 4, 3], q: f32[3]',
      '  return gather(x, i, axis=1), gather(x, i, axis=-1), x[:, ::2, :], x[:, ::-1, :], x[1, 3, ::-1]');
    const out = interpret(g, { inputs: { x, i: t('i32', [2], [-1, 1]) } });
    const at = (a: number, b: number, c: number) => a * 12 + b * 3 + c;
    close(out.g1, [0, 1].flatMap((a) => [3, 1].flatMap((b) => [0, 1, 2].map((c) => at(a, b, c)))));
    close(out.g2, [0, 1].flatMap((a) => [0, 1, 2, 3].flatMap((b) => [2, 1].map((c) => at(a, b, c)))));
    close(out.s, [0, 1].flatMap((a) => [0, 2].flatMap((b) => [0, 1, 2].map((c) => at(a, b, c)))));
    close(out.r, [0, 1].flatMap((a) => [3, 2, 1, 0].flatMap((b) => [0, 1, 2].map((c) => at(a, b, c)))));
    close(out.q, [at(1, 3, 2), at(1, 3, 1), at(1, 3, 0)]);
    // gradients of both gathers scatter back (finite differences)
    const gg = entry('x: f32[2, 4, 3], i: i32[2]', 'loss: f32', '  return sum(gather(x * w, i, axis=1) ** 2.0) + sum((x * w)[:, ::-2, :])', '  param w: f32[3] = normal(1.0)\n');
    expect(gradcheck(gg, { inputs: { x, i: t('i32', [2], [-1, 1]) } }).ok).toBe(true);
  });
});

describe('norms over trailing axes', () => {
  it('layer_norm over (-2, -1) equals normalising the flattened axes, and returns its statistics', () => {
    const x = randTensor('f32', [2, 3, 4], 5);
    const g = entry('x: f32[2, 3, 4]', 'y: f32[2, 3, 4], m: f32[2, 1, 1], r: f32[2, 1, 1], z: f32[2, 3, 4]',
      '  let g = ones(3, 4)\n  let b = zeros(3, 4)\n  let (y, m, r) = ops.layer_norm(x, g, b, axes=(-2, -1), return_stats=true)\n  return y, m, r, ops.rms_norm(x, ones(12), axes=(-2, -1))');
    const out = interpret(g, { inputs: { x } });
    for (let s = 0; s < 2; s++) {
      const v = arr(x).slice(s * 12, s * 12 + 12);
      const mean = v.reduce((p, q) => p + q, 0) / 12;
      const rstd = 1 / Math.sqrt(v.reduce((p, q) => p + (q - mean) ** 2, 0) / 12 + 1e-5);
      const rms = 1 / Math.sqrt(v.reduce((p, q) => p + q * q, 0) / 12 + 1e-6);
      expect(Math.abs(out.m.data[s] - mean)).toBeLessThan(1e-6);
      expect(Math.abs(out.r.data[s] - rstd)).toBeLessThan(1e-4 * rstd);
      v.forEach((q, j) => expect(Math.abs(out.y.data[s * 12 + j] - (q - mean) * rstd)).toBeLessThan(1e-5));
      v.forEach((q, j) => expect(Math.abs(out.z.data[s * 12 + j] - q * rms)).toBeLessThan(1e-5));
    }
  });
});

describe('losses with weights, label smoothing and any class axis', () => {
  const logits = randTensor('f32', [3, 4], 11);
  const labels = t('i32', [3], [2, -100, 0]);
  const weight = t('f32', [4], [1, 2, 0.5, 3]);
  const lsm = (r: number) => {
    const row = arr(logits).slice(r * 4, r * 4 + 4);
    const m = Math.max(...row);
    const ls = Math.log(row.reduce((p, q) => p + Math.exp(q - m), 0));
    return row.map((q) => q - m - ls);
  };
  it('cross_entropy equals the PyTorch definition; nll_loss picks along axis 1', () => {
    const g = entry('x: f32[3, 4], y: i32[3], w: f32[4]', 'plain: f32, wt: f32, sm: f32, both: f32, nll: f32, ax: f32',
      '  return cross_entropy(x, y), cross_entropy(x, y, weight=w), cross_entropy(x, y, label_smoothing=0.1), cross_entropy(x, y, weight=w, label_smoothing=0.2), nll_loss(log_softmax(x), y, weight=w), cross_entropy(transpose(x), y, axis=0)');
    const out = interpret(g, { inputs: { x: logits, y: labels, w: weight } });
    const rows = [0, 2];
    const wv = arr(weight);
    const nll = (r: number) => -lsm(r)[labels.data[r]];
    const smooth = (r: number, ws: number[]) => -lsm(r).reduce((p, q, c) => p + ws[c] * q, 0) / 4;
    close(out.plain, [(nll(0) + nll(2)) / 2]);
    const wy = rows.map((r) => wv[labels.data[r]]);
    close(out.wt, [(wy[0] * nll(0) + wy[1] * nll(2)) / (wy[0] + wy[1])]);
    close(out.sm, [rows.reduce((p, r) => p + 0.9 * nll(r) + 0.1 * smooth(r, [1, 1, 1, 1]), 0) / 2]);
    close(out.both, [rows.reduce((p, r, k) => p + 0.8 * wy[k] * nll(r) + 0.2 * smooth(r, wv), 0) / (wy[0] + wy[1])]);
    close(out.nll, [out.wt.data[0]]);
    close(out.ax, [arr(out.plain)[0]]);
    const gg = entry('x: f32[3, 4], y: i32[3], w: f32[4]', 'loss: f32', '  return cross_entropy(x * s, y, weight=w, label_smoothing=0.1)', '  param s: f32[4] = normal(1.0)\n');
    expect(gradcheck(gg, { inputs: { x: logits, y: labels, w: weight } }).ok).toBe(true);
  });
});

describe('integer pow and dropout(training=false)', () => {
  it('pow on i32 wraps at 32 bits and follows the stated rule for negative exponents', () => {
    const g = entry('a: i32[6], b: i32[6]', 'p: i32[6]', '  return a ** b');
    const a = [3, -2, 7, 1, -1, 5];
    const b = [4, 3, 20, -3, -3, -1];
    const out = interpret(g, { inputs: { a: t('i32', [6], a), b: t('i32', [6], b) } });
    expect(arr(out.p)).toEqual([81, -8, Number(BigInt.asIntN(32, 7n ** 20n)), 1, -1, 0]);
    expect(intPow(2, 31)).toBe(-2147483648);
  });
  it('dropout(x, p, training=false) is the identity', () => {
    const g = entry('x: f32[4]', 'y: f32[4]', '  return dropout(x, 0.5, training=false)');
    expect(compileIR(g).nodes.some((nd) => nd.op === 'dropout')).toBe(false);
  });
});

describe('on WebGPU', () => {
  it('the new builtins compile to kernels that equal the interpreter', async () => {
    const g = entry('x: f32[2, 5, 3], i: i32[2], a: i32[4], b: i32[4], l: i32[2, 3]', 'c: f32[2, 5, 3], e: f32[2, 5, 5], tri: f32[2, 5, 3], gat: f32[2, 2, 3], st: f32[2, 3, 3], p: i32[4], ce: f32',
      '  return cumsum(x, axis=1, exclusive=true), einsum("bqd,bkd->bqk", x, x), triu(x, -1), gather(x, i, axis=1), x[:, ::-2, :], a ** b, cross_entropy(x, l, weight=ones(5), label_smoothing=0.1, axis=1)');
    await checkAgainstInterpreter(compileIR(g), {
      x: randTensor('f32', [2, 5, 3], 3),
      i: t('i32', [2], [-2, 4]),
      a: t('i32', [4], [3, -5, 9, 2]),
      b: t('i32', [4], [5, 3, 11, -2]),
      l: t('i32', [2, 3], [1, 4, -100, 0, 2, 3]),
    }, { tol: { rtol: 1e-5, atol: 1e-5 } });
  });
});
