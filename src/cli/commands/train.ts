/** `kiln train`, `kiln sample`, `kiln eval`: the training job on the WebGPU device. */
import type { Command } from 'commander';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KilnError } from '../../errors.js';
import type { Graph } from '../../ir/graph.js';
import { fsReason } from '../../train/checkpoint.js';
import { isStateParam } from '../../train/optimizers.js';
import { openRunFolder } from '../../train/runfolder.js';
import { collectSet, num, type ConfigValue } from '../options.js';

interface TrainOpts {
  set: Record<string, ConfigValue>;
  objective?: string;
  optimizer: string;
  lr: string;
  warmup: string;
  schedule: string;
  batch: string;
  accum: string;
  steps: string;
  clip: string;
  weightDecay?: string;
  seed: string;
  data: string;
  tokenizer: string;
  out: string;
  json?: boolean;
  resume?: string;
  initFrom?: string;
  fuseAttention?: boolean;
  precision: string;
  memoryBudget?: string;
  recompute?: string;
  lora?: string;
  initAllowMissing?: string;
  train?: string;
  freeze?: string;
  evalEvery: string;
  evalBatches: string;
  saveEvery: string;
  device: string;
  devices?: string;
  parallel?: string;
  zero?: string;
  pp?: string;
  microBatches?: string;
  ppSchedule?: string;
  wholeWord?: boolean;
  fim: string;
  onNonfinite: string;
  maxNonfinite: string;
  allowChange?: string;
}

