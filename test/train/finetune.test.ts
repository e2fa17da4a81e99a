// Fine-tuning: initialising from weights in Kiln's, Hugging Face GPT-2's and BERT's layouts (the foreign files are
// written here from Kiln weights with an independent mapping, and must give back the same logits), the mismatch
// report, and frozen parameters (no gradient, no update, no optimizer state; bit-for-bit unchanged).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileModel } from '../../src/frontend/index.js';
import { interpret } from '../../src/interp/interpreter.js';
import { initParam } from '../../src/ir/init.js';
import type { AttrsOf } from '../../src/ir/op.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import { encodeSafetensors } from '../../src/io/safetensors.js';
import { compileIR } from '../../src/passes/index.js';
import { loadInitWeights } from '../../src/train/init-from.js';
import { InterpreterRunner } from '../../src/train/runner.js';
import { trainableNames } from '../../src/train/trainer.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'kiln-finetune-'));
const set = { d: 8, heads: 2, layers: 2, vocab: 13, ctx: 6, d_ff: 16 };

function model(file: string) {
  const { graph } = compileModel(file, { entry: 'forward', set, dims: { B: 2, T: 6 } });
  const params: Record<string, HostTensor> = {};
  const want: Record<string, { dtype: 'f32'; shape: number[] }> = {};
  for (const n of graph.nodes) {
    if (n.op !== 'param') continue;
    const a = n.attrs as AttrsOf<'param'>;
    // non-trivial values everywhere (biases and gains too), so a wrong mapping shows in the logits
    params[a.name] = initParam({ kind: 'uniform', low: -0.5, high: 0.5 }, n.type, a.name, 7);
    want[a.name] = { dtype: 'f32', shape: [...n.type.shape] };
  }
  const tokens: HostTensor = { dtype: 'i32', shape: [2, 6], data: Int32Array.from({ length: 12 }, (_, i) => (i * 5 + 1) % 13) };
  const logits = (p: Record<string, HostTensor>) => interpret(graph, { inputs: { tokens }, params: p }).logits;
  return { graph, params, want, logits };
}

const f32 = (shape: number[], data: ArrayLike<number>): HostTensor => ({ dtype: 'f32', shape, data: Float32Array.from(data) });
const T = (t: HostTensor) => {
  const [r, c] = t.shape;
  return f32([c, r], Array.from({ length: r * c }, (_, k) => t.data[(k % r) * c + Math.floor(k / r)]));
};
const catCols = (ts: HostTensor[]) => {
  if (ts[0].shape.length === 1) return f32([ts.reduce((s, t) => s + t.shape[0], 0)], ts.flatMap((t) => Array.from(t.data)));
  const r = ts[0].shape[0];
  const out: number[] = [];
  for (let i = 0; i < r; i++) for (const t of ts) out.push(...Array.from(t.data.slice(i * t.shape[1], (i + 1) * t.shape[1])));
  return f32([r, ts.reduce((s, t) => s + t.shape[1], 0)], out);
};
const padRows = (t: HostTensor, n: number) => f32([n, t.shape[1]], [...Array.from(t.data), ...new Array((n - t.shape[0]) * t.shape[1]).fill(0.25)]);

