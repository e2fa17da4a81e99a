/**
 * The browser demo (examples/gpt-demo): a page that loads an exported GPT and generates text from a typed prompt
 * with the module's `generate` (the decode entry, key/value caches on the GPU).
 * In headless Chromium (WebGPU on SwiftShader): type a prompt, press Generate, wait for the text, take a screenshot;
 * the text equals a Node run of the same exported module (Dawn on lavapipe) with the same seed, and the screenshot
 * shows it (not a blank page). Uses a tiny GPT with its initial weights: the test is about the path, not the prose.
 * Skipped with a message where Chromium is not installed.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { PNG } from 'pngjs';
import { describe, expect, it } from 'vitest';
import { exportModel } from '../../src/export/index.js';
import { sharedDevice } from '../runtime/helpers.js';
import { chromiumPath, launchChromium, serve } from './chromium.js';

const chromium = chromiumPath;
if (!chromium) console.warn('demo browser test skipped: no Chromium (run scripts/setup-browser.sh, or set KILN_CHROMIUM)');

const DEMO = 'examples/gpt-demo';

describe.skipIf(!chromium)('examples/gpt-demo in headless Chromium', () => {
  it('typing a prompt generates the same text as Node with the same seed; the screenshot shows it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-demo-'));
    const model = join(dir, 'model');
    const T = 16;
    await exportModel('src/models/gpt.kiln', { entries: ['decode'], out: model, set: { vocab: 264, d: 16, heads: 2, layers: 1, ctx: T }, dims: { B: 1 }, seed: 11, strategy: 'thread' });
    const prompt = 'Call me';
    const opts = { maxTokens: 12, seed: 7 };

    // Node: the same exported module (its generate: the key/value cache on the device) and the same generate.js
    const mod = (await import(/* @vite-ignore */ pathToFileURL(join(model, 'index.js')).href)) as { load(o: object): Promise<void>; generate: unknown; destroy(): Promise<void> };
    const { generateText } = (await import(/* @vite-ignore */ pathToFileURL(join(DEMO, 'generate.js')).href)) as { generateText: (m: unknown, p: string, o: object) => Promise<string> };
    await mod.load({ device: (await sharedDevice()).device });
    const inNode = await generateText(mod, prompt, opts);
    await mod.destroy();
    expect(inNode.length).toBeGreaterThan(0);

    const site = await serve({}, (path) => (path === '/' ? join(DEMO, 'index.html') : path.startsWith('/model/') ? join(model, path.slice('/model/'.length)) : join(DEMO, path.slice(1))));
    const browser = await launchChromium();
    try {
      const page = await browser.newPage({ viewport: { width: 800, height: 600 } });
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(site.url);
      await page.waitForFunction(() => document.getElementById('status')?.textContent?.startsWith('ready'), undefined, { timeout: 60_000 });
      await page.fill('#prompt', prompt);
      await page.fill('#tokens', String(opts.maxTokens));
      await page.fill('#seed', String(opts.seed));
      await page.click('#go');
      await page.waitForFunction(() => /^(done|error)/.test(document.getElementById('status')?.textContent ?? ''), undefined, { timeout: 90_000 });
      expect(await page.textContent('#status')).toMatch(/^done/);
      const inBrowser = await page.textContent('#output');
      expect(errors).toEqual([]);
      expect(inBrowser).toBe(inNode);

      const shot = await page.screenshot({ fullPage: true });
      writeFileSync(join(dir, 'demo.png'), shot);
      const png = PNG.sync.read(shot);
      // the text area has drawn glyphs: many distinct pixel values inside the output box
      const box = (await page.locator('#output').boundingBox())!;
      const seen = new Set<number>();
      for (let y = Math.floor(box.y); y < box.y + box.height; y += 2) {
        for (let x = Math.floor(box.x); x < box.x + box.width; x += 2) seen.add(png.data.readUInt32BE((y * png.width + x) * 4));
      }
      expect(seen.size).toBeGreaterThan(3);
    } finally {
      await browser.close();
      site.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 180_000);
});
