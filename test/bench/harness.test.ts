import { describe, expect, it } from 'vitest';
import { formatMarkdown, formatTable, ratioChartSvg } from '../../bench/report.js';
import { runBench } from '../../bench/suite.js';

describe('benchmark harness (tiny sizes; no timing assertions)', () => {
  it('produces well-formed, checked figures for Kiln and both TF.js backends', async () => {
    const rep = await runBench({ quick: true, repeats: 2, cpu: true });
    const timed = rep.rows.filter((r) => r.group !== 'compile');
    expect(timed.length).toBeGreaterThanOrEqual(9);
    for (const r of timed) {
      for (const side of [r.kiln, r.tfWebgpu, r.tfCpu]) {
        expect(side, r.name).not.toBeNull();
        expect(Number.isFinite(side!.stats.median) && side!.stats.median > 0, r.name).toBe(true);
        expect(side!.stats.min).toBeLessThanOrEqual(side!.stats.max);
      }
      expect(r.check?.ok, `${r.name}: Kiln and TF.js disagree (${r.check?.relErr})`).toBe(true);
      // jax-js, when it initialised here: every figure it gave agrees with Kiln's result
      for (const [d, c] of Object.entries(r.jaxCheck ?? {})) expect(c.ok, `${r.name}: Kiln and jax-js ${d} disagree (${c.relErr})`).toBe(true);
    }
    if (!rep.jaxSkipped) expect(rep.rows.some((r) => r.jaxWebgpu || r.jaxWasm)).toBe(true);
    expect(rep.rows.some((r) => r.group === 'compile' && r.kiln!.stats.median > 0)).toBe(true);
    expect(JSON.parse(JSON.stringify(rep)).rows.length).toBe(rep.rows.length);
    expect(formatTable(rep)).toContain('vs WebGPU');
    expect(formatMarkdown(rep).split('\n')[0]).toMatch(/^\| benchmark \|/);
    expect(ratioChartSvg(rep)).toMatch(/^<svg[\s\S]*<\/svg>$/);
    expect(rep.targets.length).toBeGreaterThan(0);
  });
});
