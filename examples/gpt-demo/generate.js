// Text generation with an exported Kiln GPT, shared by the page (demo.js) and Node (the demo test): byte-level
// tokens around the module's own `generate` (its `decode` entry, one token per step with the key/value cache on the
// device; its seeded sampler draws the same tokens in a browser and in Node).

/**
 * Continues `prompt` by `maxTokens` bytes with the exported module `gpt` (exported with --entry decode --dim B=1).
 * `onText` receives the text so far after each token.
 */
export async function generateText(gpt, prompt, { maxTokens = 40, temperature = 0.8, topK = 20, seed = 0, onText = () => {} } = {}) {
  const ids = Array.from(new TextEncoder().encode(prompt));
  if (!ids.length) ids.push(10);
  const dec = new TextDecoder();
  const out = [];
  // bytes only: ids past 255 are the tokenizer's special tokens
  const onToken = (id) => {
    out.push(id);
    onText(dec.decode(Uint8Array.from(out)));
  };
  await gpt.generate(ids, { maxTokens, temperature, topK, seed, range: [0, 256], onToken });
  return dec.decode(Uint8Array.from(out));
}
