/**
 * Every op on WebGPU against the interpreter, unfused (one kernel per op) and fused, on odd shapes:
 * non-multiples of tile sizes, size-1 dims, broadcasting.
 */
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../src/ir/builder.js';
import type { BinaryKind, UnaryKind } from '../../src/ir/op.js';
import type { DType } from '../../src/ir/types.js';
import { DIRECT_CANDIDATES, TILE_CANDIDATES, heuristicTiles } from '../../src/codegen/wgsl/index.js';
import { interpret } from '../../src/interp/interpreter.js';
import { compileGraph } from '../../src/runtime/index.js';
import { checkAgainstInterpreter, sharedDevice } from './helpers.js';
import { randTensor } from './graphs.js';

const input = (b: GraphBuilder, name: string, dtype: DType, shape: number[]) => b.op('input', [], { name, dtype, shape });

describe('elementwise ops', () => {
  it('unary math on f32', async () => {
    const b = new GraphBuilder();
    const x = input(b, 'x', 'f32', [3, 5, 7]);
    const p = input(b, 'p', 'f32', [3, 5, 7]); // positive, for log / sqrt / rsqrt
    const ops: UnaryKind[] = ['neg', 'abs', 'exp', 'tanh', 'sigmoid', 'relu', 'silu', 'sin', 'cos', 'erf', 'floor', 'stop_gradient'];
    const outs: { name: string; id: number }[] = ops.map((op) => ({ name: op, id: b.unary(op, x) }));
    for (const op of ['log', 'sqrt', 'rsqrt'] as UnaryKind[]) outs.push({ name: op, id: b.unary(op, p) });
    outs.push({ name: 'gelu_tanh', id: b.unary('gelu', x, { approximate: 'tanh' }) });
    outs.push({ name: 'gelu_erf', id: b.unary('gelu', x, { approximate: 'erf' }) });
    const g = b.build('unary', outs);
    await checkAgainstInterpreter(g, { x: randTensor('f32', [3, 5, 7], 1, { lo: -4, hi: 4 }), p: randTensor('f32', [3, 5, 7], 2, { lo: 0.05, hi: 5 }) });
  });

  it('binary arithmetic and comparisons with broadcasting, select, not/and/or', async () => {
    const b = new GraphBuilder();
    const x = input(b, 'x', 'f32', [3, 1, 7]);
    const y = input(b, 'y', 'f32', [5, 1]);
    const ops: BinaryKind[] = ['add', 'sub', 'mul', 'div', 'max', 'min', 'eq', 'ne', 'lt', 'le', 'gt', 'ge'];
    const outs: { name: string; id: number }[] = ops.map((op) => ({ name: op, id: b.binary(op, x, y) }));
    const base = input(b, 'base', 'f32', [4, 6]);
    const ex = input(b, 'ex', 'f32', [6]);
    outs.push({ name: 'pow', id: b.binary('pow', base, ex) });
    const c = b.binary('lt', x, y);
    outs.push({ name: 'select', id: b.op('select', [c, x, y], {}) });
    outs.push({ name: 'not', id: b.unary('not', c) });
    outs.push({ name: 'and', id: b.binary('and', c, b.binary('gt', x, b.scalar(0))) });
    outs.push({ name: 'or', id: b.binary('or', c, b.binary('gt', x, b.scalar(0))) });
    const g = b.build('binary', outs);
    const exv = randTensor('f32', [6], 4, { lo: -2, hi: 3 });
    exv.data.set([2, 3, -1, 0.5, 1.5, 0]); // integral exponents exercise negative bases
    await checkAgainstInterpreter(g, {
      x: randTensor('f32', [3, 1, 7], 1),
      y: randTensor('f32', [5, 1], 2),
      base: randTensor('f32', [4, 6], 3, { lo: -3, hi: 3 }),
      ex: exv,
    });
  });

  it('integer arithmetic, casts between all dtypes, constants and iota', async () => {
    const b = new GraphBuilder();
    const i = input(b, 'i', 'i32', [4, 9]);
    const j = input(b, 'j', 'i32', [9]);
    const u = input(b, 'u', 'u32', [4, 9]);
    const f = input(b, 'f', 'f32', [4, 9]);
    const outs = [
      { name: 'iadd', id: b.add(i, j) },
      { name: 'imul', id: b.mul(i, j) },
      { name: 'idiv', id: b.div(i, j) },
      { name: 'isub', id: b.sub(i, b.scalar(3, 'i32')) },
      { name: 'umax', id: b.binary('max', u, b.scalar(7, 'u32')) },
      { name: 'f2i', id: b.cast(f, 'i32') },
      { name: 'f2u', id: b.cast(b.unary('abs', f), 'u32') },
      { name: 'i2f', id: b.cast(i, 'f32') },
      { name: 'f2b', id: b.cast(f, 'bool') },
      { name: 'b2f', id: b.cast(b.binary('gt', f, b.scalar(0)), 'f32') },
      { name: 'f16', id: b.cast(f, 'f16') },
      { name: 'iota', id: b.op('iota', [], { dtype: 'i32', shape: [3, 4], axis: 1 }) },
      { name: 'const', id: b.op('constant', [], { dtype: 'f32', shape: [2, 3], values: [1, -2, 3.5, 4, 5, -6] }) },
      { name: 'splat', id: b.full(2.5, { dtype: 'f32', shape: [2, 2] }) },
    ];
    const g = b.build('ints', outs);
    const jv = randTensor('i32', [9], 2, { lo: -5, hi: 5 });
    jv.data[0] = 0; // division by zero follows WGSL: a / 0 = a
    await checkAgainstInterpreter(g, {
      i: randTensor('i32', [4, 9], 1, { lo: -100, hi: 100 }),
      j: jv,
      u: randTensor('u32', [4, 9], 3, { lo: 0, hi: 20 }),
      f: randTensor('f32', [4, 9], 4, { lo: -50, hi: 50 }),
    });
  });

  it('f16 tensors are computed in f32 and rounded after every op', async () => {
    const b = new GraphBuilder();
    const x = input(b, 'x', 'f16', [5, 3]);
    const y = b.unary('exp', b.mul(x, b.scalar(0.37, 'f16')));
    const g = b.build('half', [{ name: 'y', id: y }, { name: 's', id: b.op('sum', [y], { axes: [1], keepdims: false }) }]);
    await checkAgainstInterpreter(g, { x: randTensor('f16', [5, 3], 1) }, { tol: { rtol: 2e-3, atol: 1e-3 } });
  });
});

