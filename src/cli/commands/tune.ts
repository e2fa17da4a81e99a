/** `kiln tune FILE`: times the matmul tile candidates for every matmul shape of a model's graph on this device. */
import type { Command } from 'commander';
import { compileModel } from '../../frontend/index.js';
import { num, withModelOptions, type ConfigValue } from '../options.js';
import { compileIR } from '../../passes/index.js';
import { lossOutput } from './compile.js';

interface TuneOpts {
  set: Record<string, ConfigValue>;
  dim: Record<string, number>;
  entry: string;
  grad: boolean;
  reps: string;
  force?: boolean;
  cache?: string;
}

export function register(program: Command): void {
  withModelOptions(
    program
      .command('tune')
      .description('autotune the matmul tiles of a model (its training graph by default) on this device and save the winners')
      .argument('<file>', 'a .kiln model')
      .option('--entry <name>', 'entry point', 'loss')
      .option('--no-grad', 'tune the entry as it is, not its forward+backward graph')
      .option('--reps <n>', 'timed runs per candidate', '3')
      .option('--force', 'time shapes again even if the cache has them')
      .option('--cache <file>', 'tile cache file (default $KILN_TILE_CACHE or .kiln/tiles.json)'),
  ).action(async (file: string, o: TuneOpts) => {
    const { graph: entry } = compileModel(file, { entry: o.entry, set: o.set, dims: o.dim });
    const graph = compileIR(entry, o.grad ? { grad: { loss: lossOutput(entry) } } : {});
    const { acquireDevice } = await import('../../runtime/device.js');
    const { tuneGraph, loadTileCacheFile, saveTileCacheFile } = await import('../../runtime/tune.js');
    const { tileCache } = await import('../../codegen/wgsl/index.js');
    const dev = await acquireDevice(); // loads the default cache file
    try {
      if (o.cache) {
        tileCache.clear(); // --cache FILE holds this file's entries and this run's, not the default file's
        await loadTileCacheFile(o.cache);
      }
      const res = await tuneGraph(graph, dev, { reps: num('--reps', o.reps, { int: true, min: 1 }), force: o.force, log: (s) => process.stderr.write(`tune: ${s}\n`) });
      const tile = (t: { BM: number; BN: number; BK: number; TM: number; TN: number; direct?: boolean }) =>
        `${t.direct ? 'direct' : 'tiled'} ${t.BM}x${t.BN}${t.direct ? '' : `x${t.BK}`}, ${t.TM}x${t.TN}/invocation`;
      for (const r of res) {
        const shape = `${r.batch > 1 ? `${r.batch} x ` : ''}${r.M}x${r.N}x${r.K} ${r.layout}`.padEnd(25);
        const best = r.timings.find((t) => t.tiles === r.best);
        const worst = r.timings.reduce((m, t) => Math.max(m, t.ms), 0);
        process.stdout.write(`${shape} ${tile(r.best)}${r.cached ? ' (cached)' : `  ${best!.ms.toFixed(2)} ms (slowest candidate ${worst.toFixed(2)} ms)`}\n`);
      }
      const path = await saveTileCacheFile(o.cache);
      process.stdout.write(`${res.length} matmul shapes; tile cache: ${path}\n`);
    } finally {
      dev.destroy();
    }
  });
}
