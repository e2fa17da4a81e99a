/**
 * The benchmark suite: kernels, GPT forward and training steps, and compile times; Kiln against TF.js (WebGPU on the
 * same adapter, and CPU) in one process. Every timed pair is first checked for agreement of results.
 */
import type * as TF from '@tensorflow/tfjs-core';
import { grad } from '../src/autodiff/index.js';
import { generateKernels } from '../src/codegen/wgsl/index.js';
import { KilnError } from '../src/errors.js';
import { compileModel } from '../src/frontend/index.js';
import type { Graph } from '../src/ir/graph.js';
import { initParam } from '../src/ir/init.js';
import type { AttrsOf } from '../src/ir/op.js';
import type { HostTensor } from '../src/ir/tensor.js';
import { acquireDevice, type KilnDevice } from '../src/runtime/device.js';
import { compileGraph, formatProfile, type Executable } from '../src/runtime/index.js';
import { planMemory, schedule } from '../src/schedule/index.js';
import { buildTrainStep } from '../src/train/optimizers.js';
import { attentionRows, attentionTargets } from './attention.js';
import { kernelCases } from './kernels.js';
import { loadTf, useBackend } from './peers/tfjs.js';
import { tfGptLoss, type GptShape } from './peers/tfjs-gpt.js';
import { measure, type Stats } from './timing.js';

export interface Side {
  stats: Stats;
  /** Time to first result: compile + pipelines + first run (graphs only). */
  firstMs?: number;
  kernels?: number;
  deviceBytes?: number;
}

export interface Row {
  group: 'kernel' | 'graph' | 'compile' | 'attention';
  name: string;
  kiln: Side | null;
  tfWebgpu: Side | null;
  tfCpu: Side | null;
  /** Agreement of Kiln's result with TF.js-WebGPU's (relative max error), checked before timing. */
  check: { ok: boolean; relErr: number } | null;
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
}

export interface BenchOptions {
  quick: boolean;
  only?: 'kernels' | 'graphs' | 'compile' | 'attention';
  repeats: number;
  cpu: boolean;
  log?: (s: string) => void;
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

async function kernelRows(dev: KilnDevice, tf: typeof TF, o: BenchOptions): Promise<Row[]> {
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
    const kiln = await measure(run, { warmup: 1, repeats: o.repeats });
    const mk = () => Object.fromEntries(Object.entries(c.values).map(([k, v]) => [k, tf.tensor(Array.from(v.data), [...v.shape], v.dtype === 'i32' ? 'int32' : 'float32')]));
    await useBackend(tf, 'webgpu');
    const tg = mk();
    const wg = await tfTime(tf, 'webgpu', () => c.tf(tf, tg), { warmup: 1, repeats: o.repeats });
    Object.values(tg).forEach((t) => t.dispose());
    let cpu: Stats | null = null;
    if (o.cpu && !c.skipCpu) {
      await useBackend(tf, 'cpu');
      const tc = mk();
      cpu = (await tfTime(tf, 'cpu', () => c.tf(tf, tc), { warmup: 0, repeats: Math.max(2, Math.ceil(o.repeats / 3)), maxMs: 20_000 })).stats;
      Object.values(tc).forEach((t) => t.dispose());
    }
    const err = relErr(kv.data, wg.value);
    rows.push({ group: 'kernel', name: c.name, kiln: { stats: kiln, kernels: exe.stats.dispatchesPerRun }, tfWebgpu: { stats: wg.stats }, tfCpu: cpu ? { stats: cpu } : null, check: { ok: err < 1e-3, relErr: err }, note: c.skipCpu });
    exe.destroy();
  }
  return rows;
}

interface GptConfig extends GptShape {
  ctx: number;
}

function gptGraphs(c: GptConfig): { loss: Graph; step: Graph; params: Record<string, HostTensor> } {
  const { graph } = compileModel('src/models/gpt.kiln', { entry: 'loss', set: { vocab: c.vocab, d: c.d, heads: c.heads, layers: c.layers, ctx: c.ctx, dropout: 0 }, dims: { B: c.B, T: c.T } });
  const step = buildTrainStep(grad(graph, { loss: 'loss' }), { kind: 'adamw', clip: 0 });
  const params: Record<string, HostTensor> = {};
  for (const n of graph.nodes) {
    if (n.op !== 'param') continue;
    const a = n.attrs as AttrsOf<'param'>;
    params[a.name] = initParam(a.init, n.type, a.name, 0);
  }
  return { loss: graph, step, params };
}