describe('layout ops', () => {
  it('reshape, transpose, broadcast, slice, concat (unfused and fused into one kernel)', async () => {
    const b = new GraphBuilder();
    const x = input(b, 'x', 'f32', [2, 3, 5]);
    const y = input(b, 'y', 'f32', [2, 4, 5]);
    const t = b.op('transpose', [x], { perm: [2, 0, 1] });
    const s = b.op('slice', [y], { starts: [1, 1, 0], ends: [2, 4, 4] });
    const c = b.op('concat', [x, y, x], { axis: 1 });
    const r = b.reshape(c, [5, 4, 5]);
    const bc = b.op('broadcast', [b.reshape(b.op('slice', [x], { starts: [0, 0, 0], ends: [1, 1, 5] }), [5])], { shape: [3, 2, 5] });
    const mixed = b.add(b.op('transpose', [b.mul(x, b.scalar(2))], { perm: [1, 0, 2] }), b.scalar(1));
    const g = b.build('layout', [
      { name: 't', id: t },
      { name: 's', id: s },
      { name: 'c', id: c },
      { name: 'r', id: r },
      { name: 'bc', id: bc },
      { name: 'mixed', id: mixed },
    ]);
    await checkAgainstInterpreter(g, { x: randTensor('f32', [2, 3, 5], 1), y: randTensor('f32', [2, 4, 5], 2) }, { tol: { rtol: 0, atol: 0 } });
  });
});

