/**
 * The `kiln` command line. Each verb lives in src/cli/commands/ and is imported lazily, so `kiln fmt` does not
 * pay for loading WebGPU. User mistakes (KilnError) print a message and exit 1; anything else is a Kiln bug.
 */
import { Command, CommanderError } from 'commander';
import { KilnError } from '../errors.js';
import { collectList, collectPairs, withModelOptions } from './options.js';

export async function main(argv: string[]): Promise<void> {
  const program = new Command('kiln')
    .description('Kiln: a deep-learning compiler that trains language models on WebGPU')
    .version('0.1.0')
    .showHelpAfterError()
    .exitOverride();

  const modelOpts = withModelOptions;

  modelOpts(
    program
      .command('check')
      .description('parse and type/shape-check a .kiln file and every entry point in it')
      .argument('<file>', '.kiln model file'),
  ).action(async (file, o) => (await import('./commands/check.js')).check(file, o));

  modelOpts(
    program
      .command('compile')
      .description('compile an entry point through the pipeline and print the IR or what a stage makes of it')
      .argument('[file]', '.kiln model file')
      .option('--entry <name>', 'entry point', 'forward')
      .option('--emit <what>', 'ir | json | saved | schedule | memory | wgsl, or any pipeline stage (see --passes)', 'ir')
      .option('--grad', 'differentiate the entry (its scalar output `loss` or the first output) w.r.t. all parameters')
      .option('--train', 'the whole training step: the entry differentiated plus the optimizer update')
      .option('--optimizer <o>', 'with --train: adamw | adam | sgd | adafactor', 'adamw')
      .option('--accum', 'with --train: the gradient-accumulation form of the step')
      .option('--parallel <mesh>', 'with --grad/--train: the per-device program of dp=N (data parallel; --dim B= is the per-device batch) or tp=N (tensor parallel), split at its collectives for kernel-level output')
      .option('--zero <stage>', 'with --parallel: ZeRO stage 1, 2 or 3 (optimizer state, + gradients, + parameters sharded)')
      .option('--micro-batches <m>', 'with --parallel pp=N: micro-batches per step, for the memory summary (--dim B= is the micro-batch size)')
      .option('--passes', 'list the pipeline: every registered pass with its summary and options')
      .option('--print-ir-after <passes>', 'dump the IR (or schedule, memory plan, WGSL) after these stages (comma-separated, or "all") to stderr')
      .option('--print-ir-before <passes>', 'the same, before these stages')
      .option('--pass-option <pass.option=value>', 'set a pass option (value as JSON, else a string; repeatable)', collectList, [])
      .option('--disable-pass <pass>', 'leave a pass out of the pipeline (repeatable)', collectList, [])
      .option('--fuse-attention', 'fuse every attention into one flash_attention node (default: every one, except on CPU adapters without fixed-size subgroups: only those whose unfused scores exceed the storage-binding limit)')
      .option('--no-fuse-attention', 'fuse no attention (the attention-fusion pass left out)')
      .option('--precision <p>', 'f32 | f16 | bf16: run the precision pass (half activations and matmuls, f32 master weights; f16 adds loss scaling with --train)')
      .option('--memory-budget <size>', 'with --grad/--train: recompute activations so the step fits this much device memory (64MiB...); see docs/recompute.md')
      .option('--recompute <policy>', 'with --grad/--train: none | blocks | sqrt | selective | budget (default budget with --memory-budget)')
      .option('-o, --output <file>', 'write to a file instead of stdout'),
  ).action(async (file, o) => (await import('./commands/compile.js')).compile(file, o));

  modelOpts(
    program
      .command('run')
      .description('run an entry point on inputs and print or save its outputs')
      .argument('<file>', '.kiln model file')
      .option('--entry <name>', 'entry point', 'forward')
      .option('--input <name=file.npy|random>', 'an input of the entry (repeatable; unspecified inputs are random)', collectPairs, {})
      .option('--params <file>', 'parameters (.safetensors) instead of the initialisers')
      .option('--seed <n>', 'seed for initialisation and random inputs', '0')
      .option('--device <kind>', 'interp (reference interpreter) | webgpu', 'interp')
      .option('--profile', 'print per-kernel GPU times, FLOPs, bytes and roofline fractions, and the time by kernel family (webgpu)')
      .option('--train-step [optimizer]', 'run the training step instead: the entry (a scalar loss) with its backward and an optimizer update (adamw | adam | sgd; clipping off)')
      .option('--save-outputs <dir>', 'write each output as <dir>/<name>.npy'),
  ).action(async (file, o) => (await import('./commands/run.js')).run(file, o));

  program
    .command('fmt')
    .description('print a .kiln file in canonical formatting')
    .argument('<file>', '.kiln file')
    .option('-w, --write', 'rewrite the file in place')
    .option('--check', 'exit 1 if the file is not canonically formatted')
    .action(async (file, o) => (await import('./commands/fmt.js')).fmt(file, o));

  program
    .command('doctor')
    .description('show the WebGPU adapter, its features and limits, and what to do if there is none')
    .option('--devices <n>', 'also open n devices (as `kiln train --devices n` does) and list them')
    .option('--roofline', "the device's measured limits: peak f32 FMA GFLOP/s, storage bandwidth, empty-dispatch cost (cached per device in .kiln/roofline.json)")
    .option('--remeasure', 'measure the roofline again instead of reading the cache')
    .action(async (o) => (await import('./commands/doctor.js')).doctor(o));

  for (const register of await optionalVerbs()) register(program);

  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      process.exitCode = e.exitCode;
      return;
    }
    if (e instanceof KilnError) {
      process.stderr.write(`${e.message.startsWith('error') || /^\S+:\d+:\d+:/.test(e.message) ? '' : 'error: '}${e.message}\n`);
      process.exitCode = 1;
      return;
    }
    if (e instanceof RangeError && /Array buffer allocation failed|Invalid typed array length/.test(e.message)) {
      process.stderr.write(`error: out of memory: a tensor of this program does not fit in this machine's memory (${e.message}); use smaller sizes\n`);
      process.exitCode = 1;
      return;
    }
    process.stderr.write(`internal error (a bug in Kiln, please report it):\n${(e as Error)?.stack ?? e}\n`);
    process.exitCode = 70;
  }
}

/** Verbs whose modules register themselves (training, gradients, benchmarks). */
async function optionalVerbs(): Promise<((p: Command) => void)[]> {
  const mods = await Promise.all([
    import('./commands/grad.js').catch(() => null),
    import('./commands/train.js').catch(() => null),
    import('./commands/bench.js').catch(() => null),
    import('./commands/tune.js').catch(() => null),
    import('./commands/lora.js').catch(() => null),
    import('./commands/export.js').catch(() => null),
  ]);
  return mods.filter((m): m is { register: (p: Command) => void } => !!m && typeof m.register === 'function').map((m) => m.register);
}
