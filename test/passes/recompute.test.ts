// The recompute pass: gradients bit-identical with and without recomputation (the interpreter runs the same ops on
// the same inputs), every policy, the predicted peak equal to what the memory plan of the final graph reports, and
// an infeasible budget refused with the smallest reachable peak.
import { describe, expect, it } from 'vitest';
import { compile } from '../../src/cli/commands/compile.js';
import { randomInput } from '../../src/cli/commands/run.js';
import { cutPoints, recomputeFromFlags, splitPeak } from '../../src/passes/recompute.js';
import { prepareJob } from '../../src/train/trainer.js';
import { KilnError } from '../../src/errors.js';
import { compileModel } from '../../src/frontend/index.js';
import { interpret } from '../../src/interp/interpreter.js';
import type { Graph } from '../../src/ir/graph.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import { compileIR, estimateRecompute, GENERIC_TARGET, planBytes, planRecompute, RECOMPUTE_POLICIES, runPipeline, savedValues } from '../../src/passes/index.js';
import type { RecomputeRequest } from '../../src/passes/index.js';

const SET = { d: 8, heads: 2, layers: 2, vocab: 11, d_ff: 16, ctx: 8 };

function model(name: string, layers = 2) {
  const { graph, model: info } = compileModel(`src/models/${name}.kiln`, { entry: 'loss', set: { ...SET, layers }, dims: name === 't5' ? { B: 2, S: 5, T: 4 } : { B: 2, T: 4 } });
  const inputs: Record<string, HostTensor> = {};
  for (const n of graph.nodes) if (n.op === 'input') inputs[(n.attrs as { name: string }).name] = randomInput((n.attrs as { name: string }).name, n.type, 3, info.config);
  return { graph, inputs };
}

const joint = (g: Graph, recompute?: RecomputeRequest) => compileIR(g, { grad: { loss: 'loss' }, recompute });

function expectSameOutputs(a: Record<string, HostTensor>, b: Record<string, HostTensor>) {
  expect(Object.keys(b).sort()).toEqual(Object.keys(a).sort());
  for (const k of Object.keys(a)) expect(Array.from(b[k].data), k).toEqual(Array.from(a[k].data));
}

describe('recompute: gradients bit-identical on every library model', () => {
  for (const name of ['gpt', 'bert', 'prefixlm', 't5']) {
    it(name, () => {
      const { graph, inputs } = model(name);
      const ref = joint(graph);
      const want = interpret(ref, { inputs });
      for (const policy of ['blocks', 'selective', 'sqrt'] as const) {
        const g = joint(graph, { policy });
        const clones = g.nodes.filter((n) => n.recompute).length;
        expect(clones, policy).toBeGreaterThan(0); // CSE kept the clones apart from the forward originals
        expectSameOutputs(want, interpret(g, { inputs }));
      }
    });
  }
});

describe('recompute: a whole AdamW training step is bit-identical', () => {
  it('gpt, every policy and a budget: loss, gradient norm and every parameter update', () => {
    const { graph, inputs } = model('gpt', 4);
    const step = (recompute?: RecomputeRequest) => compileIR(graph, { grad: { loss: 'loss' }, train: { optimizer: { kind: 'adamw' } }, recompute });
    const ref = step();
    const all: Record<string, HostTensor> = { ...inputs };
    for (const n of ref.nodes) {
      const name = (n.attrs as { name?: string }).name!;
      if (n.op === 'input' && !all[name]) all[name] = { dtype: 'f32', shape: n.type.shape, data: new Float32Array(n.type.shape.reduce((a, b) => a * b, 1)).fill(name === 'lr' ? 1e-2 : 1) } as HostTensor;
    }
    const want = interpret(ref, { inputs: all });
    expect(ref.outputs.filter((o) => o.role?.kind === 'update').length).toBeGreaterThan(10);
    const between = Math.floor((estimateRecompute(ref).peakBytes + estimateRecompute(step({ policy: 'blocks' })).peakBytes) / 2);
    for (const recompute of [{ policy: 'blocks' as const }, { policy: 'sqrt' as const }, { policy: 'selective' as const }, { budgetBytes: between }]) {
      const g = step(recompute);
      expect(g.nodes.some((n) => n.recompute), JSON.stringify(recompute)).toBe(true);
      expectSameOutputs(want, interpret(g, { inputs: all }));
    }
  });
});

