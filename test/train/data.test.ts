import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { Batcher, loadCorpus } from '../../src/train/data.js';
import { causalBatch, fimRearrange, IGNORE, makeBatch, maskedBatch, OBJECTIVE_INPUTS, OBJECTIVES, prefixBatch, spanBatch, spanTargetLength } from '../../src/train/objectives.js';
import { prepareJob } from '../../src/train/trainer.js';
import { Rng } from '../../src/train/rng.js';
import { learningRate } from '../../src/train/schedule.js';
import { bertTokenizer, byteTokenizer, gpt2Tokenizer } from '../../src/train/tokenizers.js';

const tok = byteTokenizer();
const seq = (n: number, off = 0) => Int32Array.from({ length: n }, (_, i) => 97 + ((i + off) % 26));

describe('tokenizers', () => {
  it('byte-level round-trips UTF-8 and puts specials after the bytes', () => {
    const text = 'Call me Ishmael — “whale”';
    expect(tok.decode(tok.encode(text))).toBe(text);
    expect(tok.special.pad).toBe(256);
    expect(tok.vocabSize % 8).toBe(0);
    expect(tok.vocabSize).toBeGreaterThan(tok.special.sentinel(15));
  });
  it('GPT-2 BPE encodes with the real r50k ranks', async () => {
    const g = await gpt2Tokenizer();
    expect(g.encode('Hello world')).toEqual([15496, 995]); // the published GPT-2 ids
    expect(g.decode(g.encode('Call me Ishmael.'))).toBe('Call me Ishmael.');
    expect(g.vocabSize).toBeGreaterThanOrEqual(50257 + 19);
  });
  it('BERT WordPiece gives the published bert-base-uncased ids and marks word starts', async () => {
    const b = await bertTokenizer();
    // ids from the bert-base-uncased vocabulary: hello 7592, "," 1010, world 2088, "!" 999; una ##ffa ##ble
    expect(b.encode('Hello, World!')).toEqual([7592, 1010, 2088, 999]);
    const ids = b.encode('unaffable whale');
    expect(ids).toEqual([14477, 20961, 3468, 13156]);
    expect(b.wordStarts(ids)).toEqual([true, false, false, true]);
    expect(b.decode(b.encode('Call me Ishmael.'))).toBe('call me ishmael.');
    expect([b.special.pad, b.special.eos, b.special.mask]).toEqual([0, 102, 103]); // [PAD] [SEP] [MASK]
    expect(b.special.sentinel(0)).toBe(2); // [unused1]
    expect(b.textStart).toBe(999);
    expect(b.vocabSize).toBe(30528);
  });
});

