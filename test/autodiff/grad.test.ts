// The autodiff pass itself: its options and errors, what the joint graph holds, higher-order use (differentiating
// a joint graph again, checked against finite differences), the saved-for-backward report, and that every gradient
// rule's `saves` declaration is exactly what its vjp reads.
import { describe, expect, it } from 'vitest';
import { gradcheck } from '../../src/autodiff/gradcheck.js';
import { describeSaved, grad, savedForBackward } from '../../src/autodiff/index.js';
import { KilnError } from '../../src/errors.js';
import { compileModel } from '../../src/frontend/index.js';
import { interpret } from '../../src/interp/interpreter.js';
import { GraphBuilder } from '../../src/ir/builder.js';
import type { Graph, Node } from '../../src/ir/graph.js';
import type { AttrsOf, OpKind } from '../../src/ir/op.js';
import { OP_KINDS, OPS } from '../../src/ir/registry.js';
import { tensor } from '../../src/ir/tensor.js';
import type { DType, Shape } from '../../src/ir/types.js';

const f32 = (shape: Shape, values: number[]) => tensor('f32', shape, values);
const param = (b: GraphBuilder, name: string, shape: Shape, dtype: DType = 'f32') =>
  b.op('param', [], { name, dtype, shape, init: { kind: 'uniform', low: -1, high: 1 } });
const input = (b: GraphBuilder, name: string, shape: Shape, dtype: DType = 'f32') => b.op('input', [], { name, dtype, shape });
const sumAll = (b: GraphBuilder, x: number) => b.sum(x, b.type(x).shape.map((_, i) => i));

