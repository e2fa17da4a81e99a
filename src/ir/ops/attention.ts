/**
 * Fused scaled-dot-product attention: out = dropout(softmax(mask(scale · q kᵀ + bias))) v, without the [.., T, S]
 * score matrix ever being a tensor.
 *
 * Every IR node has exactly one result, but the backward wants per-row statistics beside `out`: the log-sum-exp
 * (LSE) of the scores, and delta = dout · out (the row term of the softmax backward). Rather than give one op two
 * results (or pack the LSE into a widened `out` that every consumer would then have to slice), they are one
 * companion node emitted by the gradient rule, `flash_attention_stats(q, k, out, dout, [bias], [mask])` ->
 * [..., T, 2]. Its kernel is one Q·Kᵀ pass with a running max/sum and no P·V (a fraction of a forward), so keeping
 * one result per node costs little; no kernel writes two tensors, and the scheduler, memory planner and
 * interpreter need nothing new. Packing (lse, delta) into one tensor also keeps the backward kernels within
 * WebGPU's guaranteed 8 storage buffers per stage: q, k, v, dout, stats, bias / mask / seed, and the result.
 * The gradient is three (four with a bias) `flash_attention_grad` nodes, one per operand (`wrt`), each
 * recomputing the probabilities tile by tile from q, k and the LSE. What the backward keeps from the forward is
 * q, k, v, out (and the bias / mask / seed operands): O(T), never the T × T probabilities.
 *
 * Operand layouts (attention-specific operands follow the fixed ones, in this order, only when present):
 *   flash_attention       q [..., T, D], k [..., S, D], v [..., S, Dv], bias?, mask?, seed?    -> [..., T, Dv]
 *   flash_attention_stats q, k, out, dout, bias?, mask?                                        -> [..., T, 2]
 *   flash_attention_grad  q, k, v, dout, stats, bias?, mask?, seed?                            -> the `wrt` operand's type
 * bias: float, broadcastable to [..., T, S]; mask: bool broadcastable to [..., T, S] (mask 'bool') or integer
 * lengths broadcastable to [...] (mask 'prefix'); seed: u32 scalar (p > 0). q, k and v share their batch dims.
 * Dropout draws element (b, i, j) of the probabilities with counter (b·T + i)·S + j, exactly as the `dropout` op
 * does on the [..., T, S] tensor, so the fused and unfused paths agree bit for bit on the mask.
 */
import type { GraphBuilder } from '../builder.js';
import type { AttentionAttrs, OpRule } from '../op.js';
import type { HostTensor } from '../tensor.js';
import { allocData } from '../tensor.js';
import type { Shape, TensorType } from '../types.js';
import { fmtShape, isFloat, isInt, numel } from '../types.js';
import { dropoutKeep } from './random.js';
import { broadcastIndexer, fail, finish } from './util.js';

export type AttentionPart = 'fwd' | 'stats' | 'grad';

/** Operand positions of one attention op, given its attributes. */
export interface AttentionLayout {
  q: number;
  k: number;
  v?: number;
  out?: number;
  dout?: number;
  stats?: number;
  bias?: number;
  mask?: number;
  seed?: number;
  count: number;
}

export function attentionLayout(part: AttentionPart, a: AttentionAttrs): AttentionLayout {
  const L: AttentionLayout = { q: 0, k: 1, count: 2 };
  if (part === 'stats') {
    L.out = L.count++;
    L.dout = L.count++;
  } else L.v = L.count++;
  if (part === 'grad') {
    L.dout = L.count++;
    L.stats = L.count++;
  }
  if (a.bias) L.bias = L.count++;
  if (a.mask === 'bool' || a.mask === 'prefix') L.mask = L.count++;
  if (part !== 'stats' && a.p > 0) L.seed = L.count++;
  return L;
}

/** Whether `s` broadcasts to `to` (right-aligned) without growing it. */
function broadcastsTo(s: Shape, to: Shape): boolean {
  if (s.length > to.length) return false;
  const lead = to.length - s.length;
  return s.every((d, i) => d === 1 || d === to[lead + i]);
}

