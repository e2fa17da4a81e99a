/** Layout ops: reshape, transpose, broadcast, slice, concat. No arithmetic, only index remapping. */
import type { OpRule } from '../op.js';
import { allocData } from '../tensor.js';
import { broadcastShapes, fmtShape, numel, sameShape, strides } from '../types.js';
import { broadcastIndexer, fail, finish } from './util.js';

/** Calls f(outFlat, coords) for each element of a shape, coords updated in place (row-major). */
function forEachCoord(shape: readonly number[], f: (flat: number, c: number[]) => void): void {
  const n = numel(shape);
  const c = new Array<number>(shape.length).fill(0);
  for (let i = 0; i < n; i++) {
    f(i, c);
    for (let k = shape.length - 1; k >= 0; k--) {
      if (++c[k] < shape[k]) break;
      c[k] = 0;
    }
  }
}

export const layoutOps: {
  reshape: OpRule<'reshape'>;
  transpose: OpRule<'transpose'>;
  broadcast: OpRule<'broadcast'>;
  slice: OpRule<'slice'>;
  concat: OpRule<'concat'>;
} = {
  reshape: {
    arity: 1,
    infer: (inputs, a) => {
      if (!a.shape.every((d) => Number.isInteger(d) && d >= 0)) fail('reshape', inputs, `invalid target shape ${fmtShape(a.shape)}`);
      if (numel(a.shape) !== numel(inputs[0].shape)) {
        fail('reshape', inputs, `cannot reshape ${fmtShape(inputs[0].shape)} (${numel(inputs[0].shape)} elements) to ${fmtShape(a.shape)} (${numel(a.shape)} elements)`);
      }
      return { dtype: inputs[0].dtype, shape: a.shape };
    },
    evaluate: (inputs, _a, out) => finish(out, inputs[0].data.slice()),
    grad: { saves: { inputs: [], output: false }, vjp: (b, n, g) => [b.reshape(g, b.type(n.inputs[0]).shape)] },
    lower: { kernel: 'layout' },
  },
  transpose: {
    arity: 1,
    infer: (inputs, a) => {
      const r = inputs[0].shape.length;
      const ok = a.perm.length === r && [...a.perm].sort((x, y) => x - y).every((p, i) => p === i);
      if (!ok) fail('transpose', inputs, `perm [${a.perm.join(', ')}] is not a permutation of ${r} axes`);
      return { dtype: inputs[0].dtype, shape: a.perm.map((p) => inputs[0].shape[p]) };
    },
    evaluate: (inputs, a, out) => {
      const x = inputs[0];
      const xs = strides(x.shape);
      const data = allocData(out.dtype, numel(out.shape));
      forEachCoord(out.shape, (i, c) => {
        let off = 0;
        for (let k = 0; k < c.length; k++) off += c[k] * xs[a.perm[k]];
        data[i] = x.data[off];
      });
      return finish(out, data);
    },
    grad: {
      saves: { inputs: [], output: false },
      vjp: (b, n, g) => {
        const inv = new Array<number>(n.attrs.perm.length);
        n.attrs.perm.forEach((p, i) => (inv[p] = i));
        return [b.op('transpose', [g], { perm: inv })];
      },
    },
    lower: { kernel: 'layout' },
  },
  broadcast: {
    arity: 1,
    infer: (inputs, a) => {
      const s = broadcastShapes('broadcast', [inputs[0].shape, a.shape]);
      if (!sameShape(s, a.shape)) fail('broadcast', inputs, `cannot broadcast to ${fmtShape(a.shape)}`);
      return { dtype: inputs[0].dtype, shape: a.shape };
    },
    evaluate: (inputs, _a, out) => {
      const x = inputs[0];
      const idx = broadcastIndexer(x.shape, out.shape);
      const data = allocData(out.dtype, numel(out.shape));
      for (let i = 0; i < data.length; i++) data[i] = x.data[idx(i)];
      return finish(out, data);
    },
    grad: { saves: { inputs: [], output: false }, vjp: (b, n, g) => [b.unbroadcast(g, b.type(n.inputs[0]).shape)] },
    lower: { kernel: 'layout' },
  },
  slice: {
    arity: 1,
    infer: (inputs, a) => {
      const s = inputs[0].shape;
      if (a.starts.length !== s.length || a.ends.length !== s.length) fail('slice', inputs, `needs one start and end per axis`);
      const shape = s.map((d, i) => {
        const st = a.starts[i], en = a.ends[i];
        if (!(Number.isInteger(st) && Number.isInteger(en) && st >= 0 && st <= en && en <= d)) {
          fail('slice', inputs, `range ${st}:${en} is out of bounds for axis ${i} of size ${d}`);
        }
        return en - st;
      });
      return { dtype: inputs[0].dtype, shape };
    },
    evaluate: (inputs, a, out) => {
      const x = inputs[0];
      const xs = strides(x.shape);
      const data = allocData(out.dtype, numel(out.shape));
      forEachCoord(out.shape, (i, c) => {
        let off = 0;
        for (let k = 0; k < c.length; k++) off += (c[k] + a.starts[k]) * xs[k];
        data[i] = x.data[off];
      });
      return finish(out, data);
    },
    grad: {
      // The cotangent of a slice is zero-padded back to the operand: one concat with zeros per sliced side.
      saves: { inputs: [], output: false },
      vjp: (b, n, g) => {
        const full = b.type(n.inputs[0]).shape;
        let cur = g;
        for (let ax = 0; ax < full.length; ax++) {
          const st = n.attrs.starts[ax], en = n.attrs.ends[ax];
          const parts: number[] = [];
          const cs = b.type(cur).shape;
          const dt = b.type(cur).dtype;
          if (st > 0) parts.push(b.full(0, { dtype: dt, shape: cs.map((d, i) => (i === ax ? st : d)) }));
          parts.push(cur);
          if (en < full[ax]) parts.push(b.full(0, { dtype: dt, shape: cs.map((d, i) => (i === ax ? full[ax] - en : d)) }));
          if (parts.length > 1) cur = b.op('concat', parts, { axis: ax });
        }
        return [cur];
      },
    },
    lower: { kernel: 'layout' },
  },
  concat: {
    arity: 'variadic',
    infer: (inputs, a) => {
      if (inputs.length === 0) fail('concat', inputs, 'needs at least one operand');
      const r = inputs[0].shape.length;
      if (a.axis < 0 || a.axis >= r) fail('concat', inputs, `axis ${a.axis} out of range for rank ${r}`);
      let total = 0;
      for (const t of inputs) {
        if (t.dtype !== inputs[0].dtype) fail('concat', inputs, 'operands must have the same dtype');
        if (t.shape.length !== r || t.shape.some((d, i) => i !== a.axis && d !== inputs[0].shape[i])) {
          fail('concat', inputs, `operands must agree on every axis but ${a.axis}`);
        }
        total += t.shape[a.axis];
      }
      return { dtype: inputs[0].dtype, shape: inputs[0].shape.map((d, i) => (i === a.axis ? total : d)) };
    },
    evaluate: (inputs, a, out) => {
      const data = allocData(out.dtype, numel(out.shape));
      const outer = numel(out.shape.slice(0, a.axis));
      const inner = numel(out.shape.slice(a.axis + 1));
      const rowOut = out.shape[a.axis] * inner;
      let offset = 0;
      for (const t of inputs) {
        const row = t.shape[a.axis] * inner;
        for (let o = 0; o < outer; o++) {
          for (let j = 0; j < row; j++) data[o * rowOut + offset + j] = t.data[o * row + j];
        }
        offset += row;
      }
      return finish(out, data);
    },
    grad: {
      saves: { inputs: [], output: false },
      vjp: (b, n, g) => {
        const out: number[] = [];
        let st = 0;
        const gs = b.type(g).shape;
        for (const i of n.inputs) {
          const w = b.type(i).shape[n.attrs.axis];
          const starts = gs.map((_, k) => (k === n.attrs.axis ? st : 0));
          const ends = gs.map((d, k) => (k === n.attrs.axis ? st + w : d));
          out.push(b.op('slice', [g], { starts, ends }));
          st += w;
        }
        return out;
      },
    },
    lower: { kernel: 'layout' },
  },
};
