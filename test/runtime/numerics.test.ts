// Numerically delicate row-wise ops: the kernels and the interpreter use the same max-subtracted formulation, so
// they agree to float precision even where inputs are ~1e4 apart (log_softmax, cross-entropy).
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../src/ir/builder.js';
import { interpret } from '../../src/interp/interpreter.js';
import { compileGraph } from '../../src/runtime/index.js';
import { sharedDevice } from './helpers.js';

describe('log_softmax and cross_entropy with widely spread inputs', () => {
  it('WebGPU equals the interpreter to 1e-6 relative', async () => {
    const rows = 4;
    const W = 33;
    // a few values near 1e4 (they decide the log-sum-exp), the rest about 1e4 below
    const x = Float32Array.from({ length: rows * W }, (_, i) => Math.fround(i % 8 === 0 ? 10000 + (i % 3) * 0.37 : ((i * 7919) % 97) * 0.5 - 20));
    const labels = Int32Array.from({ length: rows }, (_, r) => (r * 11) % W);
    const b = new GraphBuilder();
    const xi = b.op('input', [], { name: 'x', dtype: 'f32', shape: [rows, W] });
    const yi = b.op('input', [], { name: 'y', dtype: 'i32', shape: [rows] });
    const g = b.build('spread', [
      { name: 'lsm', id: b.op('log_softmax', [xi], {}) },
      { name: 'ce', id: b.op('cross_entropy', [xi, yi], { ignore_index: -1 }) },
    ]);
    const inputs = { x: { dtype: 'f32' as const, shape: [rows, W], data: x }, y: { dtype: 'i32' as const, shape: [rows], data: labels } };
    const want = interpret(g, { inputs });
    const exe = await compileGraph(g, await sharedDevice());
    try {
      const { outputs } = await exe.run(inputs);
      for (const name of ['lsm', 'ce']) {
        let worst = 0;
        want[name].data.forEach((w, i) => (worst = Math.max(worst, Math.abs(outputs[name].data[i] - w) / Math.max(1e-3, Math.abs(w)))));
        expect(worst, name).toBeLessThanOrEqual(1e-6);
      }
    } finally {
      exe.destroy();
    }
  });
});
