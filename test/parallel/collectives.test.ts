import { describe, expect, it } from 'vitest';
import { grad } from '../../src/autodiff/index.js';
import { interpretSharded } from '../../src/interp/sharded.js';
import { GraphBuilder } from '../../src/ir/builder.js';
import { gradParam, type Graph } from '../../src/ir/graph.js';
import { combineCollective } from '../../src/ir/ops/collective.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import { tensor } from '../../src/ir/tensor.js';
import { Rng } from '../../src/train/rng.js';

const T = (shape: number[], v: number[]) => tensor('f32', shape, v);
const vals = (t: HostTensor) => Array.from(t.data);

describe('collective reference semantics over simulated devices', () => {
  it('all_reduce sums, reduce_scatter keeps rank r\'s slice of the sum, all_gather concatenates (along any axis)', () => {
    const xs = [T([2, 2], [1, 2, 3, 4]), T([2, 2], [10, 20, 30, 40])];
    expect(combineCollective('all_reduce', { size: 2 }, xs).map(vals)).toEqual([[11, 22, 33, 44], [11, 22, 33, 44]]);
    expect(combineCollective('reduce_scatter', { size: 2, axis: 0 }, xs).map(vals)).toEqual([[11, 22], [33, 44]]);
    expect(combineCollective('reduce_scatter', { size: 2, axis: 1 }, xs).map(vals)).toEqual([[11, 33], [22, 44]]);
    const g1 = combineCollective('all_gather', { size: 2, axis: 1 }, xs);
    expect(g1[0].shape).toEqual([2, 4]);
    expect(vals(g1[1])).toEqual([1, 2, 10, 20, 3, 4, 30, 40]);
  });

  it('sums in device order in f32, so the result does not depend on which device asks', () => {
    // (1e8 + 1) rounds back to 1e8 in f32: device order 0, 1, 2 gives 0, another order would give 1.
    const xs = [T([1], [1e8]), T([1], [1]), T([1], [-1e8])];
    const out = combineCollective('all_reduce', { size: 3 }, xs);
    expect(out.map(vals)).toEqual([[0], [0], [0]]);
  });

  it('devices that disagree on their collectives are refused', () => {
    const prog = (size: number) => {
      const b = new GraphBuilder();
      const x = b.op('input', [], { name: 'x', dtype: 'f32', shape: [2] });
      return b.build('p', [{ name: 'y', id: b.op('all_reduce', [x], { size }) }]);
    };
    const feeds = [{ inputs: { x: T([2], [1, 2]) } }, { inputs: { x: T([2], [3, 4]) } }];
    expect(interpretSharded([prog(2), prog(2)], { feeds }).map((o) => vals(o.y))).toEqual([[4, 6], [4, 6]]);
    const b = new GraphBuilder();
    const x = b.op('input', [], { name: 'x', dtype: 'f32', shape: [2] });
    const other = b.build('q', [{ name: 'y', id: b.op('all_gather', [x], { size: 2, axis: 0 }) }]);
    expect(() => interpretSharded([prog(2), other], { feeds })).toThrow('collective #1: device 1 is at all_gather');
  });
});

describe('gradients through collectives (finite differences of the sum of every device\'s loss)', () => {
  const N = 2;
  // L_d = sum(w_d * all_gather(all_reduce(reduce_scatter(tanh(x_d))^2)))
  function program(): Graph {
    const b = new GraphBuilder();
    const x = b.op('param', [], { name: 'x', dtype: 'f32', shape: [4, 3], init: { kind: 'zeros' } });
    const w = b.op('input', [], { name: 'w', dtype: 'f32', shape: [4, 3] });
    const r = b.op('reduce_scatter', [b.unary('tanh', x)], { size: N, axis: 0 });
    const a = b.op('all_reduce', [b.mul(r, r)], { size: N });
    const g = b.op('all_gather', [a], { size: N, axis: 0 });
    return b.build('f', [{ name: 'loss', id: b.sum(b.mul(g, w), [0, 1]) }]);
  }
  it('matches central differences in double precision', () => {
    const rng = new Rng(3, 'coll');
    const rand = () => T([4, 3], Array.from({ length: 12 }, () => rng.next() * 2 - 1));
    const xs = [rand(), rand()];
    const ws = [rand(), rand()];
    const fwd = program();
    const joint = grad(fwd, { loss: 'loss' });
    const gname = joint.outputs.find((o) => gradParam(o) === 'x')!.name;
    const feeds = (x: HostTensor[]) => x.map((xd, d) => ({ inputs: { w: ws[d] }, params: { x: xd } }));
    const toF64 = (t: HostTensor) => ({ ...t, data: Float64Array.from(t.data) });
    const grads = interpretSharded([joint, joint], { feeds: feeds(xs.map(toF64)), float64: true }).map((o) => o[gname]);
    const total = (x: HostTensor[]) => interpretSharded([fwd, fwd], { feeds: feeds(x), float64: true }).reduce((s, o) => s + o.loss.data[0], 0);
    const eps = 1e-6;
    let worst = 0;
    for (let d = 0; d < N; d++) {
      for (let i = 0; i < 12; i++) {
        const bump = (h: number) => xs.map((t, k) => {
          const c = Float64Array.from(t.data);
          if (k === d) c[i] += h;
          return { ...t, data: c };
        });
        const fd = (total(bump(eps)) - total(bump(-eps))) / (2 * eps);
        const g = grads[d].data[i];
        worst = Math.max(worst, Math.abs(fd - g) / Math.max(Math.abs(fd), Math.abs(g), 1e-6));
      }
    }
    expect(worst).toBeLessThan(1e-6);
  });
});
