/**
 * The benchmark suite: kernels, GPT forward and training steps, and compile times; Kiln against TF.js (WebGPU on the
 * same adapter, and CPU) in one process. Every timed pair is first checked for agreement of results.
 */
import type * as TF from '@tensorflow/tfjs-core';
import { KilnError } from '../src/errors.js';
import { compileModel } from '../src/frontend/index.js';
import type { Graph } from '../src/ir/graph.js';
import { initParam } from '../src/ir/init.js';
import type { AttrsOf } from '../src/ir/op.js';
import type { HostTensor } from '../src/ir/tensor.js';
import { acquireDevice, type KilnDevice } from '../src/runtime/device.js';
import { compileIR, runPipeline } from '../src/passes/index.js';
import { compileGraph, type Executable } from '../src/runtime/index.js';
import { targetOf } from '../src/runtime/executable.js';
import { programKey } from '../src/runtime/pipelines.js';
import { planMemory } from '../src/schedule/index.js';
import { attentionRows, attentionTargets } from './attention.js';
import { precisionRows, precisionTargets } from './precision.js';
import { kernelCases } from './kernels.js';
import { recomputeRows, recomputeTargets, type RecomputeReport } from './recompute.js';
import { jaxArray, jaxGpt, jaxMatmul, loadJax, type JaxDevice } from './peers/jax.js';
import { loadTf, useBackend } from './peers/tfjs.js';
import { scheduleCosts } from '../src/schedule/cost.js';
import { boundMs, deviceRoofline, type Roofline } from '../src/runtime/roofline.js';
import { costProfile, familyProfile, formatCostProfile, formatFamilies } from '../src/runtime/profile.js';
import { tfGptLoss, type GptShape } from './peers/tfjs-gpt.js';
import { measure, measureInTurns, stats, type Stats } from './timing.js';

export interface Side {
  stats: Stats;
  /** Time to first result: compile + pipelines + first run (graphs only). */
  firstMs?: number;
  kernels?: number;
  deviceBytes?: number;
}

export interface Row {
  group: 'kernel' | 'graph' | 'compile' | 'attention' | 'precision';
  name: string;
  kiln: Side | null;
  tfWebgpu: Side | null;
  tfCpu: Side | null;
  /** jax-js on its webgpu device (same adapter) and on its wasm (CPU) device; absent when jax-js is not run. */
  jaxWebgpu?: Side | null;
  jaxWasm?: Side | null;
  /** Work of Kiln's kernels for this row (src/schedule/cost.ts) and its roofline bound on this device. */
  work?: { flops: number; bytes: number; boundMs: number };
  /** Agreement of Kiln's result with TF.js-WebGPU's (relative max error), checked before timing. */
  check: { ok: boolean; relErr: number } | null;
  /** Agreement of jax-js's result with Kiln's (relative max error), per device. */
  jaxCheck?: Partial<Record<JaxDevice, { ok: boolean; relErr: number }>>;
  tokens?: number;
  note?: string;
}

export interface Target {
  what: string;
  want: string;
  got: string;
  met: boolean;
}

export interface BenchReport {
  device: string;
  date: string;
  quick: boolean;
  rows: Row[];
  targets: Target[];
  profile?: string;
  /** The adapter's measured limits (kiln doctor --roofline). */
  roofline?: Roofline;
  /** Why jax-js was not run, when it was not. */
  jaxSkipped?: string;
  /** The recompute group: one row per recomputation policy (its own table). */
  recompute?: RecomputeReport;
}

export interface BenchOptions {
  quick: boolean;
  only?: 'kernels' | 'graphs' | 'compile' | 'attention' | 'precision' | 'recompute';
  repeats: number;
  cpu: boolean;
  /** Run jax-js (webgpu and wasm) as a second peer (default true). */
  jax?: boolean;
  log?: (s: string) => void;
}

type JaxPeer = Awaited<ReturnType<typeof loadJax>> | null;