async function graphRows(dev: KilnDevice, tf: typeof TF, o: BenchOptions, profile: { text?: string }): Promise<Row[]> {
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

    // Kiln
    const t0 = performance.now();
    const fwd = await compileGraph(loss, dev, { seed: 0 });
    const fwdLoss = (await fwd.run(feeds, { download: ['loss'] })).outputs.loss.data[0];
    const fwdFirst = performance.now() - t0;
    const kf = await measure(() => fwd.run(feeds, { download: ['loss'] }), { warmup: 1, repeats: o.repeats });
    const t1 = performance.now();
    const tr: Executable = await compileGraph(step, dev, { seed: 0 });
    await tr.run({ ...feeds, ...scalars }, { download: ['loss'] });
    const trFirst = performance.now() - t1;
    const kt = await measure(() => tr.run({ ...feeds, ...scalars }, { download: ['loss'] }), { warmup: 1, repeats: o.repeats });
    if (!profile.text && !o.quick) profile.text = `${label}, training step:\n${formatProfile((await tr.run({ ...feeds, ...scalars }, { download: ['loss'], profile: true })).profile ?? [])}`;

    // TF.js: same weights, same batch
    const s: GptShape = c;
    const side = async (backend: 'webgpu' | 'cpu', repeats: number) => {
      await useBackend(tf, backend);
      const vars = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, tf.variable(tf.tensor(Array.from(v.data), [...v.shape]), true, `${backend}.${k}`)]));
      const tok = tf.tensor(Array.from(tokensArr), [c.B, c.T], 'int32');
      const lossOf = () => tfGptLoss(tf, vars, tok, targetsArr, s);
      const q0 = performance.now();
      const first = await tfTime(tf, backend, lossOf, { warmup: 0, repeats: 1 });
      const fFirst = performance.now() - q0;
      const fStats = await measure(async () => {
        const y = tf.tidy(lossOf);
        await y.data();
        y.dispose();
      }, { warmup: 1, repeats, maxMs: 60_000 });
      const opt = tf.train.adam(1e-3);
      const stepOnce = async () => {
        const l = opt.minimize(lossOf, true)!;
        await l.data();
        l.dispose();
      };
      const q1 = performance.now();
      await stepOnce();
      const sFirst = performance.now() - q1;
      const sStats = await measure(stepOnce, { warmup: 1, repeats, maxMs: 60_000 });
      // tf.profile's peakBytes: the most bytes of live tensors (weights and Adam state included) at any point of
      // a step, the counterpart of Kiln's allocated bytes; tf.memory() after the step would miss the intermediates.
      const prof = backend === 'webgpu' ? await tf.profile(async () => stepOnce()) : undefined;
      const kernels = prof?.kernels.length;
      Object.values(vars).forEach((v) => v.dispose());
      tok.dispose();
      opt.dispose();
      return { loss: first.value[0], fStats, fFirst, sStats, sFirst, bytes: prof?.peakBytes, kernels };
    };
    const wg = await side('webgpu', o.repeats);
    const cpu = o.cpu ? await side('cpu', Math.max(2, Math.ceil(o.repeats / 3))) : null;
    const err = Math.abs(fwdLoss - wg.loss) / Math.abs(wg.loss);
    rows.push({
      group: 'graph',
      name: `${label}: forward + loss`,
      tokens,
      kiln: { stats: kf, firstMs: fwdFirst, kernels: fwd.stats.dispatchesPerRun, deviceBytes: fwd.stats.deviceBytes },
      tfWebgpu: { stats: wg.fStats, firstMs: wg.fFirst },
      tfCpu: cpu ? { stats: cpu.fStats, firstMs: cpu.fFirst } : null,
      check: { ok: err < 1e-4, relErr: err },
    });
    rows.push({
      group: 'graph',
      name: `${label}: training step (fwd + bwd + AdamW)`,
      tokens,
      kiln: { stats: kt, firstMs: trFirst, kernels: tr.stats.dispatchesPerRun, deviceBytes: tr.stats.deviceBytes },
      tfWebgpu: { stats: wg.sStats, firstMs: wg.sFirst, kernels: wg.kernels, deviceBytes: wg.bytes },
      tfCpu: cpu ? { stats: cpu.sStats, firstMs: cpu.sFirst } : null,
      check: { ok: err < 1e-4, relErr: err },
      note: 'TF.js side: tf.train.adam (no decoupled weight decay); Kiln: AdamW, clipping off',
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
    let note: string | undefined;
    for (let i = 0; i < (o.quick ? 1 : 3); i++) {
      const t0 = performance.now();
      const { graph } = compileModel('src/models/gpt.kiln', { entry: 'loss', set: { ...set, dropout: 0 }, dims });
      const step = buildTrainStep(grad(graph, { loss: 'loss' }), { kind: 'adamw' });
      const s = schedule(step);
      kernels = generateKernels(s, { subgroups: dev.features.has('subgroups') }).length;
      samples.push(performance.now() - t0);
      try {
        planMemory(step, s, dev.limits);
      } catch (e) {
        if (!(e instanceof KilnError)) throw e;
        note = `refused on this device: ${e.message}`;
      }
    }
    const { stats } = await import('./timing.js');
    rows.push({ group: 'compile', name, kiln: { stats: stats(samples), kernels }, tfWebgpu: null, tfCpu: null, check: null, note });
  }
  return rows;
}

