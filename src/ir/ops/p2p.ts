/**
 * Point-to-point transfers between the stages of a pipeline (src/parallel/pipeline-parallel.ts inserts them):
 *
 *   send {to, tag}                  x -> x          (x leaves this device for device `to` on channel `tag`)
 *   recv {from, tag, dtype, shape}    -> x          (the value device `from` sent on channel `tag`)
 *
 * The k-th send from a to b on a tag meets the k-th recv on b from a on the same tag. They are not kernels: the
 * pipeline executor (src/parallel/pipeline-schedule.ts) moves the value between devices, through the host on
 * WebGPU. In the reference interpreter a recv reads the graph input named by its channel (`recv:<from>:<tag>`),
 * which is where the executor puts the delivered value; a send is the identity, its value read as the program's
 * output `send:<to>:<tag>`. The pass differentiates each stage before it inserts them, so they need no gradient
 * rule of their own: the gradient of an activation sent forward comes back as a recv of the backward program.
 */
import type { OpRule } from '../op.js';
import { DTYPES, fmtShape } from '../types.js';
import { fail } from './util.js';

/** The graph input a recv reads and the output a send fills, as the executor names them. */
export const recvChannel = (from: number, tag: string) => `recv:${from}:${tag}`;
export const sendChannel = (to: number, tag: string) => `send:${to}:${tag}`;

export const p2pOps: { send: OpRule<'send'>; recv: OpRule<'recv'> } = {
  send: {
    arity: 1,
    infer: (inputs, a) => {
      if (!Number.isInteger(a.to) || a.to < 0) fail('send', inputs, `destination device must be a non-negative integer, got ${a.to}`);
      return inputs[0];
    },
    evaluate: ([x]) => x,
    grad: 'nondiff',
    lower: { kernel: 'collective' },
  },
  recv: {
    arity: 0,
    infer: (_i, a) => {
      if (!Number.isInteger(a.from) || a.from < 0) fail('recv', [], `source device must be a non-negative integer, got ${a.from}`);
      if (!DTYPES.includes(a.dtype)) fail('recv', [], `unknown dtype ${a.dtype}`);
      if (!a.shape.every((d) => Number.isInteger(d) && d >= 0)) fail('recv', [], `invalid shape ${fmtShape(a.shape)}`);
      return { dtype: a.dtype, shape: a.shape };
    },
    evaluate: (_i, a, out, ctx) => ctx.input(recvChannel(a.from, a.tag), out),
    grad: 'nondiff',
    lower: { kernel: 'collective' },
  },
};