/** The roofline bound of an executable's kernels (the sum of each kernel's bound). */
function workOf(exe: Executable, roof: Roofline | undefined): Row['work'] {
  const costs = scheduleCosts(exe.schedule);
  const flops = costs.reduce((a, c) => a + c.flops, 0);
  const bytes = costs.reduce((a, c) => a + c.bytes, 0);
  return { flops, bytes, boundMs: roof ? costs.reduce((a, c) => a + boundMs(roof, c.flops, c.bytes), 0) : NaN };
}

const relErr = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i] - b[i]));
    den = Math.max(den, Math.abs(b[i]));
  }
  return num / Math.max(den, 1e-12);
};

async function tfTime(tf: typeof TF, backend: 'webgpu' | 'cpu', make: () => TF.Tensor, o: { warmup: number; repeats: number; maxMs?: number }): Promise<{ stats: Stats; value: Float32Array | Int32Array | Uint8Array }> {
  await useBackend(tf, backend);
  const once = async () => {
    const y = tf.tidy(make);
    const v = await y.data();
    y.dispose();
    return v;
  };
  const value = (await once()) as Float32Array;
  return { stats: await measure(once, o), value };
}

async function kernelRows(dev: KilnDevice, tf: typeof TF, o: BenchOptions, jp: JaxPeer, roof: Roofline | undefined): Promise<Row[]> {
  const rows: Row[] = [];
  for (const c of kernelCases(o.quick)) {
    o.log?.(`kernel: ${c.name}`);
    let exe: Executable;
    try {
      exe = await compileGraph(c.graph, dev, { seed: null });
    } catch (e) {
      if (!(e instanceof KilnError)) throw e;
      rows.push({ group: 'kernel', name: c.name, kiln: null, tfWebgpu: null, tfCpu: null, check: null, note: `not run: ${e.message}` });
      continue;
    }
    const inputs: Record<string, HostTensor> = {};
    for (const [k, v] of Object.entries(c.values)) (v.dtype === 'f32' ? exe.setParam(k, v) : (inputs[k] = v));
    const run = async () => (await exe.run(inputs, { download: ['y'] })).outputs.y;
    const kv = await run();
    const mk = () => Object.fromEntries(Object.entries(c.values).map(([k, v]) => [k, tf.tensor(Array.from(v.data), [...v.shape], v.dtype === 'i32' ? 'int32' : 'float32')]));
    await useBackend(tf, 'webgpu');
    const tg = mk();
    const tfOnce = async () => {
      const y = tf.tidy(() => c.tf(tf, tg));
      const v = await y.data();
      y.dispose();
      return v;
    };
    const wv = (await tfOnce()) as Float32Array;
    // jax-js on the plain matmuls, each device checked against Kiln's result before it is timed
    const jaxCheck: Row['jaxCheck'] = {};
    const jaxRuns: Partial<Record<JaxDevice, ReturnType<typeof jaxMatmul>>> = {};
    for (const d of jp && c.matmul ? (['webgpu', 'wasm'] as const).filter((x) => jp.devices.includes(x)) : []) {
      const [a, b] = [c.values.a, c.values.b];
      const mm = jaxMatmul(jp!.jax, jaxArray(jp!.jax, a.data as Float32Array, [...a.shape], d), jaxArray(jp!.jax, b.data as Float32Array, [...b.shape], d), c.matmul!.transA, c.matmul!.transB);
      const e = relErr(await mm.run(), kv.data);
      jaxCheck[d] = { ok: e < 1e-3, relErr: e };
      jaxRuns[d] = mm;
    }
    // timed in turns, like the GPT rows
    const t = await measureInTurns({ kiln: run, tfWebgpu: tfOnce, jaxWebgpu: jaxRuns.webgpu?.run, jaxWasm: jaxRuns.wasm?.run }, { warmup: 1, repeats: o.repeats, maxMs: 60_000 });
    Object.values(tg).forEach((x) => x.dispose());
    Object.values(jaxRuns).forEach((m) => m.dispose());
    let cpu: Stats | null = null;
    if (o.cpu && !c.skipCpu) {
      await useBackend(tf, 'cpu');
      const tc = mk();
      cpu = (await tfTime(tf, 'cpu', () => c.tf(tf, tc), { warmup: 0, repeats: Math.max(2, Math.ceil(o.repeats / 3)), maxMs: 20_000 })).stats;
      Object.values(tc).forEach((x) => x.dispose());
      await useBackend(tf, 'webgpu');
    }
    const err = relErr(kv.data, wv);
    const row: Row = { group: 'kernel', name: c.name, kiln: { stats: t.kiln, kernels: exe.stats.dispatchesPerRun }, tfWebgpu: { stats: t.tfWebgpu }, tfCpu: cpu ? { stats: cpu } : null, check: { ok: err < 1e-3, relErr: err }, note: c.skipCpu, work: workOf(exe, roof) };
    if (jaxRuns.webgpu) row.jaxWebgpu = { stats: t.jaxWebgpu };
    if (jaxRuns.wasm) row.jaxWasm = { stats: t.jaxWasm };
    if (Object.keys(jaxCheck).length) row.jaxCheck = jaxCheck;
    rows.push(row);
    exe.destroy();
  }
  return rows;
}

