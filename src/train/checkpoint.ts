/**
 * Checkpoints: `DIR/step-NNNNNNN/{params.safetensors, optim.safetensors, state.json}` plus `DIR/latest` naming the
 * newest step. A step folder is written under a temporary name, fsynced and renamed, then `latest` is replaced by
 * rename, so a crash at any point leaves the previous checkpoint intact and loadable. state.json carries the
 * SHA-256 of both tensor files; loading verifies them, the format and every shape before returning anything, so
 * a corrupt, truncated or mismatched checkpoint is refused before any training state is touched. state.json itself
 * carries the SHA-256 of its other fields, so an edited or damaged state (a step of -5) is refused too.
 *
 * A checkpoint never holds a non-finite value: saving one is refused. A failed write (a full disk, a read-only
 * folder) removes its temporary folder and leaves `latest` and every older step untouched.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KilnError } from '../errors.js';
import type { HostTensor } from '../ir/tensor.js';
import type { DType } from '../ir/types.js';
import { fmtShape, isFloat, sameShape } from '../ir/types.js';
import { decodeSafetensors, encodeSafetensors } from '../io/safetensors.js';

export interface CheckpointState {
  format: 'kiln-checkpoint';
  version: 1;
  step: number;
  model: { file: string; name: string; config: Record<string, unknown> };
  /** Anything the trainer needs to continue exactly: data position, RNG states, schedule, loss history. */
  train: Record<string, unknown>;
  files: { params: string; optim: string };
  /** SHA-256 of this object's JSON without `checksum` (see stateChecksum). */
  checksum?: string;
}

export interface Checkpoint {
  dir: string;
  state: CheckpointState;
  params: Record<string, HostTensor>;
  optim: Record<string, HostTensor>;
}

const sha256 = (b: Uint8Array | string) => createHash('sha256').update(b).digest('hex');

/** JSON numbers and strings round-trip exactly, so re-serialising the parsed fields reproduces the hashed text. */
const stateChecksum = (s: CheckpointState) => sha256(JSON.stringify({ ...s, checksum: undefined }));

/** The first non-finite value among the tensors, if any: such a checkpoint is never written. */
export function firstNonFinite(tensors: Record<string, HostTensor>): { name: string; index: number; value: number } | undefined {
  for (const [name, t] of Object.entries(tensors)) {
    if (!isFloat(t.dtype)) continue;
    const d = t.data;
    for (let i = 0; i < d.length; i++) if (!Number.isFinite(d[i])) return { name, index: i, value: d[i] };
  }
  return undefined;
}

/** A file-system error as a sentence: the code and what it means, not a stack. */
export function fsReason(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  const why: Record<string, string> = {
    ENOSPC: 'no space left on the device',
    EDQUOT: 'disk quota exceeded',
    EROFS: 'the file system is read-only',
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    ENOTDIR: 'a part of the path is a file, not a folder',
    EEXIST: 'it exists and is not a folder',
    EIO: 'an input/output error',
    ENAMETOOLONG: 'the name is too long',
  };
  return err?.code ? `${err.code}: ${why[err.code] ?? err.message}` : String((e as Error)?.message ?? e);
}

/** Step folders of a run, oldest first. */
export const stepFolders = (dir: string) => (existsSync(dir) ? readdirSync(dir).filter((f) => /^step-\d+$/.test(f)).sort() : []);

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
  const bad = firstNonFinite(params) ?? firstNonFinite(optim);
  if (bad) throw new KilnError(`refusing to write checkpoint step ${step} to ${dir}: '${bad.name}' holds ${bad.value} at element ${bad.index} (a checkpoint never holds a non-finite value)`);
  const name = `step-${String(step).padStart(7, '0')}`;
  const tmp = join(dir, `.tmp-${name}-${process.pid}`);
  const previous = stepFolders(dir).at(-1);
  try {
    mkdirSync(dir, { recursive: true });
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp);
    const p = encodeSafetensors(params, { format: 'pt' });
    const o = encodeSafetensors(optim, { format: 'pt' });
    writeSynced(join(tmp, 'params.safetensors'), p);
    writeSynced(join(tmp, 'optim.safetensors'), o);
    const state: CheckpointState = { format: 'kiln-checkpoint', version: 1, step, model: meta.model, train: meta.train, files: { params: sha256(p), optim: sha256(o) } };
    state.checksum = stateChecksum(state);
    writeSynced(join(tmp, 'state.json'), JSON.stringify(state, null, 1));
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw new KilnError(
      `cannot write checkpoint step ${step} to ${dir}: ${fsReason(e)}; ` +
        (previous ? `the previous checkpoint ${join(dir, previous)} is intact` : 'no earlier checkpoint exists in this folder'),
    );
  }
  const final = join(dir, name);
  rmSync(final, { recursive: true, force: true });
  renameSync(tmp, final);
  const latestTmp = join(dir, `.latest-${process.pid}`);
  writeSynced(latestTmp, name + '\n');
  renameSync(latestTmp, join(dir, 'latest'));
  // keep the newest `keep` step folders (every one of them is finite: a non-finite one is never written)
  const steps = stepFolders(dir);
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
  if (typeof state.checksum !== 'string') throw new KilnError(`checkpoint ${dir}: state.json has no checksum (written by an older Kiln, or edited)`);
  if (stateChecksum(state) !== state.checksum) throw new KilnError(`checkpoint ${dir}: state.json was edited or is corrupt (checksum mismatch)`);
  if (!Number.isInteger(state.step) || state.step < 0) throw new KilnError(`checkpoint ${dir}: state.json has an invalid step ${JSON.stringify(state.step)}`);
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
  const ck = { dir, state, params: read('params'), optim: read('optim') };
  if (expected) validateCheckpoint(ck, expected);
  return ck;
}

/**
 * The one check of a checkpoint against a model, used by every verb (train --resume, eval, sample): the model's
 * name, and exactly its parameters (none missing, none extra, same dtypes and shapes), and the optimizer state
 * when resuming.
 */
export function validateCheckpoint(ck: Checkpoint, expected: ExpectedShapes): void {
  if (expected.modelName && ck.state.model?.name !== expected.modelName) {
    throw new KilnError(`checkpoint ${ck.dir} is of model '${ck.state.model?.name}', not '${expected.modelName}'`);
  }
  const lora = (ck.state.train as { lora?: unknown } | undefined)?.lora;
  if (lora && expected.params && Object.keys(expected.params).some((k) => !(k in ck.params))) {
    throw new KilnError(`checkpoint ${ck.dir} holds LoRA adapters, not the model's weights: fold them in first with 'kiln lora merge FILE --checkpoint ${ck.dir} --out merged.safetensors'`);
  }
  if (expected.params) checkShapes('parameter', ck.dir, ck.params, expected.params);
  if (expected.optim) checkShapes('optimizer state', ck.dir, ck.optim, expected.optim);
}
