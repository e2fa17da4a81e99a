/**
 * The recompute group (`kiln bench --only recompute`): a GPT training step (AdamW, no clipping) under each
 * recomputation policy and two budgets, one row each: the planned peak (the memory plan of the step that runs, split
 * into the fixed part — parameters, AdamW state, gradients, inputs/outputs — and activations), the bytes the
 * executable allocates, the recomputed FLOPs, and the step time on the device. The executables are built first and
 * then timed in turns (one step of each per round), so load from elsewhere falls on every policy alike. Each
 * policy's loss after one update (so it depends on the gradients) must equal the no-recompute one bit for bit.
 */
import { KilnError } from '../src/errors.js';
import { compileModel } from '../src/frontend/index.js';
import type { HostTensor } from '../src/ir/tensor.js';
import { compileIR } from '../src/passes/index.js';
import { estimate, splitPeak, type PeakSplit, type RecomputeRequest } from '../src/passes/recompute.js';
import type { KilnDevice } from '../src/runtime/device.js';
import { compileGraph, type Executable } from '../src/runtime/index.js';
import type { BenchOptions, Target } from './suite.js';
import { stats, type Stats } from './timing.js';

export interface RecomputeConfig {
  vocab: number;
  d: number;
  heads: number;
  layers: number;
  T: number;
  B: number;
}

/** The issue's configuration (GPT 8 layers, d 256, T 256) and a tiny one for --quick. */
export const RECOMPUTE_FULL: RecomputeConfig = { vocab: 256, d: 256, heads: 4, layers: 8, T: 256, B: 4 };
export const RECOMPUTE_QUICK: RecomputeConfig = { vocab: 64, d: 32, heads: 2, layers: 4, T: 32, B: 2 };

export interface RecomputeRow {
  name: string;
  request: RecomputeRequest | null;
  /** The memory plan's peak of the compiled step and its split; null when the plan was refused. */
  split: PeakSplit | null;
  recomputedFlops: number | null;
  /** Nodes of the final step graph that are recomputation clones. */
  recomputedNodes: number | null;
  /** Compile (autodiff, optimizer, recompute planning, graph passes) of the step graph. */
  compileMs: number;
  /** Bytes the executable allocated on the device. */
  deviceBytes: number | null;
  step: Stats | null;
  /** Loss of the second step (after one update): bit-identical across policies. */
  loss: number | null;
  note?: string;
}

export interface RecomputeReport {
  config: RecomputeConfig;
  rows: RecomputeRow[];
}

const scalar = (v: number): HostTensor => ({ dtype: 'f32', shape: [], data: Float32Array.of(v) });

export async function recomputeRows(dev: KilnDevice, o: BenchOptions): Promise<RecomputeReport> {
  const c = o.quick ? RECOMPUTE_QUICK : RECOMPUTE_FULL;
  const { graph } = compileModel('src/models/gpt.kiln', { entry: 'loss', set: { vocab: c.vocab, d: c.d, heads: c.heads, layers: c.layers, ctx: c.T, dropout: 0 }, dims: { B: c.B, T: c.T } });
  const train = { optimizer: { kind: 'adamw' as const, clip: 0 } };
  const feeds: Record<string, HostTensor> = {
    tokens: { dtype: 'i32', shape: [c.B, c.T], data: Int32Array.from({ length: c.B * c.T }, (_, i) => (i * 31 + 7) % c.vocab) },
    targets: { dtype: 'i32', shape: [c.B, c.T], data: Int32Array.from({ length: c.B * c.T }, (_, i) => (i * 17 + 3) % c.vocab) },
    lr: scalar(1e-3),
    step: scalar(1),
  };
  const rows: RecomputeRow[] = [];
  const exes = new Map<string, Executable>();
  const build = async (name: string, request: RecomputeRequest | null) => {
    o.log?.(`recompute: ${name}: compile`);
    const t0 = performance.now();
    let g;
    try {
      g = compileIR(graph, { grad: { loss: 'loss' }, train, recompute: request ?? undefined });
    } catch (e) {
      if (!(e instanceof KilnError)) throw e;
      rows.push({ name, request, split: null, recomputedFlops: null, recomputedNodes: null, compileMs: performance.now() - t0, deviceBytes: null, step: null, loss: null, note: e.message });
      return null;
    }
    const compileMs = performance.now() - t0;
    const e = estimate(g);
    const row: RecomputeRow = { name, request, split: splitPeak(e.graph, e.plan), recomputedFlops: e.recomputedFlops, recomputedNodes: e.graph.nodes.filter((n) => n.recompute).length, compileMs, deviceBytes: null, step: null, loss: null };
    rows.push(row);
    const exe = await compileGraph(g, dev, { seed: 0 });
    await exe.run(feeds);
    row.loss = (await exe.run(feeds, { download: ['loss'] })).outputs.loss.data[0];
    row.deviceBytes = exe.stats.deviceBytes;
    exes.set(name, exe);
    return row;
  };
  const none = (await build('none', null))!;
  for (const policy of ['blocks', 'sqrt', 'selective'] as const) await build(policy, { policy });
  // The issue's target (a third of the whole peak), and a third of the activations on top of the fixed part.
  const s = none.split!;
  await build('budget ⅓ of the peak', { budgetBytes: Math.floor(s.peakBytes / 3) });
  await build('budget fixed + ⅓ activations', { budgetBytes: Math.floor(s.fixedBytes + s.activationBytes / 3) });

  o.log?.(`recompute: timing ${exes.size} steps in turns`);
  const samples = new Map([...exes.keys()].map((k) => [k, [] as number[]]));
  for (let r = 0; r < 1 + o.repeats; r++) {
    for (const [name, exe] of exes) {
      const t0 = performance.now();
      await exe.run(feeds, { download: ['loss'] });
      if (r > 0) samples.get(name)!.push(performance.now() - t0);
    }
  }
  for (const row of rows) if (samples.has(row.name)) row.step = stats(samples.get(row.name)!);
  for (const exe of exes.values()) exe.destroy();
  return { config: c, rows };
}

