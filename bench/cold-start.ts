// Cold start in headless Chromium (WebGPU on SwiftShader): load the module + weights + the first token, for the
// default GPT exported by Kiln (`forward`, B=1, T=ctx) beside the same model in TensorFlow.js (its WebGPU backend;
// bench/peers/tfjs-gpt.ts, the library GPT in TF.js ops, given the same weights file). Each measurement is a fresh
// browser; the first token is one forward over the window and the argmax of its last row, and both runtimes must
// pick the same token from logits that agree.
// Usage: npx tsx bench/cold-start.ts [ROUNDS=3] [STRATEGY=thread]
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import * as esbuild from 'esbuild';
import { exportModel } from '../src/export/index.js';
import { chromiumPath, launchChromium, serve } from '../test/export/chromium.js';

const rounds = Number(process.argv[2] ?? 3);
const strategy = (process.argv[3] ?? 'thread') as 'thread' | 'workgroup';
if (!chromiumPath) throw new Error('no Chromium: run scripts/setup-browser.sh or set KILN_CHROMIUM');
const dir = mkdtempSync(join(tmpdir(), 'kiln-cold-'));
const set = { vocab: 256, d: 64, heads: 4, layers: 2, ctx: 64 }; // the default GPT (gpt.kiln's defaults)
const T = set.ctx;
const r = await exportModel('src/models/gpt.kiln', { entries: ['forward'], out: join(dir, 'kiln'), set, dims: { B: 1, T }, seed: 0, strategy });
const tfGpt = await esbuild.build({
  stdin: { contents: `import { tfGptLogits } from ${JSON.stringify(resolve('bench/peers/tfjs-gpt.ts'))}; globalThis.tfGptLogits = tfGptLogits;`, resolveDir: process.cwd(), loader: 'ts' },
  bundle: true,
  format: 'iife',
  minify: true,
  write: false,
});
writeFileSync(join(dir, 'tfjs-gpt.js'), tfGpt.outputFiles[0].text);

const tokens = Array.from({ length: T }, (_, i) => (i * 7 + 3) % 256);
// a page measures from its first script: import/script load, load (weights + setup), first token; stores the result
const measure = (body: string) => `<!doctype html><meta charset="utf-8"><script type="module">
const tokens = ${JSON.stringify(tokens)};
const t0 = performance.now();
try {
${body}
} catch (e) { globalThis.result = { error: String(e && e.message || e) }; }
</script>`;
const kilnPage = measure(`
const gpt = await import('./kiln/index.js');
const t1 = performance.now();
await gpt.load();
const t2 = performance.now();
const { logits } = await gpt.forward({ tokens: Int32Array.from(tokens) });
const t3 = performance.now();
const V = logits.length / tokens.length, row = Array.from(logits.subarray(V * (tokens.length - 1)));
globalThis.result = { script: t1 - t0, load: t2 - t1, first: t3 - t2, token: row.indexOf(Math.max(...row)), row };`);
const tfPage = measure(`
const script = (src) => new Promise((ok, bad) => { const s = document.createElement('script'); s.src = src; s.onload = ok; s.onerror = bad; document.head.append(s); });
await script('./tf/tf.min.js');
await script('./tf/tf-backend-webgpu.min.js');
await script('./tfjs-gpt.js');
const tf = globalThis.tf;
const t1 = performance.now();
await tf.setBackend('webgpu');
await tf.ready();
const bytes = new Uint8Array(await (await fetch('./kiln/weights.safetensors')).arrayBuffer());
const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
const P = {};
for (const [k, h] of Object.entries(header)) if (k !== '__metadata__') P[k] = tf.tensor(new Float32Array(bytes.buffer.slice(8 + n + h.data_offsets[0], 8 + n + h.data_offsets[1])), h.shape);
const t2 = performance.now();
const logits = tf.tidy(() => globalThis.tfGptLogits(tf, P, tf.tensor([tokens], [1, tokens.length], 'int32'), { ...${JSON.stringify(set)}, B: 1, T: tokens.length }));
const data = await logits.data();
const t3 = performance.now();
const V = data.length / tokens.length, row = Array.from(data.subarray(V * (tokens.length - 1)));
globalThis.result = { script: t1 - t0, load: t2 - t1, first: t3 - t2, token: row.indexOf(Math.max(...row)), row, backend: tf.getBackend() };`);

const files: Record<string, string> = {
  '/tf/tf.min.js': 'node_modules/@tensorflow/tfjs/dist/tf.min.js',
  '/tf/tf-backend-webgpu.min.js': 'node_modules/@tensorflow/tfjs-backend-webgpu/dist/tf-backend-webgpu.min.js',
  '/tfjs-gpt.js': join(dir, 'tfjs-gpt.js'),
};
const site = await serve({ '/kiln.html': kilnPage, '/tfjs.html': tfPage }, (p) => files[p] ?? (p.startsWith('/kiln/') ? join(dir, p.slice(1)) : null));
type Result = { script: number; load: number; first: number; token: number; row: number[]; backend?: string; error?: string };
const results: Record<string, Result[]> = { kiln: [], tfjs: [] };
try {
  for (let k = 0; k < rounds; k++) {
    for (const which of ['kiln', 'tfjs'] as const) {
      const browser = await launchChromium();
      try {
        const page = await browser.newPage();
        await page.goto(`${site.url}${which}.html`);
        await page.waitForFunction(() => 'result' in globalThis, undefined, { timeout: 300_000 });
        const res = (await page.evaluate(() => (globalThis as unknown as { result: Result }).result)) as Result;
        if (res.error) throw new Error(`${which}: ${res.error}`);
        results[which].push(res);
      } finally {
        await browser.close();
      }
    }
  }
} finally {
  site.close();
}
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const k = results.kiln;
const t = results.tfjs;
const diff = Math.max(...k[0].row.map((x, i) => Math.abs(x - t[0].row[i])));
const row = (name: string, rs: Result[]) => {
  const [s, l, f] = [med(rs.map((x) => x.script)), med(rs.map((x) => x.load)), med(rs.map((x) => x.first))];
  return `| ${name} | ${s.toFixed(0)} | ${l.toFixed(0)} | ${f.toFixed(0)} | ${(s + l + f).toFixed(0)} |`;
};
console.log(`Cold start in headless Chromium (SwiftShader), default GPT (2L d64 vocab 256), first token = forward over T=${T}; median of ${rounds} fresh browsers`);
console.log(`Kiln module: ${(r.jsBytes / 1024).toFixed(1)} KB JS (${strategy} kernels), ${(r.weightsBytes / 1024).toFixed(0)} KB weights; TF.js backend: ${t[0].backend}`);
console.log('| runtime | import / script ms | load ms (weights + setup) | first token ms | total ms |');
console.log('| --- | ---: | ---: | ---: | ---: |');
console.log(row('Kiln export', k));
console.log(row('TF.js (webgpu)', t));
console.log(`same first token: ${k.every((x) => x.token === t[0].token)} (token ${k[0].token}); max |logit difference| ${diff.toExponential(2)}`);
rmSync(dir, { recursive: true, force: true });
process.exit(0);