describe('grad options and errors', () => {
  it('differentiates with respect to chosen parameters and inputs, named grad:<p> and grad:input:<x>', () => {
    const b = new GraphBuilder();
    const x = input(b, 'x', [3]);
    const w = param(b, 'w', [3]);
    const v = param(b, 'v', [3]);
    const loss = sumAll(b, b.mul(b.mul(x, w), v));
    const g = b.build('f', [{ name: 'loss', id: loss }]);
    const j = grad(g, { loss: 'loss', wrt: ['w'], wrtInputs: ['x'] });
    expect(j.outputs.map((o) => o.name)).toEqual(['loss', 'grad:w', 'grad:input:x']);
    const params = { w: f32([3], [1, 2, 3]), v: f32([3], [4, 5, 6]) };
    const out = interpret(j, { inputs: { x: f32([3], [-1, 0.5, 2]) }, params });
    expect(Array.from(out['grad:w'].data)).toEqual([-4, 2.5, 12]); // x * v
    expect(Array.from(out['grad:input:x'].data)).toEqual([4, 10, 18]); // w * v
  });

  it('dumps the IR after the autodiff step when asked, through the pass manager', () => {
    const b = new GraphBuilder();
    const w = param(b, 'w', [2]);
    const g = b.build('f', [{ name: 'loss', id: sumAll(b, b.unary('exp', w)) }]);
    const dumps: string[] = [];
    const j = grad(g, { loss: 'loss', printIrAfter: ['autodiff', 'dce'], sink: (t) => dumps.push(t) });
    expect(dumps.map((d) => d.split('\n')[0])).toEqual(['// ----- IR after autodiff -----', '// ----- IR after dce -----']);
    expect(dumps[0]).toMatch(/return loss=%\d+, grad:w=%\d+/);
    expect(dumps[1]).toContain(`return loss=%${j.outputs[0].id}, grad:w=%${j.outputs[1].id}`);
  });

  it('checks input gradients against finite differences too', () => {
    const b = new GraphBuilder();
    const x = input(b, 'x', [2, 3]);
    const w = param(b, 'w', [3, 4]);
    const loss = sumAll(b, b.unary('tanh', b.op('matmul', [x, w], { transA: false, transB: false })));
    const g = b.build('f', [{ name: 'loss', id: loss }]);
    const r = gradcheck(g, { inputs: { x: f32([2, 3], [0.1, -0.4, 0.9, 1.2, -0.3, 0.5]) }, wrtInputs: ['x'], seed: 1, maxElementsPerParam: 12, rtol: 1e-7, atol: 1e-13 });
    expect(r.perParam.map((p) => p.name)).toEqual(['w', 'input:x']);
    expect(r.perParam.map((p) => p.checked)).toEqual([12, 6]);
    expect(r.ok).toBe(true);
    expect(r.ok, `ratio ${r.worst!.worstRatio}`).toBe(true);
  });

  it('keepOutputs: false keeps only the loss and the gradients, and drops what only other outputs needed', () => {
    const b = new GraphBuilder();
    const w = param(b, 'w', [2]);
    const aux = b.unary('sin', w);
    const loss = sumAll(b, b.mul(w, w));
    const g = b.build('f', [
      { name: 'aux', id: aux },
      { name: 'loss', id: loss },
    ]);
    const j = grad(g, { loss: 'loss', keepOutputs: false });
    expect(j.outputs.map((o) => o.name)).toEqual(['loss', 'grad:w']);
    expect(j.nodes.some((n) => n.op === 'sin')).toBe(false);
    expect(grad(g, { loss: 'loss' }).outputs.map((o) => o.name)).toEqual(['aux', 'loss', 'grad:w']);
  });

  it('gives zero gradients to parameters with no path to the loss, including ones other outputs use', () => {
    const b = new GraphBuilder();
    const w = param(b, 'w', [2]);
    const q = param(b, 'q', [2, 2]);
    const g = b.build('f', [
      { name: 'loss', id: sumAll(b, b.mul(w, w)) },
      { name: 'other', id: b.unary('exp', q) },
    ]);
    const out = interpret(grad(g, { loss: 'loss' }), { params: { w: f32([2], [1, -2]), q: f32([2, 2], [1, 2, 3, 4]) } });
    expect(Array.from(out['grad:w'].data)).toEqual([2, -4]);
    expect(out['grad:q'].shape).toEqual([2, 2]);
    expect(Array.from(out['grad:q'].data)).toEqual([0, 0, 0, 0]);
  });

  it('skips integer parameters by default, and integer/bool operands receive no gradient', () => {
    const b = new GraphBuilder();
    const table = param(b, 'table', [4, 2]);
    const steps = param(b, 'steps', [], 'i32');
    const idx = input(b, 'idx', [3], 'i32');
    const rows = b.op('gather', [table, idx], {});
    const scale = b.cast(steps, 'f32');
    const g = b.build('f', [{ name: 'loss', id: sumAll(b, b.mul(rows, scale)) }]);
    const j = grad(g, { loss: 'loss' });
    expect(j.outputs.map((o) => o.name)).toEqual(['loss', 'grad:table']);
    const out = interpret(j, { inputs: { idx: tensor('i32', [3], [1, 1, 3]) }, params: { steps: tensor('i32', [], [3]) } });
    expect(Array.from(out['grad:table'].data)).toEqual([0, 0, 6, 6, 0, 0, 3, 3]);
  });

  it('reports bad requests as KilnErrors', () => {
    const b = new GraphBuilder();
    const w = param(b, 'w', [2]);
    const n = param(b, 'n', [], 'i32');
    const x = input(b, 'tok', [2], 'i32');
    const g = b.build('model', [
      { name: 'loss', id: sumAll(b, w) },
      { name: 'vec', id: b.unary('exp', w) },
      { name: 'count', id: b.add(n, sumAll(b, x)) },
    ]);
    const bad = (o: Parameters<typeof grad>[1], msg: RegExp) => {
      expect(() => grad(g, o)).toThrow(KilnError);
      expect(() => grad(g, o)).toThrow(msg);
    };
    bad({ loss: 'nope' }, /cannot differentiate model: it has no output 'nope' \(outputs: loss, vec, count\)/);
    bad({ loss: 'vec' }, /output 'vec' must be a float scalar, it is f32\[2\]/);
    bad({ loss: 'count' }, /output 'count' must be a float scalar, it is i32\[\]/);
    bad({ loss: 'loss', wrt: ['wq'] }, /cannot differentiate with respect to 'wq': model has no such parameter/);
    bad({ loss: 'loss', wrt: ['n'] }, /parameter 'n': it is i32\[\], not float/);
    bad({ loss: 'loss', wrtInputs: ['tok'] }, /input 'tok': it is i32\[2\], not float/);
    bad({ loss: 'loss', wrtInputs: ['x'] }, /input 'x': model has no such input/);
  });

  it("raises a KilnError naming the op and node when a float gradient would flow through a 'nondiff' op", () => {
    // No op in the set is 'nondiff' today (argmax is integer-valued, floor's derivative is zero), so the test marks
    // one for its duration.
    const saved = OPS.gelu.grad;
    (OPS.gelu as { grad: unknown }).grad = 'nondiff';
    try {
      const b = new GraphBuilder();
      const w = param(b, 'w', [3]);
      const h = b.op('gelu', [w], { approximate: 'tanh' }, { name: 'hidden', loc: { file: 'm.kiln', line: 4, col: 9 } });
      const g = b.build('f', [{ name: 'loss', id: sumAll(b, h) }]);
      expect(() => grad(g, { loss: 'loss' })).toThrow(KilnError);
      expect(() => grad(g, { loss: 'loss' })).toThrow("cannot differentiate through gelu (%1 'hidden' at m.kiln:4:9): it has no gradient");
      // no error when nothing differentiable flows through it
      const b2 = new GraphBuilder();
      const w2 = param(b2, 'w', [3]);
      const stopped = b2.op('gelu', [b2.op('stop_gradient', [w2], {})], { approximate: 'tanh' });
      const g2 = b2.build('f', [{ name: 'loss', id: sumAll(b2, b2.add(stopped, w2)) }]);
      const out = interpret(grad(g2, { loss: 'loss' }), { params: { w: f32([3], [1, 2, 3]) } });
      expect(Array.from(out['grad:w'].data)).toEqual([1, 1, 1]);
    } finally {
      (OPS.gelu as { grad: unknown }).grad = saved;
    }
  });
});

