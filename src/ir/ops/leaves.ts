/** Leaf ops: graph inputs, parameters, constants and iota. */
import type { OpRule } from '../op.js';
import { allocData } from '../tensor.js';
import { DTYPES, fmtShape, numel } from '../types.js';
import { fail, finish } from './util.js';

function checkShape(op: string, shape: readonly number[]): void {
  if (!shape.every((d) => Number.isInteger(d) && d >= 0)) fail(op, [], `invalid shape ${fmtShape(shape)}`);
}

export const leafOps: { input: OpRule<'input'>; param: OpRule<'param'>; constant: OpRule<'constant'>; iota: OpRule<'iota'> } = {
  input: {
    arity: 0,
    infer: (_i, a) => {
      checkShape('input', a.shape);
      if (!DTYPES.includes(a.dtype)) fail('input', [], `unknown dtype ${a.dtype}`);
      return { dtype: a.dtype, shape: a.shape };
    },
    evaluate: (_i, a, out, ctx) => ctx.input(a.name, out),
    grad: { saves: { inputs: [], output: false }, vjp: () => [] },
    lower: { kernel: 'leaf' },
  },
  param: {
    arity: 0,
    infer: (_i, a) => {
      checkShape('param', a.shape);
      return { dtype: a.dtype, shape: a.shape };
    },
    evaluate: (_i, a, out, ctx) => ctx.param(a.name, out, a.init),
    grad: { saves: { inputs: [], output: false }, vjp: () => [] },
    lower: { kernel: 'leaf' },
  },
  constant: {
    arity: 0,
    infer: (_i, a) => {
      checkShape('constant', a.shape);
      if (a.values.length !== 1 && a.values.length !== numel(a.shape)) {
        fail('constant', [], `${a.values.length} values for shape ${fmtShape(a.shape)}`);
      }
      return { dtype: a.dtype, shape: a.shape };
    },
    evaluate: (_i, a, out) => {
      const data = allocData(out.dtype, numel(out.shape));
      if (a.values.length === 1) data.fill(a.values[0]);
      else data.set(a.values);
      return finish(out, data);
    },
    grad: { saves: { inputs: [], output: false }, vjp: () => [] },
    lower: { kernel: 'leaf' },
  },
  iota: {
    arity: 0,
    infer: (_i, a) => {
      checkShape('iota', a.shape);
      if (a.axis < 0 || a.axis >= a.shape.length) fail('iota', [], `axis ${a.axis} out of range for shape ${fmtShape(a.shape)}`);
      return { dtype: a.dtype, shape: a.shape };
    },
    evaluate: (_i, a, out) => {
      const n = numel(out.shape);
      const data = allocData(out.dtype, n);
      let inner = 1;
      for (let k = a.axis + 1; k < a.shape.length; k++) inner *= a.shape[k];
      const d = a.shape[a.axis];
      for (let i = 0; i < n; i++) data[i] = Math.floor(i / inner) % d;
      return finish(out, data);
    },
    grad: 'integer',
    lower: { kernel: 'leaf' },
  },
};
