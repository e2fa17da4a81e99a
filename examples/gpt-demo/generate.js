// Text generation with an exported Kiln GPT, shared by the page (demo.js) and Node (the demo test): byte-level
// tokens, the whole window recomputed per token (the module's `forward` has a fixed [1, T] input), top-k sampling
// with a seeded PRNG so that the browser and Node draw the same tokens.

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
export function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Picks a byte (0..255) from one row of logits: greedy at temperature 0, else softmax over the top k. */
export function pick(row, temperature, topK, random) {
  const idx = Array.from({ length: 256 }, (_, i) => i).sort((a, b) => row[b] - row[a] || a - b);
  if (temperature <= 0) return idx[0];
  const k = topK > 0 ? idx.slice(0, topK) : idx;
  const w = k.map((i) => Math.exp((row[i] - row[k[0]]) / temperature));
  let u = random() * w.reduce((a, b) => a + b, 0);
  for (let j = 0; j < k.length; j++) if ((u -= w[j]) <= 0) return k[j];
  return k[k.length - 1];
}

/**
 * Continues `prompt` by `maxTokens` bytes. `forward` is the exported entry; `T` its window length.
 * `onText` receives the text so far after each token.
 */
export async function generate(forward, prompt, { T, maxTokens = 40, temperature = 0.8, topK = 20, seed = 0, onText = () => {} }) {
  const ids = Array.from(new TextEncoder().encode(prompt));
  if (!ids.length) ids.push(10);
  const random = rng(seed);
  const dec = new TextDecoder();
  const out = [];
  for (let i = 0; i < maxTokens; i++) {
    const window = ids.slice(-T);
    const tokens = new Int32Array(T);
    tokens.set(window);
    const { logits } = await forward({ tokens });
    const V = logits.length / T;
    const next = pick(logits.subarray((window.length - 1) * V, window.length * V), temperature, topK, random);
    ids.push(next);
    out.push(next);
    onText(dec.decode(Uint8Array.from(out)));
  }
  return dec.decode(Uint8Array.from(out));
}
