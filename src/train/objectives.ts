/**
 * Training objectives, the data side: each turns packed token windows into the inputs of a model's `loss` entry
 * (i32 tensors named as the library models' entries expect). Ignored target positions are -100.
 */
import { KilnError } from '../errors.js';
import type { HostTensor } from '../ir/tensor.js';
import type { Rng } from './rng.js';
import type { Tokenizer } from './tokenizers.js';

export const IGNORE = -100;
export const OBJECTIVES = ['clm', 'mlm', 'prefix', 'span', 'cls'] as const;
export type Objective = (typeof OBJECTIVES)[number];

export interface ObjectiveOptions {
  /** MLM: fraction of positions chosen (0.15). */
  maskRate?: number;
  wholeWord?: boolean;
  /** CLM: probability of a fill-in-the-middle rearrangement per sequence. */
  fimRate?: number;
  /** Span corruption: noise density and mean span length. */
  noiseDensity?: number;
  meanSpan?: number;
}

const i32 = (shape: number[], data: Int32Array): HostTensor => ({ dtype: 'i32', shape, data });

/** Tokens a window must hold: T + 1 for shifted objectives, S for span corruption. */
export function windowLength(obj: Objective, T: number): number {
  return obj === 'span' ? T : T + 1;
}

/** Fill-in-the-middle: prefix ⊕ suffix ⊕ middle, each part introduced by a sentinel, cut back to the window length. */
export function fimRearrange(seq: Int32Array, tok: Tokenizer, rng: Rng): Int32Array {
  const n = seq.length;
  let a = rng.int(n + 1);
  let b = rng.int(n + 1);
  if (a > b) [a, b] = [b, a];
  const [pre, mid, suf] = [seq.subarray(0, a), seq.subarray(a, b), seq.subarray(b)];
  const s = tok.special;
  const out = [s.sentinel(0), ...pre, s.sentinel(1), ...suf, s.sentinel(2), ...mid];
  return Int32Array.from(out.slice(0, n));
}

export function causalBatch(seqs: Int32Array[], T: number, tok: Tokenizer, rng: Rng, o: ObjectiveOptions = {}): Record<string, HostTensor> {
  const B = seqs.length;
  const tokens = new Int32Array(B * T);
  const targets = new Int32Array(B * T);
  seqs.forEach((raw, b) => {
    const seq = o.fimRate && rng.next() < o.fimRate ? fimRearrange(raw, tok, rng) : raw;
    for (let t = 0; t < T; t++) {
      tokens[b * T + t] = seq[t];
      const y = seq[t + 1];
      targets[b * T + t] = y === tok.special.pad ? IGNORE : y;
    }
  });
  return { tokens: i32([B, T], tokens), targets: i32([B, T], targets) };
}

/**
 * BERT masking: choose maskRate of the non-special positions (whole words if asked); of those 80% become [MASK],
 * 10% a random text token, 10% stay. Labels hold the original token at chosen positions, -100 elsewhere.
 */
export function maskedBatch(seqs: Int32Array[], T: number, tok: Tokenizer, rng: Rng, o: ObjectiveOptions = {}): Record<string, HostTensor> {
  const rate = o.maskRate ?? 0.15;
  const B = seqs.length;
  const tokens = new Int32Array(B * T);
  const labels = new Int32Array(B * T).fill(IGNORE);
  seqs.forEach((seq, b) => {
    const row = seq.subarray(0, T);
    const special = (id: number) => id < tok.textStart || id >= tok.textVocab;
    // candidate units: single positions, or whole words (a word start and the tokens that continue it)
    const units: number[][] = [];
    const starts = o.wholeWord ? tok.wordStarts(row) : [];
    for (let t = 0; t < T; t++) {
      if (special(row[t])) continue;
      if (o.wholeWord && units.length && !starts[t] && units[units.length - 1].at(-1) === t - 1) units[units.length - 1].push(t);
      else units.push([t]);
    }
    const chosen = new Set<number>();
    for (const u of units) if (rng.next() < rate) for (const t of u) chosen.add(t);
    for (let t = 0; t < T; t++) {
      let id = row[t];
      if (chosen.has(t)) {
        labels[b * T + t] = id;
        const r = rng.next();
        if (r < 0.8) id = tok.special.mask;
        else if (r < 0.9) id = tok.textStart + rng.int(tok.textVocab - tok.textStart);
      }
      tokens[b * T + t] = id;
    }
  });
  return { tokens: i32([B, T], tokens), labels: i32([B, T], labels) };
}

/** Prefix LM: a random prefix length p in [1, T-1] per sequence; bidirectional over the prefix, loss on the rest. */
export function prefixBatch(seqs: Int32Array[], T: number, tok: Tokenizer, rng: Rng): Record<string, HostTensor> {
  const B = seqs.length;
  const { tokens, targets } = causalBatch(seqs, T, tok, rng);
  const plen = new Int32Array(B);
  for (let b = 0; b < B; b++) {
    const p = 1 + rng.int(Math.max(1, T - 1));
    plen[b] = p;
    // position t predicts token t+1; positions before p-1 would predict tokens inside the prefix, which they see
    for (let t = 0; t < p - 1; t++) targets.data[b * T + t] = IGNORE;
  }
  return { tokens, targets, prefix_len: i32([B], plen) };
}

