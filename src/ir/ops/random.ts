/** Dropout with a counter-based RNG: the mask is a pure function of (seed, stream, element index). */
import type { OpRule } from '../op.js';
import { philox4x32, u32ToUnit } from '../philox.js';
import { allocData } from '../tensor.js';
import { numel } from '../types.js';
import { fail, finish, requireFloat } from './util.js';

/** True where element i is kept. Shared by the interpreter and mirrored exactly by the WGSL kernel. */
export function dropoutKeep(seed: number, stream: number, i: number, p: number): boolean {
  return u32ToUnit(philox4x32(i, 0, 0, 0, seed, stream)[0]) >= p;
}

export const dropoutOp: OpRule<'dropout'> = {
  arity: 2,
  infer: (inputs, a) => {
    requireFloat('dropout', inputs, 0);
    if (inputs[1].dtype !== 'u32' || inputs[1].shape.length !== 0) fail('dropout', inputs, 'the seed must be a u32 scalar');
    if (!(a.p >= 0 && a.p < 1)) fail('dropout', inputs, `p must be in [0, 1), got ${a.p}`);
    return inputs[0];
  },
  evaluate: (inputs, a, out) => {
    const [x, seed] = inputs;
    const s = seed.data[0] >>> 0;
    const n = numel(out.shape);
    const data = allocData(out.dtype, n);
    const scale = 1 / (1 - a.p);
    for (let i = 0; i < n; i++) data[i] = dropoutKeep(s, a.stream, i, a.p) ? x.data[i] * scale : 0;
    return finish(out, data);
  },
  grad: {
    // The backward of dropout is the same dropout applied to the cotangent: same seed, same stream, same mask.
    saves: { inputs: [1], output: false },
    vjp: (b, n, g) => [b.op('dropout', [g, n.inputs[1]], { ...n.attrs }), null],
  },
  lower: { kernel: 'random' },
};
