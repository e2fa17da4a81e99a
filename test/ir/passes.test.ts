// The pass manager and the graph-to-graph passes (DCE, CSE, canonicalize, decompose-composites). Every pass is
// checked for what it removes or rewrites, and against the interpreter: the graph before and after a pass gives the
// same outputs on random inputs.
import { describe, expect, it } from 'vitest';
import { grad } from '../../src/autodiff/index.js';
import { randomInput } from '../../src/cli/commands/run.js';
import { IRError, KilnError } from '../../src/errors.js';
import { compileModel } from '../../src/frontend/index.js';
import { interpret } from '../../src/interp/interpreter.js';
import { GraphBuilder } from '../../src/ir/builder.js';
import type { Graph } from '../../src/ir/graph.js';
import { initParam } from '../../src/ir/init.js';
import type { AttrsOf } from '../../src/ir/op.js';
import { printGraph } from '../../src/ir/print.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import { tensor } from '../../src/ir/tensor.js';
import type { Shape } from '../../src/ir/types.js';
import { verify } from '../../src/ir/verify.js';
import { canonicalize, cse, dce, decomposeComposites, PIPELINE, registerPass, registeredPasses, runPasses, unregisterPass } from '../../src/passes/index.js';
import { Rng } from '../../src/train/rng.js';

/** Random values for every input and parameter of a graph (floats in [-2, 2), ints in [0, 5)). */
function feeds(g: Graph, seed: number): { inputs: Record<string, HostTensor>; params: Record<string, HostTensor> } {
  const inputs: Record<string, HostTensor> = {};
  const params: Record<string, HostTensor> = {};
  for (const n of g.nodes) {
    if (n.op === 'input') {
      const a = n.attrs as AttrsOf<'input'>;
      inputs[a.name] = randomInput(a.name, n.type, seed, { vocab: 5, ctx: 4 });
      if (n.type.dtype === 'f32') inputs[a.name].data.forEach((v, i, d) => (d[i] = 2 * v));
    } else if (n.op === 'param') {
      const a = n.attrs as AttrsOf<'param'>;
      params[a.name] = initParam({ kind: 'uniform', low: -2, high: 2 }, n.type, a.name, seed);
    }
  }
  return { inputs, params };
}

/** Runs both graphs on the same random feeds and expects the same outputs (exactly, or to `tol` relative). */
function expectSameOutputs(before: Graph, after: Graph, seed = 1, tol = 0, float64 = false): void {
  const f = feeds(before, seed);
  const a = interpret(before, { ...f, seed, float64 });
  const b = interpret(after, { ...f, seed, float64 });
  expect(Object.keys(b)).toEqual(Object.keys(a));
  for (const k of Object.keys(a)) {
    expect(b[k].shape, k).toEqual(a[k].shape);
    expect(b[k].dtype, k).toBe(a[k].dtype);
    if (tol === 0) expect(Array.from(b[k].data), k).toEqual(Array.from(a[k].data));
    else a[k].data.forEach((v, i) => expect(Math.abs(v - b[k].data[i]), `${k}[${i}]`).toBeLessThanOrEqual(tol * Math.max(1, Math.abs(v))));
  }
}

const count = (g: Graph, op: string) => g.nodes.filter((n) => n.op === op).length;
const input = (b: GraphBuilder, name: string, shape: Shape, dtype: 'f32' | 'i32' | 'u32' = 'f32') => b.op('input', [], { name, dtype, shape });

declare module '../../src/passes/registry.js' {
  interface PassOptionsMap {
    'test-breaker': Record<string, never>;
  }
}

