/**
 * The attention group: causal attention forward + backward (loss = Σ attention(q, k, v) · w, gradients for q, k and
 * v) with B·H fixed and T growing, Kiln's fused kernels (flash_attention) against Kiln's unfused chain (scores
 * matmul, scale, where-mask, softmax, P·V matmul) and TF.js composing the same ops, the three timed in turns. The
 * memory column is Kiln's intermediate (scratch) bytes: O(T) fused, O(T²) unfused.
 */
import type * as TF from '@tensorflow/tfjs-core';
import { grad } from '../src/autodiff/index.js';
import { KilnError } from '../src/errors.js';
import { compileModel } from '../src/frontend/index.js';
import { GraphBuilder } from '../src/ir/builder.js';
import type { Graph } from '../src/ir/graph.js';
import type { AttentionAttrs } from '../src/ir/op.js';
import { unfusedAttention } from '../src/ir/ops/attention.js';
import type { HostTensor } from '../src/ir/tensor.js';
import type { KilnDevice } from '../src/runtime/device.js';
import { compileIR } from '../src/passes/index.js';
import { compileGraph, type CompileOptions, type Executable } from '../src/runtime/index.js';
import { Rng } from '../src/train/rng.js';
import type { BenchOptions, Row, Side, Target } from './suite.js';
import { useBackend } from './peers/tfjs.js';
import { measure, measureInTurns, type Stats } from './timing.js';

const BH = 8;
const D = 64;

type Mode = 'fused' | 'unfused';

/** Both executables of a row; a graph the device cannot hold (a KilnError) is reported as not run. */
async function compileModes(dev: KilnDevice, graphOf: (mode: Mode) => Graph, opts: CompileOptions = {}): Promise<{ exes: Partial<Record<Mode, Executable>>; notRun: Partial<Record<Mode, string>> }> {
  const exes: Partial<Record<Mode, Executable>> = {};
  const notRun: Partial<Record<Mode, string>> = {};
  for (const mode of ['fused', 'unfused'] as const) {
    try {
      exes[mode] = await compileGraph(graphOf(mode), dev, opts);
    } catch (e) {
      if (!(e instanceof KilnError)) throw e;
      notRun[mode] = `not run: ${e.message}`;
    }
  }
  return { exes, notRun };
}

function rand(shape: number[], seed: number): HostTensor {
  const r = new Rng(seed, 'bench-attention');
  return { dtype: 'f32', shape, data: Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => 2 * r.next() - 1) };
}

/** The joint graph (loss and the gradients of q, k, v) of causal attention, fused or as the unfused chain. */
export function attentionGraph(T: number, fused: boolean): Graph {
  const b = new GraphBuilder();
  const p = (name: string, shape: number[]) => b.op('param', [], { name, dtype: 'f32', shape, init: { kind: 'zeros' } });
  const [q, k, v, w] = [p('q', [BH, T, D]), p('k', [BH, T, D]), p('v', [BH, T, D]), p('w', [BH, T, D])];
  const a: AttentionAttrs = { scale: 1 / Math.sqrt(D), mask: 'causal', bias: false, fill: -1e9, p: 0, stream: 0 };
  const o = fused ? b.op('flash_attention', [q, k, v], a) : unfusedAttention(b, [q, k, v], a);
  const loss = b.sum(b.mul(o, b.op('stop_gradient', [w], {})), [0, 1, 2]);
  const j = grad(b.build(`attention T=${T}`, [{ name: 'loss', id: loss }]), { loss: 'loss' });
  // w is a fixed weight: drop its gradient so both sides compute the same three.
  return { ...j, outputs: j.outputs.filter((x) => x.name !== 'grad:w') };
}

