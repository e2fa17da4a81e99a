/**
 * An exported module in a browser: the package folder `kiln export` writes, served as static files and imported by a
 * page in headless Chromium (WebGPU on SwiftShader), with no bundling step — the same index.js/runtime.js as in
 * Node. Its weights load by URL (fetch, SHA-256 via crypto.subtle); its outputs equal the interpreter's.
 * Skipped with a message where Chromium is not installed (scripts/setup-browser.sh).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { exportModel } from '../../src/export/index.js';
import { compileModel } from '../../src/frontend/index.js';
import { interpret } from '../../src/interp/interpreter.js';
import { decodeSafetensors } from '../../src/io/safetensors.js';
import { expectClose } from '../runtime/helpers.js';
import { chromiumPath, launchChromium, serve } from './chromium.js';

const chromium = chromiumPath;
if (!chromium) console.warn('exported-module browser test skipped: no Chromium (run scripts/setup-browser.sh, or set KILN_CHROMIUM)');

describe.skipIf(!chromium)('an exported module in headless Chromium', () => {
  it('imports unbundled, loads its weights by URL, and forward equals the interpreter', async () => {
    const set = { vocab: 32, d: 16, heads: 2, layers: 1, ctx: 8 };
    const dims = { B: 1, T: 8 };
    const dir = mkdtempSync(join(tmpdir(), 'kiln-export-browser-'));
    const pkg = join(dir, 'gpt');
    await exportModel('src/models/gpt.kiln', { entries: ['forward'], out: pkg, set, dims, seed: 5, strategy: 'thread' });
    const site = await serve(
      { '/': '<!doctype html><meta charset="utf-8"><title>export</title><script type="module">import * as gpt from "./index.js"; globalThis.gpt = gpt;</script>' },
      (path) => join(pkg, path.slice(1)),
    );
    const browser = await launchChromium();
    const tokens = [3, 1, 4, 1, 5, 9, 2, 6];
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(site.url);
      await page.waitForFunction(() => 'gpt' in globalThis, undefined, { timeout: 60_000 });
      const got = (await page.evaluate(async (ids) => {
        const m = (globalThis as unknown as { gpt: { forward(i: object): Promise<{ logits: Float32Array }> } }).gpt;
        const { logits } = await m.forward({ tokens: Int32Array.from(ids) });
        let badType = '';
        await m.forward({ tokens: new Float32Array(8) }).catch((e: Error) => (badType = `${e.name}: ${e.message}`));
        return { logits: Array.from(logits), badType };
      }, tokens)) as { logits: number[]; badType: string };
      expect(errors).toEqual([]);
      expect(got.badType).toMatch(/^KilnModelError: forward: input 'tokens' must be a Int32Array/);
      const params = decodeSafetensors(readFileSync(join(pkg, 'weights.safetensors'))).tensors;
      const fwd = compileModel('src/models/gpt.kiln', { entry: 'forward', set, dims }).graph;
      const want = interpret(fwd, { inputs: { tokens: { dtype: 'i32', shape: [1, 8], data: Int32Array.from(tokens) } }, params });
      expectClose('logits in the browser', { dtype: 'f32', shape: [1, 8, 32], data: Float32Array.from(got.logits) }, want.logits, { rtol: 1e-4, atol: 1e-5 });
    } finally {
      await browser.close();
      site.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
