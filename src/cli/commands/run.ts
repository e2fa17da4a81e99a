import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { KilnError } from '../../errors.js';
import { compileModel } from '../../frontend/index.js';
import { interpret } from '../../interp/interpreter.js';
import { compileIR } from '../../passes/index.js';
import { inputsOf, type Graph } from '../../ir/graph.js';
import type { AttrsOf } from '../../ir/op.js';
import { hashString, philox4x32, u32ToUnit } from '../../ir/philox.js';
import type { HostTensor } from '../../ir/tensor.js';
import { allocData } from '../../ir/tensor.js';
import type { TensorType } from '../../ir/types.js';
import { fmtType, isFloat, numel } from '../../ir/types.js';
import { readNpy, writeNpy } from '../../io/npy.js';
import { num, type ConfigValue } from '../options.js';

export interface RunOpts {
  set: Record<string, ConfigValue>;
  dim: Record<string, number>;
  entry: string;
  input: Record<string, string>;
  params?: string;
  seed: string;
  device: string;
  profile?: boolean;
  trainStep?: boolean | string;
  saveOutputs?: string;
}

/** The entry's training step: forward, backward and an optimizer update, clipping off (the bench's step). */
function trainStepGraph(g: Graph, optimizer: string): Graph {
  if (!['adamw', 'adam', 'sgd'].includes(optimizer)) throw new KilnError(`--train-step takes adamw, adam or sgd, got '${optimizer}'`);
  return compileIR(g, { train: { optimizer: { kind: optimizer as 'adamw', clip: 0 } } });
}

/**
 * A random value for an input: floats ~ U(-1, 1); integers in [0, limit) where the limit is the model's `vocab`
 * for token-like inputs and the last dimension (a length) for per-sequence integers such as prefix_len.
 */
export function randomInput(name: string, t: TensorType, seed: number, config: Record<string, ConfigValue>): HostTensor {
  const n = numel(t.shape);
  const data = allocData(t.dtype, n);
  const key = hashString(name);
  const vocab = typeof config.vocab === 'number' ? config.vocab : 16;
  const limit = t.dtype === 'bool' ? 2 : t.shape.length >= 2 ? vocab : Math.max(1, Number(config.ctx ?? 8));
  for (let i = 0; i < n; i++) {
    const u = u32ToUnit(philox4x32(i, 0, 0, 0, seed, key)[0]);
    data[i] = isFloat(t.dtype) ? 2 * u - 1 : Math.floor(u * limit);
  }
  return { dtype: t.dtype, shape: [...t.shape], data };
}

export function summarize(name: string, t: HostTensor): string {
  const n = t.data.length;
  const head = Array.from(t.data.slice(0, 6), (v) => (Number.isInteger(v) ? String(v) : v.toPrecision(6))).join(', ');
  let extra = '';
  if (isFloat(t.dtype) && n > 0) {
    let s = 0;
    let mn = Infinity;
    let mx = -Infinity;
    for (const v of t.data) {
      s += v;
      mn = Math.min(mn, v);
      mx = Math.max(mx, v);
    }
    extra = `  mean=${(s / n).toPrecision(6)} min=${mn.toPrecision(6)} max=${mx.toPrecision(6)}`;
  }
  return `${name}: ${fmtType(t)} = [${head}${n > 6 ? ', ...' : ''}]${extra}`;
}

/**
 * Ids in a user's input that an embedding lookup (gather), one_hot or cross_entropy's labels take outside their
 * range: the ops define them (zero rows, zero loss), but they are almost always a mistake — a tokenizer with a
 * larger vocabulary than the model — so say so.
 */
