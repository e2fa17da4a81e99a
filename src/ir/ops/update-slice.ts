/**
 * update_slice(x, u, pos): x with the slab u written along `axis` starting at a position known only at run time
 * (pos, an i32 tensor of one element). It is how incremental decoding writes this step's keys and values into a
 * key/value cache that stays on the device: the position changes every step, the compiled kernel does not.
 * Rows that would land outside [0, x.shape[axis]) are dropped, as gather/scatter_add drop out-of-range rows.
 */
import type { OpRule } from '../op.js';
import { allocData } from '../tensor.js';
import { numel } from '../types.js';
import { fail, finish } from './util.js';

export const updateSliceOp: OpRule<'update_slice'> = {
  arity: 3,
  infer: (inputs, a) => {
    const [x, u, pos] = inputs;
    const r = x.shape.length;
    if (!Number.isInteger(a.axis) || a.axis < 0 || a.axis >= r) fail('update_slice', inputs, `axis ${a.axis} is out of range for rank ${r}`);
    if (u.dtype !== x.dtype) fail('update_slice', inputs, 'the update must have the dtype of the tensor it is written into');
    if (u.shape.length !== r || u.shape.some((d, k) => (k === a.axis ? d > x.shape[k] : d !== x.shape[k]))) {
      fail('update_slice', inputs, `the update must have the tensor's shape except along axis ${a.axis}, where it may be shorter`);
    }
    if (pos.dtype !== 'i32' || numel(pos.shape) !== 1) fail('update_slice', inputs, 'the position must be an i32 tensor of one element');
    return { dtype: x.dtype, shape: [...x.shape] };
  },
  evaluate: (inputs, a, out) => {
    const [x, u, pos] = inputs;
    const p = pos.data[0];
    const n = x.shape[a.axis];
    const m = u.shape[a.axis];
    const inner = numel(x.shape.slice(a.axis + 1));
    const outer = numel(x.shape.slice(0, a.axis));
    const data = allocData(out.dtype, numel(out.shape));
    data.set(x.data);
    for (let o = 0; o < outer; o++) {
      for (let j = 0; j < m; j++) {
        const row = p + j;
        if (row < 0 || row >= n) continue;
        for (let k = 0; k < inner; k++) data[(o * n + row) * inner + k] = u.data[(o * m + j) * inner + k];
      }
    }
    return finish(out, data);
  },
  grad: {
    saves: { inputs: [2], output: false },
    vjp: (b, n, g) => {
      const [, u, pos] = n.inputs;
      const ut = b.type(u);
      const ax = n.attrs.axis;
      const r = ut.shape.length;
      // x's cotangent: g with the overwritten rows zeroed; u's: those rows of g (a gather at pos + 0..m-1, which
      // reads zeros exactly where the forward dropped rows)
      const dx = b.op('update_slice', [g, b.op('constant', [], { dtype: ut.dtype, shape: [...ut.shape], values: [0] }), pos], { axis: ax });
      const rows = b.op('add', [b.op('iota', [], { dtype: 'i32', shape: [ut.shape[ax]], axis: 0 }), b.reshape(pos, [1])], {});
      const perm = [ax, ...Array.from({ length: r }, (_, k) => k).filter((k) => k !== ax)];
      const front = ax === 0 ? g : b.op('transpose', [g], { perm });
      const picked = b.op('gather', [front, rows], {});
      const inv = new Array<number>(r);
      perm.forEach((p, k) => (inv[p] = k));
      return [dx, ax === 0 ? picked : b.op('transpose', [picked], { perm: inv }), null];
    },
  },
  lower: { kernel: 'gather' },
};