interface GptConfig extends GptShape {
  ctx: number;
}

function gptGraphs(c: GptConfig): { loss: Graph; step: Graph; params: Record<string, HostTensor> } {
  const { graph } = compileModel('src/models/gpt.kiln', { entry: 'loss', set: { vocab: c.vocab, d: c.d, heads: c.heads, layers: c.layers, ctx: c.ctx, dropout: 0 }, dims: { B: c.B, T: c.T } });
  const step = compileIR(graph, { train: { optimizer: { kind: 'adamw', clip: 0 } } });
  const params: Record<string, HostTensor> = {};
  for (const n of graph.nodes) {
    if (n.op !== 'param') continue;
    const a = n.attrs as AttrsOf<'param'>;
    params[a.name] = initParam(a.init, n.type, a.name, 0);
  }
  return { loss: compileIR(graph), step, params };
}

/** The GPT in TF.js on `backend` with Kiln's weights: forward and Adam step closures, run once each (timed). */
async function tfGpt(tf: typeof TF, backend: 'webgpu' | 'cpu', params: Record<string, HostTensor>, tokens: Int32Array, targets: Int32Array, s: GptShape) {
  await useBackend(tf, backend);
  const vars = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, tf.variable(tf.tensor(Array.from(v.data), [...v.shape]), true, `${backend}.${k}`)]));
  const tok = tf.tensor(Array.from(tokens), [s.B, s.T], 'int32');
  const lossOf = () => tfGptLoss(tf, vars, tok, targets, s);
  const forward = async () => {
    const y = tf.tidy(lossOf);
    const v = (await y.data())[0];
    y.dispose();
    return v;
  };
  const opt = tf.train.adam(1e-3);
  const step = async () => {
    const l = opt.minimize(lossOf, true)!;
    await l.data();
    l.dispose();
  };
  let t = performance.now();
  const loss = await forward();
  const fFirst = performance.now() - t;
  t = performance.now();
  await step();
  const sFirst = performance.now() - t;
  const dispose = () => {
    Object.values(vars).forEach((v) => v.dispose());
    tok.dispose();
    opt.dispose();
  };
  return { forward, step, loss, fFirst, sFirst, dispose };
}

