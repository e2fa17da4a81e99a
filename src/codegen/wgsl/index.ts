/**
 * WGSL code generation: one generator per kernel kind. Input is a Schedule (what is fused is already decided);
 * output is, per kernel, one or more passes (WGSL source + buffer bindings + dispatch size).
 */
import type { Graph } from '../../ir/graph.js';
import type { AttrsOf } from '../../ir/op.js';
import type { Kernel, Schedule } from '../../schedule/schedule.js';
import { genAttention } from './attention.js';
import { genElementwise } from './elementwise.js';
import { genMatmul } from './matmul.js';
import { genReduce } from './reduce.js';
import { genRowwise } from './rowwise.js';
import type { HalfStorage, KernelStrategy } from './types.js';
import { genScatter } from './scatter.js';
import type { MatmulLayout, TileConfig } from './tiles.js';
import { chooseMatmulTiles, matmulLayout } from './tiles.js';
import type { KernelCode } from './writer.js';
import { KernelWriter } from './writer.js';

export interface CodegenOptions {
  /** Use subgroupAdd/subgroupMax in reductions (the device must have the `subgroups` feature). */
  subgroups?: boolean;
  /** Key of the device for the matmul tile cache. */
  deviceKey?: string;
  /** Forces one tile config for every matmul (the autotuner uses it). */
  matmulTiles?: TileConfig;
  /**
   * `workgroup` (default, GPUs): matmul tiles in workgroup memory, a workgroup per row/output with tree (or
   * subgroup) reductions. `thread`: direct matmul, one invocation per row/output with plain loops and no barriers —
   * 2-13x faster on CPU-backed adapters (lavapipe). Affects the matmul tile heuristic, not cached/forced tiles.
   */
  strategy?: KernelStrategy;
  /** How f16 tensors sit in buffers (bf16 is always packed). */
  f16?: HalfStorage;
  /** The device's subgroup size when it is fixed (lavapipe: the SIMD width); lets `thread` kernels share loads. */
  subgroupSize?: number;
}

/** The problem size of matmul node `id`: output rows M, columns N, contraction K, and the batch count. */
export function matmulDims(g: Graph, id: number): { M: number; N: number; K: number; batch: number; layout: MatmulLayout } {
  const n = g.nodes[id];
  const t = n.type.shape;
  const a = g.nodes[n.inputs[0]].type.shape;
  const { transA, transB } = n.attrs as AttrsOf<'matmul'>;
  const batch = t.slice(0, -2).reduce((x, y) => x * y, 1);
  return { M: t[t.length - 2], N: t[t.length - 1], K: transA ? a[a.length - 2] : a[a.length - 1], batch, layout: matmulLayout(transA, transB) };
}

export function generateKernel(s: Schedule, k: Kernel, opts: CodegenOptions = {}): KernelCode {
  const code = generate(s, k, opts);
  // WGSL wants the f16 extension enabled before any declaration that names the type
  for (const p of code.passes) if (/\bf16>/.test(p.wgsl)) p.wgsl = `enable f16;\n${p.wgsl}`;
  return code;
}

function generate(s: Schedule, k: Kernel, opts: CodegenOptions): KernelCode {
  const w = new KernelWriter(s.graph, k, s.storage, opts.f16 ?? 'native');
  switch (k.kind) {
    case 'elementwise':
      return { kernel: k, passes: genElementwise(w) };
    case 'reduce':
      return { kernel: k, passes: genReduce(w, { subgroups: !!opts.subgroups, perThread: opts.strategy === 'thread' }) };
    case 'rowwise':
      return { kernel: k, passes: genRowwise(w, opts.strategy) };
    case 'scatter':
      return { kernel: k, passes: genScatter(w) };
    case 'attention':
      return { kernel: k, passes: genAttention(w, opts.strategy, opts.subgroups ? opts.subgroupSize : undefined) };
    case 'matmul': {
      const { M, N, K, batch, layout } = matmulDims(s.graph, k.anchor);
      const tiles = opts.matmulTiles ?? chooseMatmulTiles(M, N, K, opts.deviceKey ?? 'default', batch, opts.strategy === 'thread', layout);
      return { kernel: k, passes: genMatmul(w, tiles) };
    }
  }
}

export function generateKernels(s: Schedule, opts: CodegenOptions = {}): KernelCode[] {
  return s.kernels.map((k) => generateKernel(s, k, opts));
}

export { KernelWriter, broadcastIndex } from './writer.js';
export type { KernelCode, KernelPass, BufferBinding } from './writer.js';
export { chooseMatmulTiles, heuristicTiles, matmulLayout, tileCache, tileKey, validTile, TILE_CANDIDATES, DIRECT_CANDIDATES } from './tiles.js';
export type { MatmulLayout, TileConfig } from './tiles.js';
export type { KernelStrategy } from './types.js';
