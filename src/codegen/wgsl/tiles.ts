/**
 * Matmul tile configurations: a heuristic per shape, overridable by a cache the autotuner fills by timing
 * candidates on the device (`autotuneMatmul` in src/runtime/autotune.ts). The cache is an in-memory map keyed
 * by device and shape; it serialises to JSON so a Node caller can keep it under .kiln/ (the browser can keep
 * it in localStorage) without this file touching any platform API.
 */
export interface TileConfig {
  /** Output tile per workgroup (rows x cols) and the K step staged through workgroup memory. */
  BM: number;
  BN: number;
  BK: number;
  /** Outputs per invocation (register blocking): each invocation computes TM x TN results. */
  TM: number;
  TN: number;
  /**
   * No workgroup-memory staging: each invocation reads its operands straight from memory (BK unused). Slower on
   * GPUs; on CPU-backed adapters (lavapipe) ~2.4x faster at 1024^3, since the CPU's caches do the tiling and there
   * are no barriers.
   */
  direct?: boolean;
}

export const TILE_CANDIDATES: TileConfig[] = [
  { BM: 16, BN: 16, BK: 16, TM: 2, TN: 2 },
  { BM: 32, BN: 32, BK: 16, TM: 4, TN: 4 },
  { BM: 64, BN: 64, BK: 16, TM: 4, TN: 4 },
  { BM: 32, BN: 64, BK: 16, TM: 4, TN: 4 },
  { BM: 64, BN: 32, BK: 16, TM: 4, TN: 4 },
  { BM: 64, BN: 64, BK: 8, TM: 8, TN: 4 },
];

/**
 * Candidates for CPU-backed adapters (see TileConfig.direct). On lavapipe every load from a storage buffer is a loop
 * over the SIMD lanes costing about ten FMAs, so the outputs per invocation set the speed: TM x TN outputs cost
 * TM + TN loads per k. 16x8 per invocation was 2-3x faster than 8x8 at 512^3 in every layout (NN, NT, TN); 16x16
 * spills (slower except for TN), 16x4 and 32x4 load too much of B.
 */
export const DIRECT_CANDIDATES: TileConfig[] = [
  { BM: 64, BN: 64, BK: 1, TM: 8, TN: 8, direct: true },
  { BM: 32, BN: 64, BK: 1, TM: 4, TN: 8, direct: true },
  { BM: 32, BN: 32, BK: 1, TM: 4, TN: 4, direct: true },
  { BM: 128, BN: 64, BK: 1, TM: 16, TN: 8, direct: true },
  { BM: 128, BN: 32, BK: 1, TM: 16, TN: 8, direct: true },
  { BM: 64, BN: 64, BK: 1, TM: 16, TN: 8, direct: true },
  { BM: 64, BN: 32, BK: 1, TM: 16, TN: 8, direct: true },
];

/** Which operands a matmul reads transposed: 'NN', 'TN' (A^T), 'NT' (B^T) or 'TT'. Kernels differ by layout. */
export type MatmulLayout = 'NN' | 'TN' | 'NT' | 'TT';
export const matmulLayout = (transA: boolean, transB: boolean): MatmulLayout => `${transA ? 'T' : 'N'}${transB ? 'T' : 'N'}` as MatmulLayout;

export const tileKey = (deviceKey: string, M: number, N: number, K: number, batch = 1, layout: MatmulLayout = 'NN'): string =>
  `${deviceKey}|${batch}x${M}x${N}x${K}|${layout}`;

const cache = new Map<string, TileConfig>();

export const tileCache = {
  get: (key: string): TileConfig | undefined => cache.get(key),
  set: (key: string, cfg: TileConfig): void => void cache.set(key, cfg),
  clear: (): void => cache.clear(),
  toJSON: (): string => JSON.stringify(Object.fromEntries(cache), null, 1),
  /** Adds the valid entries of a toJSON() document; returns how many it took. */
  load(json: string): number {
    let n = 0;
    for (const [k, v] of Object.entries(JSON.parse(json) as Record<string, TileConfig>)) if (validTile(v)) (cache.set(k, v), n++);
    return n;
  },
};

export function validTile(c: TileConfig): boolean {
  const threads = (c.BM / c.TM) * (c.BN / c.TN);
  return (c.direct === undefined || typeof c.direct === 'boolean') && [c.BM, c.BN, c.BK, c.TM, c.TN].every((v) => Number.isInteger(v) && v > 0) && c.BM % c.TM === 0 && c.BN % c.TN === 0 && threads <= 256 && threads >= 1;
}

/**
 * Heuristic: small problems get small tiles so that enough workgroups exist; big ones get 64x64 tiles. On a CPU
 * adapter: direct kernels, 16x8 per invocation once there is enough work for it.
 */
export function heuristicTiles(M: number, N: number, _K: number, batch = 1, cpu = false, layout: MatmulLayout = 'NN'): TileConfig {
  const work = M * N * batch;
  if (cpu) {
    if (M <= 8) {
      // Matrix-vector shapes (one token's decode step: M = 1): every row in one invocation's registers, columns
      // across the lanes; a 4- or 8-row tile would spend most of its loads and FMAs past the matrix.
      const TN = N % 4 === 0 && N >= 64 ? 4 : 1;
      return { BM: M, BN: Math.min(64, Math.ceil(N / TN)) * TN, BK: 1, TM: M, TN, direct: true };
    }
    if (work < 64 * 64 || M < 16 || N < 16) return DIRECT_CANDIDATES[2];
    // 16x8 per invocation; workgroups no taller or wider than the matrix needs. With B transposed each column is a
    // row of B: 4 invocations across (32 columns) stream fewer rows at once (NT 1024^3: 1.4x faster than 8 across).
    return { BM: M >= 128 ? 128 : 64, BN: N >= 64 && layout[1] === 'N' ? 64 : 32, BK: 1, TM: 16, TN: 8, direct: true };
  }
  if (M <= 16 || N <= 16 || work <= 32 * 32) return TILE_CANDIDATES[0];
  if (work <= 256 * 256) return TILE_CANDIDATES[1];
  return TILE_CANDIDATES[2];
}

/** The tile config for a matmul shape on a device: the autotuner's choice if cached, else the heuristic. */
export function chooseMatmulTiles(M: number, N: number, K: number, device: { key: string } | string, batch = 1, cpu = false, layout: MatmulLayout = 'NN'): TileConfig {
  const key = typeof device === 'string' ? device : device.key;
  return cache.get(tileKey(key, M, N, K, batch, layout)) ?? heuristicTiles(M, N, K, batch, cpu, layout);
}
