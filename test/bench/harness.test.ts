import { describe, expect, it } from 'vitest';
import { formatMarkdown, formatTable, ratioChartSvg } from '../../bench/report.js';
import { formatRecompute } from '../../bench/recompute.js';
import { runBench } from '../../bench/suite.js';

describe('benchmark harness (tiny sizes; no timing assertions)', () => {
  it('produces well-formed, checked figures for Kiln and both TF.js backends', async () => {
    const rep = await runBench({ quick: true, repeats: 2, cpu: true });
    // the precision group compares Kiln's own steps (f32, f16, bf16): no peers
    // the long-context training step rows of the attention group compare fused with unfused Kiln: no peers either
    const timed = rep.rows.filter((r) => r.group !== 'compile' && r.group !== 'precision' && !/^GPT train step/.test(r.name));
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
    const prec = rep.rows.filter((r) => r.group === 'precision');
    expect(prec.map((r) => r.name.split(' ').at(-1))).toEqual(['f32', 'f16', 'bf16']);
    for (const r of prec) expect(r.check?.ok && r.kiln!.stats.median > 0, `${r.name} (${r.check?.relErr})`).toBe(true);
    expect(prec[1].kiln!.deviceBytes!).toBeLessThan(prec[0].kiln!.deviceBytes!); // half activations
    expect(rep.rows.some((r) => r.group === 'compile' && r.kiln!.stats.median > 0)).toBe(true);
    expect(JSON.parse(JSON.stringify(rep)).rows.length).toBe(rep.rows.length);
    expect(formatTable(rep)).toContain('vs WebGPU');
    expect(formatMarkdown(rep).split('\n')[0]).toMatch(/^\| benchmark \|/);
    expect(ratioChartSvg(rep)).toMatch(/^<svg[\s\S]*<\/svg>$/);
    expect(rep.targets.length).toBeGreaterThan(0);
  });

  it('recompute group: planned peaks allocated on the device, one loss for every policy, refusals named', async () => {
    const rep = await runBench({ quick: true, only: 'recompute', repeats: 2, cpu: false });
    expect(rep.rows).toEqual([]);
    const rows = rep.recompute!.rows;
    const by = (name: string) => rows.find((r) => r.name === name)!;
    const none = by('none');
    for (const name of ['none', 'blocks', 'sqrt', 'selective']) {
      const r = by(name);
      expect(r.split, name).not.toBeNull();
      expect(r.split!.fixedBytes + r.split!.activationBytes).toBe(r.split!.peakBytes);
      expect(r.split!.fixedBytes, name).toBe(none.split!.fixedBytes); // recomputation cannot touch the fixed part
      // the executable allocates the memory plan's buffers (plus a few bytes of kernel scratch)
      expect(r.deviceBytes! - r.split!.peakBytes, name).toBeGreaterThanOrEqual(0);
      expect(r.deviceBytes! - r.split!.peakBytes, name).toBeLessThan(16 * 1024);
      expect(r.step!.median, name).toBeGreaterThan(0);
      expect(Object.is(r.loss, none.loss), `${name}: loss after one update ${r.loss} vs ${none.loss}`).toBe(true);
      if (name !== 'none') {
        expect(r.split!.peakBytes, name).toBeLessThan(none.split!.peakBytes);
        expect(r.recomputedFlops!, name).toBeGreaterThan(0);
      }
    }
    expect(none.recomputedFlops).toBe(0);
    // a third of the whole peak is under the fixed part at this size: refused, naming the smallest reachable peak
    expect(by('budget ⅓ of the peak').note).toMatch(/smallest peak reachable is/);
    expect(formatRecompute(rep.recompute!)).toContain('| policy | peak MiB |');
    expect(rep.targets.some((t) => t.what.startsWith('recompute:'))).toBe(true);
  });
});
