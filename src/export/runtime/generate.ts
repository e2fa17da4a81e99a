/**
 * Token generation shared by an exported module's `generate` and `kiln sample`: a seeded PRNG, top-k sampling and
 * the decoding loop, over a "stepper" that computes logits — one token per step with a key/value cache (the
 * model's `decode` entry), or the whole window per token (its `forward` entry). Plain JavaScript numbers only, so
 * the same seed draws the same tokens in Node, in a browser and in the CLI.
 */

export interface GenerateOptions {
  /** Tokens to generate (default 32). */
  maxTokens?: number;
  /** Softmax temperature; 0 picks the most likely token (default 0.8). */
  temperature?: number;
  /** Sample among the k most likely tokens; 0: all (default 40). */
  topK?: number;
  /** Seed of the sampler (default 0): the same seed gives the same tokens everywhere. */
  seed?: number;
  /** Sample only ids in [lo, hi) (a tokenizer's text tokens); default every id. */
  range?: [number, number];
  /** Called with each new token as soon as it is picked. */
  onToken?: (id: number) => void;
}

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The next token from one row of logits: the argmax at temperature 0, else softmax(logits / t) over the top k. */
export function pickToken(row: ArrayLike<number>, [lo, hi]: [number, number], temperature: number, topK: number, random: () => number): number {
  // ties broken by the smaller id, so the order does not depend on the sort's stability
  const idx = Array.from({ length: hi - lo }, (_, i) => lo + i).sort((a, b) => row[b] - row[a] || a - b);
  if (temperature <= 0) return idx[0];
  const cand = topK > 0 ? idx.slice(0, topK) : idx;
  const w = cand.map((i) => Math.exp((row[i] - row[cand[0]]) / temperature));
  let u = random() * w.reduce((s, x) => s + x, 0);
  for (let k = 0; k < cand.length; k++) if ((u -= w[k]) <= 0) return cand[k];
  return cand[cand.length - 1];
}

/** Logits one token at a time against a key/value cache of `ctx` positions. */
export interface CachedStepper {
  ctx: number;
  /** Empties the cache (the next step is position 0). */
  reset(): void | Promise<void>;
  /** Feeds token `id` at position `pos`; returns its logits when `logits` is set (prompt tokens need none). */
  step(id: number, pos: number, logits: boolean): Promise<ArrayLike<number> | undefined>;
}

/** Logits of the last of up to `ctx` tokens, recomputing the whole window. */
export interface WindowStepper {
  ctx: number;
  window(ids: number[]): Promise<ArrayLike<number>>;
}

/**
 * Continues `prompt` by `maxTokens` tokens. With a cache the prompt is fed one token per step, then each new token;
 * when the cache is full, it is refilled with the last ctx/2 tokens (positions restart at 0).
 */
export async function generateTokens(s: CachedStepper | WindowStepper, prompt: ArrayLike<number>, vocab: number, o: GenerateOptions = {}): Promise<number[]> {
  const maxTokens = o.maxTokens ?? 32;
  const temperature = o.temperature ?? 0.8;
  const topK = o.topK ?? 40;
  const range = o.range ?? [0, vocab];
  const random = seededRandom(o.seed ?? 0);
  const ids = Array.from(prompt);
  const out: number[] = [];
  if (!(maxTokens > 0)) return out;
  const pick = (row: ArrayLike<number>) => {
    const next = pickToken(row, range, temperature, topK, random);
    ids.push(next);
    out.push(next);
    o.onToken?.(next);
  };
  if ('window' in s) {
    while (out.length < maxTokens) pick(await s.window(ids.slice(-s.ctx)));
    return out;
  }
  let pos = 0;
  const feed = async (toks: number[]) => {
    let row: ArrayLike<number> | undefined;
    for (let k = 0; k < toks.length; k++) row = await s.step(toks[k], pos++, k === toks.length - 1);
    return row!;
  };
  await s.reset();
  let row = await feed(ids.slice(-s.ctx));
  for (;;) {
    pick(row);
    if (out.length >= maxTokens) return out;
    if (pos === s.ctx) {
      await s.reset();
      pos = 0;
      row = await feed(ids.slice(-Math.max(1, s.ctx >> 1)));
    } else row = await feed([ids[ids.length - 1]]);
  }
}
