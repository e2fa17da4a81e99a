/**
 * Matmul autotuner: times each tile candidate on the device for one shape and layout (which operands are
 * transposed: the kernels read memory differently) and records the fastest in the tile
 * cache, which `chooseMatmulTiles` consults on later compiles (persist it with tileCache.toJSON()/load()).
 */
import { GraphBuilder } from '../ir/builder.js';
import { allocData } from '../ir/tensor.js';
import type { MatmulLayout, TileConfig } from '../codegen/wgsl/tiles.js';
import { DIRECT_CANDIDATES, TILE_CANDIDATES, tileCache, tileKey, validTile } from '../codegen/wgsl/tiles.js';
import type { KilnDevice } from './device.js';
import { compileGraph, deviceKey } from './executable.js';

export interface AutotuneResult {
  best: TileConfig;
  timings: { tiles: TileConfig; ms: number }[];
}

export async function autotuneMatmul(
  dev: KilnDevice,
  M: number,
  N: number,
  K: number,
  opts: { batch?: number; layout?: MatmulLayout; candidates?: TileConfig[]; reps?: number } = {},
): Promise<AutotuneResult> {
  const batch = opts.batch ?? 1;
  const reps = opts.reps ?? 3;
  const layout = opts.layout ?? 'NN';
  const [transA, transB] = [layout[0] === 'T', layout[1] === 'T'];
  const aShape = [batch, ...(transA ? [K, M] : [M, K])];
  const bShape = [batch, ...(transB ? [N, K] : [K, N])];
  const b = new GraphBuilder();
  const a = b.op('input', [], { name: 'a', dtype: 'f32', shape: aShape });
  const w = b.op('input', [], { name: 'b', dtype: 'f32', shape: bShape });
  const g = b.build('autotune', [{ name: 'c', id: b.op('matmul', [a, w], { transA, transB }) }]);
  const inputs = {
    a: { dtype: 'f32' as const, shape: aShape, data: allocData('f32', batch * M * K).fill(0.5) },
    b: { dtype: 'f32' as const, shape: bShape, data: allocData('f32', batch * K * N).fill(0.25) },
  };
  const timings: { tiles: TileConfig; ms: number }[] = [];
  for (const tiles of (opts.candidates ?? [...TILE_CANDIDATES, ...DIRECT_CANDIDATES]).filter(validTile)) {
    const exe = await compileGraph(g, dev, { matmulTiles: tiles, seed: null });
    try {
      await exe.run(inputs, { download: [] });
      const ms: number[] = [];
      for (let r = 0; r < reps; r++) {
        const { profile } = await exe.run(inputs, { download: [], profile: true });
        ms.push(profile!.reduce((s, t) => s + t.ms, 0));
      }
      ms.sort((x, y) => x - y);
      timings.push({ tiles, ms: ms[Math.floor(ms.length / 2)] });
    } finally {
      exe.destroy();
    }
  }
  const best = timings.reduce((p, c) => (c.ms < p.ms ? c : p)).tiles;
  tileCache.set(tileKey(deviceKey(dev), M, N, K, batch, layout), best);
  return { best, timings };
}
