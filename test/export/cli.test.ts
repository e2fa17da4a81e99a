/** `kiln export` on the command line: writes the package folder; bad options are one-line errors with exit 1. */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { expect, it } from 'vitest';

const kiln = (...args: string[]) => {
  const r = spawnSync(process.execPath, [join(process.cwd(), 'bin', 'kiln.js'), ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
};
const tiny = ['--set', 'd=16,heads=2,layers=1,vocab=32,ctx=8', '--dim', 'B=1,T=8'];

it('kiln export writes an npm package folder; bad options and checkpoints are clear errors', () => {
  const dir = mkdtempSync(join(tmpdir(), 'kiln-export-cli-'));
  try {
    const ok = kiln('export', 'src/models/gpt.kiln', ...tiny, '--entry', 'forward', '--train', 'adamw', '--name', 'tiny-gpt', '--out', join(dir, 'pkg'));
    expect(ok.err).not.toMatch(/internal error|\n\s+at /);
    expect(ok.code).toBe(0);
    expect(ok.out).toMatch(/^exported forward, train_step of 'gpt' to .*: \d+ dispatches, \d+ shaders, [\d.]+ KB of JavaScript/);
    for (const f of ['index.js', 'index.d.ts', 'runtime.js', 'plan.js', 'weights.safetensors', 'package.json']) expect(existsSync(join(dir, 'pkg', f)), f).toBe(true);
    expect(JSON.parse(readFileSync(join(dir, 'pkg', 'package.json'), 'utf8')).name).toBe('tiny-gpt');
    expect(readFileSync(join(dir, 'pkg', 'index.d.ts'), 'utf8')).toMatch(/export declare function train_step\(inputs: TrainStepInputs\): Promise<TrainStepOutputs>/);

    for (const [args, msg] of [
      [['--train', 'rmsprop'], /^error: --train must be one of adamw, adam, sgd, adafactor, got 'rmsprop'\n$/],
      [['--strategy', 'fast'], /^error: --strategy must be workgroup or thread, got 'fast'\n$/],
      [['--checkpoint', join(dir, 'none')], /^error: .*none/],
      [['--entry', 'nope'], /nope/],
    ] as const) {
      const r = kiln('export', 'src/models/gpt.kiln', ...tiny, ...args, '--out', join(dir, 'bad'));
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.err).toMatch(msg);
      expect(r.err).not.toMatch(/\n\s+at /);
      expect(existsSync(join(dir, 'bad')), 'nothing written').toBe(false);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 120_000);

it('kiln sample decodes with the key/value cache: the same text as --no-cache and as the interpreter, for a seed', async () => {
  const { saveCheckpoint } = await import('../../src/train/checkpoint.js');
  const { compileModel } = await import('../../src/frontend/index.js');
  const { initParam } = await import('../../src/ir/init.js');
  const dir = mkdtempSync(join(tmpdir(), 'kiln-sample-'));
  try {
    const config = { vocab: 264, d: 16, heads: 2, layers: 1, ctx: 24 }; // prompt + tokens fit the context
    const g = compileModel('src/models/gpt.kiln', { set: config, dims: { B: 1, T: 16 } }).graph;
    const params = Object.fromEntries(g.nodes.filter((n) => n.op === 'param').map((n) => {
      const a = n.attrs as { name: string; init: Parameters<typeof initParam>[0] };
      return [a.name, initParam(a.init, n.type, a.name, 4)];
    }));
    saveCheckpoint(dir, 1, params, {}, { model: { file: 'src/models/gpt.kiln', name: 'gpt', config }, train: { tokenizer: 'bytes' } });
    const args = ['sample', 'src/models/gpt.kiln', '--checkpoint', dir, '--prompt', 'Call me', '--tokens', '12', '--seed', '3', '--temperature', '1', '--top-k', '8'];
    const cached = kiln(...args);
    expect(cached.err).not.toMatch(/\n\s+at /);
    expect(cached.code, cached.err).toBe(0);
    expect(cached.out.startsWith('Call me')).toBe(true);
    expect(Buffer.byteLength(cached.out)).toBeGreaterThan('Call me'.length + 1);
    const window = kiln(...args, '--no-cache');
    expect(window.code, window.err).toBe(0);
    expect(window.out).toBe(cached.out);
    const interp = kiln(...args, '--device', 'interp');
    expect(interp.code, interp.err).toBe(0);
    expect(interp.out).toBe(cached.out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}, 180_000);
