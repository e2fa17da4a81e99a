import { describe, expect, it } from 'vitest';
import { KilnError, IRError } from '../../src/errors.js';
import { GraphBuilder } from '../../src/ir/builder.js';
import { updateOutput } from '../../src/ir/graph.js';
import { describeMemory, describeSchedule, planMemory, schedule, verifyMemoryPlan } from '../../src/schedule/index.js';
import { generateKernels } from '../../src/codegen/wgsl/index.js';
import { tinyGpt } from '../runtime/graphs.js';

function biasGeluResidual() {
  const b = new GraphBuilder();
  const x = b.op('input', [], { name: 'x', dtype: 'f32', shape: [6, 8] });
  const w = b.op('param', [], { name: 'w', dtype: 'f32', shape: [8, 8], init: { kind: 'normal', std: 0.5 } });
  const bias = b.op('param', [], { name: 'b', dtype: 'f32', shape: [8], init: { kind: 'normal', std: 0.5 } });
  const h = b.op('matmul', [x, w], { transA: false, transB: false });
  const y = b.add(b.unary('gelu', b.add(h, bias), { approximate: 'tanh' }), x);
  return b.build('bgr', [{ name: 'y', id: y }]);
}

describe('schedule', () => {
  it('fuses bias + GELU + residual into the matmul epilogue', () => {
    const g = biasGeluResidual();
    const fused = schedule(g);
    const unfused = schedule(g, { fuse: false });
    expect(unfused.kernels.length).toBe(4);
    expect(fused.unfusedKernelCount).toBe(4);
    expect(fused.kernels.length).toBe(1);
    const k = fused.kernels[0];
    expect(k.kind).toBe('matmul');
    expect(k.epilogue).toBe(true);
    expect(k.root).toBe(g.outputs[0].id);
    expect(describeSchedule(fused)).toContain('matmul');
  });

  it('reduces the kernel count of a GPT graph and keeps expensive shared values materialised', () => {
    const g = tinyGpt({ layers: 2 });
    const s = schedule(g);
    expect(s.kernels.length).toBeLessThan(s.unfusedKernelCount);
    // every node is computed by at most... a value used by several kernels is a buffer unless it is index arithmetic
    const readers = new Map<number, number>();
    for (const k of s.kernels) for (const id of k.nodes) if (s.storage[id] === 'inline') readers.set(id, (readers.get(id) ?? 0) + 1);
    for (const [id, count] of readers) {
      const op = g.nodes[id].op;
      if (count > 1) expect(['reshape', 'transpose', 'broadcast', 'slice', 'constant', 'iota', 'ge', 'gather', 'add', 'mul', 'select', 'concat']).toContain(op);
    }
    // every generated kernel stays within 8 storage buffers
    for (const k of s.kernels) expect(k.inputs.length + 1).toBeLessThanOrEqual(8);
  });

  it('splits a kernel that would need more storage buffers than the device allows', () => {
    const b = new GraphBuilder();
    const xs = Array.from({ length: 10 }, (_, i) => b.op('input', [], { name: `x${i}`, dtype: 'f32', shape: [4] }));
    const sum = xs.slice(1).reduce((acc, x) => b.add(acc, x), xs[0]);
    const g = b.build('wide', [{ name: 'y', id: sum }]);
    const s = schedule(g, { maxStorageBuffers: 4 });
    expect(s.kernels.length).toBeGreaterThan(1);
    for (const k of s.kernels) expect(k.inputs.length + 1).toBeLessThanOrEqual(4);
  });

  it("counts scatter-add's work buffer against the limit: every pass binds at most the device's storage buffers", () => {
    const b = new GraphBuilder();
    const idx = b.op('input', [], { name: 'idx', dtype: 'i32', shape: [6] });
    const us = Array.from({ length: 3 }, (_, i) => b.op('input', [], { name: `u${i}`, dtype: 'f32', shape: [6, 2] }));
    const upd = us.slice(1).reduce((acc, u) => b.add(acc, u), us[0]); // inlines into the scatter: idx + 3 inputs
    const g = b.build('scatter_wide', [{ name: 's', id: b.op('scatter_add', [idx, upd], { rows: 4 }) }]);
    const s = schedule(g, { maxStorageBuffers: 5 }); // 4 inputs + output + work buffer = 6: must split
    expect(s.kernels.length).toBeGreaterThan(1);
    for (const k of generateKernels(s)) for (const p of k.passes) expect(p.bindings.length, p.label).toBeLessThanOrEqual(5);
    const fits = schedule(g, { maxStorageBuffers: 6 });
    expect(fits.kernels.length).toBe(1);
  });

  it('generates WGSL that names the IR ops', () => {
    const g = biasGeluResidual();
    const [code] = generateKernels(schedule(g));
    const src = code.passes[0].wgsl;
    expect(src).toMatch(/\/\/ ops: .*matmul.*gelu/);
    expect(src).not.toMatch(/%\d/); // no node ids: equal kernels elsewhere in a graph get equal source
    expect(src).toMatch(/const M: u32 = 6u;/);
  });
});