describe('pass manager', () => {
  const small = () => {
    const b = new GraphBuilder();
    const x = input(b, 'x', [3]);
    const e1 = b.unary('exp', x);
    const e2 = b.unary('exp', x);
    b.unary('sin', x); // dead
    return b.build('small', [{ name: 'y', id: b.add(e1, e2) }]);
  };

  it('runs the passes in order and dumps the IR before/after the selected ones to the sink', () => {
    const dumps: string[] = [];
    const g = small();
    const out = runPasses(g, 'cse,dce', { printIrBefore: ['cse'], printIrAfter: 'all', sink: (t) => dumps.push(t) });
    expect(dumps.map((d) => d.split('\n')[0])).toEqual(['// ----- IR before cse -----', '// ----- IR after cse -----', '// ----- IR after dce -----']);
    expect(dumps[0]).toContain(printGraph(g));
    expect(dumps[2]).toContain(printGraph(out));
    expect(count(out, 'exp')).toBe(1);
    expect(count(out, 'sin')).toBe(0);
    expectSameOutputs(g, out);
  });

  it('dumps nothing unless asked', () => {
    const dumps: string[] = [];
    runPasses(small(), ['dce'], { sink: (t) => dumps.push(t) });
    expect(dumps).toEqual([]);
  });

  it('verifies after every pass and names the pass that broke the IR', () => {
    registerPass(
      {
        name: 'test-breaker',
        summary: 'retypes exp nodes wrongly',
        level: 'graph',
        options: {},
        configure: (req) => (req.passes?.['test-breaker'] ? {} : null),
        run: (s) => ({ ...s, graph: { ...s.graph, nodes: s.graph.nodes.map((n) => (n.op === 'exp' ? { ...n, type: { dtype: 'f32' as const, shape: [4] } } : n)) } }),
      },
      { after: 'cse' },
    );
    try {
      expect(() => runPasses(small(), 'dce,test-breaker,cse')).toThrow(IRError);
      expect(() => runPasses(small(), 'dce,test-breaker,cse')).toThrow(/after pass 'test-breaker': graph small, %1: exp is typed f32\[4\] but its operands give f32\[3\]/);
    } finally {
      unregisterPass('test-breaker');
    }
  });

  it('verifies its input graph', () => {
    const g = small();
    const bad = { ...g, outputs: [{ name: 'y', id: 99 }] };
    expect(() => runPasses(bad, 'dce')).toThrow(/after the input of the pipeline: graph small: output 'y' refers to missing %99/);
  });

  it('rejects unknown pass names with a KilnError listing the known ones', () => {
    expect(() => runPasses(small(), 'cse,frobnicate')).toThrow(KilnError);
    expect(() => runPasses(small(), 'cse,frobnicate')).toThrow(/unknown pass 'frobnicate' \(known: canonicalize, attention-fusion, lora, decompose-composites, autodiff, optimizer, cse, dce, schedule, inplace, memory-plan, codegen, tensor-parallel, tp-grad-norm, zero-params, zero, shard, pipeline, precision, recompute\)/);
    expect(PIPELINE).toEqual(['canonicalize', 'attention-fusion', 'lora', 'decompose-composites', 'tensor-parallel', 'zero-params', 'pipeline', 'precision', 'autodiff', 'shard', 'optimizer', 'zero', 'tp-grad-norm', 'recompute', 'cse', 'dce', 'schedule', 'inplace', 'memory-plan', 'codegen']);
  });
});

describe('dce', () => {
  it('drops what no output needs, keeps every input and parameter', () => {
    const b = new GraphBuilder();
    const x = input(b, 'x', [2]);
    input(b, 'unused_in', [2]);
    b.op('param', [], { name: 'unused_p', dtype: 'f32', shape: [2], init: { kind: 'zeros' } });
    const dead = b.unary('exp', b.unary('sin', x));
    b.mul(dead, dead);
    const g = b.build('d', [{ name: 'y', id: b.unary('cos', x) }]);
    const out = dce(g);
    expect(out.nodes.map((n) => n.op)).toEqual(['input', 'input', 'param', 'cos']);
    verify(out);
    expectSameOutputs(g, out);
    expect(dce(out)).toBe(out); // nothing left to remove: the same graph object
  });
});

