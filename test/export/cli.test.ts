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