export function outOfRangeIds(g: Graph, inputs: Record<string, HostTensor>): string[] {
  const out: string[] = [];
  // Values a graph compares an input against (`y != -1`, `y == ignore`) are its ignore markers: a label equal to
  // one is masked out by the model itself, so it is not a vocabulary mismatch wherever else it is read.
  const markers = new Map<number, Set<number>>();
  for (const n of g.nodes) {
    if (n.op !== 'ne' && n.op !== 'eq') continue;
    const [a, c] = n.inputs.map((i) => g.nodes[i]);
    for (const [x, k] of [[a, c], [c, a]]) {
      const vals = (k.attrs as Partial<AttrsOf<'constant'>>).values;
      if (x.op === 'input' && k.op === 'constant' && vals?.length === 1) markers.set(x.id, (markers.get(x.id) ?? new Set()).add(vals[0]));
    }
  }
  for (const n of g.nodes) {
    let pos = -1;
    let range = 0;
    let ignore: number | undefined;
    if (n.op === 'gather') [pos, range] = [1, g.nodes[n.inputs[0]].type.shape[0]];
    else if (n.op === 'one_hot') [pos, range] = [0, (n.attrs as AttrsOf<'one_hot'>).depth];
    else if (n.op === 'cross_entropy') {
      [pos, range] = [1, g.nodes[n.inputs[0]].type.shape.at(-1)!];
      ignore = (n.attrs as AttrsOf<'cross_entropy'>).ignore_index;
    }
    const src = pos < 0 ? undefined : g.nodes[n.inputs[pos]];
    if (src?.op !== 'input') continue;
    const name = (src.attrs as AttrsOf<'input'>).name;
    const data = inputs[name]?.data;
    const ignored = markers.get(src.id);
    const bad = data ? data.findIndex((v) => (v < 0 || v >= range) && v !== ignore && !ignored?.has(v)) : -1;
    if (bad >= 0) out.push(`input '${name}' holds ${data![bad]} at flat position ${bad}, outside the ${range} ${n.op === 'cross_entropy' ? 'classes' : 'rows'} of ${n.op} %${n.id} (${n.op === 'cross_entropy' ? 'its loss counts as 0' : 'it reads as zeros'})`);
  }
  return out;
}

export async function run(file: string, o: RunOpts): Promise<void> {
  const seed = num('--seed', o.seed, { int: true, min: 0 }) >>> 0;
  const files: Record<string, HostTensor> = {};
  for (const [name, src] of Object.entries(o.input)) if (src !== 'random') files[name] = readNpy(src);
  const inputShapes = Object.fromEntries(Object.entries(files).map(([k, v]) => [k, [...v.shape]]));
  const compiled = compileModel(file, { entry: o.entry, set: o.set, dims: o.dim, inputShapes });
  const { model } = compiled;
  const graph = o.trainStep ? trainStepGraph(compiled.graph, o.trainStep === true ? 'adamw' : o.trainStep) : compileIR(compiled.graph);
  const inputs: Record<string, HostTensor> = {};
  const stepScalars: Record<string, number> = o.trainStep ? { lr: 1e-3, step: 1 } : {};
  for (const n of inputsOf(graph)) {
    const s = stepScalars[n.attrs.name];
    inputs[n.attrs.name] = files[n.attrs.name] ?? (s !== undefined ? { dtype: 'f32', shape: [], data: Float32Array.of(s) } : randomInput(n.attrs.name, n.type, seed, model.config));
  }
  for (const name of Object.keys(o.input)) {
    if (!(name in inputs)) throw new KilnError(`entry '${o.entry}' has no input '${name}' (inputs: ${Object.keys(inputs).join(', ') || 'none'})`);
  }
  for (const w of outOfRangeIds(graph, inputs)) process.stderr.write(`warning: ${w}\n`);
  const params = o.params ? (await import('../../io/safetensors.js')).readSafetensors(o.params) : undefined;
  let outputs: Record<string, HostTensor>;
  if (o.device === 'interp') {
    outputs = interpret(graph, { inputs, params, seed });
  } else if (o.device === 'webgpu') {
    const { runOnDevice } = await import('./device-run.js');
    outputs = await runOnDevice(graph, inputs, params, seed, !!o.profile);
  } else {
    throw new KilnError(`--device must be 'interp' or 'webgpu', got '${o.device}'`);
  }
  for (const [name, t] of Object.entries(outputs)) process.stdout.write(summarize(name, t) + '\n');
  if (o.saveOutputs) {
    try {
      mkdirSync(o.saveOutputs, { recursive: true });
    } catch (e) {
      throw new KilnError(`--save-outputs ${o.saveOutputs}: cannot create the folder: ${(e as NodeJS.ErrnoException).code === 'EEXIST' || (e as NodeJS.ErrnoException).code === 'ENOTDIR' ? 'a file is in the way' : ((e as NodeJS.ErrnoException).code ?? String(e))}`);
    }
    for (const [name, t] of Object.entries(outputs)) writeNpy(join(o.saveOutputs, `${name.replace(/[^\w.-]/g, '_')}.npy`), t);
    process.stdout.write(`saved ${Object.keys(outputs).length} output(s) to ${o.saveOutputs}\n`);
  }
}
