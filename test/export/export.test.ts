/**
 * `kiln export`: a small GPT exported to a package folder, imported as an ES module in Node (Dawn on lavapipe) and
 * run through its typed functions; outputs equal the reference interpreter's on the same weights. Bad input
 * (wrong array type or length, foreign or tampered weights, a device without a needed feature, a lost device)
 * gives a KilnModelError that names what is wrong. The generated index.d.ts type-checks a consumer program
 * (TypeScript's compiler API through ts-morph) and rejects a wrong one.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Project } from 'ts-morph';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportModel, type ExportResult } from '../../src/export/index.js';
import { LoadedModel } from '../../src/export/runtime/model.js';
import { compileModel } from '../../src/frontend/index.js';
import { interpret } from '../../src/interp/interpreter.js';
import { grad } from '../../src/autodiff/index.js';
import { UPDATE_PREFIX } from '../../src/ir/graph.js';
import { buildTrainStep } from '../../src/train/optimizers.js';
import { acquireDevice } from '../../src/runtime/device.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import { decodeSafetensors } from '../../src/io/safetensors.js';
import { expectClose, sharedDevice } from '../runtime/helpers.js';

const set = { vocab: 32, d: 16, heads: 2, layers: 1, ctx: 8 };
const dims = { B: 2, T: 8 };
type Mod = {
  load(o?: { device?: unknown; weights?: unknown }): Promise<void>;
  destroy(): Promise<void>;
  forward(i: Record<string, unknown>): Promise<{ logits: Float32Array }>;
  loss(i: Record<string, unknown>): Promise<{ loss: Float32Array }>;
  train_step(i: Record<string, unknown>): Promise<{ loss: Float32Array; grad_norm: Float32Array }>;
};

describe('kiln export', () => {
  let dir: string;
  let res: ExportResult;
  let mod: Mod;
  const tokens = Int32Array.from({ length: 16 }, (_, i) => (i * 5 + 3) % 32);
  const targets = Int32Array.from({ length: 16 }, (_, i) => (i * 3 + 1) % 32);

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'kiln-export-'));
    res = await exportModel('src/models/gpt.kiln', { entries: ['forward', 'loss'], out: join(dir, 'gpt'), set, dims, seed: 3, strategy: 'thread', train: 'sgd' });
    mod = (await import(/* @vite-ignore */ pathToFileURL(join(dir, 'gpt', 'index.js')).href)) as Mod;
    await mod.load({ device: (await sharedDevice()).device });
  }, 120_000);
  afterAll(async () => {
    await mod?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  it('the module runs in Node and its outputs equal the interpreter on the exported weights', async () => {
    const params = decodeSafetensors(readFileSync(join(dir, 'gpt', 'weights.safetensors'))).tensors;
    const host = (data: Int32Array): HostTensor => ({ dtype: 'i32', shape: [2, 8], data });
    const fwd = compileModel('src/models/gpt.kiln', { entry: 'forward', set, dims }).graph;
    const want = interpret(fwd, { inputs: { tokens: host(tokens) }, params });
    const got = await mod.forward({ tokens });
    expect(got.logits).toBeInstanceOf(Float32Array);
    expectClose('logits', { dtype: 'f32', shape: [2, 8, 32], data: got.logits }, want.logits, { rtol: 1e-4, atol: 1e-5 });
    const lossG = compileModel('src/models/gpt.kiln', { entry: 'loss', set, dims }).graph;
    const wantLoss = interpret(lossG, { inputs: { tokens: host(tokens), targets: host(targets) }, params });
    const gotLoss = await mod.loss({ tokens, targets });
    expectClose('loss', { dtype: 'f32', shape: [], data: gotLoss.loss }, wantLoss.loss, { rtol: 1e-5, atol: 1e-6 });
  });

  it('the exported training step keeps parameters on the device: losses and later logits equal the interpreter', async () => {
    let params = decodeSafetensors(readFileSync(join(dir, 'gpt', 'weights.safetensors'))).tensors;
    const host = (data: Int32Array): HostTensor => ({ dtype: 'i32', shape: [2, 8], data });
    const { graph } = compileModel('src/models/gpt.kiln', { entry: 'loss', set, dims });
    const step = buildTrainStep(grad(graph, { loss: 'loss' }), { kind: 'sgd', clip: 1.0 });
    const fwd = compileModel('src/models/gpt.kiln', { entry: 'forward', set, dims }).graph;
    for (const t of [1, 2]) {
      const lr = Float32Array.of(0.05);
      const stepNo = Float32Array.of(t);
      const want = interpret(step, { inputs: { tokens: host(tokens), targets: host(targets), lr: { dtype: 'f32', shape: [], data: lr }, step: { dtype: 'f32', shape: [], data: stepNo } }, params });
      const got = await mod.train_step({ tokens, targets, lr }); // SGD has no use for `step`: the module does not take it
      expectClose(`step ${t} loss`, { dtype: 'f32', shape: [], data: got.loss }, want.loss, { rtol: 1e-5, atol: 1e-6 });
      expectClose(`step ${t} grad_norm`, { dtype: 'f32', shape: [], data: got.grad_norm }, want.grad_norm, { rtol: 1e-4, atol: 1e-6 });
      params = { ...params, ...Object.fromEntries(Object.keys(want).filter((k) => k.startsWith(UPDATE_PREFIX)).map((k) => [k.slice(UPDATE_PREFIX.length), want[k]])) };
    }
    // forward shares the parameter buffers: it sees the trained weights
    const logits = (await mod.forward({ tokens })).logits;
    expectClose('logits after training', { dtype: 'f32', shape: [2, 8, 32], data: logits }, interpret(fwd, { inputs: { tokens: host(tokens) }, params }).logits, { rtol: 1e-4, atol: 1e-5 });
  });

  it('the bundled runtime holds no compiler, and the package names its exports', () => {
    const rt = readFileSync(join(dir, 'gpt', 'runtime.js'), 'utf8');
    expect(rt).not.toMatch(/chevrotain|CstParser|autodiff/i);
    expect(rt.length).toBeLessThan(20_000);
    const pkg = JSON.parse(readFileSync(join(dir, 'gpt', 'package.json'), 'utf8'));
    expect(pkg.exports['.']).toEqual({ types: './index.d.ts', default: './index.js' });
    expect(res.plan.entries.map((e) => e.name)).toEqual(['forward', 'loss', 'train_step']);
  });

  it('wrong array type or length: an error naming the input and the expected shape', async () => {
    await expect(mod.forward({ tokens: new Float32Array(16) })).rejects.toThrow(/input 'tokens' must be a Int32Array \(i32\[2, 8\]\), got Float32Array/);
    await expect(mod.forward({ tokens: new Int32Array(8) })).rejects.toThrow(/input 'tokens' must have shape \[2, 8\] \(16 elements\), got 8/);
    await expect(mod.loss({ tokens })).rejects.toThrow(/missing input 'targets'/);
  });

  it('foreign, tampered or missing weights: refused before anything reaches the device', async () => {
    const device = (await sharedDevice()).device;
    const good = readFileSync(join(dir, 'gpt', 'weights.safetensors'));
    const other = await exportModel('src/models/gpt.kiln', { entries: ['forward'], out: join(dir, 'other'), set: { ...set, d: 8 }, dims, seed: 3 });
    expect(other.weightsBytes).toBeGreaterThan(0);
    // attention fusion follows the export's target: the subgroup-free `thread` kernels leave these small attentions
    // unfused (fused they are 2-4x slower there), the `workgroup` export (the default, for GPUs) fuses them
    const fused = (p: typeof res.plan) => p.entries.flatMap((e) => e.passes).filter((x) => /flash_attention/.test(x.label)).length;
    expect(fused(res.plan)).toBe(0);
    expect(fused(other.plan)).toBeGreaterThan(0);
    await expect(LoadedModel.load(res.plan, '', { device, weights: join(dir, 'other', 'weights.safetensors') })).rejects.toThrow(/parameter '.*' is f32\[.*\] in the weights, the module expects f32\[/);
    const tampered = Uint8Array.from(good);
    tampered[tampered.length - 1] ^= 0x55;
    await expect(LoadedModel.load(res.plan, '', { device, weights: tampered })).rejects.toThrow(/do not match the module 'gpt' \(SHA-256/);
    await expect(LoadedModel.load(res.plan, '', { device, weights: join(dir, 'nope.safetensors') })).rejects.toThrow(/cannot read the weights from .*nope\.safetensors/);
    // a good load still works from a path
    const m = await LoadedModel.load(res.plan, '', { device, weights: join(dir, 'gpt', 'weights.safetensors') });
    m.destroy();
    await expect(m.run('forward', { tokens })).rejects.toThrow(/was destroyed/);
  });

  it('a device without a needed feature or limit, and a lost device, are clear errors', async () => {
    const device = (await sharedDevice()).device;
    const weights = readFileSync(join(dir, 'gpt', 'weights.safetensors'));
    await expect(LoadedModel.load({ ...res.plan, features: ['shader-f16', 'no-such-feature'] }, '', { device, weights })).rejects.toThrow(/lacks feature\(s\) the module needs: .*no-such-feature/);
    await expect(LoadedModel.load({ ...res.plan, limits: { maxStorageBuffersPerShaderStage: 1e9 } }, '', { device, weights })).rejects.toThrow(/maxStorageBuffersPerShaderStage is \d+, the module needs 1000000000/);
    // a device of our own, lost on purpose
    const own = await acquireDevice({ fresh: true });
    const m = await LoadedModel.load(res.plan, '', { device: own.device, weights });
    expect((await m.run('loss', { tokens, targets })).loss[0]).toBeGreaterThan(0);
    own.destroy();
    await own.device.lost;
    await expect(m.run('forward', { tokens })).rejects.toThrow(/GPU device was lost/);
  });

  it('index.d.ts types a consumer program and rejects a wrong one (TypeScript compiler API via ts-morph)', () => {
    const project = new Project({ useInMemoryFileSystem: true, compilerOptions: { strict: true, target: 9 /* ES2022 */, module: 199 /* NodeNext */, moduleResolution: 99, lib: ['lib.es2022.d.ts', 'lib.dom.d.ts'] } });
    project.createSourceFile('/app/node_modules/gpt-kiln/index.d.ts', readFileSync(join(dir, 'gpt', 'index.d.ts'), 'utf8'));
    project.createSourceFile('/app/node_modules/gpt-kiln/package.json', JSON.stringify({ name: 'gpt-kiln', type: 'module', exports: { '.': { types: './index.d.ts', default: './index.js' } } }));
    project.createSourceFile('/app/package.json', '{"type":"module"}');
    const good = project.createSourceFile(
      '/app/good.ts',
      `import { forward, loss, load } from 'gpt-kiln';
       await load();
       const { logits } = await forward({ tokens: new Int32Array(16) });
       const x: number = logits[0];
       const l: Float32Array = (await loss({ tokens: new Int32Array(16), targets: new Int32Array(16) })).loss;
       export { x, l };`,
    );
    const bad = project.createSourceFile(
      '/app/bad.ts',
      `import { forward } from 'gpt-kiln';
       const r = await forward({ tokens: new Float32Array(16) });
       const y: Int32Array = r.logits;
       await forward({ tokenz: new Int32Array(16) });
       export { y };`,
    );
    const diag = (f: typeof good) => project.getProgram().getSemanticDiagnostics(f).map((d) => (typeof d.getMessageText() === 'string' ? d.getMessageText() : (d.getMessageText() as { getMessageText(): string }).getMessageText()) as string);
    expect(diag(good)).toEqual([]);
    const errs = diag(bad);
    expect(errs.length).toBe(3);
    expect(errs.join('\n')).toMatch(/Float32Array/);
    expect(errs.join('\n')).toMatch(/tokenz/);
  });
});