describe('objectives', () => {
  it("each objective's batches hold exactly the inputs it declares; a model whose loss takes others is refused up front", async () => {
    for (const o of OBJECTIVES) {
      const b = makeBatch(o, [seq(40), seq(40, 3)], { T: 16, S: 16 }, tok, new Rng(1));
      expect(Object.keys(b).sort(), o).toEqual([...OBJECTIVE_INPUTS[o]].sort());
    }
    const job = (file: string, objective: 'mlm' | 'clm') =>
      prepareJob({
        file, objective, set: {}, optimizer: { kind: 'adamw' }, schedule: { kind: 'constant', peak: 1e-3, warmup: 0, total: 1 },
        batch: 1, accum: 1, steps: 1, seed: 0, data: 'moby-dick', tokenizer: 'bytes', evalEvery: 0, evalBatches: 1, saveEvery: 0,
      });
    await expect(job('src/models/gpt.kiln', 'mlm')).rejects.toThrow(
      "objective 'mlm' makes batches of tokens, labels, but the loss entry of model 'gpt' takes tokens, targets: use --objective clm",
    );
    await expect(job('src/models/t5.kiln', 'clm')).rejects.toThrow(/model 't5' takes src, dec_in, targets: use --objective span$/);
  });

  it('causal LM: targets are the tokens shifted by one', () => {
    const s = seq(9);
    const b = causalBatch([s], 8, tok, new Rng(0));
    expect(Array.from(b.tokens.data)).toEqual(Array.from(s.subarray(0, 8)));
    expect(Array.from(b.targets.data)).toEqual(Array.from(s.subarray(1, 9)));
  });

  it('masked LM with BERT WordPiece: whole-word masking masks every piece of a chosen word, random tokens are text pieces', async () => {
    const b = await bertTokenizer();
    const text = 'the unaffable harpooneer ate pemmican on the forecastle while ishmael watched';
    const row = Int32Array.from(b.encode(text));
    const T = row.length;
    const starts = b.wordStarts(row);
    const words: number[][] = [];
    row.forEach((_, t) => (starts[t] || !words.length ? words.push([t]) : words[words.length - 1].push(t)));
    expect(words.some((w) => w.length > 1)).toBe(true);
    let replaced = 0;
    for (let seed = 0; seed < 200; seed++) {
      const batch = maskedBatch([row], T, b, new Rng(seed), { wholeWord: true, maskRate: 0.3 });
      const labels = batch.labels.data;
      for (const w of words) {
        const chosen = w.map((t) => labels[t] !== IGNORE);
        expect(chosen.every((c) => c === chosen[0])).toBe(true);
      }
      batch.tokens.data.forEach((id, t) => {
        if (labels[t] !== IGNORE && id !== b.special.mask && id !== row[t]) {
          replaced++;
          expect(id).toBeGreaterThanOrEqual(b.textStart);
          expect(id).toBeLessThan(b.textVocab);
        }
      });
    }
    expect(replaced).toBeGreaterThan(0);
  });

  it('masked LM: 15% chosen, of those 80% [MASK] / 10% random / 10% kept, labels only at chosen positions', () => {
    const rng = new Rng(1);
    const seqs = Array.from({ length: 400 }, (_, i) => seq(128, i));
    const b = maskedBatch(seqs, 128, tok, rng);
    let chosen = 0, masked = 0, kept = 0, replaced = 0;
    for (let i = 0; i < b.tokens.data.length; i++) {
      const orig = seqs[Math.floor(i / 128)][i % 128];
      const lab = b.labels.data[i];
      if (lab === IGNORE) {
        expect(b.tokens.data[i]).toBe(orig);
        continue;
      }
      expect(lab).toBe(orig);
      chosen++;
      if (b.tokens.data[i] === tok.special.mask) masked++;
      else if (b.tokens.data[i] === orig) kept++;
      else replaced++;
    }
    const n = 400 * 128;
    // binomial bounds at ~5 standard deviations
    expect(Math.abs(chosen / n - 0.15)).toBeLessThan(5 * Math.sqrt(0.15 * 0.85 / n));
    expect(Math.abs(masked / chosen - 0.8)).toBeLessThan(5 * Math.sqrt(0.16 / chosen));
    // a random replacement can draw the original token (1/256), which then counts as kept
    expect(Math.abs(replaced / chosen - 0.1 * 255 / 256)).toBeLessThan(5 * Math.sqrt(0.09 / chosen));
    expect(Math.abs(kept / chosen - (0.1 + 0.1 / 256))).toBeLessThan(5 * Math.sqrt(0.09 / chosen));
  });

  it('whole-word masking chooses every token of a word or none', () => {
    const words = tok.encode('the whale swam far under the grey sea and the ship followed it home');
    const seqs = Array.from({ length: 200 }, () => Int32Array.from(words));
    const b = maskedBatch(seqs, words.length, tok, new Rng(2), { wholeWord: true });
    // a word is a word-start token and the tokens after it up to the next word start (its trailing space included)
    let groups = 0;
    const starts = tok.wordStarts(words);
    for (let r = 0; r < 200; r++) {
      let chosen: boolean | null = null;
      for (let t = 0; t < words.length; t++) {
        const ch = b.labels.data[r * words.length + t] !== IGNORE;
        if (starts[t]) {
          chosen = ch;
          groups++;
        } else expect(ch).toBe(chosen);
      }
    }
    expect(groups).toBe(200 * 14);
  });

  it('prefix LM: no loss inside the prefix, prefix_len in [1, T-1]', () => {
    const rng = new Rng(3);
    const seqs = Array.from({ length: 50 }, (_, i) => seq(17, i));
    const b = prefixBatch(seqs, 16, tok, rng);
    for (let r = 0; r < 50; r++) {
      const p = b.prefix_len.data[r];
      expect(p).toBeGreaterThanOrEqual(1);
      expect(p).toBeLessThanOrEqual(15);
      for (let t = 0; t < 16; t++) {
        const want = t < p - 1 ? IGNORE : seqs[r][t + 1];
        expect(b.targets.data[r * 16 + t]).toBe(want);
      }
    }
  });

  it('span corruption: source + targets reconstruct the original; decoder input is targets shifted right', () => {
    const S = 40;
    const T = spanTargetLength(S);
    const seqs = Array.from({ length: 20 }, (_, i) => seq(S, i));
    const b = spanBatch(seqs, S, T, tok, new Rng(4));
    for (let r = 0; r < 20; r++) {
      const src = Array.from(b.src.data.subarray(r * S, (r + 1) * S));
      const tgt = Array.from(b.targets.data.subarray(r * T, (r + 1) * T)).filter((v) => v !== IGNORE);
      const spans = new Map<number, number[]>();
      let cur = -1;
      for (const v of tgt) {
        if (v === tok.special.eos) break;
        if (v >= tok.special.sentinel(0)) spans.set((cur = v), []);
        else spans.get(cur)!.push(v);
      }
      const rebuilt = src.filter((v) => v !== tok.special.pad).flatMap((v) => (spans.has(v) ? spans.get(v)! : [v]));
      expect(rebuilt).toEqual(Array.from(seqs[r]));
      const noise = [...spans.values()].reduce((s, x) => s + x.length, 0);
      expect(noise).toBe(Math.round(S * 0.15));
      expect(b.dec_in.data[r * T]).toBe(tok.special.pad);
      for (let t = 1; t < tgt.length; t++) expect(b.dec_in.data[r * T + t]).toBe(tgt[t - 1]);
    }
  });

  it('fill-in-the-middle keeps every token, reordered prefix/suffix/middle behind sentinels', () => {
    const s = seq(30);
    const out = Array.from(fimRearrange(s, tok, new Rng(5)));
    const i1 = out.indexOf(tok.special.sentinel(1));
    const i2 = out.indexOf(tok.special.sentinel(2));
    expect(out[0]).toBe(tok.special.sentinel(0));
    const pre = out.slice(1, i1), suf = out.slice(i1 + 1, i2), mid = out.slice(i2 + 1);
    const orig = Array.from(s);
    expect(out.length).toBe(30);
    expect(pre).toEqual(orig.slice(0, pre.length));
    expect(suf).toEqual(orig.slice(orig.length - suf.length));
    // the middle comes last, so the cut to the window length shortens only the middle
    expect(mid).toEqual(orig.slice(pre.length, pre.length + mid.length));
    expect(pre.length + mid.length + suf.length).toBe(27);
  });
});