async function graphRows(dev: KilnDevice, tf: typeof TF, o: BenchOptions, profile: { text?: string }, jp: JaxPeer, roof: Roofline | undefined): Promise<Row[]> {
  const configs: [string, GptConfig][] = o.quick
    ? [['GPT tiny', { vocab: 64, d: 16, heads: 2, layers: 1, ctx: 8, B: 2, T: 8 }]]
    : [
        ['GPT small (V256 d128 h4 L2 T64 B8)', { vocab: 256, d: 128, heads: 4, layers: 2, ctx: 64, B: 8, T: 64 }],
        ['GPT larger (V256 d256 h8 L4 T128 B8)', { vocab: 256, d: 256, heads: 8, layers: 4, ctx: 128, B: 8, T: 128 }],
      ];
  const rows: Row[] = [];
  for (const [label, c] of configs) {
    o.log?.(`graph: ${label}`);
    const { loss, step, params } = gptGraphs(c);
    const tokensArr = Int32Array.from({ length: c.B * c.T }, (_, i) => (i * 31 + 7) % c.vocab);
    const targetsArr = Int32Array.from({ length: c.B * c.T }, (_, i) => (i * 17 + 3) % c.vocab);
    const feeds: Record<string, HostTensor> = { tokens: { dtype: 'i32', shape: [c.B, c.T], data: tokensArr }, targets: { dtype: 'i32', shape: [c.B, c.T], data: targetsArr } };
    const scalars = { lr: { dtype: 'f32' as const, shape: [], data: Float32Array.of(1e-3) }, step: { dtype: 'f32' as const, shape: [], data: Float32Array.of(1) } };
    const tokens = c.B * c.T;

    // Every side is set up and run once first (time to first result, and the losses compared), then the sides are
    // timed in turns — one run of each per round — so that load from elsewhere on a shared machine falls on all of
    // them alike instead of on whichever side happened to run during it.
    const s: GptShape = c;
    const t0 = performance.now();
    const fwd = await compileGraph(loss, dev, { seed: 0 });
    const fwdLoss = (await fwd.run(feeds, { download: ['loss'] })).outputs.loss.data[0];
    const fwdFirst = performance.now() - t0;
    const t1 = performance.now();
    const tr: Executable = await compileGraph(step, dev, { seed: 0 });
    await tr.run({ ...feeds, ...scalars }, { download: ['loss'] });
    const trFirst = performance.now() - t1;
    if (!profile.text && !o.quick) {
      const rowsP = costProfile(tr.schedule, (await tr.run({ ...feeds, ...scalars }, { download: ['loss'], profile: true })).profile ?? [], roof);
      profile.text = `${label}, training step, by kernel family:\n${formatFamilies(familyProfile(rowsP, roof))}\n\nlongest kernels:\n${formatCostProfile(rowsP, roof, 25)}`;
    }

    // TF.js (WebGPU): same weights, same batch
    const tw = await tfGpt(tf, 'webgpu', params, tokensArr, targetsArr, s);

    // jax-js: the same weights and batch; the step is jit(valueAndGrad) + Adam in one jit.
    const jaxModels: Partial<Record<JaxDevice, { m: ReturnType<typeof jaxGpt>; fFirst: number; sFirst: number; err: number }>> = {};
    for (const d of jp ? (['webgpu', 'wasm'] as const).filter((x) => jp.devices.includes(x)) : []) {
      o.log?.(`graph: ${label} on jax-js ${d} (first runs)`);
      const m = jaxGpt(jp!.jax, d, params as unknown as Record<string, { data: Float32Array; shape: readonly number[] }>, tokensArr, targetsArr, s, c.vocab);
      const q0 = performance.now();
      const jl = await m.forward();
      const fFirst = performance.now() - q0;
      const q1 = performance.now();
      await m.step();
      jaxModels[d] = { m, fFirst, sFirst: performance.now() - q1, err: Math.abs(jl - fwdLoss) / Math.abs(fwdLoss) };
    }

    o.log?.(`graph: ${label}, timed in turns`);
    const fT = await measureInTurns({ kiln: () => fwd.run(feeds, { download: ['loss'] }), tfWebgpu: tw.forward, jaxWebgpu: jaxModels.webgpu?.m.forward, jaxWasm: jaxModels.wasm?.m.forward }, { warmup: 1, repeats: o.repeats, maxMs: 60_000 });
    const sT = await measureInTurns({ kiln: () => tr.run({ ...feeds, ...scalars }, { download: ['loss'] }), tfWebgpu: tw.step, jaxWebgpu: jaxModels.webgpu?.m.step, jaxWasm: jaxModels.wasm?.m.step }, { warmup: 1, repeats: o.repeats, maxMs: 60_000 });
    const kf = fT.kiln;
    const kt = sT.kiln;
    // tf.profile's peakBytes: the most bytes of live tensors (weights and Adam state included) at any point of
    // a step, the counterpart of Kiln's allocated bytes; tf.memory() after the step would miss the intermediates.
    const prof = await tf.profile(async () => tw.step());
    const wg = { loss: tw.loss, fStats: fT.tfWebgpu, fFirst: tw.fFirst, sStats: sT.tfWebgpu, sFirst: tw.sFirst, bytes: prof.peakBytes, kernels: prof.kernels.length };
    tw.dispose();
    const jx: Partial<Record<JaxDevice, { fStats: Stats; fFirst: number; sStats: Stats; sFirst: number; err: number }>> = {};
    for (const [d, j] of Object.entries(jaxModels) as [JaxDevice, NonNullable<(typeof jaxModels)[JaxDevice]>][]) {
      jx[d] = { fStats: fT[d === 'webgpu' ? 'jaxWebgpu' : 'jaxWasm'], fFirst: j.fFirst, sStats: sT[d === 'webgpu' ? 'jaxWebgpu' : 'jaxWasm'], sFirst: j.sFirst, err: j.err };
      j.m.dispose();
    }

    // TF.js CPU: far slower; timed on its own afterwards.
    const cpuSide = async (repeats: number) => {
      const tc = await tfGpt(tf, 'cpu', params, tokensArr, targetsArr, s);
      const fStats = await measure(tc.forward, { warmup: 1, repeats, maxMs: 60_000 });
      const sStats = await measure(tc.step, { warmup: 1, repeats, maxMs: 60_000 });
      tc.dispose();
      await useBackend(tf, 'webgpu');
      return { fStats, fFirst: tc.fFirst, sStats, sFirst: tc.sFirst };
    };
    const cpu = o.cpu ? await cpuSide(Math.max(2, Math.ceil(o.repeats / 3))) : null;
    const err = Math.abs(fwdLoss - wg.loss) / Math.abs(wg.loss);

    const jaxSides = (k: 'f' | 's') => ({
      jaxWebgpu: jx.webgpu ? { stats: jx.webgpu[`${k}Stats`], firstMs: jx.webgpu[`${k}First`] } : jp ? null : undefined,
      jaxWasm: jx.wasm ? { stats: jx.wasm[`${k}Stats`], firstMs: jx.wasm[`${k}First`] } : jp ? null : undefined,
      jaxCheck: Object.fromEntries(Object.entries(jx).map(([d, v]) => [d, { ok: v.err < 1e-4, relErr: v.err }])),
    });
    rows.push({
      group: 'graph',
      name: `${label}: forward + loss`,
      tokens,
      kiln: { stats: kf, firstMs: fwdFirst, kernels: fwd.stats.dispatchesPerRun, deviceBytes: fwd.stats.deviceBytes },
      tfWebgpu: { stats: wg.fStats, firstMs: wg.fFirst },
      tfCpu: cpu ? { stats: cpu.fStats, firstMs: cpu.fFirst } : null,
      check: { ok: err < 1e-4, relErr: err },
      work: workOf(fwd, roof),
      ...jaxSides('f'),
    });
    rows.push({
      group: 'graph',
      name: `${label}: training step (fwd + bwd + AdamW)`,
      tokens,
      kiln: { stats: kt, firstMs: trFirst, kernels: tr.stats.dispatchesPerRun, deviceBytes: tr.stats.deviceBytes },
      tfWebgpu: { stats: wg.sStats, firstMs: wg.sFirst, kernels: wg.kernels, deviceBytes: wg.bytes },
      tfCpu: cpu ? { stats: cpu.sStats, firstMs: cpu.sFirst } : null,
      check: { ok: err < 1e-4, relErr: err },
      note: 'TF.js side: tf.train.adam (no decoupled weight decay); jax-js: Adam in the jitted step; Kiln: AdamW, clipping off',
      work: workOf(tr, roof),
      ...jaxSides('s'),
    });
    fwd.destroy();
    tr.destroy();
  }
  return rows;
}