describe('cse', () => {
  it('merges equal subexpressions transitively and keeps the first name', () => {
    const b = new GraphBuilder();
    const x = input(b, 'x', [2, 3]);
    const a1 = b.op('sum', [b.op('exp', [x], {}, { name: 'first' })], { axes: [1], keepdims: true });
    const a2 = b.op('sum', [b.op('exp', [x], {}, { name: 'second' })], { keepdims: true, axes: [1] }); // attribute order differs
    const g = b.build('c', [{ name: 'y', id: b.sub(a1, a2) }]);
    const out = cse(g);
    expect(count(out, 'exp')).toBe(1);
    expect(count(out, 'sum')).toBe(1);
    expect(out.nodes.find((n) => n.op === 'exp')!.name).toBe('first');
    expectSameOutputs(g, out);
  });

  it('merges constants with equal values but never +inf with -inf, NaN with inf, or 0 with -0', () => {
    const b = new GraphBuilder();
    const x = input(b, 'x', [3]);
    const consts = [2, 2, Infinity, -Infinity, NaN, 0, -0].map((v) => b.scalar(v));
    const terms = consts.map((c) => b.op('max', [x, c], {}));
    // 1 / (0 * x) tells 0 from -0 apart: +inf vs -inf for positive x
    const recip = [5, 6].map((k) => b.div(b.scalar(1), b.mul(consts[k], b.unary('exp', x))));
    const g = b.build('k', [...terms, ...recip].map((id, i) => ({ name: `o${i}`, id })));
    const out = cse(g);
    expect(count(out, 'constant')).toBe(7); // 2 merged; inf, -inf, NaN, 0, -0 and the 1 stay distinct
    expectSameOutputs(g, out);
    const r = interpret(out, { inputs: { x: tensor('f32', [3], [1, 2, 3]) } });
    expect(Array.from(r.o7.data)).toEqual([Infinity, Infinity, Infinity]);
    expect(Array.from(r.o8.data)).toEqual([-Infinity, -Infinity, -Infinity]);
  });

  it('never merges inputs or parameters, even with the same type and initialiser', () => {
    const b = new GraphBuilder();
    const p = b.op('param', [], { name: 'p', dtype: 'f32', shape: [2], init: { kind: 'ones' } });
    const q = b.op('param', [], { name: 'q', dtype: 'f32', shape: [2], init: { kind: 'ones' } });
    const u = input(b, 'u', [2]);
    const v = input(b, 'v', [2]);
    const g = b.build('nm', [{ name: 'y', id: b.add(b.add(p, q), b.add(u, v)) }]);
    const out = cse(g);
    expect(out).toBe(g);
  });

  it('merges dropout with the same input, seed, p and stream, not with another stream', () => {
    const b = new GraphBuilder();
    const x = input(b, 'x', [64]);
    const seed = input(b, 'seed', [], 'u32');
    const d1 = b.op('dropout', [x, seed], { p: 0.5, stream: 1 });
    const d2 = b.op('dropout', [x, seed], { p: 0.5, stream: 1 });
    const d3 = b.op('dropout', [x, seed], { p: 0.5, stream: 2 });
    const g = b.build('dr', [{ name: 'y', id: b.add(b.add(d1, d2), d3) }]);
    const out = cse(g);
    expect(count(out, 'dropout')).toBe(2);
    expectSameOutputs(g, out);
  });
});

