/** Headless Chromium with WebGPU (SwiftShader) and a static file server, for the exported-module browser tests. */
import { existsSync, readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

export const chromiumPath = [process.env.KILN_CHROMIUM, '/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p) => p && existsSync(p));

export async function launchChromium() {
  const { chromium } = await import('playwright-core');
  return chromium.launch({
    executablePath: chromiumPath,
    args: ['--no-sandbox', '--disable-gpu-sandbox', '--enable-unsafe-webgpu', '--enable-features=Vulkan', '--use-vulkan=swiftshader', '--use-webgpu-adapter=swiftshader', '--disable-background-networking', '--disable-component-update', '--no-first-run'],
  });
}

const TYPES: Record<string, string> = { js: 'text/javascript', html: 'text/html' };

/** Serves `pages` (path -> HTML) and files that `fileFor` maps a URL path to (null: 404). */
export async function serve(pages: Record<string, string>, fileFor: (path: string) => string | null) {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (pages[path] !== undefined) return void res.writeHead(200, { 'content-type': 'text/html' }).end(pages[path]);
    const file = path.includes('..') ? null : fileFor(path);
    if (!file || !existsSync(file)) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': TYPES[file.split('.').pop()!] ?? 'application/octet-stream' }).end(readFileSync(file));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, close: () => server.close() };
}
