import { describe, expect, it } from 'vitest';
import { IRError, ShapeError } from '../../src/errors.js';
import { interpret } from '../../src/interp/interpreter.js';
import { GraphBuilder } from '../../src/ir/builder.js';
import type { AttrsOf, OpKind } from '../../src/ir/op.js';
import { OP_KINDS, OPS } from '../../src/ir/registry.js';
import { philox4x32 } from '../../src/ir/philox.js';
import { graphFromJSON, graphToJSON, printGraph } from '../../src/ir/print.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import { bf16BitsToF32, f32ToBf16Bits, f32ToF16Bits, roundBf16, roundF16, tensor } from '../../src/ir/tensor.js';
import type { DType } from '../../src/ir/types.js';
import { verify } from '../../src/ir/verify.js';

const covered = new Set<string>(['input']);

/** Runs one op on constant operands through a real graph and the interpreter. */
function run<K extends OpKind>(op: K, operands: HostTensor[], attrs: AttrsOf<K>): HostTensor {
  covered.add(op);
  const b = new GraphBuilder();
  const ids = operands.map((t, i) => b.op('input', [], { name: `x${i}`, dtype: t.dtype, shape: t.shape }));
  const y = b.op(op, ids, attrs);
  const g = b.build(op, [{ name: 'y', id: y }]);
  verify(g);
  return interpret(g, { inputs: Object.fromEntries(operands.map((t, i) => [`x${i}`, t])) }).y;
}
const T = (shape: number[], v: number[], dtype: DType = 'f32') => tensor(dtype, shape, v);
const vals = (t: HostTensor) => Array.from(t.data);
const close = (t: HostTensor, want: number[], digits = 6) => {
  expect(t.data.length).toBe(want.length);
  want.forEach((w, i) => expect(t.data[i]).toBeCloseTo(w, digits));
};

describe('elementwise', () => {
  it('unary math against closed forms', () => {
    const x = T([4], [-2, -0.5, 0.5, 2]);
    close(run('neg', [x], {}), [2, 0.5, -0.5, -2]);
    close(run('abs', [x], {}), [2, 0.5, 0.5, 2]);
    close(run('exp', [x], {}), [Math.exp(-2), Math.exp(-0.5), Math.exp(0.5), Math.exp(2)]);
    close(run('relu', [x], {}), [0, 0, 0.5, 2]);
    close(run('sigmoid', [x], {}), [1 / (1 + Math.E ** 2), 1 / (1 + Math.E ** 0.5), 1 / (1 + Math.E ** -0.5), 1 / (1 + Math.E ** -2)]);
    close(run('tanh', [x], {}), [Math.tanh(-2), Math.tanh(-0.5), Math.tanh(0.5), Math.tanh(2)]);
    close(run('silu', [x], {}), [-2 / (1 + Math.E ** 2), -0.5 / (1 + Math.E ** 0.5), 0.5 / (1 + Math.E ** -0.5), 2 / (1 + Math.E ** -2)]);
    close(run('sin', [x], {}), [Math.sin(-2), Math.sin(-0.5), Math.sin(0.5), Math.sin(2)]);
    close(run('cos', [x], {}), [Math.cos(-2), Math.cos(-0.5), Math.cos(0.5), Math.cos(2)]);
    close(run('floor', [x], {}), [-2, -1, 0, 2]);
    // erf(0.5) = 0.5204998778130465, erf(2) = 0.9953222650189527 (tables)
    close(run('erf', [x], {}), [-0.9953222650189527, -0.5204998778130465, 0.5204998778130465, 0.9953222650189527], 7);
    const p = T([3], [0.25, 1, 4]);
    close(run('log', [p], {}), [Math.log(0.25), 0, Math.log(4)]);
    close(run('sqrt', [p], {}), [0.5, 1, 2]);
    close(run('rsqrt', [p], {}), [2, 1, 0.5]);
  });

  it('GELU in both forms: 1.0 -> 0.8413447 (erf) and 0.8411920 (tanh)', () => {
    close(run('gelu', [T([2], [1, -1])], { approximate: 'erf' }), [0.8413447460685429, -0.15865525393145707], 6);
    close(run('gelu', [T([2], [1, -1])], { approximate: 'tanh' }), [0.8411919906082768, -0.15880800939172324], 6);
  });

  it('binary ops broadcast numpy-style, including size-1 dims', () => {
    const a = T([2, 1], [1, 2]);
    const b = T([3], [10, 20, 30]);
    expect(vals(run('add', [a, b], {}))).toEqual([11, 21, 31, 12, 22, 32]);
    expect(vals(run('sub', [a, b], {}))).toEqual([-9, -19, -29, -8, -18, -28]);
    expect(vals(run('mul', [a, b], {}))).toEqual([10, 20, 30, 20, 40, 60]);
    close(run('div', [a, b], {}), [0.1, 0.05, 1 / 30, 0.2, 0.1, 2 / 30]);
    close(run('pow', [T([2], [2, 3]), T([1], [3])], {}), [8, 27]);
    expect(vals(run('max', [a, T([1, 2], [1.5, 0])], {}))).toEqual([1.5, 1, 2, 2]);
    expect(vals(run('min', [a, T([1, 2], [1.5, 0])], {}))).toEqual([1, 0, 1.5, 0]);
    expect(run('add', [a, b], {}).shape).toEqual([2, 3]);
  });

  it('integer arithmetic wraps and divides like WGSL', () => {
    expect(vals(run('add', [T([1], [2147483647], 'i32'), T([1], [1], 'i32')], {}))).toEqual([-2147483648]);
    expect(vals(run('div', [T([2], [-7, 7], 'i32'), T([2], [2, 2], 'i32')], {}))).toEqual([-3, 3]);
  });

  it('comparisons give bool; select picks; casts truncate', () => {
    const a = T([3], [1, 2, 3]);
    const b = T([3], [2, 2, 2]);
    const lt = run('lt', [a, b], {});
    expect(lt.dtype).toBe('bool');
    expect(vals(lt)).toEqual([1, 0, 0]);
    expect(vals(run('ge', [a, b], {}))).toEqual([0, 1, 1]);
    expect(vals(run('eq', [a, b], {}))).toEqual([0, 1, 0]);
    expect(vals(run('select', [lt, a, T([1], [-1])], {}))).toEqual([1, -1, -1]);
    expect(vals(run('cast', [T([3], [-1.7, 0.2, 2.9])], { to: 'i32' }))).toEqual([-1, 0, 2]);
    expect(vals(run('and', [lt, T([3], [1, 1, 0], 'bool')], {}))).toEqual([1, 0, 0]);
  });
});