/** loss2 = sum over parameters p of sum(grad:p * u_p), u_p fixed: differentiating it gives Hessian-vector products. */
function secondOrder(g: Graph): Graph {
  const j = grad(g, { loss: 'loss', keepOutputs: false });
  const b = GraphBuilder.extend(j);
  let total = -1;
  for (const o of j.outputs.filter((x) => x.name.startsWith('grad:'))) {
    const u = b.op('constant', [], { dtype: 'f32', shape: [...b.type(o.id).shape], values: b.type(o.id).shape.length ? Array.from({ length: b.type(o.id).shape.reduce((p, d) => p * d, 1) }, (_, i) => Math.sin(3 * i + 1)) : [0.7] });
    const term = sumAll(b, b.mul(o.id, u));
    total = total < 0 ? term : b.add(total, term);
  }
  return b.build(`${g.name}.second`, [{ name: 'loss', id: total }]);
}

describe('differentiating a joint graph again (second order)', () => {
  const builds: Record<string, (b: GraphBuilder) => number> = {
    'x^3 closed form': (b) => {
      const x = param(b, 'x', [3]);
      return sumAll(b, b.mul(b.mul(x, x), x));
    },
    'tanh . matmul': (b) => sumAll(b, b.unary('tanh', b.op('matmul', [param(b, 'a', [2, 3]), param(b, 'w', [2, 3])], { transA: false, transB: true }))),
    softmax: (b) => sumAll(b, b.mul(b.op('softmax', [param(b, 'x', [2, 4])], {}), b.op('constant', [], { dtype: 'f32', shape: [4], values: [1, -2, 0.5, 3] }))),
    layer_norm: (b) => {
      const y = b.op('layer_norm', [param(b, 'x', [2, 5]), param(b, 'g', [5]), param(b, 'c', [5])], { eps: 1e-5 });
      return sumAll(b, b.mul(y, y));
    },
    'cross_entropy + gelu': (b) => {
      const labels = b.op('constant', [], { dtype: 'i32', shape: [3], values: [0, 3, 1] });
      return sumAll(b, b.op('cross_entropy', [b.op('gelu', [param(b, 'z', [3, 4])], { approximate: 'erf' }), labels], { ignore_index: 1 }));
    },
  };

  it('x^3: the second derivative along u is 6 x u', () => {
    const b = new GraphBuilder();
    const g = b.build('cube', [{ name: 'loss', id: builds['x^3 closed form'](b) }]);
    const out = interpret(grad(secondOrder(g), { loss: 'loss' }), { params: { x: f32([3], [1, -2, 0.5]) } });
    const u = [0, 1, 2].map((i) => Math.sin(3 * i + 1));
    [1, -2, 0.5].forEach((x, i) => expect(out['grad:x'].data[i]).toBeCloseTo(6 * x * u[i], 5));
  });

  for (const [name, build] of Object.entries(builds)) {
    it(`${name}: Hessian-vector products agree with finite differences of the gradient`, () => {
      const b = new GraphBuilder();
      const g = b.build(name.replace(/\W/g, '_'), [{ name: 'loss', id: build(b) }]);
      const r = gradcheck(secondOrder(g), { inputs: {}, seed: 4, maxElementsPerParam: 10, rtol: 1e-6, atol: 1e-9 });
      expect(r.perParam.length).toBeGreaterThan(0);
      expect(r.ok, `${r.worst!.name}: ratio ${r.worst!.worstRatio}`).toBe(true);
    });
  }
});