describe('reductions', () => {
  it('sum / mean / max over several axis sets, short and long, plus argmax', async () => {
    const b = new GraphBuilder();
    const x = input(b, 'x', 'f32', [3, 37, 5]);
    const w = input(b, 'w', 'f32', [2, 300]);
    const outs = [
      { name: 'sum_last', id: b.op('sum', [x], { axes: [2], keepdims: false }) },
      { name: 'sum_mid', id: b.op('sum', [x], { axes: [1], keepdims: true }) },
      { name: 'mean_02', id: b.op('mean', [x], { axes: [0, 2], keepdims: false }) },
      { name: 'max_all', id: b.op('max_reduce', [x], { axes: [0, 1, 2], keepdims: false }) },
      { name: 'max_1', id: b.op('max_reduce', [x], { axes: [1], keepdims: false }) },
      { name: 'argmax_1', id: b.op('argmax', [x], { axis: 1, keepdims: false }) },
      { name: 'argmax_2', id: b.op('argmax', [x], { axis: 2, keepdims: true }) },
      { name: 'wsum', id: b.op('sum', [w], { axes: [1], keepdims: false }) },
      { name: 'wmean_all', id: b.op('mean', [w], { axes: [0, 1], keepdims: false }) },
      { name: 'wargmax', id: b.op('argmax', [w], { axis: 1, keepdims: false }) },
      // a fused elementwise prologue and epilogue
      { name: 'sq_mean_sqrt', id: b.unary('sqrt', b.op('mean', [b.mul(x, x)], { axes: [1], keepdims: false })) },
    ];
    const i = input(b, 'i', 'i32', [4, 40]);
    outs.push({ name: 'isum', id: b.op('sum', [i], { axes: [1], keepdims: false }) });
    outs.push({ name: 'imax', id: b.op('max_reduce', [i], { axes: [0], keepdims: false }) });
    // enough outputs (70) and a long enough extent (45) for the one-invocation-per-output strategy
    const z = input(b, 'z', 'f32', [70, 45]);
    outs.push({ name: 'zsum', id: b.op('sum', [z], { axes: [1], keepdims: false }) });
    outs.push({ name: 'zmax0', id: b.op('max_reduce', [b.op('transpose', [z], { perm: [1, 0] })], { axes: [1], keepdims: true }) });
    outs.push({ name: 'zarg', id: b.op('argmax', [z], { axis: 1, keepdims: false }) });
    const g = b.build('reduce', outs);
    await checkAgainstInterpreter(
      g,
      { x: randTensor('f32', [3, 37, 5], 1), w: randTensor('f32', [2, 300], 2), i: randTensor('i32', [4, 40], 3, { lo: -1000, hi: 1000 }), z: randTensor('f32', [70, 45], 4) },
      { tol: { rtol: 1e-4, atol: 1e-5 }, modes: [{ fuse: false }, { fuse: true, strategy: 'workgroup' }, { fuse: true, strategy: 'thread' }] },
    );
  });

  it('the per-thread strategy (CPU adapters) has no barriers; the workgroup strategy does', async () => {
    const dev = await sharedDevice();
    const b = new GraphBuilder();
    const z = input(b, 'z', 'f32', [70, 45]);
    const g = b.build('strategy', [
      { name: 's', id: b.op('sum', [z], { axes: [1], keepdims: false }) },
      { name: 'p', id: b.op('softmax', [z], {}) },
    ]);
    for (const [strategy, barriers] of [['thread', false], ['workgroup', true]] as const) {
      const exe = await compileGraph(g, dev, { strategy });
      expect(exe.wgsl().includes('workgroupBarrier')).toBe(barriers);
      exe.destroy();
    }
  });

  it('workgroup reductions with and without subgroup operations agree with the interpreter', async () => {
    const dev = await sharedDevice();
    const b = new GraphBuilder();
    const x = input(b, 'x', 'f32', [3, 517]);
    const g = b.build('sg', [
      { name: 'sum', id: b.op('sum', [x], { axes: [1], keepdims: false }) },
      { name: 'max', id: b.op('max_reduce', [x], { axes: [1], keepdims: false }) },
      { name: 'mean', id: b.op('mean', [x], { axes: [0, 1], keepdims: false }) },
    ]);
    const modes = [{ subgroups: false }];
    if (dev.device.features.has('subgroups')) modes.push({ subgroups: true });
    expect(dev.device.features.has('subgroups')).toBe(true); // lavapipe has them; keep both paths covered
    const withSg = await compileGraph(g, dev, { subgroups: true });
    expect(withSg.wgsl()).toContain('subgroupAdd');
    withSg.destroy();
    const without = await compileGraph(g, dev, { subgroups: false });
    expect(without.wgsl()).not.toContain('subgroupAdd');
    without.destroy();
    await checkAgainstInterpreter(g, { x: randTensor('f32', [3, 517], 5) }, { modes, tol: { rtol: 1e-4, atol: 1e-5 } });
  });
});