describe('learning-rate schedules at their boundaries', () => {
  const base = { peak: 1e-3, warmup: 10, total: 110 };
  it('warmup is linear from peak/warmup to peak', () => {
    expect(learningRate({ kind: 'cosine', ...base }, 0)).toBeCloseTo(1e-4, 12);
    expect(learningRate({ kind: 'cosine', ...base }, 9)).toBeCloseTo(1e-3, 12);
  });
  it('cosine decays from the peak to 10% of it', () => {
    expect(learningRate({ kind: 'cosine', ...base }, 10)).toBeCloseTo(1e-3, 12);
    expect(learningRate({ kind: 'cosine', ...base }, 60)).toBeCloseTo(1e-3 * (0.1 + 0.9 * 0.5), 12);
    expect(learningRate({ kind: 'cosine', ...base }, 110)).toBeCloseTo(1e-4, 12);
  });
  it('linear decays to zero; constant stays; inverse sqrt falls as 1/sqrt(step)', () => {
    expect(learningRate({ kind: 'linear', ...base }, 11)).toBeCloseTo(1e-3 * (1 - 1 / 100), 12);
    expect(learningRate({ kind: 'linear', ...base }, 110)).toBe(0);
    expect(learningRate({ kind: 'constant', ...base }, 100)).toBe(1e-3);
    expect(learningRate({ kind: 'invsqrt', ...base }, 39)).toBeCloseTo(1e-3 * Math.sqrt(10 / 40), 12);
  });
});

describe('corpora and batching', () => {
  it('Moby-Dick loads from its package with a held-out split', () => {
    const s = loadCorpus('moby-dick', tok);
    expect(s.train.length).toBeGreaterThan(1_000_000);
    expect(s.val.length).toBeGreaterThan(20_000);
    expect(tok.decode(Array.from(s.train.subarray(0, 2000)))).toContain('CHAPTER');
  });

  it('a user folder is read file by file; batches resume exactly from a saved position', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-data-'));
    for (let i = 0; i < 25; i++) writeFileSync(join(dir, `doc${String(i).padStart(2, '0')}.txt`), `document ${i} `.repeat(20));
    const s = loadCorpus(dir, tok);
    expect(s.documents).toBe(25);
    const a = new Batcher(s.train, 16, 9);
    for (let i = 0; i < 7; i++) a.next(3);
    const saved = JSON.parse(JSON.stringify(a.state()));
    const expected = Array.from({ length: 40 }, () => a.next(3).map((x) => Array.from(x)));
    const b = new Batcher(s.train, 16, 9);
    b.restore(saved);
    const got = Array.from({ length: 40 }, () => b.next(3).map((x) => Array.from(x)));
    expect(got).toEqual(expected);
  });
});