describe('canonicalize', () => {
  it('collapses reshape and transpose chains (identity chains disappear, others compose)', () => {
    const b = new GraphBuilder();
    const x = input(b, 'x', [2, 3, 4]);
    const r = b.op('reshape', [b.op('reshape', [b.op('reshape', [x], { shape: [6, 4] })], { shape: [24] })], { shape: [4, 6] });
    const back = b.op('transpose', [b.op('transpose', [x], { perm: [2, 0, 1] })], { perm: [1, 2, 0] }); // identity
    const comp = b.op('transpose', [b.op('transpose', [x], { perm: [1, 0, 2] })], { perm: [2, 1, 0] });
    const same = b.op('reshape', [x], { shape: [2, 3, 4] });
    const g = b.build('chains', [
      { name: 'r', id: r },
      { name: 'back', id: back },
      { name: 'comp', id: comp },
      { name: 'same', id: same },
    ]);
    const out = canonicalize(g);
    expect(count(out, 'reshape')).toBe(1);
    expect(count(out, 'transpose')).toBe(1);
    expect((out.nodes.find((n) => n.op === 'transpose')!.attrs as AttrsOf<'transpose'>).perm).toEqual([2, 0, 1]);
    expect(out.outputs.find((o) => o.name === 'back')!.id).toBe(0);
    expect(out.outputs.find((o) => o.name === 'same')!.id).toBe(0);
    expectSameOutputs(g, out);
  });

  it('folds x*1, 1*x, x/1, x+0, 0+x, x-0, double negation and no-op layout ops', () => {
    const b = new GraphBuilder();
    const x = input(b, 'x', [2, 3]);
    let y = b.mul(x, b.scalar(1));
    y = b.mul(b.full(1, { dtype: 'f32', shape: [2, 3] }), y);
    y = b.div(y, b.scalar(1));
    y = b.add(y, b.scalar(0));
    y = b.add(b.scalar(0), y);
    y = b.sub(y, b.full(0, { dtype: 'f32', shape: [3] }));
    y = b.neg(b.neg(y));
    y = b.op('slice', [y], { starts: [0, 0], ends: [2, 3] });
    y = b.op('concat', [y], { axis: 0 });
    y = b.op('cast', [y], { to: 'f32' });
    y = b.op('broadcast', [y], { shape: [2, 3] });
    y = b.op('stop_gradient', [b.op('stop_gradient', [y], {})], {});
    const g = b.build('folds', [{ name: 'y', id: y }]);
    const out = canonicalize(g);
    expect(out.nodes.map((n) => n.op)).toEqual(['input', 'stop_gradient']);
    expectSameOutputs(g, out);
  });

  it('keeps a fold that would change the type or the value: broadcasting constants, x*2, x+1', () => {
    const b = new GraphBuilder();
    const x = input(b, 'x', [3]);
    const y1 = b.mul(x, b.full(1, { dtype: 'f32', shape: [2, 3] })); // the 1 broadcasts x: not a no-op
    const y2 = b.mul(x, b.scalar(2));
    const y3 = b.add(x, b.op('constant', [], { dtype: 'f32', shape: [3], values: [0, 1, 0] }));
    const g = b.build('keep', [
      { name: 'a', id: y1 },
      { name: 'b', id: y2 },
      { name: 'c', id: y3 },
    ]);
    const out = canonicalize(g);
    expect(out).toBe(g);
  });

  it('merges broadcast chains into one broadcast', () => {
    const b = new GraphBuilder();
    const x = input(b, 'x', [3, 1]);
    const y = b.op('broadcast', [b.op('broadcast', [x], { shape: [3, 4] })], { shape: [2, 3, 4] });
    const g = b.build('bb', [{ name: 'y', id: y }]);
    const out = canonicalize(g);
    expect(count(out, 'broadcast')).toBe(1);
    expectSameOutputs(g, out);
  });
});

describe('decompose-composites', () => {
  it('expands every composite into plain ops that compute the same values (double precision, large logits)', () => {
    const b = new GraphBuilder();
    const x = input(b, 'x', [3, 5]);
    const big = b.mul(x, b.scalar(1e4));
    const gam = b.op('param', [], { name: 'g', dtype: 'f32', shape: [5], init: { kind: 'ones' } });
    const bet = b.op('param', [], { name: 'b', dtype: 'f32', shape: [5], init: { kind: 'zeros' } });
    const labels = input(b, 'labels', [3], 'i32');
    const outs = {
      softmax: b.op('softmax', [big], {}),
      log_softmax: b.op('log_softmax', [big], {}),
      layer_norm: b.op('layer_norm', [x, gam, bet], { eps: 1e-5 }),
      rms_norm: b.op('rms_norm', [x, gam], { eps: 1e-6 }),
      xent: b.op('cross_entropy', [big, labels], { ignore_index: 2 }),
    };
    const g = b.build('comp', Object.entries(outs).map(([name, id]) => ({ name, id })));
    const out = decomposeComposites(g);
    for (const op of ['softmax', 'log_softmax', 'layer_norm', 'rms_norm', 'cross_entropy']) expect(count(out, op), op).toBe(0);
    expectSameOutputs(g, out, 3, 1e-12, true);
    // and in f32 to f32 accuracy
    expectSameOutputs(g, out, 4, 1e-5);
  });
});

