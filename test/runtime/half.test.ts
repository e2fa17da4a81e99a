/**
 * f16 and bf16 on the device: two bytes per element in buffers (array<f16> with shader-f16, or packed two per u32
 * word), f32 in registers, rounded after every op — equal to the interpreter, whose semantics are the same.
 */
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../src/ir/builder.js';
import { interpret } from '../../src/interp/interpreter.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import { bf16BitsToF32, f16BitsToF32 } from '../../src/ir/tensor.js';
import type { DType } from '../../src/ir/types.js';
import { compileGraph } from '../../src/runtime/index.js';
import { checkAgainstInterpreter, sharedDevice } from './helpers.js';
import { randTensor } from './graphs.js';

const input = (b: GraphBuilder, name: string, dtype: DType, shape: number[]) => b.op('input', [], { name, dtype, shape });

/** Every kernel kind writing and reading a half tensor, with odd element counts (a packed word holds a tail). */
function halfGraph(dt: 'f16' | 'bf16') {
  const b = new GraphBuilder();
  const x = input(b, 'x', dt, [5, 7]);
  const w = input(b, 'w', dt, [7, 3]);
  const ids = input(b, 'ids', 'i32', [4]);
  const e = b.unary('exp', b.mul(x, b.scalar(0.37, dt))); // elementwise chain, rounded per op
  const mm = b.op('matmul', [x, w], { transA: false, transB: false }); // f32 accumulation, half output
  const mmT = b.op('matmul', [x, x], { transA: true, transB: false });
  const ep = b.binary('max', b.add(mm, b.scalar(0.25, dt)), b.scalar(0, dt)); // matmul with an epilogue
  const sm = b.op('softmax', [x], { axis: -1 });
  const s = b.op('sum', [e], { axes: [1], keepdims: false }); // reduction accumulates in f32
  const all = b.op('sum', [x], { axes: [0, 1], keepdims: false });
  const g = b.op('gather', [x, ids], { axis: 0 });
  const wide = b.cast(x, 'f32');
  const back = b.cast(b.mul(wide, b.scalar(3.1)), dt);
  return b.build(`half-${dt}`, [
    { name: 'e', id: e },
    { name: 'mm', id: mm },
    { name: 'mmT', id: mmT },
    { name: 'ep', id: ep },
    { name: 'sm', id: sm },
    { name: 's', id: s },
    { name: 'all', id: all },
    { name: 'g', id: g },
    { name: 'wide', id: wide },
    { name: 'back', id: back },
  ]);
}

const feeds = (dt: DType): Record<string, HostTensor> => ({
  x: randTensor(dt, [5, 7], 1),
  w: randTensor(dt, [7, 3], 2),
  ids: { dtype: 'i32', shape: [4], data: Int32Array.of(4, 0, 3, 3) },
});

describe('half-precision tensors on the device', () => {
  for (const dt of ['f16', 'bf16'] as const) {
    for (const f16 of ['native', 'packed'] as const) {
      if (dt === 'bf16' && f16 === 'native') continue; // bf16 is always packed
      it(`${dt} (${dt === 'f16' ? f16 : 'packed'} storage): every kernel kind equals the interpreter`, async ({ skip }) => {
        const dev = await sharedDevice();
        if (f16 === 'native' && !dev.device.features.has('shader-f16')) skip();
        // one f16/bf16 ulp: per-op rounding can land on the other side of a tie after f32 math differs in the last bit
        const tol = dt === 'f16' ? { rtol: 2e-3, atol: 1e-3 } : { rtol: 1.6e-2, atol: 8e-3 };
        await checkAgainstInterpreter(halfGraph(dt), feeds(dt), { tol, modes: [{ fuse: false, f16 }, { fuse: true, f16 }] });
      });
    }
  }

  it('takes two bytes per element on the device', async () => {
    const dev = await sharedDevice();
    const mk = (dt: DType) => {
      const b = new GraphBuilder();
      const x = input(b, 'x', dt, [1001]);
      return b.build('bytes', [{ name: 'y', id: b.add(x, x) }]);
    };
    const full = await compileGraph(mk('f32'), dev, {});
    const half = await compileGraph(mk('bf16'), dev, {});
    try {
      expect(full.stats.deviceBytes).toBe(2 * 4004);
      expect(half.stats.deviceBytes).toBe(2 * 2004); // 1001 halves round up to 501 words
    } finally {
      full.destroy();
      half.destroy();
    }
  });

  it('overflow goes to inf and back through storage, as in the interpreter', async () => {
    const dev = await sharedDevice();
    for (const [dt, f16] of [['f16', 'native'], ['f16', 'packed'], ['bf16', 'packed']] as const) {
      if (f16 === 'native' && !dev.device.features.has('shader-f16')) continue;
      const b = new GraphBuilder();
      const x = input(b, 'x', dt, [5]);
      const y = b.mul(x, b.scalar(dt === 'f16' ? 1000 : 1e30, dt));
      const g = b.build('overflow', [{ name: 'y', id: y }]);
      // 65504 is f16's largest finite value; bf16's is about 3.39e38
      const inputs = { x: { dtype: dt, shape: [5], data: Float32Array.of(70, -70, 0.5, 1e-3, 2 ** -10) } };
      const want = interpret(g, { inputs });
      const exe = await compileGraph(g, dev, { f16 });
      try {
        const { outputs } = await exe.run(inputs);
        expect(Array.from(outputs.y.data), `${dt} ${f16}`).toEqual(Array.from(want.y.data));
        if (dt === 'f16') expect([outputs.y.data[0], outputs.y.data[1]]).toEqual([Infinity, -Infinity]);
        else expect(Number.isFinite(outputs.y.data[0])).toBe(true); // bf16 has f32's range
      } finally {
        exe.destroy();
      }
    }
  });

  it('decodes known bit patterns identically on host and device', () => {
    expect(f16BitsToF32(0x7bff)).toBe(65504);
    expect(f16BitsToF32(0x0001)).toBe(2 ** -24);
    expect(bf16BitsToF32(0x3f80)).toBe(1);
    expect(bf16BitsToF32(0x7f7f)).toBe(3.3895313892515355e38);
  });
});
