/**
 * The precision group: the bench GPTs' AdamW training step compiled in f32, f16 (loss-scaled) and bf16 (the
 * precision pass), on this device, timed in turns (one run of each per round, so load from elsewhere falls on all
 * three alike). Memory is every byte the executable allocated: parameters and AdamW moments stay f32 in all three.
 */
import { compileModel } from '../src/frontend/index.js';
import type { HostTensor } from '../src/ir/tensor.js';
import { compileIR } from '../src/passes/pipeline.js';
import type { Precision } from '../src/passes/precision.js';
import type { KilnDevice } from '../src/runtime/device.js';
import { compileGraph, type Executable } from '../src/runtime/index.js';
import type { BenchOptions, Row, Target } from './suite.js';
import { stats } from './timing.js';

const PRECISIONS: Precision[] = ['f32', 'f16', 'bf16'];

interface GptSize {
  vocab: number;
  d: number;
  heads: number;
  layers: number;
  ctx: number;
  B: number;
  T: number;
}

/** The training step of the library GPT in one precision (f32 runs no precision pass). */
export function precisionStep(c: GptSize, p: Precision) {
  const { graph } = compileModel('src/models/gpt.kiln', { entry: 'loss', set: { vocab: c.vocab, d: c.d, heads: c.heads, layers: c.layers, ctx: c.ctx, dropout: 0 }, dims: { B: c.B, T: c.T } });
  return compileIR(graph, { train: { optimizer: { kind: 'adamw' } }, precision: p === 'f32' ? undefined : { dtype: p } });
}

export async function precisionRows(dev: KilnDevice, o: BenchOptions): Promise<Row[]> {
  const configs: [string, GptSize][] = o.quick
    ? [['GPT tiny', { vocab: 64, d: 16, heads: 2, layers: 1, ctx: 8, B: 2, T: 8 }]]
    : [
        ['GPT small (V256 d128 h4 L2 T64 B8)', { vocab: 256, d: 128, heads: 4, layers: 2, ctx: 64, B: 8, T: 64 }],
        ['GPT larger (V256 d256 h8 L4 T128 B8)', { vocab: 256, d: 256, heads: 8, layers: 4, ctx: 128, B: 8, T: 128 }],
      ];
  const rows: Row[] = [];
  for (const [label, c] of configs) {
    const feeds: Record<string, HostTensor> = {
      tokens: { dtype: 'i32', shape: [c.B, c.T], data: Int32Array.from({ length: c.B * c.T }, (_, i) => (i * 31 + 7) % c.vocab) },
      targets: { dtype: 'i32', shape: [c.B, c.T], data: Int32Array.from({ length: c.B * c.T }, (_, i) => (i * 17 + 3) % c.vocab) },
      lr: { dtype: 'f32', shape: [], data: Float32Array.of(1e-3) },
      step: { dtype: 'f32', shape: [], data: Float32Array.of(1) },
    };
    const exes = new Map<Precision, { exe: Executable; firstMs: number; loss: number }>();
    for (const p of PRECISIONS) {
      o.log?.(`precision: ${label} ${p} (compile and first run)`);
      const t0 = performance.now();
      const exe = await compileGraph(precisionStep(c, p), dev, { seed: 0 });
      const loss = (await exe.run(feeds, { download: ['loss'] })).outputs.loss.data[0];
      exes.set(p, { exe, firstMs: performance.now() - t0, loss });
    }
    o.log?.(`precision: ${label}, timed in turns`);
    const samples = new Map<Precision, number[]>(PRECISIONS.map((p) => [p, []]));
    const start = performance.now();
    for (let r = 0; r < o.repeats + 1; r++) {
      for (const p of PRECISIONS) {
        const t0 = performance.now();
        await exes.get(p)!.exe.run(feeds, { download: ['loss'] });
        if (r > 0) samples.get(p)!.push(performance.now() - t0); // round 0 warms up
      }
      if (r >= 3 && performance.now() - start > 120_000) break;
    }
    const f32 = exes.get('f32')!;
    for (const p of PRECISIONS) {
      const e = exes.get(p)!;
      const relErr = Math.abs(e.loss - f32.loss) / Math.abs(f32.loss);
      rows.push({
        group: 'precision',
        name: `${label}: training step ${p}`,
        tokens: c.B * c.T,
        kiln: { stats: stats(samples.get(p)!), firstMs: e.firstMs, kernels: e.exe.stats.dispatchesPerRun, deviceBytes: e.exe.stats.deviceBytes },
        tfWebgpu: null,
        tfCpu: null,
        // the first step's loss against the f32 step's (same weights and batch)
        check: { ok: relErr < (p === 'f32' ? 1e-9 : 2e-2), relErr },
        note: `loss ${e.loss.toFixed(4)}; MiB: every buffer the step allocated (f32 master weights and AdamW moments in all three)`,
      });
      e.exe.destroy();
    }
  }
  return rows;
}

/** Memory ≤ 0.6× and step time ≤ 1× of the f32 step, per half precision and bench GPT. */
export function precisionTargets(rows: Row[]): Target[] {
  const out: Target[] = [];
  for (const f of rows.filter((r) => r.group === 'precision' && r.name.endsWith(' f32'))) {
    const base = f.name.slice(0, -' f32'.length);
    for (const p of ['f16', 'bf16']) {
      const h = rows.find((r) => r.name === `${base} ${p}`);
      if (!h?.kiln || !f.kiln) continue;
      const mem = h.kiln.deviceBytes! / f.kiln.deviceBytes!;
      const time = h.kiln.stats.median / f.kiln.stats.median;
      const who = base.replace(/: training step$/, '');
      out.push({ what: `${who}: ${p} step memory / f32's`, want: '≤ 0.6×', got: `${mem.toFixed(3)}×`, met: mem <= 0.6 });
      out.push({ what: `${who}: ${p} step time / f32's`, want: '≤ 1×', got: `${time.toFixed(2)}×`, met: time <= 1 });
    }
  }
  return out;
}
