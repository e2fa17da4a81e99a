/** `kiln sample` (text generation from a causal model) and `kiln eval` (validation loss / perplexity) of a checkpoint. */
import { KilnError } from '../../errors.js';
import { compileModel, loadModelInfo } from '../../frontend/index.js';
import type { HostTensor } from '../../ir/tensor.js';
import { loadCheckpoint } from '../../train/checkpoint.js';
import { Rng } from '../../train/rng.js';
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

/** Picks the next token from logits: greedy at temperature 0, else softmax(logits / T) over the top k. */
export function pickToken(logits: ArrayLike<number>, [lo, hi]: [number, number], temperature: number, topK: number, rng: Rng): number {
  const idx = Array.from({ length: hi - lo }, (_, i) => lo + i);
  if (temperature <= 0) return idx.reduce((a, b) => (logits[b] > logits[a] ? b : a), lo);
  idx.sort((a, b) => logits[b] - logits[a]);
  const cand = topK > 0 ? idx.slice(0, topK) : idx;
  const m = logits[cand[0]];
  const w = cand.map((i) => Math.exp((logits[i] - m) / temperature));
  let r = rng.next() * w.reduce((s, x) => s + x, 0);
  for (let k = 0; k < cand.length; k++) {
    r -= w[k];
    if (r <= 0) return cand[k];
  }
  return cand[cand.length - 1];
}

export async function sample(file: string, o: { checkpoint: string; prompt: string; tokens: string; temperature: string; topK: string; seed: string; device: string }): Promise<void> {
  const n = num('--tokens', o.tokens, { int: true, min: 0 });
  const temperature = num('--temperature', o.temperature, { min: 0 });
  const topK = num('--top-k', o.topK, { int: true, min: 0 });
  const seed = num('--seed', o.seed, { int: true, min: 0 });
  const ck = loadCheckpoint(o.checkpoint, { modelName: loadModelInfo(file).name });
  const { set, tokenizer } = modelSettings(ck);
  const tok = await makeTokenizer(tokenizer);
  const T = Number(set.ctx ?? 64);
  const { graph } = compileModel(file, { entry: 'forward', set, dims: { B: 1, T } });
  checkCheckpointFits(ck, graph, loadModelInfo(file).name);
  const { runner } = await makeRunners({ stepGraph: graph, evalGraph: graph, cfg: { seed: 0 } }, o.device);
  try {
    await runner.setParams(ck.params);
    const rng = new Rng(seed >>> 0, 'sample');
    const ids = tok.encode(o.prompt);
    if (!ids.length) ids.push(tok.special.eos);
    process.stdout.write(o.prompt);
    const out: number[] = [];
    let pending: number[] = [];
    for (let i = 0; i < n; i++) {
      const window = ids.slice(-T);
      const data = new Int32Array(T).fill(tok.special.pad);
      data.set(window);
      const tokens: HostTensor = { dtype: 'i32', shape: [1, T], data };
      const res = await runner.run({ tokens }, [graph.outputs[0].name]);
      const logits = res[graph.outputs[0].name].data;
      const V = logits.length / T;
      const row = logits.subarray((window.length - 1) * V, window.length * V);
      const next = pickToken(row, [tok.textStart, tok.textVocab], temperature, topK, rng);
      ids.push(next);
      out.push(next);
      // print whole characters only: byte tokens of one UTF-8 character arrive one at a time
      pending.push(next);
      const text = tok.decode(pending);
      if (!text.endsWith('\ufffd')) {
        process.stdout.write(text);
        pending = [];
      }
    }
    process.stdout.write(tok.decode(pending) + '\n');
  } finally {
    runner.destroy();
  }
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
