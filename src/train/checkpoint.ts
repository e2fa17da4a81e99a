/**
 * Checkpoints: `DIR/step-NNNNNNN/{params.safetensors, optim.safetensors, state.json}` plus `DIR/latest` naming the
 * newest step. A step folder is written under a temporary name, fsynced and renamed, then `latest` is replaced by
 * rename, so a crash at any point leaves the previous checkpoint intact and loadable. state.json carries the
 * SHA-256 of both tensor files; loading verifies them, the format and every shape before returning anything, so
 * a corrupt, truncated or mismatched checkpoint is refused before any training state is touched.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KilnError } from '../errors.js';
import type { HostTensor } from '../ir/tensor.js';
import type { DType } from '../ir/types.js';
import { fmtShape, sameShape } from '../ir/types.js';
import { decodeSafetensors, encodeSafetensors } from '../io/safetensors.js';

export interface CheckpointState {
  format: 'kiln-checkpoint';
  version: 1;
  step: number;
  model: { file: string; name: string; config: Record<string, unknown> };
  /** Anything the trainer needs to continue exactly: data position, RNG states, schedule, loss history. */
  train: Record<string, unknown>;
  files: { params: string; optim: string };
}

export interface Checkpoint {
  dir: string;
  state: CheckpointState;
  params: Record<string, HostTensor>;
  optim: Record<string, HostTensor>;
}

const sha256 = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

function writeSynced(path: string, data: Uint8Array | string): void {
  writeFileSync(path, data);
  const fd = openSync(path, 'r+');
  fsyncSync(fd);
  closeSync(fd);
}

export function saveCheckpoint(
  dir: string,
  step: number,
  params: Record<string, HostTensor>,
  optim: Record<string, HostTensor>,
  meta: { model: CheckpointState['model']; train: Record<string, unknown> },
  keep = 2,
): string {
  mkdirSync(dir, { recursive: true });
  const name = `step-${String(step).padStart(7, '0')}`;
  const tmp = join(dir, `.tmp-${name}-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  const p = encodeSafetensors(params, { format: 'pt' });
  const o = encodeSafetensors(optim, { format: 'pt' });
  writeSynced(join(tmp, 'params.safetensors'), p);
  writeSynced(join(tmp, 'optim.safetensors'), o);
  const state: CheckpointState = { format: 'kiln-checkpoint', version: 1, step, model: meta.model, train: meta.train, files: { params: sha256(p), optim: sha256(o) } };
  writeSynced(join(tmp, 'state.json'), JSON.stringify(state, null, 1));
  const final = join(dir, name);
  rmSync(final, { recursive: true, force: true });
  renameSync(tmp, final);
  const latestTmp = join(dir, `.latest-${process.pid}`);
  writeSynced(latestTmp, name + '\n');
  renameSync(latestTmp, join(dir, 'latest'));
  // keep the newest `keep` step folders
  const steps = readdirSync(dir).filter((f) => /^step-\d+$/.test(f)).sort();
  for (const old of steps.slice(0, Math.max(0, steps.length - keep))) rmSync(join(dir, old), { recursive: true, force: true });
  return final;
}

export interface ExpectedShapes {
  params?: Record<string, { dtype: DType; shape: readonly number[] }>;
  optim?: Record<string, { dtype: DType; shape: readonly number[] }>;
  modelName?: string;
}

function checkShapes(kind: string, dir: string, got: Record<string, HostTensor>, want: Record<string, { dtype: DType; shape: readonly number[] }>): void {
  for (const [name, w] of Object.entries(want)) {
    const t = got[name];
    if (!t) throw new KilnError(`checkpoint ${dir} does not match the model: ${kind} '${name}' is missing`);
    if (t.dtype !== w.dtype || !sameShape(t.shape, w.shape)) {
      throw new KilnError(`checkpoint ${dir} does not match the model: ${kind} '${name}' is ${t.dtype}${fmtShape(t.shape)} in the checkpoint, the model has ${w.dtype}${fmtShape(w.shape)}`);
    }
  }
  const extra = Object.keys(got).filter((k) => !(k in want));
  if (extra.length) throw new KilnError(`checkpoint ${dir} does not match the model: unexpected ${kind} ${extra.slice(0, 5).map((e) => `'${e}'`).join(', ')}`);
}

/** The step folder a checkpoint path means: a step folder itself, or the `latest` of a run folder. */
export function resolveCheckpoint(path: string): string {
  if (existsSync(join(path, 'state.json'))) return path;
  const latest = join(path, 'latest');
  if (!existsSync(latest)) throw new KilnError(`${path} is not a Kiln checkpoint (no state.json and no 'latest' file)`);
  const name = readFileSync(latest, 'utf8').trim();
  if (!/^step-\d+$/.test(name)) throw new KilnError(`${latest} is corrupt: it names '${name.slice(0, 40)}'`);
  const dir = join(path, name);
  if (!existsSync(join(dir, 'state.json'))) throw new KilnError(`checkpoint ${dir} named by ${latest} is missing or incomplete`);
  return dir;
}

export function loadCheckpoint(path: string, expected?: ExpectedShapes): Checkpoint {
  const dir = resolveCheckpoint(path);
  let state: CheckpointState;
  try {
    state = JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8'));
  } catch {
    throw new KilnError(`checkpoint ${dir}: state.json is unreadable or not valid JSON (corrupt checkpoint)`);
  }
  if (state?.format !== 'kiln-checkpoint' || state.version !== 1 || !state.files) throw new KilnError(`checkpoint ${dir}: state.json is not a Kiln checkpoint v1`);
  if (expected?.modelName && state.model?.name !== expected.modelName) {
    throw new KilnError(`checkpoint ${dir} is of model '${state.model?.name}', not '${expected.modelName}'`);
  }
  const read = (f: 'params' | 'optim') => {
    const file = join(dir, `${f}.safetensors`);
    if (!existsSync(file)) throw new KilnError(`checkpoint ${dir}: ${f}.safetensors is missing`);
    const bytes = readFileSync(file);
    if (sha256(bytes) !== state.files[f]) throw new KilnError(`checkpoint ${dir}: ${f}.safetensors is corrupt or truncated (checksum mismatch)`);
    return decodeSafetensors(bytes, file).tensors;
  };
  const params = read('params');
  const optim = read('optim');
  if (expected?.params) checkShapes('parameter', dir, params, expected.params);
  if (expected?.optim) checkShapes('optimizer state', dir, optim, expected.optim);
  return { dir, state, params, optim };
}
