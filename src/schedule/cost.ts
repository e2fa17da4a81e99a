/**
 * What a scheduled kernel costs, in the two units a roofline compares: floating-point operations and bytes moved.
 *
 * FLOPs: a matmul is 2·M·N·K per batch entry; every other op counts one operation per element it computes (layout
 * ops, gathers and leaves are index arithmetic and count nothing), except the anchors: a reduction does one
 * operation per input element, scatter-add one per update element, and a row-wise primitive a fixed number per
 * input element (ROWWISE_FLOPS: its passes over the row). Transcendentals count as one: the figure is the work the
 * kernel cannot avoid, not an instruction count.
 *
 * Bytes: every distinct buffer the kernel reads, once, plus the buffer it writes — the compulsory traffic. A
 * kernel that reads an operand twice (a matmul re-reading tiles) moves more; the roofline fraction shows how much
 * that costs.
 */
import { updatedParam, type Graph } from '../ir/graph.js';
import type { AttrsOf, OpKind } from '../ir/op.js';
import { numel } from '../ir/types.js';
import { isFree } from './classify.js';
import { deviceBytes } from './memory.js';
import type { Kernel, Schedule } from './schedule.js';

/** Operations per input element of each row-wise primitive (its passes over the row). */
export const ROWWISE_FLOPS: Partial<Record<OpKind, number>> = {
  softmax: 5, // max, subtract, exp, sum, divide
  log_softmax: 5, // max, subtract, exp, sum, subtract log
  layer_norm: 7, // sum, centre, square, sum, scale, gain, bias
  rms_norm: 4, // square, sum, scale, gain
  cross_entropy: 4, // max, subtract, exp, sum
};

/**
 * Kernel families for the step profile: matmuls by layout (NN is the forward's x·W; the backward adds NT for
 * dx = dy·Wᵀ and TN for dW = xᵀ·dy) and batched or not; the optimizer's parameter updates; then by kernel kind.
 */
export type KernelFamily = `matmul ${'NN' | 'NT' | 'TN' | 'TT'}${'' | ' batched'}` | 'optimizer update' | 'row-wise' | 'elementwise' | 'reduce' | 'scatter' | 'attention';

export interface KernelCost {
  kernel: number;
  family: KernelFamily;
  flops: number;
  /** Bytes read (each distinct input buffer once) + bytes written (the root). */
  bytes: number;
}

const LEAFISH = new Set<OpKind>(['input', 'param', 'constant', 'iota']);

function matmulFlops(g: Graph, id: number): { flops: number; layout: 'NN' | 'NT' | 'TN' | 'TT'; batch: number } {
  const n = g.nodes[id];
  const { transA, transB } = n.attrs as AttrsOf<'matmul'>;
  const out = n.type.shape;
  const a = g.nodes[n.inputs[0]].type.shape;
  const batch = numel(out.slice(0, -2));
  const K = transA ? a[a.length - 2] : a[a.length - 1];
  const layout = `${transA ? 'T' : 'N'}${transB ? 'T' : 'N'}` as const;
  return { flops: 2 * out[out.length - 2] * out[out.length - 1] * K * batch, layout, batch };
}

function anchorFlops(g: Graph, k: Kernel): number {
  const a = g.nodes[k.anchor];
  switch (k.kind) {
    case 'matmul':
      return matmulFlops(g, k.anchor).flops;
    case 'reduce':
      return numel(g.nodes[a.inputs[0]].type.shape);
    case 'scatter':
      return numel(g.nodes[a.inputs[1]].type.shape);
    case 'rowwise':
      return (ROWWISE_FLOPS[a.op] ?? 1) * numel(g.nodes[a.inputs[0]].type.shape);
    case 'elementwise':
      return 0;
    case 'attention': {
      // Q·Kᵀ and P·V (or their backward counterparts): 2 · 2·T·S·D per batch and head
      const q = g.nodes[a.inputs[0]].type.shape;
      const kv = g.nodes[a.inputs[1]].type.shape;
      return 4 * numel(q.slice(0, -2)) * q[q.length - 2] * kv[kv.length - 2] * q[q.length - 1];
    }
  }
}

export function kernelCost(s: Schedule, k: Kernel): KernelCost {
  const g = s.graph;
  let flops = anchorFlops(g, k);
  for (const id of k.nodes) {
    const n = g.nodes[id];
    if ((id === k.anchor && k.kind !== 'elementwise') || LEAFISH.has(n.op) || isFree(n.op) || n.op === 'gather' || n.op === 'one_hot') continue;
    flops += numel(n.type.shape);
  }
  const bytes = [...new Set(k.inputs)].reduce((t, id) => t + deviceBytes(g.nodes[id].type), 0) + deviceBytes(g.nodes[k.root].type);
  const isUpdate = k.inPlace !== undefined || g.outputs.some((o) => o.id === k.root && updatedParam(o) !== undefined);
  let family: KernelFamily;
  if (k.kind === 'matmul') {
    const { layout, batch } = matmulFlops(g, k.anchor);
    family = `matmul ${layout}${batch > 1 ? ' batched' : ''}`;
  } else if (isUpdate) family = 'optimizer update';
  else family = k.kind === 'rowwise' ? 'row-wise' : k.kind;
  return { kernel: k.id, family, flops, bytes };
}

export const scheduleCosts = (s: Schedule): KernelCost[] => s.kernels.map((k) => kernelCost(s, k));