describe('reductions', () => {
  const x = T([2, 3], [1, 2, 3, 4, 5, 6]);
  it('sum / mean / max over axes, with and without keepdims', () => {
    expect(vals(run('sum', [x], { axes: [0], keepdims: false }))).toEqual([5, 7, 9]);
    const k = run('sum', [x], { axes: [1], keepdims: true });
    expect(k.shape).toEqual([2, 1]);
    expect(vals(k)).toEqual([6, 15]);
    expect(vals(run('sum', [x], { axes: [0, 1], keepdims: false }))).toEqual([21]);
    expect(vals(run('mean', [x], { axes: [-1], keepdims: false }))).toEqual([2, 5]);
    expect(vals(run('max_reduce', [x], { axes: [0], keepdims: false }))).toEqual([4, 5, 6]);
    expect(vals(run('argmax', [T([2, 3], [1, 9, 9, 7, 0, 2])], { axis: 1, keepdims: false }))).toEqual([1, 0]);
  });
});

describe('matmul', () => {
  const A = T([2, 3], [1, 2, 3, 4, 5, 6]);
  const B = T([3, 2], [7, 8, 9, 10, 11, 12]);
  const AB = [58, 64, 139, 154];
  it('plain and with each transpose flag', () => {
    expect(vals(run('matmul', [A, B], { transA: false, transB: false }))).toEqual(AB);
    expect(vals(run('matmul', [T([3, 2], [1, 4, 2, 5, 3, 6]), B], { transA: true, transB: false }))).toEqual(AB);
    expect(vals(run('matmul', [A, T([2, 3], [7, 9, 11, 8, 10, 12])], { transA: false, transB: true }))).toEqual(AB);
  });
  it('batched, with the batch dims broadcast', () => {
    const A2 = T([2, 1, 2, 3], [1, 2, 3, 4, 5, 6, 0, 0, 0, 1, 1, 1]);
    const y = run('matmul', [A2, T([3, 3, 2], [7, 8, 9, 10, 11, 12, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 1])], { transA: false, transB: false });
    expect(y.shape).toEqual([2, 3, 2, 2]);
    expect(vals(y).slice(0, 4)).toEqual(AB);
    expect(vals(y).slice(4, 8)).toEqual([1, 2, 4, 5]);
  });
});

