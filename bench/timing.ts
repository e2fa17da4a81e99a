/**
 * Timing for asynchronous GPU work. The `benchmark` package times synchronous functions (its async "deferred" mode
 * adds its own scheduling overhead per sample), so GPU figures use this small loop instead: warm-up runs, then N
 * timed runs, each ending only when the device has finished and the result is back on the host.
 */
export interface Stats {
  median: number;
  min: number;
  max: number;
  p25: number;
  p75: number;
  n: number;
}

export function stats(samples: number[]): Stats {
  const s = [...samples].sort((a, b) => a - b);
  const q = (p: number) => s[Math.min(s.length - 1, Math.max(0, Math.round(p * (s.length - 1))))];
  return { median: q(0.5), min: s[0], max: s[s.length - 1], p25: q(0.25), p75: q(0.75), n: s.length };
}

export async function measure(fn: () => Promise<unknown>, o: { warmup: number; repeats: number; maxMs?: number }): Promise<Stats> {
  for (let i = 0; i < o.warmup; i++) await fn();
  const samples: number[] = [];
  const start = performance.now();
  for (let i = 0; i < o.repeats; i++) {
    const t0 = performance.now();
    await fn();
    samples.push(performance.now() - t0);
    if (o.maxMs && performance.now() - start > o.maxMs && samples.length >= 3) break;
  }
  return stats(samples);
}