describe('saved for backward', () => {
  it('lists the forward values the backward reads: outputs for exp/tanh, operands for mul, never leaves', () => {
    const b = new GraphBuilder();
    const x = param(b, 'x', [4]);
    const w = param(b, 'w', [4]);
    const e = b.unary('exp', x); // backward reads exp's output
    const t = b.unary('tanh', b.add(x, w)); // backward reads tanh's output, not the sum
    const loss = sumAll(b, b.mul(e, t)); // backward of mul reads both operands
    const j = grad(b.build('f', [{ name: 'loss', id: loss }]), { loss: 'loss' });
    const saved = savedForBackward(j);
    expect(saved.map((id) => j.nodes[id].op).sort()).toEqual(['exp', 'tanh']);
    const text = describeSaved(j);
    expect(text.split('\n')[0]).toBe('forward values kept alive for the backward pass of f: 2 (0.0 KiB)');
    expect(text).toContain(`%${saved[0]}: f32[4] = exp`);
  });

  it('on the GPT joint graph: every saved value is a forward non-leaf read by a backward node', () => {
    const { graph } = compileModel('src/models/gpt.kiln', { entry: 'loss', set: { d: 8, heads: 2, layers: 1, vocab: 11, d_ff: 16, ctx: 8 }, dims: { B: 2, T: 3 } });
    const j = grad(graph, { loss: 'loss' });
    const saved = savedForBackward(j);
    const forward = new Set<number>();
    const stack = [j.outputs.find((o) => o.name === 'loss')!.id];
    while (stack.length) {
      const id = stack.pop()!;
      if (!forward.has(id)) (forward.add(id), stack.push(...j.nodes[id].inputs));
    }
    expect(saved.length).toBeGreaterThan(10);
    for (const id of saved) {
      expect(forward.has(id)).toBe(true);
      expect(['param', 'input', 'constant', 'iota']).not.toContain(j.nodes[id].op);
      expect(j.nodes.some((n) => !forward.has(n.id) && n.inputs.includes(id))).toBe(true);
    }
    // the fused attention's output is among them (its backward recomputes the probabilities: no [B, H, T, T] saved)
    expect(saved.some((id) => j.nodes[id].op === 'flash_attention')).toBe(true);
    expect(saved.some((id) => j.nodes[id].type.shape.join() === '2,2,3,3')).toBe(false); // [B, H, T, T]
    expect(describeSaved(j).split('\n').length).toBe(saved.length + 1);
  });
});