const gflop = (f: number) => (f === 0 ? '0' : (f / 1e9).toPrecision(3));
const mib = (b: number | null | undefined) => (b === null || b === undefined ? '—' : (b / 2 ** 20).toFixed(2));

export function formatRecompute(r: RecomputeReport): string {
  const c = r.config;
  const base = r.rows.find((x) => x.name === 'none');
  const q = (a: number | undefined, b: number | undefined) => (a !== undefined && b ? `${(a / b).toFixed(2)}×` : '—');
  const out = [
    `Recomputation: GPT V${c.vocab} d${c.d} h${c.heads} L${c.layers} T${c.T} B${c.B}, AdamW training step (peak = the memory plan's bytes; fixed = parameters + AdamW state + one gradient per parameter + inputs/outputs)`,
    '',
    '| policy | peak MiB | vs none | fixed MiB | activations MiB | activations vs none | allocated MiB | recomputed GFLOP | step ms (median) | vs none | compile s | loss after 1 step |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |',
  ];
  for (const x of r.rows) {
    if (!x.split) {
      out.push(`| ${x.name} (${mib(x.request?.budgetBytes)} MiB) | refused | | | | | | | | | ${(x.compileMs / 1000).toFixed(1)} | |`);
      continue;
    }
    const name = x.request?.budgetBytes ? `${x.name} (${mib(x.request.budgetBytes)} MiB)` : x.name;
    const same = base?.loss == null || x.loss === null || x === base ? '' : Object.is(x.loss, base.loss) ? ' (same)' : ' (DIFFERS)';
    out.push(
      `| ${name} | ${mib(x.split.peakBytes)} | ${q(x.split.peakBytes, base?.split?.peakBytes)} | ${mib(x.split.fixedBytes)} | ${mib(x.split.activationBytes)} | ${q(x.split.activationBytes, base?.split?.activationBytes)} | ${mib(x.deviceBytes)} | ${gflop(x.recomputedFlops ?? 0)} | ${x.step ? `${x.step.median.toFixed(1)} [${x.step.min.toFixed(1)}–${x.step.max.toFixed(1)}]` : '—'} | ${q(x.step?.median, base?.step?.median)} | ${(x.compileMs / 1000).toFixed(1)} | ${x.loss === null ? '—' : x.loss.toFixed(6)}${same} |`,
    );
  }
  for (const x of r.rows) if (x.note) out.push(`${x.name}: ${x.note}`);
  return out.join('\n');
}

/** The issue's targets: peak at a budget ⅓ of no recomputation, step time ≤ 1.35× (and the activation-only reading). */
export function recomputeTargets(r: RecomputeReport): Target[] {
  const base = r.rows.find((x) => x.name === 'none');
  if (!base?.split) return [];
  const out: Target[] = [];
  const third = r.rows.find((x) => x.name.startsWith('budget ⅓'));
  if (third) {
    out.push({
      what: 'recompute: peak at a budget of ⅓ the no-recompute peak',
      want: `≤ ${mib(base.split.peakBytes / 3)} MiB`,
      got: third.split ? `${mib(third.split.peakBytes)} MiB` : `refused (fixed part alone ${mib(base.split.fixedBytes)} MiB)`,
      met: !!third.split,
    });
  }
  const act = r.rows.find((x) => x.name.startsWith('budget fixed'));
  if (act?.split) {
    const a = act.split.activationBytes / base.split.activationBytes;
    out.push({ what: 'recompute: activations at budget fixed + ⅓ activations', want: '≤ 0.33× none', got: `${a.toFixed(2)}×`, met: a <= 1 / 3 + 1e-9 });
    if (act.step && base.step) {
      const t = act.step.median / base.step.median;
      out.push({ what: 'recompute: step time at that budget', want: '≤ 1.35× none', got: `${t.toFixed(2)}×`, met: t <= 1.35 });
    }
  }
  return out;
}