describe('--init-from foreign layouts reproduce the logits of the weights they were written from', () => {
  it('Hugging Face GPT-2: fused c_attn split into q/k/v, Conv1D [in, out], longer position table cut to ctx', () => {
    const m = model('src/models/gpt.kiln');
    const p = m.params;
    const hf: Record<string, HostTensor> = { 'transformer.wte.weight': p.wte, 'transformer.wpe.weight': padRows(p.wpe, 16), 'transformer.ln_f.weight': p['ln_f.g'], 'transformer.ln_f.bias': p['ln_f.b'], 'lm_head.weight': p.wte };
    for (let i = 0; i < set.layers; i++) {
      const h = `h.${i}`;
      const t = `transformer.h.${i}`;
      Object.assign(hf, {
        [`${t}.ln_1.weight`]: p[`${h}.ln_1.g`], [`${t}.ln_1.bias`]: p[`${h}.ln_1.b`], [`${t}.ln_2.weight`]: p[`${h}.ln_2.g`], [`${t}.ln_2.bias`]: p[`${h}.ln_2.b`],
        [`${t}.attn.c_attn.weight`]: catCols(['q', 'k', 'v'].map((x) => p[`${h}.attn.${x}.w`])),
        [`${t}.attn.c_attn.bias`]: catCols(['q', 'k', 'v'].map((x) => p[`${h}.attn.${x}.b`])),
        [`${t}.attn.c_proj.weight`]: p[`${h}.attn.proj.w`], [`${t}.attn.c_proj.bias`]: p[`${h}.attn.proj.b`],
        [`${t}.mlp.c_fc.weight`]: p[`${h}.mlp.fc.w`], [`${t}.mlp.c_fc.bias`]: p[`${h}.mlp.fc.b`],
        [`${t}.mlp.c_proj.weight`]: p[`${h}.mlp.proj.w`], [`${t}.mlp.c_proj.bias`]: p[`${h}.mlp.proj.b`],
        [`${t}.attn.bias`]: f32([1, 1, 6, 6], new Array(36).fill(1)), // a mask buffer, not a parameter
      });
    }
    const file = join(tmp(), 'gpt2.safetensors');
    writeFileSync(file, encodeSafetensors(hf));
    const r = loadInitWeights(file, m.want);
    expect(r.layout).toBe('hf-gpt2');
    expect(r.fresh).toEqual([]);
    expect(Array.from(m.logits(r.params).data)).toEqual(Array.from(m.logits(p).data));
  });

  it('Hugging Face BERT: Linear [out, in] transposed, token-type 0 folded into positions; the pooler is noted, not loaded', () => {
    const m = model('src/models/bert.kiln');
    const p = m.params;
    const tt0 = f32([2, set.d], Array.from({ length: 2 * set.d }, (_, i) => 0.125 * ((i % 5) - 2)));
    const e = 'bert.embeddings';
    const hf: Record<string, HostTensor> = {
      [`${e}.word_embeddings.weight`]: p.tok_emb,
      [`${e}.position_embeddings.weight`]: f32([...p.pos_emb.shape], Array.from(p.pos_emb.data, (v, i) => v - tt0.data[i % set.d])),
      [`${e}.token_type_embeddings.weight`]: tt0,
      [`${e}.LayerNorm.weight`]: p['ln_emb.g'], [`${e}.LayerNorm.bias`]: p['ln_emb.b'],
      'cls.predictions.transform.dense.weight': T(p['head.dense.w']), 'cls.predictions.transform.dense.bias': p['head.dense.b'],
      'cls.predictions.transform.LayerNorm.weight': p['head.ln.g'], 'cls.predictions.transform.LayerNorm.bias': p['head.ln.b'],
      'cls.predictions.bias': p.head_bias,
      'bert.pooler.dense.weight': f32([set.d, set.d], new Array(set.d * set.d).fill(0)),
    };
    for (let i = 0; i < set.layers; i++) {
      const s = `bert.encoder.layer.${i}`;
      const d = `layer.${i}`;
      const lin = (src: string, dst: string) => Object.assign(hf, { [`${s}.${src}.weight`]: T(p[`${d}.${dst}.w`]), [`${s}.${src}.bias`]: p[`${d}.${dst}.b`] });
      const ln = (src: string, dst: string) => Object.assign(hf, { [`${s}.${src}.weight`]: p[`${d}.${dst}.g`], [`${s}.${src}.bias`]: p[`${d}.${dst}.b`] });
      lin('attention.self.query', 'attn.q');
      lin('attention.self.key', 'attn.k');
      lin('attention.self.value', 'attn.v');
      lin('attention.output.dense', 'attn.proj');
      ln('attention.output.LayerNorm', 'ln_1');
      lin('intermediate.dense', 'mlp.fc');
      lin('output.dense', 'mlp.proj');
      ln('output.LayerNorm', 'ln_2');
    }
    const file = join(tmp(), 'bert.safetensors');
    writeFileSync(file, encodeSafetensors(hf));
    const r = loadInitWeights(file, m.want);
    expect(r.layout).toBe('hf-bert');
    expect(r.notes.join('\n')).toMatch(/not used by this model: bert\.pooler\.dense\.weight/);
    const want = m.logits(p).data;
    m.logits(r.params).data.forEach((v, i) => expect(Math.abs(v - want[i])).toBeLessThan(1e-5)); // pos - tt + tt: one rounding
  });

  it('every mismatch is reported at once; allowed missing parameters start fresh and are listed', () => {
    const m = model('src/models/gpt.kiln');
    const p = { ...m.params };
    delete p['ln_f.g'];
    delete p['h.1.mlp.fc.b'];
    p['h.0.attn.q.w'] = f32([4, 4], new Array(16).fill(0));
    const file = join(tmp(), 'kiln.safetensors');
    writeFileSync(file, encodeSafetensors({ ...p, 'stray.w': f32([2], [1, 2]) }));
    let msg = '';
    try {
      loadInitWeights(file, m.want);
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toMatch(/missing: h\.1\.mlp\.fc\.b/);
    expect(msg).toMatch(/missing: ln_f\.g/);
    expect(msg).toMatch(/shape: h\.0\.attn\.q\.w is \[4, 4\] in the file, \[8, 8\] in the model/);
    expect(msg).toMatch(/extra: stray\.w/);
    const ok = { ...m.params };
    delete ok['ln_f.g'];
    writeFileSync(file, encodeSafetensors(ok));
    expect(loadInitWeights(file, m.want, { allowMissing: ['ln_f.*'] }).fresh).toEqual(['ln_f.g']);
  });
});

describe('freezing', () => {
  it('frozen parameters get no gradient, update or optimizer state, and stay bit-for-bit unchanged', async () => {
    const { graph } = compileModel('src/models/gpt.kiln', { entry: 'loss', set, dims: { B: 2, T: 6 } });
    const wrt = trainableNames(graph, { freeze: ['h.0.*', 'wpe'] })!;
    expect(wrt).not.toContain('h.0.attn.q.w');
    expect(wrt).toContain('h.1.attn.q.w');
    expect(() => trainableNames(graph, { train: ['nothing.*'] })).toThrow(/--train 'nothing\.\*' matches no parameter/);
    const step = compileIR(graph, { grad: { loss: 'loss', wrt }, train: { optimizer: { kind: 'adamw' } } });
    const names = step.outputs.map((o) => o.name);
    expect(names).not.toContain('update:h.0.attn.q.w');
    expect(step.nodes.some((n) => n.op === 'param' && (n.attrs as AttrsOf<'param'>).name === 'opt.m.h.0.attn.q.w')).toBe(false);
    expect(names).toContain('update:h.1.attn.q.w');
    const runner = new InterpreterRunner(step, 3);
    const before = await runner.getParams();
    const batch = {
      tokens: { dtype: 'i32' as const, shape: [2, 6], data: Int32Array.from({ length: 12 }, (_, i) => i % 13) },
      targets: { dtype: 'i32' as const, shape: [2, 6], data: Int32Array.from({ length: 12 }, (_, i) => (i + 1) % 13) },
      lr: { dtype: 'f32' as const, shape: [], data: Float32Array.of(0.01) },
      step: { dtype: 'f32' as const, shape: [], data: Float32Array.of(1) },
    };
    await runner.run(batch, ['loss']);
    await runner.run({ ...batch, step: { dtype: 'f32', shape: [], data: Float32Array.of(2) } }, ['loss']);
    const after = await runner.getParams();
    expect(Array.from(after['h.0.attn.q.w'].data)).toEqual(Array.from(before['h.0.attn.q.w'].data));
    expect(Array.from(after.wpe.data)).toEqual(Array.from(before.wpe.data));
    expect(Array.from(after['h.1.attn.q.w'].data)).not.toEqual(Array.from(before['h.1.attn.q.w'].data));
  });

  it('kiln train --init-from a Kiln checkpoint with --freeze: reports what it loaded and what trains', () => {
    const dir = tmp();
    const kiln = (...args: string[]) => spawnSync(process.execPath, [join(process.cwd(), 'bin', 'kiln.js'), ...args], { encoding: 'utf8' });
    const common = ['train', 'src/models/gpt.kiln', '--set', 'd=16,heads=2,layers=1,ctx=8', '--batch', '2', '--steps', '2', '--device', 'interp', '--eval-every', '0', '--data', 'sotu'];
    const a = kiln(...common, '--out', join(dir, 'a'));
    expect(a.status, a.stderr).toBe(0);
    const b = kiln(...common, '--out', join(dir, 'b'), '--init-from', join(dir, 'a'), '--freeze', 'wte,wpe');
    expect(b.status, b.stderr).toBe(0);
    expect(b.stdout).toMatch(/initialised from .* \(kiln layout\): 20 parameters/);
    expect(b.stdout).toMatch(/trainable: 18 of 20 parameter tensors/);
  });
});

describe('LoRA as a pass', () => {
  const lora = { r: 2, alpha: 4, targets: ['attn.q', 'attn.v'], dropout: 0 };

  it('with B = 0 the adapted model is exactly the base model; merged adapters equal the unmerged path', async () => {
    const m = model('src/models/gpt.kiln');
    const adapted = compileIR(m.graph, { lora });
    const extra = adapted.nodes.filter((n) => n.op === 'param' && /lora_[ab]$/.test((n.attrs as AttrsOf<'param'>).name));
    expect(extra.map((n) => (n.attrs as AttrsOf<'param'>).name).sort()).toEqual(['h.0.attn.q.lora_a', 'h.0.attn.q.lora_b', 'h.0.attn.v.lora_a', 'h.0.attn.v.lora_b', 'h.1.attn.q.lora_a', 'h.1.attn.q.lora_b', 'h.1.attn.v.lora_a', 'h.1.attn.v.lora_b']);
    const tokens: HostTensor = { dtype: 'i32', shape: [2, 6], data: Int32Array.from({ length: 12 }, (_, i) => (i * 5 + 1) % 13) };
    const run = (g: typeof adapted, p: Record<string, HostTensor>) => interpret(g, { inputs: { tokens }, params: p, seed: 0 }).logits;
    const zeroB: Record<string, HostTensor> = { ...m.params };
    for (const n of extra) {
      const a = n.attrs as AttrsOf<'param'>;
      zeroB[a.name] = a.name.endsWith('lora_b') ? f32([...n.type.shape], new Array(n.type.shape[0] * n.type.shape[1]).fill(0)) : initParam(a.init, n.type, a.name, 1);
    }
    // against the base model through the same pipeline (both with fused attention), bit for bit
    expect(Array.from(run(adapted, zeroB).data)).toEqual(Array.from(run(compileIR(m.graph, {}), m.params).data));
    // trained-looking adapters: the unmerged path against W + A·B·alpha/r
    const { mergeAdapter } = await import('../../src/cli/commands/lora.js');
    const withB = { ...zeroB };
    for (const n of extra) {
      const a = n.attrs as AttrsOf<'param'>;
      if (a.name.endsWith('lora_b')) withB[a.name] = initParam({ kind: 'normal', std: 0.3 }, n.type, a.name, 2);
    }
    const merged = { ...m.params };
    for (const h of ['h.0', 'h.1']) for (const t of ['q', 'v']) merged[`${h}.attn.${t}.w`] = mergeAdapter(m.params[`${h}.attn.${t}.w`], withB[`${h}.attn.${t}.lora_a`], withB[`${h}.attn.${t}.lora_b`], 4 / 2);
    const want = run(adapted, withB).data;
    m.logits(merged).data.forEach((v, i) => expect(Math.abs(v - want[i])).toBeLessThan(1e-5));
  });

  it('the LoRA path passes a finite-difference gradcheck', async () => {
    const { gradcheck } = await import('../../src/autodiff/gradcheck.js');
    const { graph } = compileModel('src/models/gpt.kiln', { entry: 'loss', set: { ...set, layers: 1 }, dims: { B: 1, T: 4 } });
    const adapted = compileIR(graph, { lora });
    const inputs = { tokens: { dtype: 'i32' as const, shape: [1, 4], data: Int32Array.of(1, 2, 3, 4) }, targets: { dtype: 'i32' as const, shape: [1, 4], data: Int32Array.of(2, 3, 4, 5) } };
    const params: Record<string, HostTensor> = {};
    for (const n of adapted.nodes) if (n.op === 'param') {
      const a = n.attrs as AttrsOf<'param'>;
      params[a.name] = initParam(a.name.endsWith('lora_b') ? { kind: 'normal', std: 0.2 } : a.init, n.type, a.name, 3);
    }
    const r = gradcheck(adapted, { inputs, params });
    expect(r.perParam.filter((p) => /lora/.test(p.name))).toHaveLength(4);
    expect(r.ok, `${r.worst?.name} ${r.worst?.worstRatio}`).toBe(true);
  });

  it('kiln train --lora trains only the adapters, checkpoints hold only them, and kiln lora merge folds them back', async () => {
    const dir = tmp();
    const kiln = (...args: string[]) => spawnSync(process.execPath, [join(process.cwd(), 'bin', 'kiln.js'), ...args], { encoding: 'utf8' });
    const common = ['train', 'src/models/gpt.kiln', '--set', 'd=16,heads=2,layers=1,ctx=8', '--batch', '2', '--steps', '2', '--device', 'interp', '--eval-every', '0', '--lr', '0.05'];
    const r = kiln(...common, '--out', join(dir, 'run'), '--lora', 'r=2,alpha=4,targets=attn.q,attn.v');
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/trainable: 4 of 24 parameter tensors/);
    const { loadCheckpoint } = await import('../../src/train/checkpoint.js');
    const ck = loadCheckpoint(join(dir, 'run'));
    expect(Object.keys(ck.params).sort()).toEqual(['h.0.attn.q.lora_a', 'h.0.attn.q.lora_b', 'h.0.attn.v.lora_a', 'h.0.attn.v.lora_b']);
    const out = join(dir, 'merged.safetensors');
    const mg = kiln('lora', 'merge', 'src/models/gpt.kiln', '--checkpoint', join(dir, 'run'), '--out', out);
    expect(mg.status, mg.stderr).toBe(0);
    expect(mg.stdout).toMatch(/merged 2 adapters into 20 parameters/);
    // the adapters alone are no model: eval says to merge; the merged checkpoint folder evaluates
    const refused = kiln('eval', 'src/models/gpt.kiln', '--checkpoint', join(dir, 'run'), '--device', 'interp', '--batches', '1');
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/holds LoRA adapters, not the model's weights: fold them in first with 'kiln lora merge/);
    expect(kiln('lora', 'merge', 'src/models/gpt.kiln', '--checkpoint', join(dir, 'run'), '--out', join(dir, 'merged')).status).toBe(0);
    const ev = kiln('eval', 'src/models/gpt.kiln', '--checkpoint', join(dir, 'merged'), '--device', 'interp', '--batches', '1');
    expect(ev.status, ev.stderr).toBe(0);
  });
});