describe('matmul', () => {
  it('plain, transposed and batched with broadcast batch dims, odd sizes', async () => {
    const b = new GraphBuilder();
    const a = input(b, 'a', 'f32', [2, 1, 13, 19]);
    const w = input(b, 'w', 'f32', [3, 19, 7]);
    const at = input(b, 'at', 'f32', [19, 13]);
    const wt = input(b, 'wt', 'f32', [7, 19]);
    const big = input(b, 'big', 'f32', [70, 33]);
    const bigw = input(b, 'bigw', 'f32', [33, 65]);
    const g = b.build('mm', [
      { name: 'batched', id: b.op('matmul', [a, w], { transA: false, transB: false }) },
      { name: 'tA', id: b.op('matmul', [at, wt], { transA: true, transB: true }) },
      { name: 'tB', id: b.op('matmul', [a, wt], { transA: false, transB: true }) },
      { name: 'tA_only', id: b.op('matmul', [at, b.op('transpose', [wt], { perm: [1, 0] })], { transA: true, transB: false }) },
      { name: 'big', id: b.op('matmul', [big, bigw], { transA: false, transB: false }) },
      { name: 'vec', id: b.op('matmul', [b.reshape(b.op('slice', [big], { starts: [0, 0], ends: [1, 33] }), [1, 33]), bigw], { transA: false, transB: false }) },
    ]);
    await checkAgainstInterpreter(
      g,
      {
        a: randTensor('f32', [2, 1, 13, 19], 1),
        w: randTensor('f32', [3, 19, 7], 2),
        at: randTensor('f32', [19, 13], 3),
        wt: randTensor('f32', [7, 19], 4),
        big: randTensor('f32', [70, 33], 5),
        bigw: randTensor('f32', [33, 65], 6),
      },
      { tol: { rtol: 1e-4, atol: 1e-5 } },
    );
  });

  it('every tile candidate (workgroup tiles and direct) computes the same result, ragged and exact shapes', async () => {
    const b = new GraphBuilder();
    const a = input(b, 'a', 'f32', [37, 21]);
    const w = input(b, 'w', 'f32', [21, 45]);
    // multiples of every tile: the generator drops the bounds tests there
    const a2 = input(b, 'a2', 'f32', [64, 32]);
    const w2 = input(b, 'w2', 'f32', [64, 32]);
    const g = b.build('tiles', [
      { name: 'c', id: b.op('matmul', [a, w], { transA: false, transB: false }) },
      { name: 'c2', id: b.op('matmul', [a2, w2], { transA: false, transB: true }) },
      { name: 'c3', id: b.op('matmul', [w, a], { transA: true, transB: true }) },
    ]);
    const inputs = { a: randTensor('f32', [37, 21], 1), w: randTensor('f32', [21, 45], 2), a2: randTensor('f32', [64, 32], 3), w2: randTensor('f32', [64, 32], 4) };
    await checkAgainstInterpreter(g, inputs, {
      modes: [...TILE_CANDIDATES, ...DIRECT_CANDIDATES].map((t) => ({ matmulTiles: t })),
      tol: { rtol: 1e-4, atol: 1e-5 },
    });
  });
});

