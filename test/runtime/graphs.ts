/** Small hand-built graphs for codegen/runtime tests (independent of the frontend). */
import { GraphBuilder } from '../../src/ir/builder.js';
import type { Graph } from '../../src/ir/graph.js';
import { initParam } from '../../src/ir/init.js';
import type { AttrsOf } from '../../src/ir/op.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import { allocData } from '../../src/ir/tensor.js';
import type { DType, Shape } from '../../src/ir/types.js';
import { numel } from '../../src/ir/types.js';
import { seededRandom } from '../../src/export/runtime/generate.js';

/** Deterministic pseudo-random numbers (mulberry32, the exported runtime's sampler PRNG). */
export const rng = seededRandom;

export function randTensor(dtype: DType, shape: Shape, seed: number, opts: { lo?: number; hi?: number } = {}): HostTensor {
  const r = rng(seed);
  const n = numel(shape);
  const data = allocData(dtype, n);
  const lo = opts.lo ?? (dtype === 'u32' ? 0 : -2);
  const hi = opts.hi ?? 2;
  for (let i = 0; i < n; i++) {
    const v = lo + (hi - lo) * r();
    data[i] = dtype === 'bool' ? (r() < 0.5 ? 1 : 0) : dtype === 'i32' || dtype === 'u32' ? Math.floor(v) : Math.fround(v);
  }
  return { dtype, shape: [...shape], data };
}

/** A one-block GPT-like forward graph with loss: embeddings, attention with a causal mask, MLP, LM head, xent. */
export function tinyGpt(opts: { B?: number; T?: number; D?: number; H?: number; V?: number; layers?: number } = {}): Graph {
  const { B = 2, T = 5, D = 8, H = 2, V = 11, layers = 1 } = opts;
  const hd = D / H;
  const b = new GraphBuilder();
  const param = (name: string, shape: number[], init: { kind: 'normal'; std: number } | { kind: 'ones' } | { kind: 'zeros' } = { kind: 'normal', std: 0.2 }) =>
    b.op('param', [], { name, dtype: 'f32', shape, init });
  const tokens = b.op('input', [], { name: 'tokens', dtype: 'i32', shape: [B, T] });
  const labels = b.op('input', [], { name: 'labels', dtype: 'i32', shape: [B, T] });
  const wte = param('wte', [V, D]);
  const wpe = param('wpe', [T, D]);
  let x = b.add(b.op('gather', [wte, tokens], {}), wpe);
  const ln = (h: number, p: string) => b.op('layer_norm', [h, param(`${p}.g`, [D], { kind: 'ones' }), param(`${p}.b`, [D], { kind: 'zeros' })], { eps: 1e-5 });
  const linear = (h: number, p: string, din: number, dout: number) => b.add(b.op('matmul', [h, param(`${p}.w`, [din, dout])], { transA: false, transB: false }), param(`${p}.b`, [dout], { kind: 'zeros' }));
  const causal = b.op('ge', [b.op('iota', [], { dtype: 'i32', shape: [T, T], axis: 0 }), b.op('iota', [], { dtype: 'i32', shape: [T, T], axis: 1 })], {});
  for (let l = 0; l < layers; l++) {
    const h = ln(x, `l${l}.ln1`);
    const qkv = linear(h, `l${l}.attn.qkv`, D, 3 * D);
    const heads = (i: number) => {
      const part = b.op('slice', [qkv], { starts: [0, 0, i * D], ends: [B, T, (i + 1) * D] });
      return b.op('transpose', [b.reshape(part, [B, T, H, hd])], { perm: [0, 2, 1, 3] });
    };
    const [q, k, v] = [heads(0), heads(1), heads(2)];
    const scores = b.mul(b.op('matmul', [q, k], { transA: false, transB: true }), b.scalar(1 / Math.sqrt(hd)));
    const masked = b.op('select', [causal, scores, b.scalar(-1e9)], {});
    const att = b.op('softmax', [masked], {});
    const ctx = b.op('matmul', [att, v], { transA: false, transB: false });
    const merged = b.reshape(b.op('transpose', [ctx], { perm: [0, 2, 1, 3] }), [B, T, D]);
    x = b.add(x, linear(merged, `l${l}.attn.proj`, D, D));
    const m = b.unary('gelu', linear(ln(x, `l${l}.ln2`), `l${l}.mlp.fc`, D, 4 * D), { approximate: 'tanh' });
    x = b.add(x, linear(m, `l${l}.mlp.proj`, 4 * D, D));
  }
  const logits = b.op('matmul', [ln(x, 'lnf'), wte], { transA: false, transB: true });
  const xent = b.op('cross_entropy', [logits, labels], { ignore_index: -1 });
  const loss = b.op('mean', [xent], { axes: [0, 1], keepdims: false });
  return b.build('tiny_gpt', [
    { name: 'loss', id: loss },
    { name: 'logits', id: logits },
  ]);
}

export function gptInputs(opts: { B?: number; T?: number; V?: number } = {}, seed = 1): Record<string, HostTensor> {
  const { B = 2, T = 5, V = 11 } = opts;
  const labels = randTensor('i32', [B, T], seed + 1, { lo: 0, hi: V });
  labels.data[0] = -1; // one ignored position
  return { tokens: randTensor('i32', [B, T], seed, { lo: 0, hi: V }), labels };
}

/** Every parameter of `g` from its initialiser, as the interpreter and `Executable.initParams(seed)` make them. */
export function initialParams(g: Graph, seed: number): Record<string, HostTensor> {
  const out: Record<string, HostTensor> = {};
  for (const n of g.nodes) {
    if (n.op !== 'param') continue;
    const a = n.attrs as AttrsOf<'param'>;
    out[a.name] = initParam(a.init, n.type, a.name, seed);
  }
  return out;
}
