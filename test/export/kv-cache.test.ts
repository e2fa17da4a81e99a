/**
 * Incremental decoding with a key/value cache (gpt.kiln's `decode` entry, std `cached_self_attention`, the
 * `update_slice` op): feeding a sequence one token per step, each step's logits equal the full-window forward's
 * logits at that position — in the reference interpreter and compiled to WebGPU (caches passed from step to step).
 * The exported module's `generate` (caches kept on the device) picks the same tokens as recomputing the whole window.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Project } from 'ts-morph';
import { describe, expect, it } from 'vitest';
import { exportModel } from '../../src/export/index.js';
import { compileModel } from '../../src/frontend/index.js';
import { interpret } from '../../src/interp/interpreter.js';
import type { AttrsOf } from '../../src/ir/op.js';
import { initParam } from '../../src/ir/init.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import { compileGraph } from '../../src/runtime/index.js';
import { expectClose, sharedDevice } from '../runtime/helpers.js';

const set = { vocab: 32, d: 16, heads: 2, layers: 2, ctx: 8 };
const T = 8;
const fwd = compileModel('src/models/gpt.kiln', { entry: 'forward', set, dims: { B: 1, T } }).graph;
const dec = compileModel('src/models/gpt.kiln', { entry: 'decode', set, dims: { B: 1 } }).graph;
const params: Record<string, HostTensor> = {};
for (const n of fwd.nodes) {
  if (n.op !== 'param') continue;
  const a = n.attrs as AttrsOf<'param'>;
  params[a.name] = initParam(a.init, n.type, a.name, 3);
}
const toks = [5, 1, 30, 7, 2, 9, 11, 4];
const i32 = (shape: number[], v: number[]): HostTensor => ({ dtype: 'i32', shape, data: Int32Array.from(v) });
const full = interpret(fwd, { inputs: { tokens: i32([1, T], toks) }, params }).logits;
const row = (p: number): HostTensor => ({ dtype: 'f32', shape: [1, 1, 32], data: full.data.slice(p * 32, (p + 1) * 32) });
const cacheShape = [2, 1, 2, 8, 8];
const zeros = (): HostTensor => ({ dtype: 'f32', shape: cacheShape, data: new Float32Array(2 * 2 * 8 * 8) });

describe('decode with a key/value cache', () => {
  it('has the inputs and outputs generation relies on, and the same parameters as forward', () => {
    expect(dec.outputs.map((o) => o.name)).toEqual(['logits', 'k_cache', 'v_cache']);
    const names = (g: typeof dec) => g.nodes.filter((n) => n.op === 'param').map((n) => (n.attrs as AttrsOf<'param'>).name).sort();
    expect(names(dec)).toEqual(names(fwd));
    expect(dec.nodes.filter((n) => n.op === 'update_slice').length).toBe(2 * set.layers);
  });

  it('interpreter: logits of one-token steps equal the full window at every position', () => {
    let k = zeros();
    let v = zeros();
    for (let p = 0; p < T; p++) {
      const r = interpret(dec, { inputs: { token: i32([1, 1], [toks[p]]), pos: i32([1], [p]), k_cache: k, v_cache: v }, params });
      expectClose(`position ${p}`, r.logits, row(p), { rtol: 1e-6, atol: 1e-7 });
      // row p of every layer's cache is written, later rows are still zero
      const written = (c: HostTensor, r0: number) => c.data[r0 * 8] !== 0;
      expect(written(r.k_cache, p)).toBe(true);
      if (p + 1 < T) expect(written(r.k_cache, p + 1)).toBe(false);
      k = r.k_cache;
      v = r.v_cache;
    }
  });

  it('WebGPU: the compiled decode step reproduces the full window position by position', async () => {
    const dev = await sharedDevice();
    const exe = await compileGraph(dec, dev, { seed: null });
    try {
      for (const [name, t] of Object.entries(params)) exe.setParam(name, t);
      let k = zeros();
      let v = zeros();
      for (let p = 0; p < T; p++) {
        const { outputs } = await exe.run({ token: i32([1, 1], [toks[p]]), pos: i32([1], [p]), k_cache: k, v_cache: v });
        expectClose(`position ${p}`, outputs.logits, row(p), { rtol: 1e-4, atol: 1e-5 });
        k = outputs.k_cache;
        v = outputs.v_cache;
      }
    } finally {
      exe.destroy();
    }
  }, 120_000);

  it('exported generate: the cached path picks the tokens of whole-window recomputation; bad prompts are refused', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-kv-'));
    try {
      await exportModel('src/models/gpt.kiln', { entries: ['forward', 'decode'], out: dir, set: { ...set, ctx: 16 }, dims: { B: 1, T: 16 }, seed: 5, strategy: 'thread' });
      type G = (ids: ArrayLike<number>, o?: object) => Promise<number[]>;
      const mod = (await import(/* @vite-ignore */ pathToFileURL(join(dir, 'index.js')).href)) as { load(o: object): Promise<void>; generate: G; destroy(): Promise<void> };
      await mod.load({ device: (await sharedDevice()).device });
      const prompt = [3, 17, 4];
      for (const o of [{ temperature: 0 }, { temperature: 1.5, topK: 0, seed: 9 }, { temperature: 1, topK: 5, seed: 2 }]) {
        const cached = await mod.generate(prompt, { ...o, maxTokens: 12 });
        const window = await mod.generate(prompt, { ...o, maxTokens: 12, cache: false });
        expect(cached.length).toBe(12);
        expect(cached).toEqual(window);
      }
      // past the context (3 + 20 > 16): the cache is refilled with the last 8 tokens and generation goes on
      const long = await mod.generate(prompt, { maxTokens: 20, seed: 1, range: [0, 8] });
      expect(long.length).toBe(20);
      expect(long.every((t) => t >= 0 && t < 8)).toBe(true);
      await expect(mod.generate([], {})).rejects.toThrow('generate: the prompt must be a non-empty array of token ids');
      await expect(mod.generate([1, 32], {})).rejects.toThrow('generate: prompt token 1 is 32, not a token id in [0, 32)');
      await expect(mod.generate([1], { maxTokens: -1 })).rejects.toThrow('generate: maxTokens must be an integer >= 0, got -1');
      await expect(mod.generate([1], { temperature: Number.NaN })).rejects.toThrow('generate: temperature must be a number >= 0, got NaN');
      expect(await mod.generate([1], { maxTokens: 0 })).toEqual([]);
      await mod.destroy();

      // index.d.ts types generate (TypeScript's compiler API through ts-morph)
      const project = new Project({ useInMemoryFileSystem: true, compilerOptions: { strict: true, target: 9, module: 199, moduleResolution: 99, lib: ['lib.es2022.d.ts', 'lib.dom.d.ts'] } });
      project.createSourceFile('/app/node_modules/gpt-kiln/index.d.ts', readFileSync(join(dir, 'index.d.ts'), 'utf8'));
      project.createSourceFile('/app/node_modules/gpt-kiln/package.json', JSON.stringify({ name: 'gpt-kiln', type: 'module', exports: { '.': { types: './index.d.ts', default: './index.js' } } }));
      project.createSourceFile('/app/package.json', '{"type":"module"}');
      const good = project.createSourceFile('/app/good.ts', `import { generate } from 'gpt-kiln';\nconst ids: number[] = await generate([1, 2], { maxTokens: 4, temperature: 0.5, topK: 3, seed: 1, onToken: (t: number) => void t });\nexport { ids };`);
      const bad = project.createSourceFile('/app/bad.ts', `import { generate } from 'gpt-kiln';\nawait generate([1], { maxTokens: '4' });\nawait generate([1], { temprature: 1 });\nexport {};`);
      const diag = (f: typeof good) => project.getProgram().getSemanticDiagnostics(f).length;
      expect(diag(good)).toBe(0);
      expect(diag(bad)).toBe(2);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
