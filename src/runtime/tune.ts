/**
 * Tuning a whole graph: autotunes every distinct matmul shape in it (src/runtime/autotune.ts) and keeps the
 * winners in a JSON file, so later compiles on the same device use them. Node only (reads and writes a file); the
 * browser can keep `tileCache.toJSON()` wherever it likes.
 */
import type { Graph } from '../ir/graph.js';
import { KilnError } from '../errors.js';
import { matmulDims, tileCache, tileKey, type MatmulLayout, type TileConfig } from '../codegen/wgsl/index.js';
import { autotuneMatmul } from './autotune.js';
import type { KilnDevice } from './device.js';
import { deviceKey } from './executable.js';

/** Where the tile cache lives: $KILN_TILE_CACHE, else .kiln/tiles.json in the Kiln checkout. */
export async function tileCachePath(): Promise<string> {
  if (process.env.KILN_TILE_CACHE) return process.env.KILN_TILE_CACHE;
  const { fileURLToPath } = await import('node:url');
  return fileURLToPath(new URL('../../.kiln/tiles.json', import.meta.url));
}

/** Loads the tile cache file into the in-memory cache, if there is one; returns how many valid entries it held. */
export async function loadTileCacheFile(path?: string): Promise<number> {
  const fs = await import('node:fs');
  const file = path ?? (await tileCachePath());
  if (!fs.existsSync(file)) return 0;
  try {
    return tileCache.load(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new KilnError(`the matmul tile cache ${file} is not valid JSON (${(e as Error).message}); delete it or run kiln tune again`);
  }
}

/** Writes the in-memory cache (merged with what the file already holds) atomically. */
export async function saveTileCacheFile(path?: string): Promise<string> {
  const fs = await import('node:fs');
  const { dirname } = await import('node:path');
  const file = path ?? (await tileCachePath());
  if (fs.existsSync(file)) {
    const kept = tileCache.toJSON();
    await loadTileCacheFile(file);
    tileCache.load(kept); // this run's winners override the file's
  }
  fs.mkdirSync(dirname(file), { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, tileCache.toJSON() + '\n');
  fs.renameSync(tmp, file);
  return file;
}

export interface TunedShape {
  M: number;
  N: number;
  K: number;
  batch: number;
  layout: MatmulLayout;
  best: TileConfig;
  timings: { tiles: TileConfig; ms: number }[];
  /** Already in the cache: not timed again. */
  cached: boolean;
}

/** Autotunes each distinct matmul shape of `g` that the cache does not know yet (all of them with `force`). */
export async function tuneGraph(
  g: Graph,
  dev: KilnDevice,
  opts: { reps?: number; force?: boolean; candidates?: TileConfig[]; log?: (s: string) => void } = {},
): Promise<TunedShape[]> {
  const seen = new Set<string>();
  const out: TunedShape[] = [];
  const key = deviceKey(dev);
  for (const n of g.nodes) {
    if (n.op !== 'matmul') continue;
    const { M, N, K, batch, layout } = matmulDims(g, n.id);
    const k = tileKey(key, M, N, K, batch, layout);
    if (seen.has(k)) continue;
    seen.add(k);
    const known = tileCache.get(k);
    if (known && !opts.force) {
      out.push({ M, N, K, batch, layout, best: known, timings: [], cached: true });
      continue;
    }
    opts.log?.(`matmul ${batch > 1 ? `${batch}x` : ''}${M}x${N}x${K} ${layout}`);
    const r = await autotuneMatmul(dev, M, N, K, { batch, layout, reps: opts.reps, candidates: opts.candidates });
    out.push({ M, N, K, batch, layout, best: r.best, timings: r.timings, cached: false });
  }
  return out;
}