describe('matrix-vector matmuls (a decode step: M = 1)', () => {
  it('the CPU heuristic keeps every row in one invocation; equal to the interpreter', async () => {
    const b = new GraphBuilder();
    const x = input(b, 'x', 'f32', [1, 64]);
    const w = input(b, 'w', 'f32', [64, 256]);
    const x3 = input(b, 'x3', 'f32', [4, 3, 37]);
    const w3 = input(b, 'w3', 'f32', [4, 45, 37]);
    const xt = input(b, 'xt', 'f32', [4, 37, 3]);
    const g = b.build('gemv', [
      { name: 'y', id: b.op('matmul', [x, w], { transA: false, transB: false }) },
      { name: 'y3', id: b.op('matmul', [x3, w3], { transA: false, transB: true }) },
      { name: 'yt', id: b.op('matmul', [xt, w3], { transA: true, transB: true }) },
    ]);
    expect(heuristicTiles(1, 256, 64, 1, true)).toMatchObject({ BM: 1, TM: 1, TN: 4, direct: true });
    expect(heuristicTiles(3, 45, 37, 4, true)).toMatchObject({ BM: 3, TM: 3, TN: 1, direct: true });
    const inputs = { x: randTensor('f32', [1, 64], 5), w: randTensor('f32', [64, 256], 6), x3: randTensor('f32', [4, 3, 37], 7), w3: randTensor('f32', [4, 45, 37], 8), xt: randTensor('f32', [4, 37, 3], 9) };
    await checkAgainstInterpreter(g, inputs, { modes: [{ strategy: 'thread' }], tol: { rtol: 1e-4, atol: 1e-5 } });
  });
});

describe('indexing', () => {
  it('gather with out-of-range rows, one_hot', async () => {
    const b = new GraphBuilder();
    const table = input(b, 'table', 'f32', [7, 3, 2]);
    const idx = input(b, 'idx', 'i32', [2, 5]);
    const uidx = input(b, 'uidx', 'u32', [4]);
    const g = b.build('gather', [
      { name: 'g', id: b.op('gather', [table, idx], {}) },
      { name: 'gu', id: b.op('gather', [b.reshape(table, [7, 6]), uidx], {}) },
      { name: 'oh', id: b.op('one_hot', [idx], { depth: 7, dtype: 'f32' }) },
      { name: 'ohb', id: b.op('one_hot', [uidx], { depth: 5, dtype: 'bool' }) },
    ]);
    const iv = randTensor('i32', [2, 5], 2, { lo: 0, hi: 7 });
    iv.data[3] = -1;
    iv.data[4] = 7;
    await checkAgainstInterpreter(g, { table: randTensor('f32', [7, 3, 2], 1), idx: iv, uidx: randTensor('u32', [4], 3, { lo: 0, hi: 9 }) }, { tol: { rtol: 0, atol: 0 } });
  });

  it('scatter_add with many duplicate indices', async () => {
    const b = new GraphBuilder();
    const idx = input(b, 'idx', 'i32', [500]);
    const upd = input(b, 'upd', 'f32', [500, 3]);
    const idx2 = input(b, 'idx2', 'i32', [4, 50]);
    const upd2 = input(b, 'upd2', 'f32', [4, 50]);
    const g = b.build('scatter', [
      { name: 's', id: b.op('scatter_add', [idx, upd], { rows: 6 }) },
      { name: 's2', id: b.op('scatter_add', [idx2, b.mul(upd2, b.scalar(2))], { rows: 3 }) },
    ]);
    const iv = randTensor('i32', [500], 1, { lo: -1, hi: 7 }); // ~500/8 hits per row, some out of range
    const iv2 = randTensor('i32', [4, 50], 3, { lo: 0, hi: 3 });
    await checkAgainstInterpreter(g, { idx: iv, upd: randTensor('f32', [500, 3], 2), idx2: iv2, upd2: randTensor('f32', [4, 50], 4) }, { tol: { rtol: 1e-5, atol: 1e-5 } });
  });

  it('scatter_add is deterministic: duplicates are summed in index order, bit for bit', async () => {
    // Magnitudes spread over 8 decades, so any other summation order changes the last bits.
    const n = 30000; // float atomics summed in another order in ~1 run of 10 at this size on lavapipe
    const rows = 3;
    const b = new GraphBuilder();
    const g = b.build('scatter_order', [{ name: 's', id: b.op('scatter_add', [input(b, 'idx', 'i32', [n]), input(b, 'upd', 'f32', [n, 2])], { rows }) }]);
    const idx = randTensor('i32', [n], 11, { lo: 0, hi: rows });
    const upd = randTensor('f32', [n, 2], 12);
    for (let i = 0; i < upd.data.length; i++) upd.data[i] = Math.fround(upd.data[i] * 10 ** ((i * 7) % 9 - 3));
    const want = new Float32Array(rows * 2); // the sequential f32 sum, in index order
    for (let i = 0; i < n; i++) for (let c = 0; c < 2; c++) want[idx.data[i] * 2 + c] = Math.fround(want[idx.data[i] * 2 + c] + upd.data[i * 2 + c]);
    const dev = await sharedDevice();
    const exe = await compileGraph(g, dev, { seed: null });
    for (let rep = 0; rep < 4; rep++) expect(Array.from((await exe.run({ idx, upd })).outputs.s.data), `run ${rep}`).toEqual(Array.from(want));
    exe.destroy();
  });
});