const speedup = (r: Row, peer: 'tfWebgpu' | 'tfCpu') => (r.kiln && r[peer] ? r[peer]!.stats.median / r.kiln.stats.median : NaN);

function targets(rows: Row[]): Target[] {
  const out: Target[] = [];
  const find = (re: RegExp) => rows.find((r) => re.test(r.name));
  const t = (what: string, r: Row | undefined, peer: 'tfWebgpu' | 'tfCpu', want: number) => {
    if (!r || !r.kiln || !r[peer]) return;
    const s = speedup(r, peer);
    out.push({ what, want: `≥ ${want}×`, got: `${s.toFixed(2)}×`, met: s >= want });
  };
  const step = find(/GPT small.*training step/) ?? find(/GPT tiny.*training step/);
  t('GPT training step (small) vs TF.js-WebGPU', step, 'tfWebgpu', 3);
  t('GPT training step (small) vs TF.js-CPU', step, 'tfCpu', 10);
  t('matmul 1024³ vs TF.js-WebGPU', find(/^matmul 1024x/), 'tfWebgpu', 1.5);
  t('softmax vs TF.js-WebGPU', find(/^softmax/), 'tfWebgpu', 2);
  t('layer_norm vs TF.js-WebGPU', find(/^layer_norm/), 'tfWebgpu', 2);
  if (step?.kiln?.deviceBytes && step.tfWebgpu?.deviceBytes) {
    const k = step.kiln.deviceBytes / 2 ** 20;
    const p = step.tfWebgpu.deviceBytes / 2 ** 20;
    out.push({ what: 'peak device memory of the training step', want: `≤ TF.js (${p.toFixed(1)} MiB)`, got: `${k.toFixed(1)} MiB`, met: k <= p });
  }
  out.push(...attentionTargets(rows));
  return out;
}

export async function runBench(o: BenchOptions): Promise<BenchReport> {
  // The software driver at its stock settings: the peer shares this process (and its driver configuration).
  process.env.KILN_STOCK_DRIVER ??= '1';
  const dev = await acquireDevice();
  const tf = await loadTf();
  const rows: Row[] = [];
  const profile: { text?: string } = {};
  if (!o.only || o.only === 'kernels') rows.push(...(await kernelRows(dev, tf, o)));
  if (!o.only || o.only === 'graphs') rows.push(...(await graphRows(dev, tf, o, profile)));
  if (!o.only || o.only === 'attention') rows.push(...(await attentionRows(dev, tf, o)));
  if (!o.only || o.only === 'compile') rows.push(...(await compileRows(dev, o)));
  const device = `${dev.adapterInfo.description || dev.adapterInfo.device}${dev.adapterInfo.description && dev.adapterInfo.device ? ` [${dev.adapterInfo.device}]` : ''} (${dev.adapterInfo.vendor}${dev.adapterInfo.isFallbackAdapter ? ', software' : ''})`;
  return { device, date: new Date().toISOString(), quick: o.quick, rows, targets: targets(rows), profile: profile.text };
}

export { speedup };
