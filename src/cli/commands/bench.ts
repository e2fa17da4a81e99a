/** `kiln bench`: Kiln against TF.js (WebGPU and CPU) and jax-js (webgpu and wasm) on the same device, in one process. */
import type { Command } from 'commander';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KilnError } from '../../errors.js';
import { num } from '../options.js';

export function register(program: Command): void {
  program
    .command('bench')
    .description('benchmark kernels, GPT forward/training steps and compile time against TensorFlow.js and jax-js on the same device, with roofline fractions')
    .option('--json', 'print the report as one JSON document')
    .option('--quick', 'tiny sizes (checks the harness in seconds)')
    .option('--only <group>', 'kernels | graphs | attention | compile | precision (the GPT step in f32, f16, bf16) | recompute (GPT training step per recomputation policy: peak, recomputed FLOPs, step time)')
    .option('--repeats <n>', 'timed runs per figure (after warm-up)', '10')
    .option('--no-cpu', 'skip the TF.js CPU backend')
    .option('--no-jax', 'skip jax-js (its webgpu and wasm devices) as the second peer')
    .option('--out <dir>', 'where ratios.svg, report.json and report.md go', 'out/bench')
    .action(async (o: { json?: boolean; quick?: boolean; only?: string; repeats: string; cpu: boolean; jax: boolean; out: string }) => {
      if (o.only && !['kernels', 'graphs', 'attention', 'compile', 'precision', 'recompute'].includes(o.only)) throw new KilnError(`--only must be kernels, graphs, attention, compile, precision or recompute, got '${o.only}'`);
      const { runBench } = await import('../../../bench/suite.js');
      const { formatTable, formatMarkdown, ratioChartSvg } = await import('../../../bench/report.js');
      const rep = await runBench({
        quick: !!o.quick,
        only: o.only as never,
        repeats: num('--repeats', o.repeats, { int: true, min: 1 }),
        cpu: o.cpu,
        jax: o.jax,
        log: o.json ? undefined : (s) => process.stderr.write(`bench: ${s}\n`),
      });
      mkdirSync(o.out, { recursive: true });
      writeFileSync(join(o.out, 'report.json'), JSON.stringify(rep, null, 1));
      writeFileSync(join(o.out, 'report.md'), formatMarkdown(rep) + '\n');
      writeFileSync(join(o.out, 'ratios.svg'), ratioChartSvg(rep));
      process.stdout.write(o.json ? JSON.stringify(rep) + '\n' : formatTable(rep) + `\n\nreport.json, report.md and ratios.svg in ${o.out}\n`);
    });
}