/** The problem sizes every attention op shares, checked. */
export function attentionDims(op: string, part: AttentionPart, inputs: readonly TensorType[], a: AttentionAttrs) {
  const L = attentionLayout(part, a);
  if (inputs.length !== L.count) {
    fail(op, inputs, `expects ${L.count} operands for mask '${a.mask}'${a.bias ? ' with a bias' : ''}${a.p > 0 ? ' with dropout' : ''}, got ${inputs.length}`);
  }
  if (!['none', 'causal', 'prefix', 'bool'].includes(a.mask)) fail(op, inputs, `unknown mask kind '${a.mask}'`);
  if (!Number.isFinite(a.scale) || !Number.isFinite(a.fill)) fail(op, inputs, 'scale and fill must be finite numbers');
  if (!(a.p >= 0 && a.p < 1)) fail(op, inputs, `dropout p must be in [0, 1), got ${a.p}`);
  const q = inputs[L.q];
  const k = inputs[L.k];
  if (!isFloat(q.dtype)) fail(op, inputs, `q must be a float tensor, got ${q.dtype}`);
  if (q.shape.length < 2 || k.shape.length < 2) fail(op, inputs, 'q and k must have rank >= 2 ([..., T, D] and [..., S, D])');
  const batch = q.shape.slice(0, -2);
  const T = q.shape[q.shape.length - 2];
  const D = q.shape[q.shape.length - 1];
  const S = k.shape[k.shape.length - 2];
  const same = (t: TensorType) => t.shape.length === q.shape.length && batch.every((d, i) => d === t.shape[i]);
  if (k.dtype !== q.dtype || !same(k)) fail(op, inputs, `k must be ${q.dtype}[${[...batch, 'S', D].join(', ')}] to match q ${fmtShape(q.shape)}`);
  if (k.shape[k.shape.length - 1] !== D) fail(op, inputs, `q and k must have the same head size: ${fmtShape(q.shape)} vs ${fmtShape(k.shape)}`);
  let Dv = L.out !== undefined ? inputs[L.out].shape[inputs[L.out].shape.length - 1] : 0;
  if (L.v !== undefined) {
    const v = inputs[L.v];
    if (v.dtype !== q.dtype || !same(v) || v.shape[v.shape.length - 2] !== S) {
      fail(op, inputs, `v must be ${q.dtype}[${[...batch, S, 'Dv'].join(', ')}] to match k ${fmtShape(k.shape)}`);
    }
    Dv = v.shape[v.shape.length - 1];
  }
  const scores = [...batch, T, S];
  if (L.bias !== undefined) {
    const b = inputs[L.bias];
    if (b.dtype !== q.dtype || !broadcastsTo(b.shape, scores)) fail(op, inputs, `the bias must be ${q.dtype} and broadcast to the scores ${fmtShape(scores)}, got ${fmtShape(b.shape)}`);
  }
  if (L.mask !== undefined) {
    const m = inputs[L.mask];
    if (a.mask === 'bool' && (m.dtype !== 'bool' || !broadcastsTo(m.shape, scores))) {
      fail(op, inputs, `the mask must be bool and broadcast to the scores ${fmtShape(scores)}, got ${m.dtype}${fmtShape(m.shape)}`);
    }
    if (a.mask === 'prefix' && (!isInt(m.dtype) || !broadcastsTo(m.shape, batch))) {
      fail(op, inputs, `the prefix lengths must be integers broadcasting to the batch dims ${fmtShape(batch)}, got ${m.dtype}${fmtShape(m.shape)}`);
    }
  }
  if (L.seed !== undefined) {
    const s = inputs[L.seed];
    if (s.dtype !== 'u32' || s.shape.length !== 0) fail(op, inputs, 'the dropout seed must be a u32 scalar');
  }
  const want = [...batch, T, Dv];
  for (const [name, i] of [['out', L.out], ['dout', L.dout]] as const) {
    if (i === undefined) continue;
    const t = inputs[i];
    if (t.dtype !== q.dtype || t.shape.length !== want.length || t.shape.some((d, j) => d !== want[j])) fail(op, inputs, `${name} must be ${q.dtype}${fmtShape(want)}`);
  }
  if (L.stats !== undefined) {
    const l = inputs[L.stats];
    const ws = [...batch, T, 2];
    if (!isFloat(l.dtype) || l.shape.length !== ws.length || ws.some((d, j) => d !== l.shape[j])) fail(op, inputs, `stats must be float${fmtShape(ws)}`);
  }
  return { L, batch, B: numel(batch), T, S, D, Dv };
}