/** A representative node for each differentiable op: operand types and attributes. */
const samples: Partial<Record<OpKind, { operands: [DType, Shape][]; attrs: object }>> = {};
const fl = (shape: Shape): [DType, Shape] => ['f32', shape];
for (const k of ['neg', 'abs', 'exp', 'log', 'sqrt', 'rsqrt', 'tanh', 'sigmoid', 'relu', 'silu', 'sin', 'cos', 'erf'] as const) samples[k] = { operands: [fl([3])], attrs: {} };
samples.gelu = { operands: [fl([3])], attrs: { approximate: 'tanh' } };
for (const k of ['add', 'sub', 'mul', 'div', 'pow', 'max', 'min'] as const) samples[k] = { operands: [fl([2, 3]), fl([3])], attrs: {} };
samples.select = { operands: [['bool', [3]], fl([3]), fl([3])], attrs: {} };
samples.cast = { operands: [fl([3])], attrs: { to: 'f16' } };
for (const k of ['sum', 'mean', 'max_reduce'] as const) samples[k] = { operands: [fl([2, 3])], attrs: { axes: [1], keepdims: false } };
samples.matmul = { operands: [fl([2, 3]), fl([3, 4])], attrs: { transA: false, transB: false } };
samples.reshape = { operands: [fl([2, 3])], attrs: { shape: [6] } };
samples.transpose = { operands: [fl([2, 3])], attrs: { perm: [1, 0] } };
samples.broadcast = { operands: [fl([3])], attrs: { shape: [2, 3] } };
samples.slice = { operands: [fl([4])], attrs: { starts: [1], ends: [3] } };
samples.concat = { operands: [fl([2]), fl([3])], attrs: { axis: 0 } };
samples.gather = { operands: [fl([5, 2]), ['i32', [3]]], attrs: {} };
samples.scatter_add = { operands: [['i32', [3]], fl([3, 2])], attrs: { rows: 5 } };
samples.update_slice = { operands: [fl([2, 5, 3]), fl([2, 2, 3]), ['i32', [1]]], attrs: { axis: 1 } };
samples.one_hot = { operands: [['i32', [3]]], attrs: { depth: 4, dtype: 'f32' } };
samples.softmax = { operands: [fl([2, 3])], attrs: {} };
samples.log_softmax = { operands: [fl([2, 3])], attrs: {} };
samples.layer_norm = { operands: [fl([2, 3]), fl([3]), fl([3])], attrs: { eps: 1e-5 } };
samples.rms_norm = { operands: [fl([2, 3]), fl([3])], attrs: { eps: 1e-5 } };
samples.cross_entropy = { operands: [fl([2, 3]), ['i32', [2]]], attrs: { ignore_index: -1 } };
samples.all_reduce = { operands: [fl([2, 3])], attrs: { size: 2 } };
samples.reduce_scatter = { operands: [fl([2, 4])], attrs: { size: 2, axis: 1 } };
samples.all_gather = { operands: [fl([2, 3])], attrs: { size: 2, axis: 0 } };
samples.dropout = { operands: [fl([4]), ['u32', []]], attrs: { p: 0.5, stream: 1 } };
samples.flash_attention = {
  operands: [fl([2, 3, 4]), fl([2, 5, 4]), fl([2, 5, 3]), fl([3, 5]), ['bool', [2, 3, 5]], ['u32', []]],
  attrs: { scale: 0.5, mask: 'bool', bias: true, fill: -1e9, p: 0.25, stream: 2 },
};

describe("each gradient rule's `saves` declaration is exactly what its vjp reads", () => {
  const leaves = new Set<OpKind>(['input', 'param', 'constant']);
  it('covers every op with a vjp', () => {
    const withVjp = OP_KINDS.filter((k) => typeof OPS[k].grad === 'object' && !leaves.has(k));
    expect(withVjp.filter((k) => !samples[k])).toEqual([]);
  });
  for (const [kind, s] of Object.entries(samples) as [OpKind, { operands: [DType, Shape][]; attrs: object }][]) {
    it(kind, () => {
      const b = new GraphBuilder();
      const ops = s.operands.map(([dtype, shape], i) => input(b, `x${i}`, shape, dtype));
      const y = b.op(kind, ops, s.attrs as never);
      const gy = input(b, 'gy', b.type(y).shape, b.type(y).dtype);
      const rule = OPS[kind].grad as Exclude<(typeof OPS)[OpKind]['grad'], string>;
      rule.vjp(b, b.nodes[y] as Node & { attrs: AttrsOf<never> }, gy);
      const read = new Set<string>();
      for (const n of b.nodes.slice(gy + 1)) {
        for (const i of n.inputs) {
          if (i === y) read.add('output');
          else if (ops.includes(i)) read.add(`input ${ops.indexOf(i)}`);
        }
      }
      const declared = [...rule.saves.inputs.map((i) => `input ${i}`), ...(rule.saves.output ? ['output'] : [])];
      expect([...read].sort()).toEqual(declared.sort());
    });
  }
});