describe('memory plan', () => {
  it('peak bytes are strictly below the sum of intermediates on a GPT-like graph, and the plan verifies', () => {
    const g = tinyGpt({ layers: 2 });
    const s = schedule(g);
    const plan = planMemory(g, s);
    verifyMemoryPlan(plan);
    expect(plan.tensors.length).toBeGreaterThan(5);
    expect(plan.slotBytes).toBeLessThan(plan.totalIntermediateBytes);
    expect(plan.peakLiveBytes).toBeLessThanOrEqual(plan.slotBytes);
    expect(describeMemory(plan, s)).toContain('slot 0');
    // unfused has more intermediates, and reuse matters even more
    const su = schedule(g, { fuse: false });
    const pu = planMemory(g, su);
    verifyMemoryPlan(pu);
    expect(pu.slotBytes).toBeLessThan(pu.totalIntermediateBytes / 2);
  });

  it('on a GPT training step, packing by size keeps allocated bytes within 25% of the peak live bytes', async () => {
    const { compileModel } = await import('../../src/frontend/index.js');
    const { grad } = await import('../../src/autodiff/index.js');
    const { buildTrainStep } = await import('../../src/train/optimizers.js');
    const { graph } = compileModel('src/models/gpt.kiln', { entry: 'loss', set: { vocab: 64, d: 32, heads: 2, layers: 2, ctx: 16 }, dims: { B: 4, T: 16 } });
    const step = buildTrainStep(grad(graph, { loss: 'loss' }), { kind: 'adamw' });
    const plan = planMemory(step, schedule(step));
    verifyMemoryPlan(plan);
    expect(plan.slotBytes).toBeGreaterThanOrEqual(plan.peakLiveBytes);
    expect(plan.slotBytes).toBeLessThanOrEqual(1.25 * plan.peakLiveBytes);
  });

  it('writes optimizer updates in place over their parameters when nothing reads the old value later', async () => {
    const { compileModel } = await import('../../src/frontend/index.js');
    const { grad } = await import('../../src/autodiff/index.js');
    const { buildTrainStep, buildAccumTrainStep } = await import('../../src/train/optimizers.js');
    const { graph } = compileModel('src/models/gpt.kiln', { entry: 'loss', set: { vocab: 64, d: 32, heads: 2, layers: 1, ctx: 16 }, dims: { B: 2, T: 16 } });
    const joint = grad(graph, { loss: 'loss' });
    for (const kind of ['sgd', 'adam', 'adafactor'] as const) {
      for (const g of [buildTrainStep(joint, { kind }), buildAccumTrainStep(joint, { kind })]) {
        // Adafactor's factored row/column statistics come out of reductions and are read again by the weight's
        // update (which, in the accumulation step, reads the selected state): those (small) updates keep a copy
        const factored = (name: string) => /^update:opt\.[rc]\./.test(name);
        const ups = g.outputs.filter((o) => o.name.startsWith('update:') && !factored(o.name));
        expect(schedule(g).kernels.filter((k) => k.inPlace !== undefined).length, `${g.name} ${kind}`).toBe(ups.length);
      }
    }
    const step = buildTrainStep(joint, { kind: 'adamw' });
    const s = schedule(step);
    const updates = step.outputs.filter((o) => o.name.startsWith('update:'));
    const inPlace = s.kernels.filter((k) => k.inPlace !== undefined);
    expect(inPlace.length).toBe(updates.length); // every weight, first and second moment
    const plan = planMemory(step, s);
    expect(plan.outputBytes).toBe(8); // only the loss and the gradient norm have buffers of their own
    expect(plan.inPlaceBytes).toBe(updates.reduce((a, o) => a + 4 * step.nodes[o.id].type.shape.reduce((x, y) => x * y, 1), 0));
    expect(describeSchedule(s)).toMatch(/in place over %\d+/);
    // the kernel reads the parameter through its output binding, never binds it a second time
    for (const k of generateKernels(s).filter((c) => c.kernel.inPlace !== undefined)) {
      expect(k.passes[0].bindings.map((b) => b.node)).not.toContain(k.kernel.inPlace);
    }
  });

  it('does not write in place when a later kernel reads the old value or the update reads other elements', () => {
    const b = new GraphBuilder();
    const p = (name: string) => b.op('param', [], { name, dtype: 'f32', shape: [4, 4], init: { kind: 'normal', std: 1 } });
    const [u, v, w] = [p('u'), p('v'), p('w')];
    const updU = b.mul(u, b.scalar(2));
    const laterRead = b.op('sum', [b.mul(u, u)], { axes: [0, 1], keepdims: false }); // a kernel after the update's reads u
    const g = b.build('upd', [
      updateOutput('u', updU),
      { name: 'total', id: laterRead },
      updateOutput('v', b.add(b.op('transpose', [v], { perm: [1, 0] }), v)), // reads v[j, i] while writing [i, j]
      updateOutput('w', b.sub(w, b.scalar(1))),
    ]);
    const s = schedule(g);
    const over = new Set(s.kernels.filter((k) => k.inPlace !== undefined).map((k) => g.nodes[k.inPlace!].attrs));
    expect([...over].map((a) => (a as { name: string }).name)).toEqual(['w']);
  });

  it('detects a corrupted plan (two live tensors in one slot)', () => {
    const g = tinyGpt();
    const plan = planMemory(g, schedule(g, { fuse: false }));
    // find two tensors alive at the same time and force them into one slot
    const ts = plan.tensors;
    let a = -1;
    let c = -1;
    for (let i = 0; i < ts.length && a < 0; i++) {
      for (let j = i + 1; j < ts.length; j++) {
        if (ts[j].start <= ts[i].end && ts[j].slot !== ts[i].slot) {
          a = i;
          c = j;
          break;
        }
      }
    }
    expect(a).toBeGreaterThanOrEqual(0);
    const bad = { ...plan, tensors: ts.map((t, i) => (i === c ? { ...t, slot: ts[a].slot } : t)), slots: plan.slots.map(() => Math.max(...plan.slots)) };
    expect(() => verifyMemoryPlan(bad)).toThrow(IRError);
    expect(() => verifyMemoryPlan(bad)).toThrow(/alive together/);
  });

  it('refuses a tensor over the device binding limit with a clear error', () => {
    const g = tinyGpt();
    const s = schedule(g);
    expect(() => planMemory(g, s, { maxStorageBufferBindingSize: 64, maxBufferSize: 1 << 30 })).toThrow(KilnError);
    expect(() => planMemory(g, s, { maxStorageBufferBindingSize: 64, maxBufferSize: 1 << 30 })).toThrow(/maxStorageBufferBindingSize = 64/);
  });
});
