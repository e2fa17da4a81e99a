// Generation speed of an exported GPT with and without the key/value cache, at a full 256-token context, on this
// machine's WebGPU device: the exported module's `generate` (decode entry: one token per step, caches on the
// device) against `generate({ cache: false })` (forward over the whole window for every token).
// Usage: npx tsx bench/generate.ts [CTX=256] [LAYERS=2] [D=64] [STRATEGY: the device's default]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { exportModel } from '../src/export/index.js';
import { acquireDevice } from '../src/runtime/device.js';
import { targetOf } from '../src/runtime/executable.js';

const [ctx = 256, layers = 2, d = 64] = process.argv.slice(2, 5).map(Number);
const dev = await acquireDevice();
const strategy = (process.argv[5] as 'thread' | 'workgroup' | undefined) ?? targetOf(dev).strategy;
const dir = mkdtempSync(join(tmpdir(), 'kiln-bench-generate-'));
try {
  const r = await exportModel('src/models/gpt.kiln', { entries: ['forward', 'decode'], out: dir, set: { vocab: 256, d, heads: 4, layers, ctx }, dims: { B: 1, T: ctx }, strategy });
  type Gen = (ids: number[], o: object) => Promise<number[]>;
  const mod = (await import(pathToFileURL(join(dir, 'index.js')).href)) as { load(o: object): Promise<void>; generate: Gen; destroy(): Promise<void> };
  await mod.load({ device: dev.device });
  // a prompt that leaves `n` positions: the timed tokens are decoded with ctx - n .. ctx tokens of context; the
  // time per token is the median interval between tokens (a shared machine's pauses are outliers)
  const intervals = async (n: number, cache: boolean) => {
    const prompt = Array.from({ length: ctx - n }, (_, i) => (i * 7 + 3) % 256);
    const times: number[] = [];
    await mod.generate(prompt, { maxTokens: n, seed: 1, cache, onToken: () => times.push(performance.now()) });
    return times.slice(1).map((t, i) => t - times[i]);
  };
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  await intervals(4, true); // warm-up: pipelines compiled on first use (lavapipe)
  await intervals(3, false);
  // interleaved rounds, so that both see the same machine load
  const c: number[] = [];
  const w: number[] = [];
  for (let round = 0; round < 3; round++) {
    c.push(...(await intervals(17, true)));
    w.push(...(await intervals(3, false)));
  }
  const cached = { perSecond: 1000 / median(c), tokens: c.length };
  const window = { perSecond: 1000 / median(w), tokens: w.length };
  const dispatches = (e: string) => r.plan.entries.find((x) => x.name === e)!.passes.length;
  console.log(`GPT ${layers}L d${d} vocab 256, ${ctx}-token context, B=1, ${strategy} kernels, on ${dev.adapterInfo.description || dev.adapterInfo.device || dev.adapterInfo.vendor}`);
  console.log('| generation | tokens/s | ms/token | dispatches/token | timed tokens |');
  console.log('| --- | ---: | ---: | ---: | ---: |');
  console.log(`| key/value cache (decode) | ${cached.perSecond.toFixed(1)} | ${(1000 / cached.perSecond).toFixed(1)} | ${dispatches('decode')} | ${cached.tokens} |`);
  console.log(`| whole window (forward, T=${ctx}) | ${window.perSecond.toFixed(2)} | ${(1000 / window.perSecond).toFixed(0)} | ${dispatches('forward')} | ${window.tokens} |`);
  console.log(`speed-up: ${(cached.perSecond / window.perSecond).toFixed(1)}x`);
  await mod.destroy();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.exit(0);