/**
 * The reference's view of one attention problem: scores of a query row (f64, hidden keys set to `fill`) and the
 * dropout multiplier of each probability. Plain loops, as obvious as possible: it is the oracle.
 */
function problem(part: AttentionPart, inputs: readonly HostTensor[], a: AttentionAttrs) {
  const dims = attentionDims('attention', part, inputs, a);
  const { L, batch, T, S, D } = dims;
  const [q, k] = [inputs[L.q], inputs[L.k]];
  const scores = [...batch, T, S];
  const bias = L.bias !== undefined ? inputs[L.bias] : undefined;
  const biasAt = bias ? broadcastIndexer(bias.shape, scores) : undefined;
  const mask = L.mask !== undefined ? inputs[L.mask] : undefined;
  const maskAt = mask ? broadcastIndexer(mask.shape, a.mask === 'prefix' ? batch : scores) : undefined;
  const seed = L.seed !== undefined ? inputs[L.seed].data[0] >>> 0 : 0;
  const visible = (b: number, i: number, j: number): boolean => {
    switch (a.mask) {
      case 'none':
        return true;
      case 'causal':
        return j <= i;
      case 'prefix':
        return j <= i || j < mask!.data[maskAt!(b)];
      case 'bool':
        return mask!.data[maskAt!((b * T + i) * S + j)] !== 0;
    }
  };
  const row = (b: number, i: number, out: Float64Array, vis: Uint8Array): void => {
    for (let j = 0; j < S; j++) {
      vis[j] = visible(b, i, j) ? 1 : 0;
      if (!vis[j]) {
        out[j] = a.fill;
        continue;
      }
      let dot = 0;
      for (let d = 0; d < D; d++) dot += q.data[(b * T + i) * D + d] * k.data[(b * S + j) * D + d];
      out[j] = dot * a.scale + (bias ? bias.data[biasAt!((b * T + i) * S + j)] : 0);
    }
  };
  const keepScale = 1 / (1 - a.p);
  const dropScale = (b: number, i: number, j: number): number =>
    a.p === 0 ? 1 : dropoutKeep(seed, a.stream, (b * T + i) * S + j, a.p) ? keepScale : 0;
  return { ...dims, row, dropScale };
}

function logSumExp(row: Float64Array): number {
  let m = -Infinity;
  for (const v of row) if (v > m) m = v;
  if (m === -Infinity) return -Infinity;
  let s = 0;
  for (const v of row) s += Math.exp(v - m);
  return m + Math.log(s);
}

/** The attention-specific operands (bias, mask) of a node of `part`, in layout order. */
function extras(part: AttentionPart, a: AttentionAttrs, inputs: readonly number[]): number[] {
  const L = attentionLayout(part, a);
  return [L.bias, L.mask].filter((i): i is number => i !== undefined).map((i) => inputs[i]);
}

/** Emits the backward of a flash_attention node (used by its gradient rule). */
function attentionVjp(b: GraphBuilder, n: { id: number; inputs: number[]; attrs: AttentionAttrs }, g: number): (number | null)[] {
  const a = n.attrs;
  const L = attentionLayout('fwd', a);
  const [q, k, v] = [n.inputs[L.q], n.inputs[L.k], n.inputs[L.v!]];
  const ex = extras('fwd', a, n.inputs);
  const seed = L.seed !== undefined ? [n.inputs[L.seed]] : [];
  const stats = b.op('flash_attention_stats', [q, k, n.id, g, ...ex], { ...a });
  const args = [q, k, v, g, stats, ...ex, ...seed];
  const d = (wrt: 'q' | 'k' | 'v' | 'bias') => b.op('flash_attention_grad', args, { ...a, wrt });
  const cot: (number | null)[] = [d('q'), d('k'), d('v')];
  if (L.bias !== undefined) cot.push(b.unbroadcast(d('bias'), b.type(n.inputs[L.bias]).shape));
  if (L.mask !== undefined) cot.push(null);
  if (L.seed !== undefined) cot.push(null);
  return cot;
}

