import { readFileSync } from 'node:fs';
/** Fusion on the device, parameters and state updates, profiling and error reporting. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../src/ir/builder.js';
import { interpret } from '../../src/interp/interpreter.js';
import { initParam } from '../../src/ir/init.js';
import { KilnError } from '../../src/errors.js';
import { KilnRuntimeError } from '../../src/runtime/errors.js';
import { autotuneMatmul, compileGraph, createPipelineChecked, formatProfile, chooseMatmulTiles, deviceKey } from '../../src/runtime/index.js';
import { checkAgainstInterpreter, expectClose, sharedDevice } from './helpers.js';
import { gptInputs, randTensor, tinyGpt } from './graphs.js';
import { updateOutput } from '../../src/ir/graph.js';
import { compileModel } from '../../src/frontend/index.js';
import { compileIR } from '../../src/passes/index.js';

describe('fusion on the device', () => {
  it('bias + GELU + residual after a matmul: one kernel, same numbers', async () => {
    const b = new GraphBuilder();
    const x = b.op('input', [], { name: 'x', dtype: 'f32', shape: [2, 9, 12] });
    const w = b.op('param', [], { name: 'w', dtype: 'f32', shape: [12, 12], init: { kind: 'normal', std: 0.3 } });
    const bias = b.op('param', [], { name: 'b', dtype: 'f32', shape: [12], init: { kind: 'normal', std: 0.3 } });
    const y = b.add(b.unary('gelu', b.add(b.op('matmul', [x, w], { transA: false, transB: false }), bias), { approximate: 'tanh' }), x);
    const g = b.build('bgr', [{ name: 'y', id: y }]);
    const [unfused, fused] = await checkAgainstInterpreter(g, { x: randTensor('f32', [2, 9, 12], 1) }, { tol: { rtol: 1e-4, atol: 1e-5 } });
    expect(unfused.kernels).toBe(4);
    expect(fused.kernels).toBe(1);
    expect(fused.kernelsUnfused).toBe(4);
  });

  it('a two-layer GPT forward graph: fewer kernels, fewer bytes, same loss and logits', async () => {
    const g = tinyGpt({ layers: 2 });
    const [unfused, fused] = await checkAgainstInterpreter(g, gptInputs(), { tol: { rtol: 1e-4, atol: 2e-5 } });
    expect(fused.kernels).toBeLessThan(unfused.kernels);
    expect(fused.intermediateBytes).toBeLessThan(fused.intermediateBytesNoReuse);
    expect(fused.dispatchesPerRun).toBe(fused.kernels);
  });
});

describe('shared pipelines', () => {
  it('identical layers share one pipeline per distinct kernel: a third layer adds kernels but no pipeline', async () => {
    const dev = await sharedDevice();
    const stats = async (layers: number) => {
      const { graph } = compileModel('src/models/gpt.kiln', { entry: 'loss', set: { d: 16, heads: 2, layers, vocab: 11, ctx: 8 }, dims: { B: 2, T: 8 } });
      const exe = await compileGraph(compileIR(graph), dev, { seed: 0 });
      exe.destroy();
      return exe.stats;
    };
    // (layer 0 reads the embeddings where later layers read the previous block: its kernels differ, rightly)
    const two = await stats(2);
    const three = await stats(3);
    expect(three.kernels).toBeGreaterThan(two.kernels);
    expect(three.pipelines).toBe(two.pipelines);
    expect(two.pipelines).toBeLessThan(two.kernels / 2);
  });
});

describe('parameters and state updates', () => {
  it('initParams reproduces the interpreter initialisers; setParam/getParam round-trip', async () => {
    const dev = await sharedDevice();
    const g = tinyGpt();
    const exe = await compileGraph(g, dev, { seed: 7 });
    try {
      expect(exe.paramNames).toContain('wte');
      const wte = g.nodes.find((n) => n.op === 'param' && (n.attrs as { name: string }).name === 'wte')!;
      const want = initParam((wte.attrs as { init: never }).init, wte.type, 'wte', 7);
      expectClose('wte', await exe.getParam('wte'), want, { rtol: 0, atol: 0 });
      const mine = randTensor('f32', [...wte.type.shape], 9);
      exe.setParam('wte', mine);
      expectClose('wte set', await exe.getParam('wte'), mine, { rtol: 0, atol: 0 });
      const got = (await exe.run(gptInputs())).outputs;
      const ref = interpret(g, { inputs: gptInputs(), seed: 7, params: { wte: mine } });
      expectClose('loss', got.loss, ref.loss, { rtol: 1e-4, atol: 1e-5 });
      expect(() => exe.setParam('wte', randTensor('f32', [2, 2], 1))).toThrow(KilnError);
      expect(() => exe.setParam('nope', mine)).toThrow(/no parameter 'nope'/);
      await expect(exe.run({})).rejects.toThrow(/missing input 'tokens'/);
    } finally {
      exe.destroy();
    }
  });

  it('update:w = w - 0.1 * grad, run 3 times, changes the resident param exactly like the interpreter loop', async () => {
    const dev = await sharedDevice();
    const b = new GraphBuilder();
    const x = b.op('input', [], { name: 'x', dtype: 'f32', shape: [5, 3] });
    const t = b.op('input', [], { name: 't', dtype: 'f32', shape: [5, 2] });
    const w = b.op('param', [], { name: 'w', dtype: 'f32', shape: [3, 2], init: { kind: 'normal', std: 1 } });
    const m = b.op('param', [], { name: 'm', dtype: 'f32', shape: [3, 2], init: { kind: 'zeros' } });
    const err = b.sub(b.op('matmul', [x, w], { transA: false, transB: false }), t);
    const loss = b.op('mean', [b.mul(err, err)], { axes: [0, 1], keepdims: false });
    // d loss / d w = 2/N * x^T err
    const grad = b.mul(b.op('matmul', [x, err], { transA: true, transB: false }), b.scalar(2 / 10));
    const mNew = b.add(b.mul(m, b.scalar(0.9)), grad); // momentum buffer: optimizer state as a param
    const wNew = b.sub(w, b.mul(mNew, b.scalar(0.1)));
    const g = b.build('sgd', [
      { name: 'loss', id: loss },
      updateOutput('w', wNew),
      updateOutput('m', mNew),
    ]);
    const inputs = { x: randTensor('f32', [5, 3], 1), t: randTensor('f32', [5, 2], 2) };
    const exe = await compileGraph(g, dev, { seed: 3 });
    try {
      let params = { w: initParam({ kind: 'normal', std: 1 }, { dtype: 'f32', shape: [3, 2] }, 'w', 3), m: initParam({ kind: 'zeros' }, { dtype: 'f32', shape: [3, 2] }, 'm', 3) };
      for (let step = 0; step < 3; step++) {
        const ref = interpret(g, { inputs, params });
        const { outputs } = await exe.run(inputs);
        expect(Object.keys(outputs)).toEqual(['loss']); // update outputs stay on the device
        expectClose(`loss ${step}`, outputs.loss, ref.loss, { rtol: 1e-5, atol: 1e-6 });
        params = { w: ref['update:w'], m: ref['update:m'] };
      }
      expectClose('w after 3 steps', await exe.getParam('w'), params.w, { rtol: 1e-5, atol: 1e-6 });
      expectClose('m after 3 steps', await exe.getParam('m'), params.m, { rtol: 1e-5, atol: 1e-6 });
      const withUpd = await exe.run(inputs, { download: ['update:w'] });
      expect(withUpd.outputs['update:w'].shape).toEqual([3, 2]);
    } finally {
      exe.destroy();
    }
  });

  it('rejects an update output whose type differs from its param', async () => {
    const dev = await sharedDevice();
    const b = new GraphBuilder();
    const w = b.op('param', [], { name: 'w', dtype: 'f32', shape: [3], init: { kind: 'zeros' } });
    const g = b.build('bad', [updateOutput('w', b.op('sum', [w], { axes: [0], keepdims: false }))]);
    await expect(compileGraph(g, dev)).rejects.toThrow(/update:w.*f32\[\].*f32\[3\]/);
  });
});

describe('profiling, WGSL dump, errors', () => {
  it('profiles every kernel and formats a table; stats are filled in', async () => {
    const dev = await sharedDevice();
    const g = tinyGpt();
    const exe = await compileGraph(g, dev);
    try {
      const { profile } = await exe.run(gptInputs(), { profile: true });
      expect(profile!.length).toBe(exe.stats.kernels);
      expect(profile!.every((p) => p.ms >= 0)).toBe(true);
      expect(profile![0].source).toBe(dev.device.features.has('timestamp-query') ? 'gpu' : 'wall');
      const table = formatProfile(profile!);
      expect(table).toContain('matmul');
      expect(exe.stats.timeToFirstRunMs).toBeGreaterThan(0);
      expect(exe.stats.pipelines).toBeLessThanOrEqual(exe.stats.dispatchesPerRun);
      expect(exe.wgsl()).toContain('@compute');
      // a second run gives the same loss (no state leaks between runs)
      const a = await exe.run(gptInputs());
      const c = await exe.run(gptInputs());
      expectClose('rerun', c.outputs.loss, a.outputs.loss, { rtol: 0, atol: 0 });
    } finally {
      exe.destroy();
    }
  });

  it('a shader that fails validation is reported briefly, with the kernel, its IR ops and a file holding its source', async () => {
    const dev = await sharedDevice();
    const wgsl = '@group(0) @binding(0) var<storage, read_write> out: array<f32>;\n@compute @workgroup_size(1) fn main() { out[0] = undefined_thing; }';
    const err = await createPipelineChecked(dev.device, {
      wgsl,
      bindings: [{ binding: 0, node: 0, access: 'read_write' }],
      label: 'k7 elementwise',
      ops: 'add %3, gelu %4',
    }).catch((e) => e);
    expect(err).toBeInstanceOf(KilnRuntimeError);
    expect(err.message).toContain('undefined_thing');
    expect(err.message).toContain('add %3, gelu %4');
    expect(err.message).toContain('k7 elementwise');
    expect(err.message).not.toContain('var<storage, read_write> out'); // the source is in the file, not the message
    expect(err.message.split('\n').length).toBeLessThanOrEqual(4);
    const file = /: (\S+\.wgsl)$/m.exec(err.message)![1];
    expect(readFileSync(file, 'utf8')).toContain('var<storage, read_write> out');
  });

  it('the autotuner fills the tile cache that chooseMatmulTiles consults', async () => {
    const dev = await sharedDevice();
    const r = await autotuneMatmul(dev, 24, 20, 16, { reps: 1, candidates: [{ BM: 16, BN: 16, BK: 16, TM: 2, TN: 2 }, { BM: 32, BN: 32, BK: 8, TM: 4, TN: 4 }] });
    expect(r.timings.length).toBe(2);
    expect(chooseMatmulTiles(24, 20, 16, deviceKey(dev))).toEqual(r.best);
  });

  it('tuneGraph times each distinct matmul shape once, saves the winners to a file, and compiles use them', async () => {
    const { tuneGraph, saveTileCacheFile, loadTileCacheFile, tileCache } = await import('../../src/runtime/index.js');
    const { GraphBuilder } = await import('../../src/ir/builder.js');
    const dev = await sharedDevice();
    const b = new GraphBuilder();
    const x = b.op('input', [], { name: 'x', dtype: 'f32', shape: [3, 12, 20] });
    const w = b.op('input', [], { name: 'w', dtype: 'f32', shape: [20, 28] });
    const v = b.op('input', [], { name: 'v', dtype: 'f32', shape: [28, 9] });
    const h = b.op('matmul', [x, w], { transA: false, transB: false });
    const g = b.build('tune', [
      { name: 'y', id: b.op('matmul', [h, v], { transA: false, transB: false }) },
      { name: 'h2', id: b.op('matmul', [b.op('input', [], { name: 'x2', dtype: 'f32', shape: [3, 12, 20] }), w], { transA: false, transB: false }) },
      // the same dimensions with B transposed: another kernel, timed on its own
      { name: 'h3', id: b.op('matmul', [x, b.op('input', [], { name: 'wt', dtype: 'f32', shape: [28, 20] })], { transA: false, transB: true }) },
    ]);
    const candidates = [
      { BM: 16, BN: 16, BK: 16, TM: 2, TN: 2 },
      { BM: 32, BN: 32, BK: 1, TM: 4, TN: 4, direct: true },
    ];
    tileCache.clear();
    const res = await tuneGraph(g, dev, { reps: 1, candidates });
    expect(res.map((r) => [r.batch, r.M, r.N, r.K, r.layout])).toEqual([[3, 12, 28, 20, 'NN'], [3, 12, 9, 28, 'NN'], [3, 12, 28, 20, 'NT']]); // the repeated shape once
    expect(res.every((r) => r.timings.length === 2 && !r.cached)).toBe(true);
    const file = join(mkdtempSync(join(tmpdir(), 'kiln-tiles-')), 'tiles.json');
    await saveTileCacheFile(file);
    tileCache.clear();
    expect(await loadTileCacheFile(file)).toBe(3);
    expect(chooseMatmulTiles(12, 9, 28, deviceKey(dev), 3)).toEqual(res[1].best);
    expect(chooseMatmulTiles(12, 28, 20, deviceKey(dev), 3, false, 'NT')).toEqual(res[2].best);
    const again = await tuneGraph(g, dev, { reps: 1, candidates });
    expect(again.every((r) => r.cached)).toBe(true);
    const exe = await compileGraph(g, dev, { seed: null });
    const best = res[0].best;
    expect(exe.wgsl()).toContain(best.direct ? `direct (no workgroup tiles), ${best.BM}x${best.BN} per workgroup` : `tile ${best.BM}x${best.BN}x${best.BK}`);
    exe.destroy();
    writeFileSync(file, '{ not json');
    await expect(loadTileCacheFile(file)).rejects.toThrow(/not valid JSON/);
    tileCache.clear();
  });
});
