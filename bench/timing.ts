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

/**
 * Times several sides in turns: each round runs every side once (after `warmup` rounds), until `repeats` rounds or
 * until a side has used `maxMs` (it then drops out with at least 3 samples). Absent sides are skipped.
 */
export async function measureInTurns<K extends string>(sides: Record<K, (() => Promise<unknown>) | undefined>, o: { warmup: number; repeats: number; maxMs: number }): Promise<Record<K, Stats>> {
  const names = (Object.keys(sides) as K[]).filter((k) => sides[k]);
  const samples = Object.fromEntries(names.map((k) => [k, [] as number[]])) as Record<K, number[]>;
  const spent = Object.fromEntries(names.map((k) => [k, 0])) as Record<K, number>;
  for (let r = 0; r < o.warmup + o.repeats; r++) {
    for (const k of names) {
      if (spent[k] > o.maxMs && samples[k].length >= 3) continue;
      const t0 = performance.now();
      await sides[k]!();
      const dt = performance.now() - t0;
      if (r >= o.warmup) (samples[k].push(dt), (spent[k] += dt));
    }
  }
  return Object.fromEntries(names.map((k) => [k, stats(samples[k])])) as Record<K, Stats>;
}