describe('layout', () => {
  const x = T([2, 3], [1, 2, 3, 4, 5, 6]);
  it('reshape, transpose, broadcast, slice, concat', () => {
    expect(run('reshape', [x], { shape: [3, 2] }).shape).toEqual([3, 2]);
    expect(vals(run('transpose', [x], { perm: [1, 0] }))).toEqual([1, 4, 2, 5, 3, 6]);
    expect(vals(run('broadcast', [T([1, 3], [1, 2, 3])], { shape: [2, 3] }))).toEqual([1, 2, 3, 1, 2, 3]);
    expect(vals(run('slice', [x], { starts: [0, 1], ends: [2, 3] }))).toEqual([2, 3, 5, 6]);
    expect(vals(run('concat', [x, T([2, 1], [9, 9])], { axis: 1 }))).toEqual([1, 2, 3, 9, 4, 5, 6, 9]);
    expect(vals(run('concat', [x, x], { axis: 0 }))).toEqual([1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6]);
  });
});

describe('indexing', () => {
  const table = T([3, 2], [1, 2, 3, 4, 5, 6]);
  it('gather rows (out-of-range rows read as zeros)', () => {
    const y = run('gather', [table, T([2, 2], [2, 0, 1, 7], 'i32')], {});
    expect(y.shape).toEqual([2, 2, 2]);
    expect(vals(y)).toEqual([5, 6, 1, 2, 3, 4, 0, 0]);
  });
  it('update_slice writes rows at a run-time position along its axis; rows past the end are dropped', () => {
    const x = T([2, 3, 2], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    const u = T([2, 2, 2], [-1, -2, -3, -4, -5, -6, -7, -8]);
    expect(vals(run('update_slice', [x, u, T([1], [1], 'i32')], { axis: 1 }))).toEqual([1, 2, -1, -2, -3, -4, 7, 8, -5, -6, -7, -8]);
    expect(vals(run('update_slice', [x, u, T([1], [2], 'i32')], { axis: 1 }))).toEqual([1, 2, 3, 4, -1, -2, 7, 8, 9, 10, -5, -6]);
    expect(vals(run('update_slice', [x, T([1, 3, 2], [0, 0, 0, 0, 0, 0]), T([], [1], 'i32')], { axis: 0 }))).toEqual([1, 2, 3, 4, 5, 6, 0, 0, 0, 0, 0, 0]);
    expect(() => run('update_slice', [x, T([2, 4, 2], new Array(16).fill(0)), T([1], [0], 'i32')], { axis: 1 })).toThrow(/update_slice: the update must have the tensor's shape except along axis 1/);
    expect(() => run('update_slice', [x, u, T([2], [0, 1], 'i32')], { axis: 1 })).toThrow('update_slice: the position must be an i32 tensor of one element');
  });
  it('scatter_add sums duplicates and drops out-of-range indices', () => {
    const y = run('scatter_add', [T([4], [1, 1, 0, -100], 'i32'), T([4, 2], [1, 2, 10, 20, 5, 5, 7, 7])], { rows: 3 });
    expect(vals(y)).toEqual([5, 5, 11, 22, 0, 0]);
  });
  it('one_hot and iota', () => {
    expect(vals(run('one_hot', [T([3], [0, 2, 5], 'i32')], { depth: 3, dtype: 'f32' }))).toEqual([1, 0, 0, 0, 0, 1, 0, 0, 0]);
    const b = new GraphBuilder();
    covered.add('iota');
    const i = b.op('iota', [], { dtype: 'i32', shape: [2, 3], axis: 1 });
    expect(vals(interpret(b.build('i', [{ name: 'y', id: i }])).y)).toEqual([0, 1, 2, 0, 1, 2]);
  });
});

describe('neural-net primitives', () => {
  it('softmax and log_softmax are stable for huge inputs', () => {
    const s = run('softmax', [T([2, 3], [1e4, 1e4, 1e4 - 1, 1, 2, 3])], {});
    const z = 2 + Math.exp(-1);
    close(s, [1 / z, 1 / z, Math.exp(-1) / z, Math.exp(1) / (Math.exp(1) + Math.exp(2) + Math.exp(3)), Math.exp(2) / (Math.exp(1) + Math.exp(2) + Math.exp(3)), Math.exp(3) / (Math.exp(1) + Math.exp(2) + Math.exp(3))]);
    close(run('log_softmax', [T([2], [1e4, 1e4])], {}), [-Math.LN2, -Math.LN2]);
  });
  it('layer_norm and rms_norm', () => {
    // x = [1, 2, 3, 4]: mean 2.5, variance 1.25
    const r = 1 / Math.sqrt(1.25 + 1e-5);
    close(run('layer_norm', [T([4], [1, 2, 3, 4]), T([4], [1, 1, 2, 2]), T([4], [0, 0, 0, 1])], { eps: 1e-5 }), [-1.5 * r, -0.5 * r, 1 * r, 3 * r + 1]);
    const q = 1 / Math.sqrt(7.5 + 1e-6);
    close(run('rms_norm', [T([4], [1, 2, 3, 4]), T([4], [1, 1, 1, 2])], { eps: 1e-6 }), [q, 2 * q, 3 * q, 8 * q]);
  });
  it('cross_entropy: -log softmax at the label, 0 where ignored', () => {
    const y = run('cross_entropy', [T([3, 2], [0, 0, 0, Math.log(3), 5, 5]), T([3], [0, 1, -100], 'i32')], { ignore_index: -100 });
    close(y, [Math.LN2, Math.log(4 / 3), 0]);
  });
  it('dropout keeps ~1-p, scales by 1/(1-p), reproduces from (seed, stream)', () => {
    const n = 20000;
    const x = T([n], new Array(n).fill(1));
    const seed = { dtype: 'u32' as const, shape: [], data: Uint32Array.of(42) };
    const a = run('dropout', [x, seed], { p: 0.25, stream: 3 });
    const kept = vals(a).filter((v) => v !== 0);
    expect(kept.every((v) => Math.abs(v - 1 / 0.75) < 1e-6)).toBe(true);
    expect(Math.abs(kept.length / n - 0.75)).toBeLessThan(5 * Math.sqrt(0.75 * 0.25 / n));
    expect(vals(run('dropout', [x, seed], { p: 0.25, stream: 3 }))).toEqual(vals(a));
    expect(vals(run('dropout', [x, seed], { p: 0.25, stream: 4 }))).not.toEqual(vals(a));
  });
});

describe('fused attention', () => {
  it('flash_attention, its row statistics and its gradients on two keys, against closed forms', () => {
    // scores [0, ln 3] -> p = [1/4, 3/4], lse = ln 4; out = 4/4 + 8*3/4 = 7; with dout = 1: delta = 7,
    // dS = p (v - delta) = [-3/4, 3/4], dq = dS k, dk = dS q, dv = p dout.
    const a = { scale: 1, mask: 'none' as const, bias: false, fill: -1e9, p: 0, stream: 0 };
    const q = T([1, 2], [1, 0]);
    const k = T([2, 2], [0, 0, Math.log(3), 0]);
    const v = T([2, 1], [4, 8]);
    close(run('flash_attention', [q, k, v], a), [7], 5);
    close(run('flash_attention_stats', [q, k, T([1, 1], [7]), T([1, 1], [1])], a), [Math.log(4), 7]);
    const args = [q, k, v, T([1, 1], [1]), T([1, 2], [Math.log(4), 7])];
    close(run('flash_attention_grad', args, { ...a, wrt: 'q' }), [0.75 * Math.log(3), 0], 5);
    close(run('flash_attention_grad', args, { ...a, wrt: 'k' }), [-0.75, 0, 0.75, 0], 5);
    close(run('flash_attention_grad', args, { ...a, wrt: 'v' }), [0.25, 0.75], 5);
    // causal: query 0 sees key 0 only
    close(run('flash_attention', [T([2, 2], [1, 0, 1, 0]), k, v], { ...a, mask: 'causal' }), [4, 7], 5);
  });
});

describe('numerics', () => {
  it('Philox4x32-10 matches the Random123 known-answer vectors', () => {
    const hex = (a: number[]) => a.map((v) => v.toString(16).padStart(8, '0')).join(' ');
    expect(hex(philox4x32(0, 0, 0, 0, 0, 0))).toBe('6627e8d5 e169c58d bc57ac4c 9b00dbd8');
    expect(hex(philox4x32(0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff))).toBe('408f276d 41c83b0e a20bc7c6 6d5451fd');
    expect(hex(philox4x32(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0))).toBe('d16cfe09 94fdcceb 5001e420 24126ea1');
  });
  it('f16 rounding: nearest, ties to even, overflow to inf, subnormals', () => {
    expect(f32ToF16Bits(1 / 3)).toBe(0x3555);
    expect(roundF16(65504)).toBe(65504);
    expect(roundF16(65519)).toBe(65504);
    expect(roundF16(65520)).toBe(Infinity);
    expect(roundF16(1 + 2 ** -11)).toBe(1); // tie: to even
    expect(roundF16(1 + 3 * 2 ** -11)).toBe(1 + 2 ** -9); // tie: to even (up)
    expect(roundF16(2 ** -24)).toBe(2 ** -24); // smallest subnormal
    expect(roundF16(2 ** -26)).toBe(0);
    expect(vals(run('add', [T([1], [1], 'f16'), T([1], [2 ** -12], 'f16')], {}))).toEqual([1]);
  });
});

describe('shape rules, verifier and text/JSON forms', () => {
  it('shape errors name the op and both shapes', () => {
    const b = new GraphBuilder();
    const a = b.op('input', [], { name: 'a', dtype: 'f32', shape: [2, 3] });
    const c = b.op('input', [], { name: 'c', dtype: 'f32', shape: [4, 5] });
    expect(() => b.op('matmul', [a, c], { transA: false, transB: false })).toThrow(new ShapeError('matmul: inner dimensions differ: 3 vs 4 (operands f32[2, 3], f32[4, 5])'));
    expect(() => b.op('add', [a, c], {})).toThrow('add: shapes [2, 3] and [4, 5] cannot be broadcast together (dimension -2 is 2 vs 4)');
    expect(() => b.op('reshape', [a], { shape: [5] })).toThrow('reshape: cannot reshape [2, 3] (6 elements) to [5] (5 elements) (operands f32[2, 3])');
  });
  it('the verifier rejects a node whose stored type disagrees with its shape rule, and forward references', () => {
    const b = new GraphBuilder();
    const a = b.op('input', [], { name: 'a', dtype: 'f32', shape: [2] });
    const y = b.op('exp', [a], {});
    const g = b.build('g', [{ name: 'y', id: y }]);
    expect(() => verify({ ...g, nodes: g.nodes.map((n) => (n.id === y ? { ...n, type: { dtype: 'f32', shape: [3] } } : n)) })).toThrow(IRError);
    expect(() => verify({ ...g, nodes: g.nodes.map((n) => (n.id === y ? { ...n, inputs: [5] } : n)) })).toThrow(/not defined before use/);
    expect(() => verify({ ...g, outputs: [{ name: 'y', id: 9 }] })).toThrow(/missing %9/);
  });
  it('text IR round-trips through JSON', () => {
    const b = new GraphBuilder();
    const a = b.op('param', [], { name: 'w', dtype: 'f32', shape: [2, 2], init: { kind: 'normal', std: 0.02 } });
    const y = b.op('softmax', [b.op('matmul', [a, a], { transA: true, transB: false })], {});
    const g = b.build('rt', [{ name: 'y', id: y }]);
    const back = graphFromJSON(graphToJSON(g));
    expect(printGraph(back)).toBe(printGraph(g));
    expect(printGraph(g)).toContain('%0: f32[2, 2] = param "w" init=normal(std=0.02)');
  });
});

describe('more reference cases', () => {
  it('reductions over several axes, negative axes, keepdims', () => {
    const x = T([2, 3, 2], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    const s = run('sum', [x], { axes: [0, 2], keepdims: true });
    expect(s.shape).toEqual([1, 3, 1]);
    expect(vals(s)).toEqual([1 + 2 + 7 + 8, 3 + 4 + 9 + 10, 5 + 6 + 11 + 12]);
    const m = run('mean', [x], { axes: [-1, 0], keepdims: false });
    expect(m.shape).toEqual([3]);
    expect(vals(m)).toEqual([4.5, 6.5, 8.5]);
    const mx = run('max_reduce', [T([2, 3], [3, -1, 2, -5, -4, -6])], { axes: [-1], keepdims: true });
    expect(mx.shape).toEqual([2, 1]);
    expect(vals(mx)).toEqual([3, -4]);
    const am = run('argmax', [T([2, 3], [3, -1, 2, -5, -4, -6])], { axis: 0, keepdims: true });
    expect(am.shape).toEqual([1, 3]);
    expect(am.dtype).toBe('i32');
    expect(vals(am)).toEqual([0, 0, 0]);
    expect(vals(run('sum', [T([3], [1, 2, 3], 'i32')], { axes: [0], keepdims: false }))).toEqual([6]);
  });

  it('matmul with both operands transposed, and batch broadcasting across ranks', () => {
    // A^T stored [3, 2], B^T stored [2, 3]: (A^T)^T (B^T)^T = A B
    const At = T([3, 2], [1, 4, 2, 5, 3, 6]);
    const Bt = T([2, 3], [7, 9, 11, 8, 10, 12]);
    expect(vals(run('matmul', [At, Bt], { transA: true, transB: true }))).toEqual([58, 64, 139, 154]);
    // [2, 3] @ [2, 3, 1]: the matrix is shared by both batches
    const y = run('matmul', [T([2, 3], [1, 2, 3, 4, 5, 6]), T([2, 3, 1], [1, 0, 0, 0, 1, -1])], { transA: false, transB: false });
    expect(y.shape).toEqual([2, 2, 1]);
    expect(vals(y)).toEqual([1, 4, -1, -1]);
  });

  it('indexing edge cases: negative gather rows, scatter_add past the last row, one_hot to i32', () => {
    expect(vals(run('gather', [T([2, 2], [1, 2, 3, 4]), T([3], [-1, 1, 2], 'i32')], {}))).toEqual([0, 0, 3, 4, 0, 0]);
    expect(vals(run('scatter_add', [T([3], [2, 5, 2], 'i32'), T([3], [1, 100, 2])], { rows: 3 }))).toEqual([0, 0, 3]);
    const oh = run('one_hot', [T([2], [1, -1], 'i32')], { depth: 2, dtype: 'i32' });
    expect(oh.dtype).toBe('i32');
    expect(vals(oh)).toEqual([0, 1, 0, 0]);
  });

  it('iota along the first axis and constants with one or all values', () => {
    const b = new GraphBuilder();
    covered.add('constant');
    const i = b.op('iota', [], { dtype: 'f32', shape: [3, 2], axis: 0 });
    const c = b.op('constant', [], { dtype: 'f32', shape: [3, 2], values: [1, 2, 3, 4, 5, 6] });
    const k = b.op('constant', [], { dtype: 'i32', shape: [2], values: [7] });
    const out = interpret(b.build('i', [{ name: 'y', id: b.add(i, c) }, { name: 'k', id: k }]));
    expect(vals(out.y)).toEqual([1, 2, 4, 5, 7, 8]);
    expect(vals(out.k)).toEqual([7, 7]);
  });

  it('casts: to bool, to u32 (wrapping), from bool; integer division by zero gives the dividend (WGSL)', () => {
    const x = T([4], [0, -0.5, 2, -1]);
    expect(vals(run('cast', [x], { to: 'bool' }))).toEqual([0, 1, 1, 1]);
    expect(vals(run('cast', [x], { to: 'u32' }))).toEqual([0, 0, 2, 4294967295]);
    expect(vals(run('cast', [T([2], [1, 0], 'bool')], { to: 'f32' }))).toEqual([1, 0]);
    expect(vals(run('div', [T([2], [7, -7], 'i32'), T([2], [0, 0], 'i32')], {}))).toEqual([7, -7]);
  });

  it('the remaining comparisons and logic ops, stop_gradient is the identity', () => {
    const a = T([3], [1, 2, 3]);
    const b = T([3], [2, 2, 2]);
    expect(vals(run('ne', [a, b], {}))).toEqual([1, 0, 1]);
    expect(vals(run('le', [a, b], {}))).toEqual([1, 1, 0]);
    expect(vals(run('gt', [a, b], {}))).toEqual([0, 0, 1]);
    const t = T([2], [1, 0], 'bool');
    expect(vals(run('or', [t, T([2], [0, 0], 'bool')], {}))).toEqual([1, 0]);
    expect(vals(run('not', [t], {}))).toEqual([0, 1]);
    expect(vals(run('stop_gradient', [a], {}))).toEqual([1, 2, 3]);
  });

  it('cross_entropy counts labels outside [0, V) as ignored; dropout with p = 0 is the identity', () => {
    close(run('cross_entropy', [T([2, 2], [0, 0, 1, 2]), T([2], [2, 1], 'i32')], { ignore_index: -100 }), [0, Math.log(1 + Math.exp(-1))]);
    const x = T([5], [1, -2, 3, -4, 5]);
    expect(vals(run('dropout', [x, { dtype: 'u32', shape: [], data: Uint32Array.of(7) }], { p: 0, stream: 0 }))).toEqual(vals(x));
  });

  it('f16: subnormal ties round to even, the largest subnormal, signed zero and NaN', () => {
    expect(roundF16(2 ** -25)).toBe(0); // half the smallest subnormal: tie to even (0)
    expect(roundF16(3 * 2 ** -25)).toBe(2 ** -23); // 1.5 ulp: tie to even (2 ulp)
    expect(roundF16(1023 * 2 ** -24)).toBe(1023 * 2 ** -24);
    expect(f32ToF16Bits(-0)).toBe(0x8000);
    expect(f32ToF16Bits(65504)).toBe(0x7bff);
    expect(f32ToF16Bits(-Infinity)).toBe(0xfc00);
    expect(Number.isNaN(roundF16(NaN))).toBe(true);
  });

  it('bf16: the top 16 bits of an f32, nearest with ties to even, overflow to inf, subnormals, NaN', () => {
    expect(f32ToBf16Bits(1)).toBe(0x3f80);
    expect(f32ToBf16Bits(1 / 3)).toBe(0x3eab); // 0x3eaaaaab: the dropped half 0xaaab is above the tie, rounds up
    expect(roundBf16(1 + 2 ** -8)).toBe(1); // exactly half an ulp above 1: tie to even (down)
    expect(roundBf16(1 + 3 * 2 ** -8)).toBe(1 + 2 ** -6); // tie: to even (up)
    expect(roundBf16(1 + 2 ** -8 + 2 ** -20)).toBe(1 + 2 ** -7); // just above the tie
    expect(f32ToBf16Bits(3.3895313892515355e38)).toBe(0x7f7f); // the largest finite bf16
    expect(roundBf16(3.4e38)).toBe(Infinity); // rounds past the largest finite value
    expect(f32ToBf16Bits(-Infinity)).toBe(0xff80);
    expect(f32ToBf16Bits(-0)).toBe(0x8000);
    expect(roundBf16(2 ** -133)).toBe(2 ** -133); // an f32 subnormal with few bits is a bf16 subnormal
    expect(bf16BitsToF32(0x0001)).toBe(2 ** -133); // the smallest bf16 subnormal
    expect(roundBf16(2 ** -134)).toBe(0); // half of it: tie to even (0)
    expect(Number.isNaN(roundBf16(NaN))).toBe(true);
    // ops round each result: 256 + 1 is not a bf16 (8 significand bits), 256 + 2 is
    expect(vals(run('add', [T([2], [256, 256], 'bf16'), T([2], [1, 2], 'bf16')], {}))).toEqual([256, 258]);
    expect(vals(run('mul', [T([1], [1 / 3], 'bf16'), T([1], [3], 'bf16')], {}))).toEqual([1]);
  });

  it('more shape errors name the op and the operand shapes', () => {
    const b = new GraphBuilder();
    const x = b.op('input', [], { name: 'x', dtype: 'f32', shape: [2, 4] });
    const g = b.op('input', [], { name: 'g', dtype: 'f32', shape: [3] });
    const l = b.op('input', [], { name: 'l', dtype: 'i32', shape: [3] });
    expect(() => b.op('layer_norm', [x, g, g], { eps: 1e-5 })).toThrow('layer_norm: the gain/bias must have shape [4] (the last axis of x), got [3] (operands f32[2, 4], f32[3], f32[3])');
    expect(() => b.op('cross_entropy', [x, l], { ignore_index: -1 })).toThrow("cross_entropy: labels must have the logits' shape without the class axis ([2]) (operands f32[2, 4], i32[3])");
    expect(() => b.op('concat', [x, g], { axis: 0 })).toThrow(/concat: .*\(operands f32\[2, 4\], f32\[3\]\)/);
    expect(() => b.op('exp', [l], {})).toThrow('exp: operand 1 must be a float tensor, got i32 (operands i32[3])');
  });

  it('the verifier rejects duplicate parameter names, wrong arity, repeated outputs, misnumbered nodes, unknown ops', () => {
    const b = new GraphBuilder();
    const p = b.op('param', [], { name: 'w', dtype: 'f32', shape: [2], init: { kind: 'zeros' } });
    const y = b.op('exp', [p], {});
    const g = b.build('v', [{ name: 'y', id: y }]);
    verify(g);
    const dup = { ...g, nodes: [...g.nodes, { ...g.nodes[0], id: 2 }] };
    expect(() => verify(dup)).toThrow("graph v, %2: param 'w' is also defined at %0");
    expect(() => verify({ ...g, nodes: g.nodes.map((n) => (n.id === y ? { ...n, inputs: [0, 0] } : n)) })).toThrow('exp has 2 operands, expects 1');
    expect(() => verify({ ...g, outputs: [{ name: 'y', id: y }, { name: 'y', id: 0 }] })).toThrow("output 'y' appears twice");
    expect(() => verify({ ...g, nodes: g.nodes.map((n) => ({ ...n, id: n.id + 1 })) })).toThrow('node id 1 at position 0');
    expect(() => verify({ ...g, nodes: g.nodes.map((n) => (n.id === y ? { ...n, op: 'frob' as OpKind } : n)) })).toThrow("unknown op 'frob'");
    for (const bad of [dup]) expect(() => verify(bad)).toThrow(IRError);
  });
});

describe('collectives on one device', () => {
  it('a group of one is the identity; a larger group needs the sharded interpreter', () => {
    const x = T([2, 2], [1, 2, 3, 4]);
    for (const op of ['all_reduce', 'reduce_scatter', 'all_gather'] as const) expect(vals(run(op, [x], { size: 1, axis: 0 }))).toEqual([1, 2, 3, 4]);
    expect(() => run('all_reduce', [x], { size: 2 })).toThrow('interpretSharded');
    expect(() => run('reduce_scatter', [T([3], [1, 2, 3])], { size: 2, axis: 0 })).toThrow(ShapeError);
  });
});

describe('point-to-point transfers (pipeline stages)', () => {
  it('send is the identity; recv reads the value delivered on its channel (input recv:<from>:<tag>); bad peers are shape errors', () => {
    const x = T([2], [5, 6]);
    expect(vals(run('send', [x], { to: 1, tag: 'act' }))).toEqual([5, 6]);
    covered.add('recv');
    const b = new GraphBuilder();
    const r = b.op('recv', [], { from: 0, tag: 'act.3', dtype: 'f32', shape: [2] });
    const g = b.build('recv', [{ name: 'y', id: b.add(r, r) }]);
    expect(vals(interpret(g, { inputs: { 'recv:0:act.3': x } }).y)).toEqual([10, 12]);
    expect(() => interpret(g)).toThrow("missing input 'recv:0:act.3'");
    expect(() => new GraphBuilder().op('recv', [], { from: -1, tag: 't', dtype: 'f32', shape: [1] })).toThrow(ShapeError);
    expect(() => run('send', [x], { to: 1.5, tag: 't' })).toThrow(ShapeError);
  });
});

describe('leaves and coverage', () => {
  it('parameters read their fed value, or their initialiser when not fed; a wrong feed is a KilnError', () => {
    covered.add('param');
    const b = new GraphBuilder();
    const p = b.op('param', [], { name: 'p', dtype: 'f32', shape: [2], init: { kind: 'constant', value: 3 } });
    const q = b.op('param', [], { name: 'q', dtype: 'f32', shape: [2], init: { kind: 'zeros' } });
    const g = b.build('pp', [{ name: 'y', id: b.add(p, q) }]);
    expect(vals(interpret(g).y)).toEqual([3, 3]);
    expect(vals(interpret(g, { params: { q: T([2], [1, -1]) } }).y)).toEqual([4, 2]);
    expect(() => interpret(g, { params: { q: T([3], [1, 2, 3]) } })).toThrow("parameter 'q' expects f32[2], got f32[3]");
  });

  it("every op's reference implementation is exercised above", () => {
    const missing = OP_KINDS.filter((k) => !covered.has(k));
    expect(missing).toEqual([]);
    expect(Object.keys(OPS).length).toBe(OP_KINDS.length);
  });
});
