/** Indexing: gather (embedding lookup), scatter_add (its transpose), one_hot. */
import type { OpRule } from '../op.js';
import { allocData } from '../tensor.js';
import { DTYPES, isFloat, numel } from '../types.js';
import { fail, finish, requireInt } from './util.js';

export const indexingOps: { gather: OpRule<'gather'>; scatter_add: OpRule<'scatter_add'>; one_hot: OpRule<'one_hot'> } = {
  gather: {
    // table[V, ...r] indexed by idx[...i] -> [...i, ...r]; rows outside [0, V) read as zeros.
    arity: 2,
    infer: (inputs) => {
      const [table, idx] = inputs;
      if (table.shape.length < 1) fail('gather', inputs, 'the table must have rank >= 1');
      requireInt('gather', inputs, 1);
      return { dtype: table.dtype, shape: [...idx.shape, ...table.shape.slice(1)] };
    },
    evaluate: (inputs, _a, out) => {
      const [table, idx] = inputs;
      const V = table.shape[0];
      const row = numel(table.shape.slice(1));
      const data = allocData(out.dtype, numel(out.shape));
      for (let i = 0; i < idx.data.length; i++) {
        const r = idx.data[i];
        if (r < 0 || r >= V) continue;
        for (let j = 0; j < row; j++) data[i * row + j] = table.data[r * row + j];
      }
      return finish(out, data);
    },
    grad: {
      saves: { inputs: [1], output: false },
      vjp: (b, n, g) => {
        const [table, idx] = n.inputs;
        return [b.op('scatter_add', [idx, g], { rows: b.type(table).shape[0] }), null];
      },
    },
    lower: { kernel: 'gather' },
  },
  scatter_add: {
    // out[rows, ...r] = sum over i with idx[i] == row of upd[i, ...r]; indices outside [0, rows) are dropped.
    arity: 2,
    infer: (inputs, a) => {
      const [idx, upd] = inputs;
      requireInt('scatter_add', inputs, 0);
      if (!isFloat(upd.dtype)) fail('scatter_add', inputs, 'updates must be float');
      const k = idx.shape.length;
      if (upd.shape.length < k || idx.shape.some((d, i) => upd.shape[i] !== d)) {
        fail('scatter_add', inputs, 'the updates must start with the index shape');
      }
      if (!Number.isInteger(a.rows) || a.rows < 0) fail('scatter_add', inputs, `invalid row count ${a.rows}`);
      return { dtype: upd.dtype, shape: [a.rows, ...upd.shape.slice(k)] };
    },
    evaluate: (inputs, a, out) => {
      const [idx, upd] = inputs;
      const row = numel(out.shape.slice(1));
      const acc = new Float64Array(numel(out.shape));
      for (let i = 0; i < idx.data.length; i++) {
        const r = idx.data[i];
        if (r < 0 || r >= a.rows) continue;
        for (let j = 0; j < row; j++) acc[r * row + j] += upd.data[i * row + j];
      }
      const data = allocData(out.dtype, acc.length);
      data.set(acc);
      return finish(out, data);
    },
    grad: {
      saves: { inputs: [0], output: false },
      vjp: (b, n, g) => [null, b.op('gather', [g, n.inputs[0]], {})],
    },
    lower: { kernel: 'scatter' },
  },
  one_hot: {
    arity: 1,
    infer: (inputs, a) => {
      requireInt('one_hot', inputs, 0);
      if (!Number.isInteger(a.depth) || a.depth < 1) fail('one_hot', inputs, `depth must be a positive integer, got ${a.depth}`);
      if (!DTYPES.includes(a.dtype)) fail('one_hot', inputs, `unknown dtype ${a.dtype}`);
      return { dtype: a.dtype, shape: [...inputs[0].shape, a.depth] };
    },
    evaluate: (inputs, a, out) => {
      const idx = inputs[0];
      const data = allocData(out.dtype, numel(out.shape));
      for (let i = 0; i < idx.data.length; i++) {
        const v = idx.data[i];
        if (v >= 0 && v < a.depth) data[i * a.depth + v] = 1;
      }
      return finish(out, data);
    },
    grad: { saves: { inputs: [], output: false }, vjp: () => [null] },
    lower: { kernel: 'gather' },
  },
};