/**
 * The plain-op chain flash_attention stands for (what the library's `attention` composite lowers to): the
 * reference tests compare the fused op and its gradient with, and the fallback for a back end without the kernel.
 */
export function unfusedAttention(b: GraphBuilder, inputs: readonly number[], a: AttentionAttrs): number {
  const L = attentionLayout('fwd', a);
  const [q, k, v] = [inputs[L.q], inputs[L.k], inputs[L.v!]];
  const qt = b.type(q);
  const dt = qt.dtype;
  const T = qt.shape[qt.shape.length - 2];
  const S = b.type(k).shape[b.type(k).shape.length - 2];
  let s = b.mul(b.op('matmul', [q, k], { transA: false, transB: true }), b.scalar(a.scale, dt));
  if (L.bias !== undefined) s = b.add(s, inputs[L.bias]);
  if (a.mask !== 'none') {
    const qi = b.op('iota', [], { dtype: 'i32', shape: [T, S], axis: 0 });
    const kj = b.op('iota', [], { dtype: 'i32', shape: [T, S], axis: 1 });
    let vis = a.mask === 'bool' ? inputs[L.mask!] : b.op('ge', [qi, kj], {});
    if (a.mask === 'prefix') {
      const len = b.cast(inputs[L.mask!], 'i32');
      const lt = b.type(len).shape;
      const col = b.reshape(len, [...lt, 1, 1]);
      vis = b.op('or', [vis, b.op('lt', [kj, col], {})], {});
    }
    s = b.op('select', [vis, s, b.scalar(a.fill, dt)], {});
  }
  let p = b.op('softmax', [s], {});
  if (a.p > 0) p = b.op('dropout', [p, inputs[L.seed!]], { p: a.p, stream: a.stream });
  return b.op('matmul', [p, v], { transA: false, transB: false });
}