describe('row-wise primitives', () => {
  it('softmax, log_softmax, layer_norm, rms_norm, cross_entropy with ignore_index', async () => {
    const b = new GraphBuilder();
    const x = input(b, 'x', 'f32', [3, 4, 37]);
    const wide = input(b, 'wide', 'f32', [2, 150]);
    const gamma = input(b, 'gamma', 'f32', [37]);
    const beta = input(b, 'beta', 'f32', [37]);
    const labels = input(b, 'labels', 'i32', [3, 4]);
    const scaled = b.mul(x, b.scalar(3));
    const g = b.build('rowwise', [
      { name: 'softmax', id: b.op('softmax', [scaled], {}) },
      { name: 'log_softmax', id: b.op('log_softmax', [x], {}) },
      { name: 'softmax_wide', id: b.op('softmax', [wide], {}) },
      { name: 'layer_norm', id: b.op('layer_norm', [x, gamma, beta], { eps: 1e-5 }) },
      { name: 'rms_norm', id: b.op('rms_norm', [x, gamma], { eps: 1e-6 }) },
      { name: 'xent', id: b.op('cross_entropy', [scaled, labels], { ignore_index: 2 }) },
      { name: 'xent_wide', id: b.op('cross_entropy', [wide, b.op('constant', [], { dtype: 'i32', shape: [2], values: [149, -100] })], { ignore_index: -100 }) },
    ]);
    const lv = randTensor('i32', [3, 4], 5, { lo: 0, hi: 37 });
    lv.data[1] = 2; // ignored
    lv.data[2] = 40; // out of range: 0 as well
    await checkAgainstInterpreter(
      g,
      { x: randTensor('f32', [3, 4, 37], 1), wide: randTensor('f32', [2, 150], 2, { lo: -10, hi: 10 }), gamma: randTensor('f32', [37], 3), beta: randTensor('f32', [37], 4), labels: lv },
      { tol: { rtol: 1e-4, atol: 1e-5 }, modes: [{ fuse: false, strategy: 'workgroup' }, { fuse: true, strategy: 'workgroup' }, { fuse: true, strategy: 'thread' }] },
    );
  });
});

describe('dropout', () => {
  it('matches the interpreter bit for bit (mask and values)', async () => {
    const b = new GraphBuilder();
    const x = input(b, 'x', 'f32', [7, 33]);
    const seed = input(b, 'seed', 'u32', []);
    const g = b.build('dropout', [
      { name: 'd1', id: b.op('dropout', [x, seed], { p: 0.1, stream: 3 }) },
      { name: 'd5', id: b.op('dropout', [b.unary('exp', x), seed], { p: 0.5, stream: 9 }) },
    ]);
    const seedT = { dtype: 'u32' as const, shape: [], data: new Uint32Array([123456789]) };
    const xs = randTensor('f32', [7, 33], 1);
    // values agree to an ulp or two (x * f32(1/(1-p)) vs f64 rounded once; GPU exp); the mask is compared exactly below
    await checkAgainstInterpreter(g, { x: xs, seed: seedT }, { tol: { rtol: 1e-6, atol: 0 } });
    // the kept pattern itself, exactly
    const exe = await compileGraph(g, await sharedDevice());
    const got = (await exe.run({ x: xs, seed: seedT })).outputs;
    const want = interpret(g, { inputs: { x: xs, seed: seedT } });
    const mask = (t: typeof got.d1) => Array.from(t.data, (v) => (v === 0 ? 0 : 1)).join('');
    expect(mask(got.d1)).toBe(mask(want.d1));
    expect(mask(got.d5)).toBe(mask(want.d5));
    expect(mask(want.d5)).toContain('0');
    exe.destroy();
  });
});
