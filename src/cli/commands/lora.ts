/** `kiln lora merge`: folds a LoRA run's adapters into its base weights (W + A·B·alpha/r), for export or --init-from. */
import type { Command } from 'commander';
import { writeFileSync } from 'node:fs';
import { KilnError } from '../../errors.js';
import type { AttrsOf } from '../../ir/op.js';
import type { HostTensor } from '../../ir/tensor.js';
import { withModelOptions, type ConfigValue } from '../options.js';

/** W + (A @ B) * scale for W [in, out], A [in, r], B [r, out], in double precision, rounded once. */
export function mergeAdapter(w: HostTensor, a: HostTensor, b: HostTensor, scale: number): HostTensor {
  const [din, dout] = w.shape;
  const r = a.shape[1];
  const out = Float32Array.from(w.data);
  for (let i = 0; i < din; i++) {
    for (let j = 0; j < dout; j++) {
      let s = 0;
      for (let k = 0; k < r; k++) s += a.data[i * r + k] * b.data[k * dout + j];
      out[i * dout + j] = w.data[i * dout + j] + s * scale;
    }
  }
  return { dtype: w.dtype, shape: [...w.shape], data: out };
}

export function register(program: Command): void {
  const lora = program.command('lora').description('LoRA adapters of a fine-tuning run');
  withModelOptions(
    lora
      .command('merge')
      .description("fold a LoRA checkpoint's adapters into its base weights and write every parameter to one .safetensors")
      .argument('<file>', '.kiln model file the run trained')
      .requiredOption('--checkpoint <dir>', 'a LoRA run folder or step folder')
      .requiredOption('--out <path>', "the merged weights: a .safetensors file (the model's parameter names), or else a checkpoint folder that sample, eval and --init-from take"),
  ).action(async (file: string, o: { checkpoint: string; out: string; set: Record<string, ConfigValue> }) => {
    const { loadCheckpoint } = await import('../../train/checkpoint.js');
    const { compileModel } = await import('../../frontend/index.js');
    const { initParam } = await import('../../ir/init.js');
    const { loadInitWeights } = await import('../../train/init-from.js');
    const { encodeSafetensors } = await import('../../io/safetensors.js');
    const { isLoraParam, LORA_A, LORA_B } = await import('../../passes/lora.js');
    const ck = loadCheckpoint(o.checkpoint);
    const train = ck.state.train as { lora?: { r: number; alpha: number; base?: string | null }; seed?: number };
    if (!train.lora) throw new KilnError(`checkpoint ${ck.dir} is not of a LoRA run (no adapters to merge)`);
    const { graph } = compileModel(file, { entry: 'loss', set: { ...(ck.state.model?.config as Record<string, ConfigValue>), ...o.set } });
    const want: Record<string, { dtype: 'f32'; shape: number[] }> = {};
    for (const n of graph.nodes) if (n.op === 'param') want[(n.attrs as AttrsOf<'param'>).name] = { dtype: 'f32', shape: [...n.type.shape] };
    const base: Record<string, HostTensor> = train.lora.base
      ? loadInitWeights(train.lora.base, want).params
      : Object.fromEntries(graph.nodes.filter((n) => n.op === 'param').map((n) => {
          const a = n.attrs as AttrsOf<'param'>;
          return [a.name, initParam(a.init, n.type, a.name, train.seed ?? 0)];
        }));
    const scale = train.lora.alpha / train.lora.r;
    let merged = 0;
    for (const name of Object.keys(ck.params).filter((k) => k.endsWith(LORA_A))) {
      const stem = name.slice(0, -LORA_A.length);
      const w = base[`${stem}.w`];
      const b = ck.params[stem + LORA_B];
      if (!w || !b) throw new KilnError(`checkpoint ${ck.dir}: adapter ${name} has no ${w ? stem + LORA_B : `base weight ${stem}.w in the model`}`);
      base[`${stem}.w`] = mergeAdapter(w, ck.params[name], b, scale);
      merged++;
    }
    for (const k of Object.keys(ck.params)) if (!isLoraParam(k)) base[k] = ck.params[k];
    if (o.out.endsWith('.safetensors')) writeFileSync(o.out, encodeSafetensors(base, { merged_from: ck.dir }));
    else {
      const { saveCheckpoint } = await import('../../train/checkpoint.js');
      const { lora: _adapters, ...train } = ck.state.train as Record<string, unknown>;
      saveCheckpoint(o.out, ck.state.step, base, {}, { model: ck.state.model, train: { ...train, mergedFrom: ck.dir } });
    }
    process.stdout.write(`merged ${merged} adapters into ${Object.keys(base).length} parameters: ${o.out}\n`);
  });
}
