import type { Command } from 'commander';
import { KilnError } from '../../errors.js';
import { num, withModelOptions } from '../options.js';
import type { OptimizerKind } from '../../train/optimizers.js';

/** `kiln export`: a model's entries as an npm package folder (see src/export/). */
export function register(program: Command): void {
  withModelOptions(
    program
      .command('export')
      .description('compile entries into an npm package folder: an ES module with the WGSL kernels and a small runtime, typed index.d.ts, weights')
      .argument('<file>', '.kiln model file')
      .option('--entry <name>', 'entry point to export (repeatable; default forward; a causal model\'s decode entry also exports generate())', (v: string, p: string[] = []) => [...p, v])
      .option('--checkpoint <dir>', 'weights (and config) from a training checkpoint; default: the initialisers')
      .option('--seed <n>', 'seed of the initialisers without a checkpoint', '0')
      .option('--strategy <s>', 'kernel strategy: workgroup (GPUs) | thread (CPU adapters such as lavapipe)', 'workgroup')
      .option('--name <pkg>', 'npm package name')
      .option('--train <optimizer>', 'also export train_step: one step of this optimizer (adamw | sgd) on the loss entry, state kept on the device')
      .requiredOption('--out <dir>', 'output folder'),
  ).action(async (file: string, o: { entry?: string[]; checkpoint?: string; seed: string; strategy: string; name?: string; train?: string; out: string; set: Record<string, string | number | boolean>; dim: Record<string, number> }) => {
    if (o.strategy !== 'workgroup' && o.strategy !== 'thread') throw new KilnError(`--strategy must be workgroup or thread, got '${o.strategy}'`);
    const { OPTIMIZERS } = await import('../../train/optimizers.js');
    if (o.train !== undefined && !(OPTIMIZERS as readonly string[]).includes(o.train)) throw new KilnError(`--train must be one of ${OPTIMIZERS.join(', ')}, got '${o.train}'`);
    const { exportModel } = await import('../../export/index.js');
    const r = await exportModel(file, {
      entries: o.entry ?? ['forward'],
      out: o.out,
      checkpoint: o.checkpoint,
      set: o.set,
      dims: o.dim,
      seed: num('--seed', o.seed, { int: true, min: 0 }),
      strategy: o.strategy,
      name: o.name,
      train: o.train as OptimizerKind | undefined,
    });
    const kb = (b: number) => (b / 1024).toFixed(1);
    process.stdout.write(
      `exported ${r.plan.entries.map((e) => e.name).join(', ')} of '${r.plan.model}' to ${r.dir}: ${r.plan.entries.reduce((a, e) => a + e.passes.length, 0)} dispatches, ` +
        `${r.plan.shaders.length} shaders, ${kb(r.jsBytes)} KB of JavaScript (minified, without weights), ${kb(r.weightsBytes)} KB of weights\n`,
    );
  });
}
