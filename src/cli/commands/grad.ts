/** `kiln gradcheck` (compiled gradients vs finite differences) and `kiln grad` (loss and gradients to files). */
import type { Command } from 'commander';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KilnError } from '../../errors.js';
import type { HostTensor } from '../../ir/tensor.js';
import { collectPairs, num, withModelOptions, type ConfigValue } from '../options.js';

interface GradOpts {
  set: Record<string, ConfigValue>;
  dim: Record<string, number>;
  entry: string;
  input: Record<string, string>;
  seed: string;
}

async function compileWithInputs(file: string, o: GradOpts) {
  const { compileModel } = await import('../../frontend/index.js');
  const { readNpy } = await import('../../io/npy.js');
  const { outOfRangeIds, randomInput } = await import('./run.js');
  const files: Record<string, HostTensor> = {};
  for (const [name, src] of Object.entries(o.input)) if (src !== 'random') files[name] = readNpy(src);
  const inputShapes = Object.fromEntries(Object.entries(files).map(([k, v]) => [k, [...v.shape]]));
  const { graph, model } = compileModel(file, { entry: o.entry, set: o.set, dims: o.dim, inputShapes });
  const inputs: Record<string, HostTensor> = {};
  for (const n of graph.nodes) {
    if (n.op !== 'input') continue;
    const name = (n.attrs as { name: string }).name;
    inputs[name] = files[name] ?? randomInput(name, n.type, num('--seed', o.seed, { int: true, min: 0 }) >>> 0, model.config);
  }
  for (const w of outOfRangeIds(graph, inputs)) process.stderr.write(`warning: ${w}\n`);
  return { graph, inputs };
}

export function register(program: Command): void {
  const common = (c: Command) =>
    withModelOptions(c)
      .option('--entry <name>', 'entry point with a scalar `loss` output', 'loss')
      .option('--input <name=file.npy|random>', 'an input (repeatable; others are random)', collectPairs, {})
      .option('--seed <n>', 'seed for initialisation, random inputs and sampled elements', '0');

  common(
    program
      .command('gradcheck')
      .description('check compiled gradients against central finite differences (double precision)')
      .argument('<file>', '.kiln model file')
      .option('--rtol <x>', 'relative tolerance: an element passes when |g - fd| <= atol + rtol * |fd|', String(1e-4))
      .option('--atol <x>', 'absolute tolerance (see --rtol)', String(1e-8))
      .option('--eps <x>', 'finite-difference step', '1e-5')
      .option('--elements <n>', 'elements checked per parameter', '6'),
  ).action(async (file: string, o: GradOpts & { rtol: string; atol: string; eps: string; elements: string }) => {
    const { gradcheck } = await import('../../autodiff/gradcheck.js');
    const { lossOutput } = await import('./compile.js');
    const { graph, inputs } = await compileWithInputs(file, o);
    const r = gradcheck(graph, { loss: lossOutput(graph), inputs, seed: num('--seed', o.seed, { int: true, min: 0 }), rtol: num('--rtol', o.rtol, { min: 0 }), atol: num('--atol', o.atol, { min: 0 }), eps: num('--eps', o.eps, { above: 0 }), maxElementsPerParam: num('--elements', o.elements, { int: true, min: 1 }) });
    const w = Math.max(9, ...r.perParam.map((p) => p.name.length));
    process.stdout.write(`criterion: |g - fd| <= atol + rtol * |fd| with atol ${r.atol}, rtol ${r.rtol} (ratio: |g - fd| / (atol + rtol * |fd|), at most 1)\n`);
    process.stdout.write(`${'parameter'.padEnd(w)}  checked  max abs err  max rel err  worst ratio\n`);
    for (const p of r.perParam) {
      process.stdout.write(`${p.name.padEnd(w)}  ${String(p.checked).padStart(7)}  ${p.maxAbsErr.toExponential(2).padStart(11)}  ${p.maxRelErr.toExponential(2).padStart(11)}  ${p.worstRatio.toFixed(3).padStart(11)}${p.worstRatio > 1 ? '  FAIL' : ''}\n`);
    }
    process.stdout.write(`${r.ok ? 'ok' : 'FAILED'}: worst ratio ${r.worst?.worstRatio.toFixed(3) ?? '-'} (${r.worst?.name ?? 'no parameters'}; abs err ${r.worst?.maxAbsErr.toExponential(2) ?? '-'}), atol ${r.atol}, rtol ${r.rtol}\n`);
    if (!r.ok) process.exitCode = 1;
  });

  common(
    program
      .command('grad')
      .description('compute the loss and the gradients for given parameters and inputs, saved under checkpoint names')
      .argument('<file>', '.kiln model file')
      .option('--params <file>', 'parameters (.safetensors); missing ones come from the initialisers')
      .requiredOption('--save-grads <file>', 'write the gradients here (.safetensors, same names as the parameters)')
      .option('--device <kind>', 'interp (reference interpreter) | webgpu', 'interp')
      .option('--save-outputs <dir>', 'write every output of the entry as <dir>/<name>.npy'),
  ).action(async (file: string, o: GradOpts & { params?: string; saveGrads: string; saveOutputs?: string; device: string }) => {
    const { grad } = await import('../../autodiff/index.js');
    const { interpret } = await import('../../interp/interpreter.js');
    const { encodeSafetensors, readSafetensors } = await import('../../io/safetensors.js');
    const { writeNpy } = await import('../../io/npy.js');
    const { lossOutput } = await import('./compile.js');
    const { summarize } = await import('./run.js');
    const { graph, inputs } = await compileWithInputs(file, o);
    const params = o.params ? readSafetensors(o.params) : {};
    const known = new Set(graph.nodes.filter((n) => n.op === 'param').map((n) => (n.attrs as { name: string }).name));
    const unknown = Object.keys(params).filter((k) => !known.has(k));
    if (unknown.length) throw new KilnError(`${o.params} has tensors the model does not: ${unknown.slice(0, 5).join(', ')}`);
    const joint = grad(graph, { loss: lossOutput(graph) });
    const seed = num('--seed', o.seed, { int: true, min: 0 });
    let out: Record<string, HostTensor>;
    if (o.device === 'interp') out = interpret(joint, { inputs, params, seed });
    else if (o.device === 'webgpu') {
      const { runOnDevice } = await import('./device-run.js');
      out = await runOnDevice(joint, inputs, params, seed, false, joint.outputs.map((x) => x.name));
    } else throw new KilnError(`--device must be 'interp' or 'webgpu', got '${o.device}'`);
    const grads: Record<string, HostTensor> = {};
    const outputs: Record<string, HostTensor> = {};
    for (const o of joint.outputs) {
      if (o.role?.kind === 'grad') grads[o.role.param] = out[o.name];
      else outputs[o.name] = out[o.name];
    }
    for (const [k, v] of Object.entries(outputs)) process.stdout.write(summarize(k, v) + '\n');
    try {
      writeFileSync(o.saveGrads, encodeSafetensors(grads, { entry: graph.name }));
    } catch (e) {
      throw new KilnError(`--save-grads ${o.saveGrads}: cannot write: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
    process.stdout.write(`saved ${Object.keys(grads).length} gradients to ${o.saveGrads}\n`);
    if (o.saveOutputs) {
      try {
        mkdirSync(o.saveOutputs, { recursive: true });
      } catch (e) {
        throw new KilnError(`--save-outputs ${o.saveOutputs}: cannot create the folder: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
      }
      for (const [k, v] of Object.entries(outputs)) writeNpy(join(o.saveOutputs, `${k}.npy`), v);
    }
  });
}