/** Random graphs of elementwise, layout and reduction ops with repeated subexpressions and no-op folds. */
function randomGraph(seed: number): Graph {
  const rng = new Rng(seed, 'random-graph');
  const b = new GraphBuilder();
  const vals: number[] = [input(b, 'x', [2, 3]), input(b, 'y', [3]), b.op('param', [], { name: 'w', dtype: 'f32', shape: [2, 3], init: { kind: 'ones' } })];
  const pick = () => vals[rng.int(vals.length)];
  const unary = ['neg', 'exp', 'tanh', 'sin', 'abs', 'relu', 'sigmoid'] as const;
  const binary = ['add', 'sub', 'mul', 'max', 'min'] as const;
  for (let i = 0; i < 14; i++) {
    const kind = rng.int(8);
    const a = pick();
    const sa = b.type(a).shape;
    let v: number;
    if (kind === 0) v = b.unary(unary[rng.int(unary.length)], a);
    else if (kind === 1 || kind === 2) {
      const c = pick();
      const op = binary[rng.int(binary.length)];
      try {
        v = b.binary(op, a, c);
      } catch {
        v = b.binary(op, a, a); // shapes that do not broadcast together
      }
    } else if (kind === 3) v = b.op('reshape', [b.op('reshape', [a], { shape: [sa.reduce((p, d) => p * d, 1)] })], { shape: [...sa] });
    else if (kind === 4 && sa.length === 2) v = b.op('transpose', [b.op('transpose', [a], { perm: [1, 0] })], { perm: [1, 0] });
    else if (kind === 5) v = b.add(b.mul(a, b.scalar(1)), b.scalar(0));
    else if (kind === 6 && sa.length === 2) v = b.op('broadcast', [b.op('sum', [a], { axes: [0], keepdims: true })], { shape: [...sa] });
    else {
      // a repeat of an existing node: CSE must find it
      const prev = b.nodes[3 + rng.int(b.nodes.length - 3)] ?? b.nodes[0];
      v = prev.inputs.length ? b.op(prev.op, [...prev.inputs], prev.attrs as never) : b.unary('cos', a);
    }
    vals.push(v);
  }
  const outs = [vals[vals.length - 1], vals[vals.length - 4]].map((id, i) => ({ name: `o${i}`, id }));
  return b.build(`random${seed}`, outs);
}

describe('passes preserve semantics (interpreter before vs after)', () => {
  it('on 40 random graphs, for every pass and for the pipeline canonicalize,cse,dce', () => {
    let removed = 0;
    for (let s = 0; s < 40; s++) {
      const g = randomGraph(s);
      verify(g);
      for (const d of registeredPasses()) if (d.level === 'graph') expectSameOutputs(g, runPasses(g, [d.name]), s);
      const out = runPasses(g, 'canonicalize,cse,dce');
      expectSameOutputs(g, out, s);
      removed += g.nodes.length - out.nodes.length;
      // a second round finds nothing more: the pipeline reaches a fixed point in one go
      expect(printGraph(runPasses(out, 'canonicalize,cse,dce'))).toBe(printGraph(out));
    }
    expect(removed).toBeGreaterThan(100);
  });

  const models = ['gpt', 'bert', 'prefixlm', 't5'];
  for (const m of models) {
    it(`on the ${m} loss graph and its joint forward+backward graph`, () => {
      const { graph } = compileModel(`src/models/${m}.kiln`, {
        entry: 'loss',
        set: { d: 8, heads: 2, layers: 1, vocab: 11, d_ff: 16, ctx: 8 },
        dims: m === 't5' ? { B: 2, S: 5, T: 4 } : { B: 2, T: 4 },
      });
      const joint = grad(graph, { loss: 'loss' });
      for (const g of [graph, joint]) {
        expectSameOutputs(g, runPasses(g, 'canonicalize,cse,dce'), 5);
        expectSameOutputs(g, runPasses(g, 'decompose-composites,cse,dce'), 5, 1e-10, true);
      }
    });
  }
});
