/** `kiln sample` (text generation from a causal model) and `kiln eval` (validation loss / perplexity) of a checkpoint. */
import { KilnError } from '../../errors.js';
import { compileModel, loadModelInfo } from '../../frontend/index.js';
import { generateTokens, type CachedStepper, type WindowStepper } from '../../export/runtime/generate.js';
import { interpret } from '../../interp/interpreter.js';
import type { Graph } from '../../ir/graph.js';
import type { AttrsOf } from '../../ir/op.js';
import type { HostTensor } from '../../ir/tensor.js';
import { numel } from '../../ir/types.js';
import { loadCheckpoint } from '../../train/checkpoint.js';
import { makeTokenizer } from '../../train/tokenizers.js';
import { checkCheckpointFits } from '../../train/trainer.js';
import { num, type ConfigValue } from '../options.js';
import { makeRunners } from './runners.js';

function modelSettings(ck: ReturnType<typeof loadCheckpoint>): { set: Record<string, ConfigValue>; tokenizer: string; seed: number } {
  const set = { ...(ck.state.model.config as Record<string, ConfigValue>) };
  if ('dropout' in set) set.dropout = 0;
  const t = ck.state.train as { tokenizer?: string; seed?: number };
  return { set, tokenizer: t.tokenizer ?? 'bytes', seed: t.seed ?? 0 };
}

/**
 * Text generation runs the exported module's loop (src/export/runtime/generate.ts: the same sampler and seed as an
 * exported `generate` in Node or a browser). On WebGPU the model is built in memory as an exported module and run
 * by the exported runtime: with a `decode` entry one token per step, the key/value caches on the device; with
 * `--no-cache` (or a model without `decode`) `forward` over the whole window for every token.
 */
export async function sample(file: string, o: { checkpoint: string; prompt: string; tokens: string; temperature: string; topK: string; seed: string; device: string; cache?: boolean }): Promise<void> {
  const n = num('--tokens', o.tokens, { int: true, min: 0 });
  const temperature = num('--temperature', o.temperature, { min: 0 });
  const topK = num('--top-k', o.topK, { int: true, min: 0 });
  const seed = num('--seed', o.seed, { int: true, min: 0 });
  if (o.device !== 'webgpu' && o.device !== 'interp') throw new KilnError(`--device must be webgpu or interp, got '${o.device}'`);
  const info = loadModelInfo(file);
  const ck = loadCheckpoint(o.checkpoint, { modelName: info.name });
  const { set, tokenizer } = modelSettings(ck);
  const tok = await makeTokenizer(tokenizer);
  const T = Number(set.ctx ?? 64);
  const cached = o.cache !== false && info.entries.some((e) => e.name === 'decode');
  const entry = cached ? 'decode' : 'forward';
  const { graph } = compileModel(file, { entry, set, dims: { B: 1, T } });
  checkCheckpointFits(ck, graph, info.name);
  const ids = tok.encode(o.prompt);
  if (!ids.length) ids.push(tok.special.eos);
  process.stdout.write(o.prompt);
  let pending: number[] = [];
  const gen = {
    maxTokens: n,
    temperature,
    topK,
    seed,
    range: [tok.textStart, tok.textVocab] as [number, number],
    // print whole characters only: byte tokens of one UTF-8 character arrive one at a time
    onToken: (id: number) => {
      pending.push(id);
      const text = tok.decode(pending);
      if (!text.endsWith('\ufffd')) {
        process.stdout.write(text);
        pending = [];
      }
    },
  };
  if (o.device === 'interp') {
    const V = graph.outputs.map((x) => graph.nodes[x.id].type.shape.at(-1)!)[0];
    await generateTokens(interpStepper(graph, ck.params, T, cached), ids, V, gen);
  } else {
    const { acquireDevice } = await import('../../runtime/device.js');
    const { targetOf } = await import('../../runtime/executable.js');
    const { buildModule } = await import('../../export/index.js');
    const { LoadedModel } = await import('../../export/runtime/model.js');
    const dev = await acquireDevice();
    const { plan, bytes } = await buildModule(file, { entries: [entry], set, dims: { B: 1, T }, params: ck.params, strategy: targetOf(dev).strategy });
    const model = await LoadedModel.load(plan, import.meta.url, { device: dev.device, weights: bytes });
    try {
      await model.generate(ids, { ...gen, cache: cached });
    } finally {
      model.destroy();
    }
  }
  process.stdout.write(tok.decode(pending) + '\n');
}

/** The same steps on the reference interpreter: the decode entry with host caches, or forward over the window. */
function interpStepper(g: Graph, params: Record<string, HostTensor>, T: number, cached: boolean): CachedStepper | WindowStepper {
  if (!cached) {
    return {
      ctx: T,
      window: async (ids) => {
        const data = new Int32Array(T);
        data.set(ids);
        const logits = interpret(g, { inputs: { tokens: { dtype: 'i32', shape: [1, T], data } }, params }).logits.data as Float32Array;
        const V = logits.length / T;
        return logits.subarray((ids.length - 1) * V, ids.length * V);
      },
    };
  }
  const type = (name: string) => g.nodes.find((x) => x.op === 'input' && (x.attrs as AttrsOf<'input'>).name === name)!.type;
  const zeros = (name: string): HostTensor => ({ dtype: 'f32', shape: [...type(name).shape], data: new Float32Array(numel(type(name).shape)) });
  let caches: Record<string, HostTensor> = {};
  return {
    ctx: type('k_cache').shape.at(-2)!,
    reset: () => void (caches = { k_cache: zeros('k_cache'), v_cache: zeros('v_cache') }),
    step: async (id, pos) => {
      const r = interpret(g, { inputs: { token: { dtype: 'i32', shape: [1, 1], data: Int32Array.of(id) }, pos: { dtype: 'i32', shape: [1], data: Int32Array.of(pos) }, ...caches }, params });
      caches = { k_cache: r.k_cache, v_cache: r.v_cache };
      return r.logits.data;
    },
  };
}

export async function evaluate(file: string, o: { checkpoint: string; data: string; batches: string; device: string }): Promise<void> {
  const { prepareJob, Trainer } = await import('../../train/trainer.js');
  const batches = num('--batches', o.batches, { int: true, min: 1 });
  const ck = loadCheckpoint(o.checkpoint, { modelName: loadModelInfo(file).name });
  const { set, tokenizer, seed } = modelSettings(ck);
  const t = ck.state.train as { objective?: string; dims?: { B: number } };
  const job = await prepareJob({
    file,
    set,
    objective: t.objective as never,
    optimizer: { kind: 'sgd', momentum: 0 },
    schedule: { kind: 'constant', peak: 0, warmup: 0, total: 1 },
    batch: t.dims?.B ?? 8,
    accum: 1,
    steps: 1,
    seed,
    data: o.data,
    tokenizer,
    evalEvery: 0,
    evalBatches: batches,
    saveEvery: 0,
  });
  checkCheckpointFits(ck, job.evalGraph, job.modelName);
  // The evaluation graph serves as the "step" runner too: evaluate() copies parameters from it.
  const { runner, evalRunner } = await makeRunners({ ...job, stepGraph: job.evalGraph }, o.device);
  try {
    await runner.setParams(ck.params);
    const trainer = new Trainer(job, runner, evalRunner);
    const loss = await trainer.evaluate(batches);
    process.stdout.write(`${o.data} (held-out split, ${o.batches} batches): loss ${loss.toFixed(4)} nats/token, perplexity ${Math.exp(loss).toFixed(3)}\n`);
  } finally {
    runner.destroy();
    evalRunner.destroy();
  }
}
