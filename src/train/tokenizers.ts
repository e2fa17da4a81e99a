/**
 * Tokenizers. Byte-level is the default (no files, every text encodes); GPT-2 BPE comes from the
 * `gpt-tokenizer` package's r50k ranks. Both append the special tokens training objectives need
 * (pad, end-of-text, mask, sentinels for span corruption and fill-in-the-middle) after their own vocabulary.
 */
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
  /** Ids below this are ordinary text tokens (the range random replacement in MLM draws from). */
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
    textVocab: base,
    special,
    encode: (text) => bpe.encode(text, { disallowedSpecial: new Set() }),
    decode: (ids) => bpe.decode(ids.filter((i) => i < base)),
    // GPT-2 BPE marks a word start with a leading space inside the token
    wordStarts: (ids) => Array.from(ids, (id, i) => id < base && (i === 0 || /^\s/.test(bpe.decode([id])))),
  };
}

export async function makeTokenizer(name: string): Promise<Tokenizer> {
  switch (name) {
    case 'bytes':
    case 'byte':
      return byteTokenizer();
    case 'gpt2':
      return gpt2Tokenizer();
    default:
      throw new KilnError(`unknown tokenizer '${name}' (expected bytes or gpt2)`);
  }
}
