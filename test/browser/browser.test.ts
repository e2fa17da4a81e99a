/**
 * The browser path: the same runtime and generated WGSL run on `navigator.gpu` in headless Chromium (WebGPU on its
 * software Vulkan, SwiftShader), and three AdamW and three SGD training steps of the library GPT agree with the
 * interpreter.
 * Chromium comes from Debian's package (scripts/setup-browser.sh, which `npm test` runs); where it cannot be
 * installed the test is skipped with a message saying so.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileModel } from '../../src/frontend/index.js';
import { interpret } from '../../src/interp/interpreter.js';
import { UPDATE_PREFIX } from '../../src/ir/graph.js';
import { graphToJSON } from '../../src/ir/print.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import { compileIR } from '../../src/passes/index.js';
import { initialParams } from '../runtime/graphs.js';
import { expectClose } from '../runtime/helpers.js';
import type { Wire } from './entry.js';

const chromium = [process.env.KILN_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p) => p && existsSync(p));
if (!chromium) console.warn('browser test skipped: no Chromium (run scripts/setup-browser.sh, or set KILN_CHROMIUM)');

const wire = (t: HostTensor): Wire => ({ dtype: t.dtype, shape: [...t.shape], data: Array.from(t.data) });
const fromWire = (w: Wire): HostTensor => ({ dtype: w.dtype, shape: w.shape, data: w.dtype === 'f32' || w.dtype === 'f16' ? Float32Array.from(w.data) : Int32Array.from(w.data) });

async function serve(files: Record<string, string>) {
  const server = createServer((req, res) => {
    const body = files[(req.url ?? '/').split('?')[0]];
    if (body === undefined) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': req.url?.endsWith('.js') ? 'text/javascript' : 'text/html' }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, close: () => server.close() };
}

describe.skipIf(!chromium)('in a browser (headless Chromium, WebGPU on SwiftShader)', () => {
  it('three AdamW and three SGD steps of the library GPT match the interpreter, updates staying on the device', async () => {
    const { build } = await import('esbuild');
    const out = mkdtempSync(join(tmpdir(), 'kiln-browser-'));
    await build({
      entryPoints: ['test/browser/entry.ts'],
      bundle: true,
      format: 'esm',
      platform: 'browser',
      target: 'es2022',
      outfile: join(out, 'kiln.js'),
      external: ['node:*'], // Node-only paths (tile cache file, Dawn) are behind dynamic imports the page never takes
      logLevel: 'silent',
    });
    const site = await serve({
      '/': '<!doctype html><meta charset="utf-8"><title>kiln</title><script type="module" src="/kiln.js"></script>',
      '/kiln.js': readFileSync(join(out, 'kiln.js'), 'utf8'),
    });

    const { graph } = compileModel('src/models/gpt.kiln', { entry: 'loss', set: { vocab: 32, d: 16, heads: 2, layers: 1, ctx: 8 }, dims: { B: 2, T: 8 } });
    const lr = 1e-2;
    const feeds = [1, 2, 3].map((t) => ({
      tokens: { dtype: 'i32' as const, shape: [2, 8], data: Int32Array.from({ length: 16 }, (_, i) => (i * 7 + t) % 32) },
      targets: { dtype: 'i32' as const, shape: [2, 8], data: Int32Array.from({ length: 16 }, (_, i) => (i % 5 === 4 ? -100 : (i * 3 + t) % 32)) },
      lr: { dtype: 'f32' as const, shape: [], data: Float32Array.of(lr) },
      step: { dtype: 'f32' as const, shape: [], data: Float32Array.of(t) },
    }));
    // Adam divides by sqrt(v): where a gradient is near zero, a last-bit difference in it moves the step by a
    // visible fraction of lr, so AdamW's parameters get a tolerance in units of lr; SGD's are linear in the
    // gradients and get a tight one. Loss and gradient norm are tight for both.
    const runs = [
      { step: compileIR(graph, { train: { optimizer: { kind: 'adamw', clip: 1.0 } } }), tol: { rtol: 1e-4, atol: 1e-2 * lr } },
      { step: compileIR(graph, { train: { optimizer: { kind: 'sgd', clip: 1.0 } } }), tol: { rtol: 1e-4, atol: 1e-6 } },
    ];

    const { chromium: launcher } = await import('playwright-core');
    const browser = await launcher.launch({
      executablePath: chromium,
      args: ['--no-sandbox', '--disable-gpu-sandbox', '--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-vulkan=swiftshader', '--use-webgpu-adapter=swiftshader', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
    });
    try {
      const page = await browser.newPage();
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(site.url);
      await page.waitForFunction(() => 'kilnRun' in globalThis, undefined, { timeout: 60_000 });
      for (const { step, tol } of runs) {
        const params = initialParams(step, 7);
        const got = (await page.evaluate(
          ([g, p, f]) => (globalThis as unknown as { kilnRun: (g: string, p: unknown, f: unknown) => Promise<unknown> }).kilnRun(g, p, f),
          [graphToJSON(step), Object.fromEntries(Object.entries(params).map(([k, v]) => [k, wire(v)])), feeds.map((f) => Object.fromEntries(Object.entries(f).map(([k, v]) => [k, wire(v)])))] as const,
        )) as { backend: string; steps: Record<string, Wire>[] };
        expect(errors).toEqual([]);
        expect(got.backend).toBe('browser');

        // the interpreter, feeding each step's updates back as the next step's parameters
        let ref = { ...params };
        for (const [t, f] of feeds.entries()) {
          const want = interpret(step, { inputs: f, params: ref });
          const label = `${step.name} step ${t + 1}`;
          expectClose(`${label} loss`, fromWire(got.steps[t].loss), want.loss, { rtol: 1e-5, atol: 1e-6 });
          expectClose(`${label} grad_norm`, fromWire(got.steps[t].grad_norm), want.grad_norm, { rtol: 1e-4, atol: 1e-6 });
          const updates = Object.keys(want).filter((n) => n.startsWith(UPDATE_PREFIX));
          for (const name of updates) expectClose(`${label} ${name}`, fromWire(got.steps[t][name]), want[name], tol);
          ref = { ...ref, ...Object.fromEntries(updates.map((n) => [n.slice(UPDATE_PREFIX.length), want[n]])) };
        }
        // the loss moved: the steps really updated the parameters on the device
        expect(got.steps[2].loss.data[0]).not.toBe(got.steps[0].loss.data[0]);
      }
    } finally {
      await browser.close();
      site.close();
      rmSync(out, { recursive: true, force: true });
    }
  });
});
