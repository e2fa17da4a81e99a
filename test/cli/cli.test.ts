import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { decodeNpy, encodeNpy, readNpy } from '../../src/io/npy.js';
import { readSafetensors } from '../../src/io/safetensors.js';

const kiln = (...args: string[]) => {
  const r = spawnSync(process.execPath, [join(process.cwd(), 'bin', 'kiln.js'), ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
};
const tiny = ['--set', 'd=16,heads=2,layers=1,vocab=32,ctx=8', '--dim', 'B=2,T=8'];
const tmp = () => mkdtempSync(join(tmpdir(), 'kiln-cli-'));

describe('kiln CLI', () => {
  it('--help works on every verb', () => {
    for (const verb of ['check', 'compile', 'run', 'fmt', 'doctor', 'gradcheck', 'grad', 'train', 'sample', 'eval']) {
      const r = kiln(verb, '--help');
      expect(r.code, verb).toBe(0);
      expect(r.out).toContain(`Usage: kiln ${verb}`);
    }
  });

  it('check: ok for the library models; a broken file gets file:line:col, a caret and exit 1, no stack trace', () => {
    for (const m of ['gpt', 'bert', 'prefixlm', 't5']) expect(kiln('check', `src/models/${m}.kiln`).code).toBe(0);
    const dir = tmp();
    const f = join(dir, 'bad.kiln');
    writeFileSync(f, 'model m {\n  d: int = 4\n}\n\nentry forward(x: f32[2, d]) -> y: f32 {\n  return sum(x @ x)\n}\n');
    const r = kiln('check', f);
    expect(r.code).toBe(1);
    expect(r.err).toContain(`${f}:6:14: error: matmul: inner dimensions differ: 4 vs 2 (operands f32[2, 4], f32[2, 4])`);
    expect(r.err).toMatch(/\n\s*\^~*/);
    expect(r.err).not.toMatch(/\n\s+at /);
    const missing = kiln('check', join(dir, 'nope.kiln'));
    expect(missing.code).toBe(1);
    expect(missing.err).not.toMatch(/\n\s+at /);
  });

  it('compile: text IR, JSON, schedule, memory plan, WGSL and the joint gradient graph', () => {
    const ir = kiln('compile', 'src/models/gpt.kiln', '--entry', 'loss', ...tiny);
    expect(ir.code).toBe(0);
    expect(ir.out).toMatch(/^graph gpt\.loss \{/);
    const json = JSON.parse(kiln('compile', 'src/models/gpt.kiln', '--emit', 'json', ...tiny).out);
    expect(json.format).toBe('kiln-ir');
    expect(kiln('compile', 'src/models/gpt.kiln', '--emit', 'schedule', ...tiny).out).toMatch(/\d+ kernels \(\d+ before fusion/);
    expect(kiln('compile', 'src/models/gpt.kiln', '--emit', 'memory', ...tiny).out).toMatch(/memory plan:/);
    expect(kiln('compile', 'src/models/gpt.kiln', '--emit', 'wgsl', ...tiny).out).toContain('@compute');
    const g = kiln('compile', 'src/models/gpt.kiln', '--entry', 'loss', '--grad', ...tiny);
    expect(g.out).toContain('grad:wte=%');
    expect(kiln('compile', 'src/models/gpt.kiln', '--entry', 'loss', '--grad', '--emit', 'saved', ...tiny).out).toMatch(/forward values kept alive/);
    expect(kiln('compile', 'src/models/gpt.kiln', '--emit', 'bogus').code).toBe(1);
  });

  it('run --train-step --profile: the step on WebGPU, its loss the forward loss, a profile by kernel family against the roofline', async () => {
    const dir = tmp();
    // a cached roofline for this device, so the test does not measure one (kiln doctor --roofline would)
    const { acquireDevice } = await import('../../src/runtime/device.js');
    const { deviceKey } = await import('../../src/runtime/executable.js');
    const key = deviceKey(await acquireDevice());
    const cache = join(dir, 'roofline.json');
    writeFileSync(cache, JSON.stringify({ [key]: { device: key, gflops: 10, gbps: 2, launchUs: 20, measured: 'test' } }));
    const env = { ...process.env, KILN_ROOFLINE_CACHE: cache };
    const run = (...extra: string[]) => spawnSync(process.execPath, [join(process.cwd(), 'bin', 'kiln.js'), 'run', 'src/models/gpt.kiln', '--entry', 'loss', ...tiny, ...extra], { encoding: 'utf8', env });
    const fwd = run();
    const step = run('--device', 'webgpu', '--train-step', '--profile');
    expect(step.status, step.stderr).toBe(0);
    const loss = (out: string) => Number(/loss: f32\[\] = \[([^\]]+)\]/.exec(out)![1]);
    expect(Math.abs(loss(step.stdout) - loss(fwd.stdout))).toBeLessThan(1e-4 * Math.abs(loss(fwd.stdout)));
    expect(step.stdout).toMatch(/grad_norm: f32\[\]/);
    expect(step.stderr).toContain('peak f32 FMA       10.00 GFLOP/s');
    const families = step.stderr.slice(step.stderr.indexOf('by kernel family:'));
    for (const f of [/matmul NN/, /matmul NT/, /matmul TN/, /optimizer update/, /row-wise/]) expect(families).toMatch(f);
    const bad = run('--device', 'webgpu', '--train-step', 'lion');
    expect(bad.status).toBe(1);
    expect(bad.stderr).toContain("--train-step takes adamw, adam or sgd, got 'lion'");
  }, 120_000);
  it('compile --fuse-attention: --print-ir-after attention-fusion shows flash_attention; the WGSL has its kernels', () => {
    const r = kiln('compile', 'src/models/gpt.kiln', '--entry', 'loss', '--fuse-attention', '--print-ir-after', 'attention-fusion', ...tiny);
    expect(r.code).toBe(0);
    expect(r.err).toMatch(/IR after attention-fusion[\s\S]*= flash_attention .*mask="causal"/);
    expect(r.out).not.toMatch(/= softmax /);
    const w = kiln('compile', 'src/models/gpt.kiln', '--entry', 'loss', '--fuse-attention', '--grad', '--emit', 'wgsl', ...tiny);
    expect(w.out).toContain('flash_attention_grad');
    expect(w.out).toContain('flash_attention_stats');
  });

  it('run: .npy in and out; WebGPU agrees with the interpreter', () => {
    const dir = tmp();
    const tokens = { dtype: 'i32' as const, shape: [2, 8], data: Int32Array.from({ length: 16 }, (_, i) => (i * 7) % 32) };
    writeFileSync(join(dir, 'tokens.npy'), encodeNpy(tokens));
    expect(Array.from(decodeNpy(encodeNpy(tokens)).data)).toEqual(Array.from(tokens.data));
    const a = kiln('run', 'src/models/gpt.kiln', '--entry', 'loss', ...tiny, '--input', `tokens=${join(dir, 'tokens.npy')}`, '--save-outputs', join(dir, 'interp'));
    expect(a.code, a.err).toBe(0);
    expect(readdirSync(join(dir, 'interp'))).toEqual(['loss.npy']);
    const b = kiln('run', 'src/models/gpt.kiln', '--entry', 'loss', ...tiny, '--input', `tokens=${join(dir, 'tokens.npy')}`, '--device', 'webgpu', '--save-outputs', join(dir, 'gpu'));
    expect(b.code, b.err).toBe(0);
    const li = readNpy(join(dir, 'interp', 'loss.npy')).data[0];
    const lg = readNpy(join(dir, 'gpu', 'loss.npy')).data[0];
    expect(Math.abs(li - lg)).toBeLessThan(1e-4 * Math.abs(li));
    expect(Math.abs(li - Math.log(32))).toBeLessThan(0.3);
    // ids past the vocabulary are defined (zero rows, zero loss) but almost always a mistake: a warning names them
    const ids = (v: number[]) => ({ dtype: 'i32' as const, shape: [2, 8], data: Int32Array.from({ length: 16 }, (_, i) => v[i] ?? 1) });
    writeFileSync(join(dir, 'big.npy'), encodeNpy(ids([3, 40])));
    writeFileSync(join(dir, 'targets.npy'), encodeNpy(ids([-100, 2, 33])));
    const w = kiln('run', 'src/models/gpt.kiln', '--entry', 'loss', ...tiny, '--input', `tokens=${join(dir, 'big.npy')}`, '--input', `targets=${join(dir, 'targets.npy')}`);
    expect(w.code, w.err).toBe(0);
    expect(w.err).toMatch(/warning: input 'tokens' holds 40 at flat position 1, outside the 32 rows of gather %\d+ \(it reads as zeros\)/);
    expect(w.err).toMatch(/warning: input 'targets' holds 33 at flat position 2, outside the 32 classes of cross_entropy %\d+ \(its loss counts as 0\)/);
    const wrong = kiln('run', 'src/models/gpt.kiln', '--entry', 'loss', '--input', 'nosuch=random');
    expect(wrong.code).toBe(1);
    expect(wrong.err).toContain("entry 'loss' has no input 'nosuch'");
  });

  it('gradcheck passes on a library model; grad writes gradients under parameter names', () => {
    const r = kiln('gradcheck', 'src/models/gpt.kiln', '--set', 'd=8,heads=2,layers=1,vocab=11,ctx=4', '--dim', 'B=2,T=4');
    expect(r.code, r.out + r.err).toBe(0);
    expect(r.out).toMatch(/^ok: worst ratio [\d.]+ .*atol 1e-8, rtol 0\.0001$/m);
    const dir = tmp();
    const g = kiln('grad', 'src/models/gpt.kiln', ...tiny, '--save-grads', join(dir, 'g.safetensors'), '--save-outputs', dir);
    expect(g.code, g.err).toBe(0);
    const grads = readSafetensors(join(dir, 'g.safetensors'));
    expect(Object.keys(grads)).toContain('h.0.attn.q.w');
    expect(grads['h.0.attn.q.w'].shape).toEqual([16, 16]);
    // the same gradients computed by the compiled kernels on the WebGPU device
    const w = kiln('grad', 'src/models/gpt.kiln', ...tiny, '--device', 'webgpu', '--save-grads', join(dir, 'w.safetensors'));
    expect(w.code, w.err).toBe(0);
    const onDevice = readSafetensors(join(dir, 'w.safetensors'));
    expect(Object.keys(onDevice).sort()).toEqual(Object.keys(grads).sort());
    for (const [name, t] of Object.entries(grads)) {
      t.data.forEach((v, i) => expect(Math.abs(onDevice[name].data[i] - v), `${name}[${i}]`).toBeLessThanOrEqual(1e-5 + 1e-3 * Math.abs(v)));
    }
  });

  it('train, sample and eval refuse bad options and mismatched checkpoints before any device work, without a stack trace', async () => {
    const { saveCheckpoint } = await import('../../src/train/checkpoint.js');
    const ck = tmp();
    saveCheckpoint(ck, 1, {}, {}, { model: { file: 'src/models/gpt.kiln', name: 'gpt', config: {} }, train: {} });
    const cases: [string[], string][] = [
      [['train', 'src/models/gpt.kiln', '--lr', '-1'], 'error: --lr must be greater than 0, got -1'],
      [['train', 'src/models/gpt.kiln', '--schedule', 'weird'], "error: unknown schedule 'weird' (expected constant, linear, cosine, invsqrt)"],
      [['train', 'src/models/gpt.kiln', '--batch', '2.5'], "error: --batch expects an integer, got '2.5'"],
      [['train', 'src/models/gpt.kiln', '--objective', 'mlm'], "error: objective 'mlm' makes batches of tokens, labels, but the loss entry of model 'gpt' takes tokens, targets: use --objective clm"],
      [['sample', 'src/models/gpt.kiln', '--checkpoint', ck, '--temperature', '-1'], 'error: --temperature must be at least 0, got -1'],
      [['sample', 'src/models/gpt.kiln', '--checkpoint', ck, '--top-k', 'abc'], "error: --top-k expects an integer, got 'abc'"],
      [['sample', 'src/models/bert.kiln', '--checkpoint', ck], `error: checkpoint ${join(ck, 'step-0000001')} is of model 'gpt', not 'bert'`],
      [['eval', 'src/models/t5.kiln', '--checkpoint', ck], `error: checkpoint ${join(ck, 'step-0000001')} is of model 'gpt', not 't5'`],
    ];
    for (const [args, message] of cases) {
      const r = kiln(...args);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.err.trim()).toBe(message);
    }
  });

  it('fmt --check accepts the library models; doctor reports the adapter', () => {
    for (const m of ['gpt', 'bert', 'prefixlm', 't5']) expect(kiln('fmt', '--check', `src/models/${m}.kiln`).code).toBe(0);
    const d = kiln('doctor');
    expect(d.code).toBe(0);
    expect(d.out).toMatch(/adapter/i);
  });
});
