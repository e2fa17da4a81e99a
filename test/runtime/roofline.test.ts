/** The roofline micro-kernels run on the device and give finite, positive, consistent figures (no timing thresholds). */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { boundMs, cachedRoofline, deviceRoofline, fmaFlops, measureRoofline } from '../../src/runtime/roofline.js';
import { sharedDevice } from './helpers.js';

const tiny = { fmaWorkgroups: 2, copyBytes: 1 << 16, reps: 3, launches: 20, trials: 3 };

describe('roofline', () => {
  it('measures FMA throughput, bandwidth and launch cost: finite, positive, and consistent with the work counted', async () => {
    const dev = await sharedDevice();
    const small = await measureRoofline(dev, { ...tiny, fmaIters: 64 });
    const big = await measureRoofline(dev, { ...tiny, fmaIters: 64 * 32 });
    for (const r of [small, big]) {
      for (const v of [r.gflops, r.gbps, r.launchUs, r.ms!.fma, r.ms!.copy, r.ms!.empty]) {
        expect(Number.isFinite(v)).toBe(true);
        expect(v).toBeGreaterThan(0);
      }
    }
    // (no comparison of the two times: on a loaded machine a differential timing can come out at its floor)
    expect(fmaFlops(2, 64 * 32)).toBe(32 * fmaFlops(2, 64));
    expect(big.gflops).toBeCloseTo(fmaFlops(2, 64 * 32) / (big.ms!.fma / 1000) / 1e9, 6);
  }, 120_000);

  it('caches per device and bounds a kernel by the slower of compute and memory', async () => {
    const dev = await sharedDevice();
    const dir = mkdtempSync(join(tmpdir(), 'kiln-roof-'));
    try {
      const path = join(dir, 'roofline.json');
      expect(await cachedRoofline(dev, path)).toBeUndefined();
      const r = await deviceRoofline(dev, { ...tiny, fmaIters: 64, path });
      expect(await cachedRoofline(dev, path)).toEqual(r);
      expect(await deviceRoofline(dev, { path })).toEqual(r); // from the cache, not measured again
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const roof = { gflops: 10, gbps: 2, launchUs: 0 };
    expect(boundMs(roof, 1e9, 1e6)).toBeCloseTo(100, 9); // compute-bound: 1 GFLOP at 10 GFLOP/s
    expect(boundMs(roof, 1e6, 1e9)).toBeCloseTo(500, 9); // memory-bound: 1 GB at 2 GB/s
  });
});
