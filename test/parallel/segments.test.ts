import { describe, expect, it } from 'vitest';
import { compileModel } from '../../src/frontend/index.js';
import { interpretSharded } from '../../src/interp/sharded.js';
import { updatedParam, type Graph } from '../../src/ir/graph.js';
import { initParam } from '../../src/ir/init.js';
import type { AttrsOf } from '../../src/ir/op.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import { compileIR } from '../../src/passes/index.js';
import { shardBatch } from '../../src/parallel/feed.js';
import { carryPool, interpreterSegmentRunner, runSegmented, slotPool, splitAtCollectives, type ExchangeStats } from '../../src/parallel/segments.js';
import { deviceBytes } from '../../src/schedule/memory.js';
import { Rng } from '../../src/train/rng.js';

const f32 = (v: number): HostTensor => ({ dtype: 'f32', shape: [], data: Float32Array.of(v) });
const dp = 2, B = 4, T = 4;

function program(): Graph {
  const { graph } = compileModel('src/models/gpt.kiln', { entry: 'loss', set: { d: 8, heads: 2, layers: 1, vocab: 7, d_ff: 16, ctx: 4 }, dims: { B: B / dp, T } });
  return compileIR(graph, { train: { optimizer: { kind: 'adamw' } }, parallel: { dp } });
}

function batch(t: number): Record<string, HostTensor> {
  const r = new Rng(t, 'seg');
  const ints = () => Int32Array.from({ length: B * T }, () => r.int(7));
  return { tokens: { dtype: 'i32', shape: [B, T], data: ints() }, targets: { dtype: 'i32', shape: [B, T], data: ints() }, lr: f32(1e-2) };
}