export async function attentionRows(dev: KilnDevice, tf: typeof TF, o: BenchOptions): Promise<Row[]> {
  const sizes = (o as BenchOptions & { sizes?: number[] }).sizes ?? (o.quick ? [16] : [256, 512, 1024, 2048]);
  const rows: Row[] = [];
  for (const T of sizes) {
    const label = `attention fwd+bwd causal B·H=${BH} T=${T} D=${D}`;
    o.log?.(label);
    const values = { q: rand([BH, T, D], 1), k: rand([BH, T, D], 2), v: rand([BH, T, D], 3), w: rand([BH, T, D], 4) };
    const { exes, notRun } = await compileModes(dev, (mode) => attentionGraph(T, mode === 'fused'), { seed: null });
    for (const exe of Object.values(exes)) for (const [name, t] of Object.entries(values)) exe.setParam(name, t);
    const runOf = (exe: Executable | undefined) => exe && (async () => (await exe.run({}, { download: ['loss'] })).outputs.loss.data[0]);
    const runs = { fused: runOf(exes.fused), unfused: runOf(exes.unfused) };

    // TF.js composes the same ops and differentiates them.
    const peer = async (backend: 'webgpu' | 'cpu') => {
      await useBackend(tf, backend);
      const t = Object.fromEntries(Object.entries(values).map(([k, v]) => [k, tf.tensor(Array.from(v.data), [...v.shape])]));
      const hidden = tf.tidy(() => tf.mul(tf.sub(1, tf.linalg.bandPart(tf.ones([T, T]), -1, 0)), -1e9));
      const f = (q: TF.Tensor, k: TF.Tensor, v: TF.Tensor) =>
        tf.sum(tf.mul(tf.matMul(tf.softmax(tf.add(tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(D)), hidden)), v), t.w));
      const vg = tf.valueAndGrads(f as (...x: TF.Tensor[]) => TF.Scalar);
      const once = async () => {
        const r = tf.tidy(() => {
          const { value, grads } = vg([t.q, t.k, t.v]);
          return tf.stack([value, ...grads.map((g) => tf.sum(g))]);
        });
        const d = await r.data();
        r.dispose();
        return d[0];
      };
      const dispose = () => (Object.values(t).forEach((x) => x.dispose()), hidden.dispose());
      return { once, dispose };
    };
    // Kiln fused, Kiln unfused and TF.js WebGPU timed in turns (one run of each per round), so load from elsewhere
    // on a shared machine falls on all three alike
    const wgPeer = await peer('webgpu');
    const losses = { fused: await runs.fused?.(), unfused: await runs.unfused?.(), tf: await wgPeer.once() };
    const turns = await measureInTurns({ ...runs, tf: wgPeer.once }, { warmup: 1, repeats: o.repeats, maxMs: 60_000 });
    wgPeer.dispose();
    const wg = { stats: turns.tf, loss: losses.tf };
    const kiln: Record<Mode, { side: Side; loss: number } | string> = { fused: '', unfused: '' };
    for (const mode of ['fused', 'unfused'] as const) {
      const exe = exes[mode];
      kiln[mode] = exe ? { side: { stats: turns[mode], kernels: exe.stats.dispatchesPerRun, deviceBytes: exe.stats.intermediateBytes }, loss: losses[mode]! } : notRun[mode]!;
      exe?.destroy();
    }
    let cpu: { stats: Stats } | null = null;
    if (o.cpu) {
      const c = await peer('cpu');
      cpu = { stats: await measure(c.once, { warmup: 1, repeats: Math.max(2, Math.ceil(o.repeats / 3)), maxMs: 60_000 }) };
      c.dispose();
    }
    for (const mode of ['fused', 'unfused'] as const) {
      const k = kiln[mode];
      const side = typeof k === 'string' ? null : k.side;
      const err = typeof k === 'string' ? NaN : Math.abs(k.loss - wg.loss) / Math.max(Math.abs(wg.loss), 1e-12);
      rows.push({
        group: 'attention',
        name: `${label}: ${mode}`,
        kiln: side,
        tfWebgpu: { stats: wg.stats },
        tfCpu: cpu ? { stats: cpu.stats } : null,
        check: typeof k === 'string' ? null : { ok: err < 1e-3, relErr: err },
        note: typeof k === 'string' ? k : 'MiB: Kiln intermediates (attention scratch); fused, unfused and TF.js timed in turns, TF.js shown on both rows',
      });
    }
  }
  rows.push(...(await stepRows(dev, o)));
  return rows;
}

/** The long-context training step: GPT (V256 d64 h4 L1 B1), one AdamW step, fused vs unfused attention. */
const STEP = { vocab: 256, d: 64, heads: 4, layers: 1, B: 1 };

/**
 * A GPT training step at growing T with every attention fused and with none: the unfused graph holds the
 * [B, heads, T, T] scores and stops compiling once they pass the device's storage-binding limit (lavapipe: 128 MiB,
 * T 4096 here); the fused one keeps O(T) memory. Device bytes: every buffer the step's executable allocated.
 */