export const attentionOps: {
  flash_attention: OpRule<'flash_attention'>;
  flash_attention_stats: OpRule<'flash_attention_stats'>;
  flash_attention_grad: OpRule<'flash_attention_grad'>;
} = {
  flash_attention: {
    arity: 'variadic',
    infer: (inputs, a) => {
      const { batch, T, Dv } = attentionDims('flash_attention', 'fwd', inputs, a);
      return { dtype: inputs[0].dtype, shape: [...batch, T, Dv] };
    },
    evaluate: (inputs, a, out) => {
      const P = problem('fwd', inputs, a);
      const v = inputs[P.L.v!];
      const { B, T, S, Dv } = P;
      const data = allocData(out.dtype, B * T * Dv);
      const s = new Float64Array(S);
      const vis = new Uint8Array(S);
      const acc = new Float64Array(Dv);
      for (let b = 0; b < B; b++) {
        for (let i = 0; i < T; i++) {
          P.row(b, i, s, vis);
          const lse = logSumExp(s);
          acc.fill(0);
          for (let j = 0; j < S; j++) {
            const pj = Math.exp(s[j] - lse) * P.dropScale(b, i, j);
            if (pj === 0) continue;
            for (let d = 0; d < Dv; d++) acc[d] += pj * v.data[(b * S + j) * Dv + d];
          }
          for (let d = 0; d < Dv; d++) data[(b * T + i) * Dv + d] = acc[d];
        }
      }
      return finish(out, data);
    },
    grad: {
      // Every operand (q, k, v, and bias / mask / seed where present) and the output; see the file comment.
      saves: { inputs: [0, 1, 2, 3, 4, 5], output: true },
      vjp: (b, n, g) => attentionVjp(b, n, g),
    },
    lower: { kernel: 'attention' },
    decompose: (b, n) => unfusedAttention(b, n.inputs, n.attrs),
  },
  flash_attention_stats: {
    arity: 'variadic',
    infer: (inputs, a) => {
      const { batch, T } = attentionDims('flash_attention_stats', 'stats', inputs, a);
      return { dtype: inputs[0].dtype, shape: [...batch, T, 2] };
    },
    evaluate: (inputs, a, out) => {
      const P = problem('stats', inputs, a);
      const [o, dO] = [inputs[P.L.out!], inputs[P.L.dout!]];
      const data = allocData(out.dtype, P.B * P.T * 2);
      const s = new Float64Array(P.S);
      const vis = new Uint8Array(P.S);
      for (let b = 0; b < P.B; b++) {
        for (let i = 0; i < P.T; i++) {
          P.row(b, i, s, vis);
          let delta = 0;
          for (let d = 0; d < P.Dv; d++) delta += dO.data[(b * P.T + i) * P.Dv + d] * o.data[(b * P.T + i) * P.Dv + d];
          data[(b * P.T + i) * 2] = logSumExp(s);
          data[(b * P.T + i) * 2 + 1] = delta;
        }
      }
      return finish(out, data);
    },
    // Only the backward of flash_attention reads it; differentiating a joint graph twice is not supported here.
    grad: 'nondiff',
    lower: { kernel: 'attention' },
  },
  flash_attention_grad: {
    arity: 'variadic',
    infer: (inputs, a) => {
      const { L, batch, T, S } = attentionDims('flash_attention_grad', 'grad', inputs, a);
      if (!['q', 'k', 'v', 'bias'].includes(a.wrt)) fail('flash_attention_grad', inputs, `unknown wrt '${a.wrt}'`);
      if (a.wrt === 'bias') return { dtype: inputs[0].dtype, shape: [...batch, T, S] };
      return inputs[a.wrt === 'q' ? L.q : a.wrt === 'k' ? L.k : L.v!];
    },
    evaluate: (inputs, a, out) => {
      // dS_ij = P_ij (Z_ij dout_i·v_j − delta_i) on visible keys (0 on hidden ones: the where() passes no
      // gradient to them), Z the dropout multiplier, delta_i = dout_i · out_i.
      const P = problem('grad', inputs, a);
      const { L, B, T, S, D, Dv } = P;
      const [q, k, v, dO, st] = [L.q, L.k, L.v!, L.dout!, L.stats!].map((i) => inputs[i]);
      const data = allocData(out.dtype, numel(out.shape));
      const res = new Float64Array(numel(out.shape));
      const s = new Float64Array(S);
      const vis = new Uint8Array(S);
      for (let b = 0; b < B; b++) {
        for (let i = 0; i < T; i++) {
          P.row(b, i, s, vis);
          const l = st.data[(b * T + i) * 2];
          const delta = st.data[(b * T + i) * 2 + 1];
          for (let j = 0; j < S; j++) {
            const p = Math.exp(s[j] - l);
            const z = P.dropScale(b, i, j);
            if (a.wrt === 'v') {
              for (let d = 0; d < Dv; d++) res[(b * S + j) * Dv + d] += p * z * dO.data[(b * T + i) * Dv + d];
              continue;
            }
            if (!vis[j]) continue;
            let dp = 0;
            for (let d = 0; d < Dv; d++) dp += dO.data[(b * T + i) * Dv + d] * v.data[(b * S + j) * Dv + d];
            const ds = p * (z * dp - delta);
            if (a.wrt === 'bias') res[(b * T + i) * S + j] = ds;
            else if (a.wrt === 'q') for (let d = 0; d < D; d++) res[(b * T + i) * D + d] += a.scale * ds * k.data[(b * S + j) * D + d];
            else for (let d = 0; d < D; d++) res[(b * S + j) * D + d] += a.scale * ds * q.data[(b * T + i) * D + d];
          }
        }
      }
      for (let x = 0; x < res.length; x++) data[x] = res[x];
      return finish(out, data);
    },
    grad: 'nondiff',
    lower: { kernel: 'attention' },
  },
};
