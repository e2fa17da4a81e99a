/**
 * Initialising a model from weights trained elsewhere (`kiln train --init-from PATH`): a Kiln checkpoint of any
 * objective, or a `.safetensors` file in Kiln's layout or a foreign one — Hugging Face GPT-2 (Conv1D weights stored
 * [in, out], q/k/v fused in `c_attn`) and BERT (Linear weights stored [out, in]) — mapped onto the library models'
 * parameter names. Every mismatch (missing, extra, wrong shape) is reported together, before any work.
 */
import { existsSync, statSync } from 'node:fs';
import { KilnError } from '../errors.js';
import type { HostTensor } from '../ir/tensor.js';
import { allocData } from '../ir/tensor.js';
import type { DType } from '../ir/types.js';
import { fmtShape, numel, sameShape } from '../ir/types.js';
import { readSafetensors } from '../io/safetensors.js';
import { loadCheckpoint } from './checkpoint.js';

export type WeightLayout = 'kiln' | 'hf-gpt2' | 'hf-bert';

export interface InitResult {
  /** Tensors for the model's parameters, under its names. */
  params: Record<string, HostTensor>;
  /** Parameters the file does not have, left at their initialisers (allowed by `allowMissing`). */
  fresh: string[];
  layout: WeightLayout;
  notes: string[];
}

/** `*` matches any run of characters (dots included), `?` one character: `h.*.attn.*`, `head.*`. */
export function globMatcher(patterns: readonly string[]): (name: string) => boolean {
  const res = patterns.map((p) => new RegExp(`^${p.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.')}$`));
  return (name) => res.some((r) => r.test(name));
}

export function detectLayout(names: readonly string[]): WeightLayout {
  if (names.some((n) => /(^|\.)h\.\d+\.attn\.c_attn\./.test(n) || n === 'transformer.wte.weight' || n === 'wte.weight')) return 'hf-gpt2';
  if (names.some((n) => /(^|\.)encoder\.layer\.\d+\.attention\.self\./.test(n))) return 'hf-bert';
  return 'kiln';
}

const slice2 = (t: HostTensor, c0: number, c1: number): HostTensor => {
  // columns [c0, c1) of a [rows, cols] matrix, or elements [c0, c1) of a vector
  if (t.shape.length === 1) return { dtype: t.dtype, shape: [c1 - c0], data: t.data.slice(c0, c1) };
  const [rows, cols] = t.shape;
  const data = allocData(t.dtype, rows * (c1 - c0));
  for (let r = 0; r < rows; r++) data.set(t.data.subarray(r * cols + c0, r * cols + c1), r * (c1 - c0));
  return { dtype: t.dtype, shape: [rows, c1 - c0], data };
};
const transpose2 = (t: HostTensor): HostTensor => {
  const [r, c] = t.shape;
  const data = allocData(t.dtype, r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) data[j * r + i] = t.data[i * c + j];
  return { dtype: t.dtype, shape: [c, r], data };
};
const rows = (t: HostTensor, n: number): HostTensor => ({ dtype: t.dtype, shape: [n, ...t.shape.slice(1)], data: t.data.slice(0, n * numel(t.shape.slice(1))) });
const addRow = (t: HostTensor, row: HostTensor): HostTensor => {
  const w = row.data.length;
  const data = Float32Array.from(t.data, (v, i) => v + row.data[i % w]);
  return { dtype: t.dtype, shape: [...t.shape], data };
};

/** Foreign tensors that are not parameters of any model (attention mask buffers, position id tables). */
const BUFFERS = [/\.attn\.(masked_)?bias$/, /position_ids$/];
/** Parts of foreign checkpoints the library models do not have (the pooler, next-sentence head): noted, not errors. */
const UNUSED = [/(^|\.)pooler\./, /^cls\.seq_relationship\./];

/**
 * Maps foreign tensors to Kiln names. `want` gives the model's shapes: position tables are cut to the model's
 * context, BERT's token-type 0 embedding is folded into the position table (Kiln's BERT has no segment input).
 */