/** Length of the decoder sequence that span corruption of an S-token window needs (targets never exceed it). */
export function spanTargetLength(S: number, o: ObjectiveOptions = {}): number {
  const density = o.noiseDensity ?? 0.15;
  const mean = o.meanSpan ?? 3;
  const noise = Math.max(1, Math.round(S * density));
  const spans = Math.max(1, Math.round(noise / mean));
  return noise + spans + 1;
}

/**
 * T5 span corruption: noise spans (density 15%, mean length 3) are replaced in the source by sentinels; the target
 * lists each sentinel followed by the span it hides, then end-of-text. The decoder input is the target shifted right
 * (teacher forcing) starting from pad.
 */
export function spanBatch(seqs: Int32Array[], S: number, T: number, tok: Tokenizer, rng: Rng, o: ObjectiveOptions = {}): Record<string, HostTensor> {
  const B = seqs.length;
  const density = o.noiseDensity ?? 0.15;
  const mean = o.meanSpan ?? 3;
  const src = new Int32Array(B * S).fill(tok.special.pad);
  const dec = new Int32Array(B * T).fill(tok.special.pad);
  const tgt = new Int32Array(B * T).fill(IGNORE);
  seqs.forEach((raw, b) => {
    const seq = raw.subarray(0, S);
    const noiseTotal = Math.max(1, Math.round(seq.length * density));
    const nSpans = Math.min(tok.special.sentinels, Math.max(1, Math.round(noiseTotal / mean)));
    // span lengths: a random composition of noiseTotal into nSpans positive parts; same for the kept gaps
    const split = (total: number, parts: number) => {
      const cuts = new Set<number>();
      while (cuts.size < parts - 1) cuts.add(1 + rng.int(total - 1));
      const c = [0, ...[...cuts].sort((x, y) => x - y), total];
      return c.slice(1).map((v, i) => v - c[i]);
    };
    const noise = split(noiseTotal, nSpans);
    const keep = split(seq.length - noiseTotal + 1, nSpans + 1).map((v, i) => (i === 0 ? v - 1 : v));
    const s: number[] = [];
    const t: number[] = [];
    let pos = 0;
    for (let k = 0; k < nSpans; k++) {
      for (let j = 0; j < keep[k]; j++) s.push(seq[pos++]);
      s.push(tok.special.sentinel(k));
      t.push(tok.special.sentinel(k));
      for (let j = 0; j < noise[k]; j++) t.push(seq[pos++]);
    }
    while (pos < seq.length) s.push(seq[pos++]);
    t.push(tok.special.eos);
    if (t.length > T) throw new KilnError(`span corruption needs a decoder length of ${t.length}, the model has T=${T}`);
    s.forEach((v, i) => (src[b * S + i] = v));
    t.forEach((v, i) => {
      tgt[b * T + i] = v;
      if (i + 1 < T) dec[b * T + i + 1] = v;
    });
  });
  return { src: i32([B, S], src), dec_in: i32([B, T], dec), targets: i32([B, T], tgt) };
}

/** The inputs of a model's `loss` entry that each objective's batches provide (besides `rng_seed`). */
export const OBJECTIVE_INPUTS: Record<Objective, readonly string[]> = {
  clm: ['tokens', 'targets'],
  mlm: ['tokens', 'labels'],
  prefix: ['tokens', 'targets', 'prefix_len'],
  span: ['src', 'dec_in', 'targets'],
  cls: ['tokens', 'lengths', 'labels'],
};

/** The entry an objective trains (and the one its evaluation runs, reporting `correct` as well for accuracy). */
export const lossEntry = (obj: Objective): string => (obj === 'cls' ? 'cls_loss' : 'loss');
export const evalEntry = (obj: Objective): string => (obj === 'cls' ? 'cls_eval' : 'loss');

/**
 * Sequence classification: each window is one example as `loadLabelled` packs it — its label, then T - 1 tokens of
 * text padded with the tokenizer's pad id (the window's last token is the next example's label, and is dropped).
 * `lengths` counts the real tokens (at least 1), which a causal model reads its prediction from.
 */
export function clsBatch(seqs: Int32Array[], T: number, tok: Tokenizer): Record<string, HostTensor> {
  const B = seqs.length;
  const tokens = new Int32Array(B * T).fill(tok.special.pad);
  const labels = new Int32Array(B);
  const lengths = new Int32Array(B);
  seqs.forEach((w, b) => {
    labels[b] = w[0];
    let n = 0;
    for (let t = 0; t < T - 1; t++) {
      tokens[b * T + t] = w[1 + t];
      if (w[1 + t] !== tok.special.pad) n = t + 1;
    }
    lengths[b] = Math.max(1, n);
  });
  return { tokens: i32([B, T], tokens), lengths: i32([B], lengths), labels: i32([B], labels) };
}

export function makeBatch(obj: Objective, seqs: Int32Array[], dims: { T: number; S?: number }, tok: Tokenizer, rng: Rng, o: ObjectiveOptions = {}): Record<string, HostTensor> {
  switch (obj) {
    case 'clm':
      return causalBatch(seqs, dims.T, tok, rng, o);
    case 'mlm':
      return maskedBatch(seqs, dims.T, tok, rng, o);
    case 'prefix':
      return prefixBatch(seqs, dims.T, tok, rng);
    case 'span':
      return spanBatch(seqs, dims.S ?? dims.T, dims.T, tok, rng, o);
    case 'cls':
      return clsBatch(seqs, dims.T, tok);
  }
}
