/** Attention problems shared by the interpreter, autodiff and WebGPU tests of flash_attention. */
import { GraphBuilder } from '../../src/ir/builder.js';
import type { Graph } from '../../src/ir/graph.js';
import type { AttentionAttrs, AttentionMask } from '../../src/ir/op.js';
import type { HostTensor } from '../../src/ir/tensor.js';

export interface AttnCase {
  name: string;
  batch: number[];
  T: number;
  S: number;
  D: number;
  Dv: number;
  mask: AttentionMask;
  bias?: boolean;
  p?: number;
}

/** A deterministic pseudo-random sequence in [-1, 1) (tests must not depend on Math.random). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 31 - 1;
  };
}

export function attnAttrs(c: AttnCase): AttentionAttrs {
  return { scale: 1 / Math.sqrt(c.D), mask: c.mask, bias: !!c.bias, fill: -1e9, p: c.p ?? 0, stream: 7 };
}

/**
 * loss = sum(flash_attention(q, k, v, ...) * w): q, k, v (and the bias) are parameters, w a fixed weight so every
 * output element matters differently; the mask, lengths and seed are inputs. Returns the graph and its inputs.
 */
export function attnGraph(c: AttnCase, output: 'loss' | 'out' = 'loss'): { graph: Graph; inputs: Record<string, HostTensor> } {
  const b = new GraphBuilder();
  const a = attnAttrs(c);
  const p = (name: string, shape: number[], dtype: 'f32' = 'f32') => b.op('param', [], { name, dtype, shape, init: { kind: 'uniform', low: -1.5, high: 1.5 } });
  const ops = [p('q', [...c.batch, c.T, c.D]), p('k', [...c.batch, c.S, c.D]), p('v', [...c.batch, c.S, c.Dv])];
  const inputs: Record<string, HostTensor> = {};
  const rnd = lcg(c.T * 131 + c.S * 17 + c.D);
  if (c.bias) ops.push(p('bias', [c.batch[c.batch.length - 1] ?? 1, c.T, c.S]));
  if (c.mask === 'bool') {
    const shape = [c.batch[0] ?? 1, ...c.batch.slice(1).map(() => 1), c.T, c.S];
    const n = shape.reduce((x, y) => x * y, 1);
    // Some rows fully hidden (row 0 of batch 0), the rest random.
    const data = Uint8Array.from({ length: n }, (_, i) => (i < c.S ? 0 : rnd() > -0.3 ? 1 : 0));
    inputs.mask = { dtype: 'bool', shape, data };
    ops.push(b.op('input', [], { name: 'mask', dtype: 'bool', shape }));
  }
  if (c.mask === 'prefix') {
    const shape = [c.batch[0] ?? 1, ...c.batch.slice(1).map(() => 1)];
    const n = shape.reduce((x, y) => x * y, 1);
    inputs.lengths = { dtype: 'i32', shape, data: Int32Array.from({ length: n }, (_, i) => (i * 2 + 1) % (c.S + 1)) };
    ops.push(b.op('input', [], { name: 'lengths', dtype: 'i32', shape }));
  }
  if (a.p > 0) {
    inputs.seed = { dtype: 'u32', shape: [], data: Uint32Array.of(4242) };
    ops.push(b.op('input', [], { name: 'seed', dtype: 'u32', shape: [] }));
  }
  const y = b.op('flash_attention', ops, a);
  if (output === 'out') return { graph: b.build(c.name, [{ name: 'out', id: y }]), inputs };
  const w = b.op('param', [], { name: 'weight', dtype: 'f32', shape: [...b.type(y).shape], init: { kind: 'uniform', low: -1, high: 1 } });
  const prod = b.mul(y, b.op('stop_gradient', [w], {}));
  const loss = b.reshape(b.sum(prod, b.type(prod).shape.map((_, i) => i)), []);
  return { graph: b.build(c.name, [{ name: 'loss', id: loss }, { name: 'out', id: y }]), inputs };
}

/** Odd shapes and every mask kind, dropout on and off. */
export const ATTN_CASES: AttnCase[] = [
  { name: 'no mask, T not a multiple of a tile', batch: [2, 3], T: 5, S: 5, D: 4, Dv: 3, mask: 'none' },
  { name: 'T = 1', batch: [2], T: 1, S: 1, D: 3, Dv: 2, mask: 'none' },
  { name: 'S != T (cross-attention)', batch: [2, 2], T: 3, S: 7, D: 4, Dv: 5, mask: 'none' },
  { name: 'causal', batch: [2, 2], T: 6, S: 6, D: 4, Dv: 4, mask: 'causal' },
  { name: 'prefix lengths', batch: [2, 2], T: 5, S: 5, D: 3, Dv: 3, mask: 'prefix' },
  { name: 'bool mask with a fully hidden row', batch: [2, 2], T: 4, S: 6, D: 3, Dv: 2, mask: 'bool' },
  { name: 'additive bias (ALiBi-like)', batch: [2, 2], T: 4, S: 4, D: 3, Dv: 3, mask: 'none', bias: true },
  { name: 'causal + bias + dropout', batch: [2, 2], T: 5, S: 5, D: 4, Dv: 3, mask: 'causal', bias: true, p: 0.3 },
  { name: 'dropout, no mask', batch: [3], T: 4, S: 6, D: 2, Dv: 3, mask: 'none', p: 0.5 },
];