describe('recompute policies and the memory plan', () => {
  it('each policy lowers the peak, and the predicted peak is what the memory plan of the final graph reports', () => {
    const { graph } = model('gpt', 4); // 4 layers: sqrt makes 2 segments of 2
    const g = compileIR(graph, { grad: { loss: 'loss' }, passes: { cse: false, dce: false } });
    const saved = savedValues(g).length;
    expect(saved).toBeGreaterThan(10);
    const peaks: Record<string, number> = {};
    for (const policy of RECOMPUTE_POLICIES) {
      if (policy === 'budget') continue;
      const r = planRecompute(g, policy);
      // the truth: the whole pipeline with the pass configured, then the kernel level
      const final = compileIR(graph, { grad: { loss: 'loss' }, recompute: { policy } });
      const plan = runPipeline(final, { levels: ['kernels'], target: GENERIC_TARGET, passes: { codegen: false } }).plan!;
      expect(r.peakBytes, policy).toBe(planBytes(plan));
      peaks[policy] = r.peakBytes;
      if (policy === 'none') expect(r.recomputedFlops).toBe(0);
      else expect(r.recomputedFlops, policy).toBeGreaterThan(0);
    }
    for (const p of ['blocks', 'sqrt', 'selective']) expect(peaks[p], p).toBeLessThan(peaks.none);
  });

  it('budget: fits the budget with the fewest recomputed values it finds, none when the baseline fits', () => {
    const { graph, inputs } = model('gpt');
    const g = compileIR(graph, { grad: { loss: 'loss' }, passes: { cse: false, dce: false } });
    const none = planRecompute(g, 'none');
    const blocks = planRecompute(g, 'blocks');
    const roomy = planRecompute(g, 'budget', none.peakBytes);
    expect(roomy.recomputed).toBe(0);
    const budget = Math.ceil((none.peakBytes + blocks.peakBytes) / 2);
    const r = planRecompute(g, 'budget', budget);
    expect(r.peakBytes).toBeLessThanOrEqual(budget);
    expect(r.recomputed).toBeGreaterThan(0);
    const final = joint(graph, { budgetBytes: budget });
    expect(estimateRecompute(final).peakBytes).toBe(r.peakBytes);
    expectSameOutputs(interpret(joint(graph), { inputs }), interpret(final, { inputs }));
  });

  it('budget at a fixed policy\'s peak recomputes no more FLOPs than that policy (the search dominates every fixed plan)', () => {
    const { graph } = model('gpt', 4);
    const g = compileIR(graph, { grad: { loss: 'loss' }, passes: { cse: false, dce: false } });
    for (const policy of ['blocks', 'sqrt', 'selective'] as const) {
      const fixed = planRecompute(g, policy);
      const b = planRecompute(g, 'budget', fixed.peakBytes);
      expect(b.peakBytes, policy).toBeLessThanOrEqual(fixed.peakBytes);
      expect(b.recomputedFlops, policy).toBeLessThanOrEqual(fixed.recomputedFlops);
    }
  });

  it('cut points: the residual stream between half-layers, the finest segment checkpoint the budget search starts from', () => {
    const { graph } = model('gpt', 3);
    const g = compileIR(graph, { grad: { loss: 'loss' }, passes: { cse: false, dce: false } });
    const ops = [...cutPoints(g)].map((id) => g.nodes[id].op);
    // embedding (gather, + position), two residual adds per layer, then the head
    expect(ops).toEqual(['gather', 'add', ...Array(6).fill('add'), 'layer_norm', 'matmul', 'cross_entropy']);
  });

  it('an infeasible budget is a KilnError naming the smallest reachable peak', () => {
    const { graph } = model('gpt');
    let err: unknown;
    try {
      joint(graph, { budgetBytes: 1024 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(KilnError);
    const m = /smallest peak reachable is [\d.]+ MiB \((\d+) bytes\)/.exec((err as Error).message);
    expect(m, (err as Error).message).not.toBeNull();
    const smallest = Number(m![1]);
    expect(smallest).toBeGreaterThan(1024);
    // that peak is reachable: a budget of exactly it is met
    expect(() => joint(graph, { budgetBytes: smallest })).not.toThrow();
  });
});

describe('the peak split into fixed and activations', () => {
  it('fixed = parameters, AdamW moments and one gradient per parameter (+ inputs/outputs), the same under every policy', () => {
    const { graph } = model('gpt', 4);
    const modelBytes = graph.nodes.filter((n) => n.op === 'param').reduce((t, n) => t + 4 * n.type.shape.reduce((a, b) => a * b, 1), 0);
    const split = (recompute?: RecomputeRequest) => {
      const e = estimateRecompute(compileIR(graph, { grad: { loss: 'loss' }, train: { optimizer: { kind: 'adamw' } }, recompute }));
      return { s: splitPeak(e.graph, e.plan), plan: e.plan };
    };
    const none = split();
    expect(none.s.gradientBytes).toBe(modelBytes);
    expect(none.plan.paramBytes).toBeGreaterThanOrEqual(3 * modelBytes); // weights, m, v
    expect(none.s.fixedBytes).toBe(none.s.ownBytes + modelBytes);
    expect(none.s.fixedBytes + none.s.activationBytes).toBe(none.s.peakBytes);
    const blocks = split({ policy: 'blocks' });
    expect(blocks.s.fixedBytes).toBe(none.s.fixedBytes);
    expect(blocks.s.activationBytes).toBeLessThan(none.s.activationBytes);
  });
});

describe('kiln train and kiln compile with recomputation', () => {
  const job = (recompute: RecomputeRequest) =>
    prepareJob({
      file: 'src/models/gpt.kiln', set: { d: 16, heads: 2, layers: 2, ctx: 8 }, optimizer: { kind: 'sgd' }, schedule: { kind: 'constant', lr: 0.1, warmup: 0, steps: 1 },
      batch: 1, accum: 1, steps: 1, seed: 0, data: 'moby-dick', tokenizer: 'bytes', maxTokens: 4000, recompute,
    } as never);

  it('the training step carries the recomputation; an infeasible budget fails before any work', async () => {
    const step = (await job({ policy: 'selective' })).stepGraph;
    expect(step.nodes.some((n) => n.recompute)).toBe(true);
    await expect(job({ budgetBytes: 4096 })).rejects.toThrow(/memory budget .* cannot be met by recomputation: the smallest peak reachable is/);
  });

  it('flags: sizes and policies parse, bad ones are clear errors', () => {
    expect(recomputeFromFlags('64MiB')).toEqual({ budgetBytes: 64 << 20, policy: undefined });
    expect(recomputeFromFlags('1.5GB', 'sqrt')).toEqual({ budgetBytes: 1.5e9, policy: 'sqrt' });
    expect(() => recomputeFromFlags('lots')).toThrow(/--memory-budget must be a size/);
    expect(() => recomputeFromFlags(undefined, 'some')).toThrow(/--recompute must be one of none, blocks, sqrt, selective, budget/);
    expect(() => recomputeFromFlags(undefined, 'budget')).toThrow(/needs --memory-budget/);
  });

  it('kiln compile --train --emit memory shows the peak with and without', async () => {
    const chunks: string[] = [];
    const write = process.stdout.write.bind(process.stdout);
    process.stdout.write = ((s: string) => (chunks.push(String(s)), true)) as typeof process.stdout.write;
    try {
      await compile('src/models/gpt.kiln', { set: { d: 16, heads: 2, layers: 2, vocab: 11, ctx: 8 }, dim: { B: 1, T: 8 }, entry: 'loss', emit: 'memory', train: true, optimizer: 'sgd', passOption: [], disablePass: [], recompute: 'blocks' });
    } finally {
      process.stdout.write = write;
    }
    const m = /peak device memory: [\d.]+ MiB \((\d+) bytes\) with recomputation \(blocks\), [\d.]+ MiB \((\d+) bytes\) without/.exec(chunks.join(''));
    expect(m, chunks.join('').slice(-300)).not.toBeNull();
    expect(Number(m![1])).toBeLessThan(Number(m![2]));
    // the split: fixed + activations = the peak, the fixed part the same with and without
    const f = /fixed [\d.]+ MiB \((\d+) bytes\) \(parameters, optimizer state, gradients, inputs\/outputs\), activations [\d.]+ MiB \((\d+) bytes\); without: activations [\d.]+ MiB \((\d+) bytes\)/.exec(chunks.join(''));
    expect(f, chunks.join('').slice(-400)).not.toBeNull();
    expect(Number(f![1]) + Number(f![2])).toBe(Number(m![1]));
    expect(Number(f![1]) + Number(f![3])).toBe(Number(m![2]));
    await expect(compile('src/models/gpt.kiln', { set: {}, dim: { B: 1, T: 8 }, entry: 'loss', emit: 'memory', optimizer: 'sgd', passOption: [], disablePass: [], memoryBudget: '1MiB' })).rejects.toThrow(/add --train/);
  });
});