export function register(program: Command): void {
  program
    .command('train')
    .description('train a model on the WebGPU device (default: byte-level GPT on Moby-Dick)')
    .argument('<file>', '.kiln model file with a `loss` entry')
    .option('--set <k=v>', 'override a config value of the model (repeatable)', collectSet, {})
    .option('--objective <o>', 'clm | mlm | prefix | span | cls (classification from label<TAB>text lines; default: by model: gpt clm, bert mlm, prefixlm prefix, t5 span)')
    .option('--optimizer <o>', 'adamw | adam | sgd | adafactor', 'adamw')
    .option('--lr <x>', 'peak learning rate', '3e-3')
    .option('--warmup <n>', 'linear warmup steps', '20')
    .option('--schedule <s>', 'constant | linear | cosine | invsqrt (after warmup)', 'cosine')
    .option('--batch <n>', 'sequences per micro-batch', '8')
    .option('--accum <n>', 'micro-batches accumulated per optimizer step', '1')
    .option('--steps <n>', 'optimizer steps', '500')
    .option('--clip <x>', 'clip the global gradient norm to this (0: off)', '1.0')
    .option('--weight-decay <x>', 'weight decay (default 0.01 for adamw, 0 otherwise)')
    .option('--seed <n>', 'seed for initialisation, data order, masking and dropout', '0')
    .option('--data <path>', 'text file, folder of .txt files, or a built-in corpus: moby-dick | sotu', 'moby-dick')
    .option('--tokenizer <t>', 'bytes | gpt2 | bert (WordPiece, bert-base-uncased)', 'bytes')
    .option('--out <dir>', 'output folder: checkpoints and the loss curve', 'out/run')
    .option('--lora <spec>', 'train LoRA adapters instead of the weights: r=8,alpha=16,targets=attn.q,attn.v[,dropout=0.1] (the base: --init-from)')
    .option('--memory-budget <size>', 'fit the training step in this much device memory (64MiB, 1.5GiB...) by recomputing activations in the backward (policy budget unless --recompute says otherwise); see docs/recompute.md')
    .option('--recompute <policy>', 'gradient checkpointing: none | blocks | sqrt | selective | budget (default budget with --memory-budget)')
    .option('--precision <p>', 'f32 | f16 | bf16: mixed precision (activations and matmuls in half, f32 master weights; f16 with dynamic loss scaling); see README', 'f32')
    .option('--fuse-attention', 'fused flash-attention kernels for every attention of the step and evaluation graphs (the default: every attention)')
    .option('--no-fuse-attention', 'no fused attention (the attention-fusion pass left out)')
    .option('--init-from <path>', 'start from these weights: a Kiln checkpoint (any objective) or a .safetensors file in Kiln, Hugging Face GPT-2 or BERT layout; optimizer state starts fresh')
    .option('--init-allow-missing <globs>', "with --init-from: parameters that may be absent and start from their initialisers (a new head: 'head.*')")
    .option('--train <globs>', "train only these parameters (comma-separated globs, e.g. 'h.*.attn.*,ln_f.*'); the rest are frozen")
    .option('--freeze <globs>', 'freeze these parameters (no gradient, no update, no optimizer state)')
    .option('--resume <dir>', 'continue exactly from a checkpoint (a run folder or a step folder); every setting must match the checkpoint\'s')
    .option('--allow-change <keys>', 'resume with these settings changed on purpose (comma-separated: steps, lr, warmup, schedule, clip, weight-decay, data, batch, accum, seed)')
    .option('--on-nonfinite <what>', 'a step with a NaN/infinite loss or gradient norm: stop (exit 1, naming the last good checkpoint) | skip (leave the parameters unchanged)', 'stop')
    .option('--max-nonfinite <n>', 'with --on-nonfinite skip: stop after more than n skipped steps', '10')
    .option('--eval-every <n>', 'validation every n steps (0: only at the end)', '50')
    .option('--eval-batches <n>', 'validation batches per evaluation', '8')
    .option('--save-every <n>', 'checkpoint every n steps (always at the end)', '100')
    .option('--device <d>', 'webgpu | interp (reference interpreter: slow, for checking)', 'webgpu')
    .option('--devices <n>', 'train on n devices (default: the product of --parallel degrees)')
    .option('--parallel <mesh>', 'partition the step over the devices: dp=N (data parallel) or tp=N (tensor parallel attention and MLP blocks), pp=N (pipeline), dp=M,pp=N; see docs/parallel.md')
    .option('--zero <stage>', 'ZeRO stage over the data-parallel devices: 1 shards the optimizer state, 2 also the gradients, 3 also the parameters', '0')
    .option('--pp <n>', 'pipeline parallel: split the model\'s blocks into n stages, one device each (same as --parallel pp=n; dp=m,pp=n: m replicas of the pipeline); see docs/parallel.md')
    .option('--micro-batches <m>', 'with --pp: micro-batches per step (--batch must divide; default n); their gradients accumulate')
    .option('--pp-schedule <s>', 'with --pp: gpipe | 1f1b (default 1f1b)')
    .option('--whole-word', 'MLM: mask whole words')
    .option('--fim <rate>', 'CLM: fill-in-the-middle rate', '0')
    .option('--json', 'one JSON line per step instead of a progress bar')
    .action(async (file: string, o: TrainOpts) => trainCommand(file, o));

  program
    .command('sample')
    .description('generate text from a trained causal model')
    .argument('<file>', '.kiln model file with a `forward` entry (and a `decode` entry for key/value-cache decoding)')
    .requiredOption('--checkpoint <dir>', 'checkpoint (run folder or step folder)')
    .option('--prompt <text>', 'text to continue', '')
    .option('--tokens <n>', 'tokens to generate', '200')
    .option('--temperature <x>', 'softmax temperature (0: greedy)', '0.8')
    .option('--top-k <n>', 'sample among the k most likely tokens (0: all)', '40')
    .option('--seed <n>', 'sampling seed', '0')
    .option('--device <d>', 'webgpu | interp', 'webgpu')
    .option('--no-cache', 'recompute the whole window for every token instead of decoding with the key/value cache (the `decode` entry)')
    .action(async (file: string, o) => (await import('./sample.js')).sample(file, o));

  program
    .command('eval')
    .description('validation loss and perplexity of a checkpoint')
    .argument('<file>', '.kiln model file with a `loss` entry')
    .requiredOption('--checkpoint <dir>', 'checkpoint (run folder or step folder)')
    .option('--data <path>', 'text file, folder, or built-in corpus (its held-out split is used)', 'moby-dick')
    .option('--batches <n>', 'validation batches', '32')
    .option('--device <d>', 'webgpu | interp', 'webgpu')
    .action(async (file: string, o) => (await import('./sample.js')).evaluate(file, o));
}

async function trainCommand(file: string, o: TrainOpts): Promise<void> {
  const steps = num('--steps', o.steps, { int: true, min: 1 });
  if (o.onNonfinite !== 'stop' && o.onNonfinite !== 'skip') throw new KilnError(`--on-nonfinite must be stop or skip, got '${o.onNonfinite}'`);
  const maxNonFinite = num('--max-nonfinite', o.maxNonfinite, { int: true, min: 0 });
  const evalEvery = num('--eval-every', o.evalEvery, { int: true, min: 0 });
  const evalBatches = num('--eval-batches', o.evalBatches, { int: true, min: 1 });
  const saveEvery = num('--save-every', o.saveEvery, { int: true, min: 0 });
  // the run folder is made, locked and written to before anything is compiled
  const folder = openRunFolder(o.out);
  try {
    await trainInFolder(file, o, steps, { maxNonFinite, evalEvery, evalBatches, saveEvery }, folder.notes);
  } finally {
    folder.release();
  }
}