describe('a program split at its collectives, run segment by segment with host exchanges', () => {
  const prog = program();
  const split = splitAtCollectives(prog);

  it('the data-parallel step is two segments around one exchange of every gradient and the loss', () => {
    expect(split.segments.length).toBe(2);
    expect(split.exchanges[1].length).toBe(prog.nodes.filter((n) => n.op === 'all_reduce').length);
    // segment 0 (forward + backward) writes no parameter; segment 1 (the optimizer) writes them all
    expect(split.segments[0].outputs.some((o) => updatedParam(o) !== undefined)).toBe(false);
    expect(split.segments[1].outputs.filter((o) => updatedParam(o) !== undefined).length).toBe(prog.outputs.filter((o) => updatedParam(o) !== undefined).length);
    expect(split.hostOutputs.map((o) => o.name)).toEqual(['loss']);
  });

  it('gives exactly the sharded interpreter\'s losses and parameters over 3 steps', async () => {
    const init = () => Object.fromEntries(prog.nodes.filter((n) => n.op === 'param').map((n) => {
      const a = n.attrs as AttrsOf<'param'>;
      return [a.name, initParam(a.init, n.type, a.name, 0)];
    }));
    const simParams = [init(), init()];
    const segParams = [init(), init()];
    const stats: ExchangeStats = { toHost: 0, toDevice: 0 };
    const run = interpreterSegmentRunner([split, split], segParams);
    for (let t = 0; t < 3; t++) {
      const shards = shardBatch({ ...batch(t), step: f32(t + 1) }, dp, 'targets');
      const sim = interpretSharded([prog, prog], { feeds: shards.map((s, d) => ({ inputs: s, params: simParams[d] })) });
      sim.forEach((o, d) => prog.outputs.forEach((x) => updatedParam(x) !== undefined && (simParams[d][updatedParam(x)!] = o[x.name])));
      const seg = await runSegmented([split, split], shards, run, stats);
      for (let d = 0; d < dp; d++) {
        expect(seg[d].loss.data[0]).toBe(sim[d].loss.data[0]);
        expect(seg[d].grad_norm.data[0]).toBe(sim[d].grad_norm.data[0]);
      }
    }
    for (let d = 0; d < dp; d++) for (const k of Object.keys(simParams[d])) expect(Array.from(segParams[d][k].data)).toEqual(Array.from(simParams[d][k].data));
    // per step and device: every gradient (and the loss) goes to the host and comes back reduced
    const gradBytes = split.exchanges[1].reduce((s, c) => s + c.type.shape.reduce((a, b) => a * b, 1) * 4, 0);
    expect(stats.toHost).toBe(3 * dp * gradBytes);
    expect(stats.toDevice).toBe(3 * dp * (gradBytes - 4)); // the reduced loss is read on the host, not uploaded
  });

  it('gradient buckets: the backward cut at bucket boundaries, later buckets combined while the next segment runs, bit-identical', async () => {
    const bucketed = splitAtCollectives(prog, { bucketBytes: 256 });
    expect(bucketed.segments.length).toBeGreaterThan(3);
    // every gradient is exchanged once, in some bucket
    const grads = (p: typeof split) => p.exchanges.flat().filter((c) => c.type.shape.length > 0);
    expect(grads(bucketed).length).toBe(grads(split).length);
    // buckets of >= 256 bytes: every exchange but the last one of gradients carries at least that much
    const sizes = bucketed.exchanges.map((e) => e.filter((c) => c.type.shape.length > 0).reduce((a, c) => a + c.type.shape.reduce((x, y) => x * y, 1) * 4, 0)).filter((b) => b > 0);
    expect(sizes.length).toBeGreaterThan(2);
    sizes.slice(0, -1).forEach((b) => expect(b).toBeGreaterThanOrEqual(256));
    const init = () => Object.fromEntries(prog.nodes.filter((n) => n.op === 'param').map((n) => {
      const a = n.attrs as AttrsOf<'param'>;
      return [a.name, initParam(a.init, n.type, a.name, 0)];
    }));
    const simParams = [init(), init()];
    const segParams = [init(), init()];
    const stats: ExchangeStats = { toHost: 0, toDevice: 0 };
    const run = interpreterSegmentRunner([bucketed, bucketed], segParams);
    for (let t = 0; t < 2; t++) {
      const shards = shardBatch({ ...batch(t), step: f32(t + 1) }, dp, 'targets');
      const sim = interpretSharded([prog, prog], { feeds: shards.map((s, d) => ({ inputs: s, params: simParams[d] })) });
      sim.forEach((o, d) => prog.outputs.forEach((x) => updatedParam(x) !== undefined && (simParams[d][updatedParam(x)!] = o[x.name])));
      const seg = await runSegmented([bucketed, bucketed], shards, run, stats);
      for (let d = 0; d < dp; d++) expect(seg[d].loss.data[0]).toBe(sim[d].loss.data[0]);
    }
    for (let d = 0; d < dp; d++) for (const k of Object.keys(simParams[d])) expect(Array.from(segParams[d][k].data)).toEqual(Array.from(simParams[d][k].data));
    expect(stats.overlappedMs).toBeGreaterThan(0); // some buckets were combined after the next segment started
  });

  it('buffer pools: carries with overlapping lives never share a buffer, every value fits its buffer', () => {
    const { graph } = compileModel('src/models/gpt.kiln', { entry: 'loss', set: { d: 8, heads: 2, layers: 2, vocab: 7, d_ff: 16, ctx: 4 }, dims: { B, T } });
    const p = splitAtCollectives(compileIR(graph, { train: { optimizer: { kind: 'adamw' } }, parallel: { dp: 1, tp: 2 } }));
    expect(p.segments.length).toBeGreaterThan(4);
    const { sizes, index } = carryPool(p);
    expect(index.size).toBe(p.deviceCarries.size);
    expect(sizes.length).toBeLessThan(p.deviceCarries.size); // some lives are disjoint
    const life = (id: number) => {
      const ks = p.segments.map((s, k) => (s.outputs.some((o) => o.name === `%${id}`) || s.nodes.some((n) => n.op === 'input' && (n.attrs as AttrsOf<'input'>).name === `%${id}`) ? k : -1)).filter((k) => k >= 0);
      return [Math.min(...ks), Math.max(...ks)];
    };
    const ids = [...index.keys()];
    for (const a of ids) {
      expect(sizes[index.get(a)!]).toBeGreaterThanOrEqual(deviceBytes(p.source.nodes[a].type));
      for (const b of ids) {
        if (a === b || index.get(a) !== index.get(b)) continue;
        const [x, y] = [life(a), life(b)];
        expect(x[1] < y[0] || y[1] < x[0]).toBe(true);
      }
    }
    const pool = slotPool([[8, 32, 16], null, [64, 4]]);
    expect(pool.sizes).toEqual([64, 16, 8]);
    expect(pool.index).toEqual([[2, 0, 1], [], [0, 1]]);
  });
});