/** Parse -> IR -> autodiff -> optimizer -> schedule -> WGSL, without a device; GPT-2-small is also memory-planned against the device's limits. */
async function compileRows(dev: KilnDevice, o: BenchOptions): Promise<Row[]> {
  const configs: [string, Record<string, number>, Record<string, number>][] = [
    ['GPT small training graph: parse → WGSL', { vocab: 256, d: 128, heads: 4, layers: 2, ctx: 64 }, { B: 8, T: 64 }],
  ];
  if (!o.quick) configs.push(['GPT-2-small-sized training graph (L12 d768 h12 V50257 T1024 B1): parse → WGSL', { vocab: 50257, d: 768, heads: 12, layers: 12, ctx: 1024 }, { B: 1, T: 1024 }]);
  const rows: Row[] = [];
  for (const [name, set, dims] of configs) {
    o.log?.(`compile: ${name}`);
    const samples: number[] = [];
    let kernels = 0;
    let pipelines = 0;
    let note: string | undefined;
    for (let i = 0; i < (o.quick ? 1 : 3); i++) {
      const t0 = performance.now();
      const { graph } = compileModel('src/models/gpt.kiln', { entry: 'loss', set: { ...set, dropout: 0 }, dims });
      // the whole pipeline for this device's kernels (no pipelines or buffers); size limits checked after timing
      const target = targetOf(dev);
      const st = runPipeline(graph, { train: { optimizer: { kind: 'adamw' } }, target: { ...target, maxStorageBufferBindingSize: Infinity, maxBufferSize: Infinity } });
      samples.push(performance.now() - t0);
      kernels = st.kernels!.length;
      pipelines = new Set(st.kernels!.flatMap((k) => k.passes.map((p) => programKey(p.wgsl)))).size;
      try {
        planMemory(st.graph, st.schedule!, dev.limits);
      } catch (e) {
        if (!(e instanceof KilnError)) throw e;
        note = `refused on this device: ${e.message}`;
      }
    }
    note = [`${pipelines} distinct programs (pipelines)`, note].filter(Boolean).join('; ');
    const { stats } = await import('./timing.js');
    rows.push({ group: 'compile', name, kiln: { stats: stats(samples), kernels }, tfWebgpu: null, tfCpu: null, check: null, note });
  }
  return rows;
}