export async function stepRows(dev: KilnDevice, o: BenchOptions): Promise<Row[]> {
  const sizes = (o as BenchOptions & { stepSizes?: number[] }).stepSizes ?? (o.quick ? [32] : [1024, 2048, 4096]);
  const rows: Row[] = [];
  for (const T of sizes) {
    const label = `GPT train step (V${STEP.vocab} d${STEP.d} h${STEP.heads} L${STEP.layers} B${STEP.B}) T=${T}`;
    const { graph } = compileModel('src/models/gpt.kiln', { entry: 'loss', set: { vocab: STEP.vocab, d: STEP.d, heads: STEP.heads, layers: STEP.layers, ctx: T, dropout: 0 }, dims: { B: STEP.B, T } });
    const ints = (f: (i: number) => number): HostTensor => ({ dtype: 'i32', shape: [STEP.B, T], data: Int32Array.from({ length: STEP.B * T }, (_, i) => f(i)) });
    const feeds: Record<string, HostTensor> = {
      tokens: ints((i) => (i * 31 + 7) % STEP.vocab),
      targets: ints((i) => (i * 17 + 3) % STEP.vocab),
      lr: { dtype: 'f32', shape: [], data: Float32Array.of(1e-3) },
      step: { dtype: 'f32', shape: [], data: Float32Array.of(1) },
    };
    const { exes, notRun } = await compileModes(dev, (mode) => {
      o.log?.(`${label}: ${mode}`);
      return compileIR(graph, { train: { optimizer: { kind: 'adamw', clip: 0 } }, passes: { 'attention-fusion': mode === 'fused' ? {} : false } });
    });
    // each run is one AdamW step from the parameters the last run left: the loss reported is the first step's
    const runOf = (exe: Executable | undefined) => exe && (async () => (await exe.run(feeds, { download: ['loss'] })).outputs.loss.data[0]);
    const runs = { fused: runOf(exes.fused), unfused: runOf(exes.unfused) };
    const losses = { fused: await runs.fused?.(), unfused: await runs.unfused?.() };
    const turns = await measureInTurns(runs, { warmup: 0, repeats: Math.min(o.repeats, 3), maxMs: 20_000 });
    for (const mode of ['fused', 'unfused'] as const) {
      const exe = exes[mode];
      const loss = losses[mode];
      if (!exe || loss === undefined) {
        rows.push({ group: 'attention', name: `${label}: ${mode}`, kiln: null, tfWebgpu: null, tfCpu: null, check: null, note: notRun[mode]!.split('\n')[0] });
        continue;
      }
      rows.push({
        group: 'attention',
        name: `${label}: ${mode}`,
        kiln: { stats: turns[mode], kernels: exe.stats.dispatchesPerRun, deviceBytes: exe.stats.deviceBytes },
        tfWebgpu: null,
        tfCpu: null,
        check: Number.isFinite(loss) ? null : { ok: false, relErr: NaN },
        note: `loss ${loss.toFixed(4)}; MiB: every buffer of the step (params, optimizer state, intermediates); intermediates ${(exe.stats.intermediateBytes / 2 ** 20).toFixed(1)} MiB; fused and unfused timed in turns`,
      });
      exe.destroy();
    }
  }
  return rows;
}

/** Fused vs unfused speedup at each T ≥ 512 (the target: ≥ 2×). */
export function attentionTargets(rows: Row[]): Target[] {
  const out: Target[] = [];
  for (const f of rows.filter((r) => r.group === 'attention' && r.name.startsWith('attention ') && r.name.endsWith(': fused'))) {
    const T = Number(/T=(\d+)/.exec(f.name)?.[1]);
    const u = rows.find((r) => r.name === f.name.replace(/: fused$/, ': unfused'));
    if (!(T >= 512) || !f.kiln) continue;
    if (!u?.kiln) {
      out.push({ what: `attention T=${T}: fused vs unfused`, want: '≥ 2×', got: 'unfused path not run (limits)', met: true });
      continue;
    }
    const s = u.kiln.stats.median / f.kiln.stats.median;
    out.push({ what: `attention T=${T}: fused vs unfused`, want: '≥ 2×', got: `${s.toFixed(2)}×`, met: s >= 2 });
  }
  // The long-context step: the largest T each path trained at.
  const step = rows.filter((r) => r.name.startsWith('GPT train step'));
  const largest = (mode: string) => Math.max(0, ...step.filter((r) => r.name.endsWith(`: ${mode}`) && r.kiln).map((r) => Number(/T=(\d+)/.exec(r.name)?.[1])));
  // Only meaningful once the sizes reach the unfused path's limit (not with --quick).
  if (step.some((r) => r.name.endsWith(': unfused') && !r.kiln)) {
    const [f, u] = [largest('fused'), largest('unfused')];
    out.push({ what: 'GPT train step: largest T trained (fused / unfused)', want: 'fused trains past the unfused limit', got: `${f} / ${u}`, met: f > u });
  }
  return out;
}