function mapForeign(t: Record<string, HostTensor>, layout: WeightLayout, want: Record<string, { shape: number[] }>, notes: string[]): { out: Record<string, HostTensor>; used: Set<string> } {
  const out: Record<string, HostTensor> = {};
  const used = new Set<string>();
  const get = (name: string) => {
    const hit = [name, `transformer.${name}`, `bert.${name}`].find((k) => k in t);
    if (hit) used.add(hit);
    return hit ? t[hit] : undefined;
  };
  const put = (name: string, v: HostTensor | undefined) => {
    if (v) out[name] = v;
  };
  const ctxRows = (name: string, v: HostTensor | undefined) => (v && want[name] && v.shape[0] > want[name].shape[0] ? rows(v, want[name].shape[0]) : v);
  if (layout === 'hf-gpt2') {
    put('wte', get('wte.weight'));
    put('wpe', ctxRows('wpe', get('wpe.weight')));
    for (const prefix of ['ln_f']) {
      put(`${prefix}.g`, get(`${prefix}.weight`));
      put(`${prefix}.b`, get(`${prefix}.bias`));
    }
    for (let i = 0; get(`h.${i}.ln_1.weight`) !== undefined; i++) {
      const h = `h.${i}`;
      for (const ln of ['ln_1', 'ln_2']) {
        put(`${h}.${ln}.g`, get(`${h}.${ln}.weight`));
        put(`${h}.${ln}.b`, get(`${h}.${ln}.bias`));
      }
      const w = get(`${h}.attn.c_attn.weight`);
      const b = get(`${h}.attn.c_attn.bias`);
      if (w && b) {
        const d = w.shape[1] / 3;
        ['q', 'k', 'v'].forEach((x, j) => {
          put(`${h}.attn.${x}.w`, slice2(w, j * d, (j + 1) * d));
          put(`${h}.attn.${x}.b`, slice2(b, j * d, (j + 1) * d));
        });
      }
      for (const [src, dst] of [['attn.c_proj', 'attn.proj'], ['mlp.c_fc', 'mlp.fc'], ['mlp.c_proj', 'mlp.proj']]) {
        put(`${h}.${dst}.w`, get(`${h}.${src}.weight`));
        put(`${h}.${dst}.b`, get(`${h}.${src}.bias`));
      }
    }
    const head = get('lm_head.weight');
    if (head && !out.wte) put('wte', head);
    else if (head && 'lm_head.w' in want) put('lm_head.w', transpose2(head));
    else if (head) notes.push('lm_head.weight: tied to wte in this model, not loaded separately');
  } else if (layout === 'hf-bert') {
    const e = 'embeddings';
    put('tok_emb', get(`${e}.word_embeddings.weight`));
    let pos = ctxRows('pos_emb', get(`${e}.position_embeddings.weight`));
    const tt = get(`${e}.token_type_embeddings.weight`);
    if (pos && tt) {
      const d = tt.shape.at(-1)!;
      pos = addRow(pos, { dtype: tt.dtype, shape: [d], data: tt.data.slice(0, d) });
      notes.push('token_type_embeddings[0] folded into pos_emb (the model has no segment input)');
    }
    put('pos_emb', pos);
    put('ln_emb.g', get(`${e}.LayerNorm.weight`));
    put('ln_emb.b', get(`${e}.LayerNorm.bias`));
    const lin = (dst: string, src: string) => {
      const w = get(`${src}.weight`);
      put(`${dst}.w`, w && transpose2(w)); // torch Linear stores [out, in]
      put(`${dst}.b`, get(`${src}.bias`));
    };
    const ln = (dst: string, src: string) => {
      put(`${dst}.g`, get(`${src}.weight`));
      put(`${dst}.b`, get(`${src}.bias`));
    };
    for (let i = 0; get(`encoder.layer.${i}.attention.self.query.weight`) !== undefined; i++) {
      const s = `encoder.layer.${i}`;
      const d = `layer.${i}`;
      lin(`${d}.attn.q`, `${s}.attention.self.query`);
      lin(`${d}.attn.k`, `${s}.attention.self.key`);
      lin(`${d}.attn.v`, `${s}.attention.self.value`);
      lin(`${d}.attn.proj`, `${s}.attention.output.dense`);
      ln(`${d}.ln_1`, `${s}.attention.output.LayerNorm`);
      lin(`${d}.mlp.fc`, `${s}.intermediate.dense`);
      lin(`${d}.mlp.proj`, `${s}.output.dense`);
      ln(`${d}.ln_2`, `${s}.output.LayerNorm`);
    }
    lin('head.dense', 'cls.predictions.transform.dense');
    ln('head.ln', 'cls.predictions.transform.LayerNorm');
    put('head_bias', get('cls.predictions.bias'));
    if (get('cls.predictions.decoder.weight')) notes.push('cls.predictions.decoder.weight: tied to tok_emb in this model, not loaded separately');
    get('cls.predictions.decoder.bias');
  } else {
    for (const [k, v] of Object.entries(t)) {
      out[k] = v;
      used.add(k);
    }
  }
  return { out, used };
}