export type Peer = 'tfWebgpu' | 'tfCpu' | 'jaxWebgpu' | 'jaxWasm';
const speedup = (r: Row, peer: Peer) => (r.kiln && r[peer] ? r[peer]!.stats.median / r.kiln.stats.median : NaN);

function targets(rows: Row[], roof?: Roofline): Target[] {
  const out: Target[] = [];
  const find = (re: RegExp) => rows.find((r) => re.test(r.name));
  const t = (what: string, r: Row | undefined, peer: Peer, want: number) => {
    if (!r || !r.kiln || !r[peer]) return;
    const s = speedup(r, peer);
    out.push({ what, want: `≥ ${want}×`, got: `${s.toFixed(2)}×`, met: s >= want });
  };
  const step = find(/GPT small.*training step/) ?? find(/GPT tiny.*training step/);
  t('GPT training step (small) vs TF.js-WebGPU', step, 'tfWebgpu', 3);
  t('GPT training step (small) vs TF.js-CPU', step, 'tfCpu', 10);
  t('GPT training step (small) vs jax-js webgpu', step, 'jaxWebgpu', 2);
  t('GPT training step (larger) vs TF.js-WebGPU', find(/GPT larger.*training step/), 'tfWebgpu', 3);
  const mm = find(/^matmul 1024x/);
  t('matmul 1024³ vs TF.js-WebGPU', mm, 'tfWebgpu', 2);
  if (mm?.kiln && mm.work && roof) {
    const f = mm.work.flops / (mm.kiln.stats.median * 1e6) / roof.gflops;
    out.push({ what: 'matmul 1024³ as a fraction of the measured FMA peak', want: '≥ 40%', got: `${(100 * f).toFixed(1)}% (${roof.gflops.toFixed(1)} GFLOP/s peak)`, met: f >= 0.4 });
  }
  const L = find(/³ A·Bᵀ/)?.name.match(/(\d+)³/)?.[1];
  const nn = L ? rows.find((r) => r.name === `matmul ${L}x${L}x${L}`) : undefined;
  for (const lay of [find(/³ A·Bᵀ \(NT\)/), find(/³ Aᵀ·B \(TN\)/)]) {
    if (!lay?.kiln || !nn?.kiln) continue;
    const q = lay.kiln.stats.median / nn.kiln.stats.median;
    out.push({ what: `${lay.name}: time / the NN case's`, want: '≤ 1.2×', got: `${q.toFixed(2)}×`, met: q <= 1.2 });
  }
  t('softmax vs TF.js-WebGPU', find(/^softmax/), 'tfWebgpu', 2);
  t('layer_norm vs TF.js-WebGPU', find(/^layer_norm/), 'tfWebgpu', 2);
  if (step?.kiln?.deviceBytes && step.tfWebgpu?.deviceBytes) {
    const k = step.kiln.deviceBytes / 2 ** 20;
    const p = step.tfWebgpu.deviceBytes / 2 ** 20;
    out.push({ what: 'peak device memory of the training step', want: `≤ TF.js (${p.toFixed(1)} MiB)`, got: `${k.toFixed(1)} MiB`, met: k <= p });
  }
  out.push(...attentionTargets(rows));
  out.push(...precisionTargets(rows));
  return out;
}

