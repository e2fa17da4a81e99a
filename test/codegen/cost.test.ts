/** Kernel costs (src/schedule/cost.ts) against closed forms. */
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../src/ir/builder.js';
import { updateOutput } from '../../src/ir/graph.js';
import { schedule } from '../../src/schedule/index.js';
import { kernelCost, ROWWISE_FLOPS, scheduleCosts } from '../../src/schedule/cost.js';

const param = (b: GraphBuilder, name: string, shape: number[]) => b.op('param', [], { name, dtype: 'f32', shape, init: { kind: 'zeros' } });

describe('kernel cost', () => {
  it('matmul with a bias + GELU + residual epilogue: 2MNK FLOPs plus 3 per output; bytes of A, B, bias, residual and C', () => {
    const [M, K, N] = [6, 5, 7];
    const b = new GraphBuilder();
    const x = param(b, 'x', [M, K]);
    const w = param(b, 'w', [K, N]);
    const bias = param(b, 'b', [N]);
    const r = param(b, 'r', [M, N]);
    const y = b.add(b.unary('gelu', b.add(b.op('matmul', [x, w], { transA: false, transB: false }), bias), { approximate: 'tanh' }), r);
    const s = schedule(b.build('m', [{ name: 'y', id: y }]));
    expect(s.kernels.length).toBe(1);
    const c = kernelCost(s, s.kernels[0]);
    expect(c.family).toBe('matmul NN');
    expect(c.flops).toBe(2 * M * N * K + 3 * M * N);
    expect(c.bytes).toBe(4 * (M * K + K * N + N + M * N + M * N));
  });

  it('batched transposed matmul: 2·batch·M·N·K and its layout', () => {
    const [Bt, M, K, N] = [3, 4, 6, 5];
    const b = new GraphBuilder();
    const q = param(b, 'q', [Bt, K, M]);
    const k = param(b, 'k', [Bt, N, K]);
    const s = schedule(b.build('m', [{ name: 'y', id: b.op('matmul', [q, k], { transA: true, transB: true }) }]));
    const c = kernelCost(s, s.kernels[0]);
    expect(c.family).toBe('matmul TT batched');
    expect(c.flops).toBe(2 * Bt * M * N * K);
    expect(c.bytes).toBe(4 * (Bt * K * M + Bt * N * K + Bt * M * N));
  });

  it('elementwise, reduction, row-wise and scatter kernels; an update output is the optimizer family', () => {
    const [R, C, V] = [8, 16, 11];
    const b = new GraphBuilder();
    const x = param(b, 'x', [R, C]);
    const y = param(b, 'y', [R, C]);
    const ids = b.op('input', [], { name: 'ids', dtype: 'i32', shape: [R] });
    const ew = b.mul(b.add(x, y), y); // 2 ops per element
    const red = b.op('sum', [x], { axes: [1], keepdims: false });
    const sm = b.op('softmax', [x], {});
    const sc = b.op('scatter_add', [ids, x], { rows: V });
    const upd = b.sub(x, b.mul(y, b.scalar(0.1, 'f32')));
    const s = schedule(b.build('m', [{ name: 'ew', id: ew }, { name: 'red', id: red }, { name: 'sm', id: sm }, { name: 'sc', id: sc }, updateOutput('x', upd)]));
    const costs = scheduleCosts(s);
    const byRoot = (id: number) => costs[s.kernels.findIndex((k) => k.root === id)];
    expect(byRoot(ew)).toMatchObject({ family: 'elementwise', flops: 2 * R * C, bytes: 4 * 3 * R * C });
    expect(byRoot(red)).toMatchObject({ family: 'reduce', flops: R * C, bytes: 4 * (R * C + R) });
    expect(byRoot(sm)).toMatchObject({ family: 'row-wise', flops: ROWWISE_FLOPS.softmax! * R * C, bytes: 4 * 2 * R * C });
    expect(byRoot(sc)).toMatchObject({ family: 'scatter', flops: R * C, bytes: 4 * (R + R * C + V * C) });
    expect(byRoot(upd)).toMatchObject({ family: 'optimizer update', flops: 2 * R * C, bytes: 4 * 3 * R * C });
  });
});