function readWeights(path: string): Record<string, HostTensor> {
  if (!existsSync(path)) throw new KilnError(`--init-from ${path}: no such file or folder`);
  if (statSync(path).isDirectory()) return loadCheckpoint(path).params; // a Kiln run or step folder, any objective
  return readSafetensors(path);
}

/**
 * The model's parameters from `path`, checked against `want` (name -> dtype and shape). Parameters matching
 * `allowMissing` may be absent (a new task head): they keep their initialisers and are listed in `fresh`.
 */
export function loadInitWeights(path: string, want: Record<string, { dtype: DType; shape: number[] }>, opts: { allowMissing?: string[]; layout?: WeightLayout } = {}): InitResult {
  const tensors = readWeights(path);
  const layout = opts.layout ?? detectLayout(Object.keys(tensors));
  const notes: string[] = [];
  const { out, used } = mapForeign(tensors, layout, want, notes);
  const allowed = globMatcher(opts.allowMissing ?? []);
  const problems: string[] = [];
  const fresh: string[] = [];
  const params: Record<string, HostTensor> = {};
  for (const [name, w] of Object.entries(want)) {
    const t = out[name];
    if (!t) {
      if (allowed(name)) fresh.push(name);
      else problems.push(`missing: ${name} ${w.dtype}${fmtShape(w.shape)}`);
      continue;
    }
    if (!sameShape(t.shape, w.shape)) problems.push(`shape: ${name} is ${fmtShape(t.shape)} in the file, ${fmtShape(w.shape)} in the model`);
    else if (t.dtype !== w.dtype) problems.push(`dtype: ${name} is ${t.dtype} in the file, ${w.dtype} in the model`);
    else params[name] = t;
  }
  const extra = layout === 'kiln' ? Object.keys(out).filter((k) => !(k in want)) : Object.keys(tensors).filter((k) => !used.has(k) && !BUFFERS.some((r) => r.test(k)));
  for (const k of extra) {
    if (UNUSED.some((r) => r.test(k))) notes.push(`not used by this model: ${k}`);
    else problems.push(`extra: ${k} ${tensors[k]?.dtype ?? out[k].dtype}${fmtShape((tensors[k] ?? out[k]).shape)} (no parameter of the model takes it)`);
  }
  if (problems.length) {
    throw new KilnError(
      `--init-from ${path} (${layout} layout) does not fit the model:\n  ${problems.join('\n  ')}` +
        (problems.some((p) => p.startsWith('missing')) ? `\n(parameters allowed to start fresh, such as a new head: --init-allow-missing 'head.*')` : ''),
    );
  }
  return { params, fresh, layout, notes };
}