export async function runBench(o: BenchOptions): Promise<BenchReport> {
  // The software driver at its stock settings: the peer shares this process (and its driver configuration).
  process.env.KILN_STOCK_DRIVER ??= '1';
  const dev = await acquireDevice();
  // the recompute group compares Kiln with itself: no peers to load
  const tf = o.only === 'recompute' ? (null as unknown as typeof TF) : await loadTf();
  let jp: JaxPeer = null;
  let jaxSkipped: string | undefined;
  if (o.jax !== false && o.only !== 'compile' && o.only !== 'precision' && o.only !== 'recompute') {
    try {
      jp = await loadJax();
    } catch (e) {
      jaxSkipped = `jax-js not run: ${(e as Error).message}`;
      o.log?.(jaxSkipped);
    }
  }
  o.log?.('roofline (cached per device; kiln doctor --roofline)');
  const roof = o.quick || o.only === 'recompute' ? undefined : await deviceRoofline(dev);
  const rows: Row[] = [];
  const profile: { text?: string } = {};
  if (!o.only || o.only === 'kernels') rows.push(...(await kernelRows(dev, tf, o, jp, roof)));
  if (!o.only || o.only === 'graphs') rows.push(...(await graphRows(dev, tf, o, profile, jp, roof)));
  if (!o.only || o.only === 'attention') rows.push(...(await attentionRows(dev, tf, o)));
  if (!o.only || o.only === 'precision') rows.push(...(await precisionRows(dev, o)));
  if (!o.only || o.only === 'compile') rows.push(...(await compileRows(dev, o)));
  const recompute = !o.only || o.only === 'recompute' ? await recomputeRows(dev, o) : undefined;
  const device = `${dev.adapterInfo.description || dev.adapterInfo.device}${dev.adapterInfo.description && dev.adapterInfo.device ? ` [${dev.adapterInfo.device}]` : ''} (${dev.adapterInfo.vendor}${dev.adapterInfo.isFallbackAdapter ? ', software' : ''})`;
  const all = [...targets(rows, roof), ...(recompute ? recomputeTargets(recompute) : [])];
  return { device, date: new Date().toISOString(), quick: o.quick, rows, targets: all, profile: profile.text, roofline: roof, jaxSkipped, recompute };
}

export { speedup };