async function trainInFolder(file: string, o: TrainOpts, steps: number, n: { maxNonFinite: number; evalEvery: number; evalBatches: number; saveEvery: number }, notes: string[]): Promise<void> {
  const { checkResumeSettings, loadResumeCheckpoint, paramShapes, prepareJob, Trainer, unigramEntropy } = await import('../../train/trainer.js');
  const { isLoraParam } = await import('../../passes/lora.js');
  const { lossCurveSvg } = await import('../../train/plot.js');
  const { makeProgress } = await import('../../train/progress.js');
  const { makeRunners } = await import('./runners.js');
  const { meshFromFlags } = await import('../../parallel/pipeline-cli.js');
  const parallel = meshFromFlags(o.devices, o.parallel, o.zero, o);
  const job = await prepareJob({
    parallel,
    file,
    set: o.set,
    objective: o.objective as never,
    optimizer: { kind: o.optimizer as never, clip: num('--clip', o.clip, { min: 0 }), weightDecay: o.weightDecay === undefined ? undefined : num('--weight-decay', o.weightDecay, { min: 0 }) },
    schedule: { kind: o.schedule as never, peak: num('--lr', o.lr, { above: 0 }), warmup: num('--warmup', o.warmup, { int: true, min: 0 }), total: steps },
    batch: num('--batch', o.batch, { int: true, min: 1 }),
    accum: num('--accum', o.accum, { int: true, min: 1 }),
    steps,
    seed: num('--seed', o.seed, { int: true, min: 0 }),
    data: o.data,
    tokenizer: o.tokenizer,
    objectiveOptions: { wholeWord: !!o.wholeWord, fimRate: num('--fim', o.fim, { min: 0, max: 1 }) },
    evalEvery: n.evalEvery,
    evalBatches: n.evalBatches,
    saveEvery: n.saveEvery,
    out: o.out,
    onNonFinite: o.onNonfinite as 'stop' | 'skip',
    maxNonFinite: n.maxNonFinite,
    allowChange: o.allowChange ? o.allowChange.split(',').map((s) => s.trim()).filter(Boolean) : [],
    trainable: { train: globList(o.train), freeze: globList(o.freeze) },
    fuseAttention: o.fuseAttention,
    precision: o.precision as 'f32' | 'f16' | 'bf16',
    recompute: (await import('../../passes/recompute.js')).recomputeFromFlags(o.memoryBudget, o.recompute),
    lora: o.lora ? (await import('../../passes/lora.js')).parseLoraSpec(o.lora) : undefined,
    initFrom: o.initFrom,
  });
  const log = (s: string) => (o.json ? process.stdout.write(JSON.stringify({ type: 'info', message: s }) + '\n') : process.stdout.write(s + '\n'));
  for (const note of notes) log(note);
  const h = unigramEntropy(job.streams.train);
  log(
    `model ${job.modelName} (${file}), objective ${job.objective}, ${job.tok.name} tokenizer (vocab ${job.tok.vocabSize}), data ${o.data}: ${job.streams.train.length} train / ${job.streams.val.length} validation tokens; unigram entropy ${h.toFixed(3)} nats/token`,
  );
  // a checkpoint that does not fit is refused before the device is touched
  const resumeFrom = o.resume ? loadResumeCheckpoint(job, o.resume) : undefined;
  const changed = resumeFrom ? checkResumeSettings(job, resumeFrom) : [];
  // weights to start from are read and checked against the model before the device is touched, like a resume
  if (o.initFrom && o.resume) throw new KilnError('--init-from starts a new run from weights; --resume continues one: use one of them');
  const init = o.initFrom
    ? (await import('../../train/init-from.js')).loadInitWeights(o.initFrom, paramShapes(job.stepGraph, (n) => !isStateParam(n)), {
        allowMissing: [...(globList(o.initAllowMissing) ?? []), ...(o.lora ? (await import('../../passes/lora.js')).LORA_GLOBS : [])],
      })
    : undefined;
  // a LoRA checkpoint holds only the adapters: its base weights come from the file it names (or the seeded initialisers)
  const loraBaseFile = (resumeFrom?.state.train as { lora?: { base?: string | null } } | undefined)?.lora?.base;
  const base = loraBaseFile
    ? (await import('../../train/init-from.js')).loadInitWeights(loraBaseFile, paramShapes(job.stepGraph, (n) => !isStateParam(n) && !isLoraParam(n)))
    : undefined;
  const t0 = performance.now();
  const { runner, evalRunner, describe } = await makeRunners(job, o.device);
  log(describe);
  const trainer = new Trainer(job, runner, evalRunner);
  if (base) await runner.setParams(base.params);
  if (init) {
    await runner.setParams(init.params);
    log(`initialised from ${o.initFrom} (${init.layout} layout): ${Object.keys(init.params).length} parameters${init.fresh.length ? `; fresh from their initialisers: ${init.fresh.join(', ')}` : ''}`);
    for (const note of init.notes) log(`  ${note}`);
  }
  log(trainableSummary(job.stepGraph));
  try {
    if (resumeFrom) {
      await trainer.resume(resumeFrom);
      log(`resumed from ${resumeFrom.dir} at step ${trainer.state.step}${changed.length ? `; changed on purpose: ${changed.join(', ')}` : ''}`);
    }
    const progress = makeProgress(steps, trainer.state.step, o.json ? 'json' : process.stdout.isTTY ? 'bar' : 'lines');
    let first = true;
    try {
      await trainer.run({
        onStep: (r) => {
          if (first) {
            first = false;
            progress.note(`first step done ${((performance.now() - t0) / 1000).toFixed(1)} s after start (compile, pipelines, first run)`);
          }
          progress.step(r);
        },
        onEval: (step, loss) => {
          const acc = trainer.lastAccuracy;
          progress.note(`step ${step}: validation loss ${loss.toFixed(4)} (${acc === undefined ? `perplexity ${Math.exp(loss).toFixed(2)}` : `accuracy ${(100 * acc).toFixed(1)}%`})`);
          progress.event(acc === undefined ? { type: 'eval', step, loss } : { type: 'eval', step, loss, accuracy: acc });
        },
        onSave: (dir) => progress.event({ type: 'checkpoint', dir }),
      });
    } finally {
      // also when the run stops on an error (divergence, a failed save): the message follows the last progress line
      progress.stop();
    }
    const hist = trainer.state.history;
    const tail = hist.slice(-Math.max(1, Math.floor(hist.length / 10)));
    const tps = tail.reduce((s, r) => s + r.tokens, 0) / (tail.reduce((s, r) => s + r.ms, 0) / 1000);
    const svg = lossCurveSvg({
      title: `${job.modelName} · ${job.objective} · ${o.data}`,
      train: hist.map((r) => ({ step: r.step, loss: r.loss })),
      val: trainer.state.val,
      reference: job.objective === 'clm' ? { value: h, label: `unigram entropy ${h.toFixed(2)}` } : undefined,
    });
    try {
      writeFileSync(join(o.out, 'loss.svg'), svg);
    } catch (e) {
      throw new KilnError(`cannot write ${join(o.out, 'loss.svg')}: ${fsReason(e)} (the checkpoints are intact)`);
    }
    const final = trainer.state.val.at(-1)?.loss;
    const summary = {
      type: 'summary',
      steps: trainer.state.step,
      firstLoss: hist[0]?.loss,
      lastLoss: hist.at(-1)?.loss,
      validationLoss: final,
      unigramEntropy: h,
      tokensPerSec: Math.round(tps),
      seconds: (performance.now() - t0) / 1000,
      out: o.out,
      skippedSteps: trainer.state.skipped ?? 0,
      ...(job.cfg.precision && job.cfg.precision !== 'f32' ? { precision: job.cfg.precision } : {}),
      ...(hist.at(-1)?.lossScale !== undefined ? { lossScale: hist.at(-1)!.lossScale, overflowSkipped: trainer.overflows } : {}),
      changedOnResume: changed,
    };
    if (o.json) process.stdout.write(JSON.stringify(summary) + '\n');
    else
      log(
        `done: ${summary.steps} steps, loss ${summary.firstLoss?.toFixed(3)} -> ${summary.lastLoss?.toFixed(3)}, ${final === undefined ? 'no validation' : `validation ${final.toFixed(3)}`} (unigram entropy ${h.toFixed(3)}), ${summary.tokensPerSec} tokens/s; checkpoint and loss.svg in ${o.out}` +
          (summary.skippedSteps ? `; ${summary.skippedSteps} non-finite step(s) skipped` : '') +
          (summary.lossScale !== undefined ? `; loss scale ${summary.lossScale}, ${summary.overflowSkipped} step(s) skipped for overflow` : '') +
          (changed.length ? `; changed on resume: ${changed.join(', ')}` : ''),
      );
  } finally {
    runner.destroy();
    evalRunner?.destroy();
  }
}

const globList = (v: string | undefined): string[] | undefined => (v ? v.split(',').map((x) => x.trim()).filter(Boolean) : undefined);

/** "trainable: 12 of 20 parameter tensors (1,234 of 5,678 values)": what the optimizer updates. */
function trainableSummary(step: Graph): string {
  const params = step.nodes.filter((n) => n.op === 'param' && !isStateParam((n.attrs as { name: string }).name));
  const updated = new Set(step.outputs.map((o) => (o.role?.kind === 'update' ? o.role.param : undefined)));
  const trained = params.filter((n) => updated.has((n.attrs as { name: string }).name));
  const count = (ns: typeof params) => ns.reduce((s, n) => s + n.type.shape.reduce((p, d) => p * d, 1), 0);
  return `trainable: ${trained.length} of ${params.length} parameter tensors (${count(trained).toLocaleString('en')} of ${count(params).toLocaleString('en')} values)`;
}
