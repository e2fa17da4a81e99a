import { describe, expect, it } from 'vitest';
import { KilnError, IRError } from '../../src/errors.js';
import { GraphBuilder } from '../../src/ir/builder.js';
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

  it('generates WGSL that names the IR ops', () => {
    const g = biasGeluResidual();
    const [code] = generateKernels(schedule(g));
    const src = code.passes[0].wgsl;
    expect(src).toContain('matmul %');
    expect(src).toContain('gelu %');
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
