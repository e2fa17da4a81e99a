/**
 * The run folder of `kiln train --out`: made and proven writable before anything is compiled, locked so that two
 * runs never write one folder, and cleared of temporary checkpoint folders that killed runs left behind.
 *
 * The lock is `DIR/.lock` holding the owner's pid and host, created with O_EXCL. A lock whose owner is gone (same
 * host, pid not running) is stale: it is taken over with a message. A lock held by a live process, or by another
 * host (where liveness cannot be checked), is refused at once.
 */
import { hostname } from 'node:os';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { KilnError } from '../errors.js';
import { fsReason } from './checkpoint.js';

interface LockInfo {
  pid: number;
  host: string;
  started: string;
}

/** Whether a process with this pid runs on this machine (EPERM: it runs, as another user). */
export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readLock(path: string): LockInfo | undefined {
  try {
    const l = JSON.parse(readFileSync(path, 'utf8'));
    return typeof l?.pid === 'number' ? l : undefined;
  } catch {
    return undefined; // unreadable or half-written: treated as stale
  }
}

export interface RunFolder {
  dir: string;
  /** Messages for the user (a stale lock taken over, temporary folders removed). */
  notes: string[];
  release(): void;
}

/** Makes `dir`, takes its lock and removes temporary folders of dead runs; every failure is a KilnError. */
export function openRunFolder(dir: string): RunFolder {
  try {
    if (existsSync(dir) && !statSync(dir).isDirectory()) throw new KilnError(`--out ${dir} is a file, not a folder`);
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    if (e instanceof KilnError) throw e;
    throw new KilnError(`--out ${dir}: cannot create the run folder: ${fsReason(e)}`);
  }
  const notes: string[] = [];
  const path = join(dir, '.lock');
  const me: LockInfo = { pid: process.pid, host: hostname(), started: new Date().toISOString() };
  for (let attempt = 0; ; attempt++) {
    try {
      writeFileSync(path, JSON.stringify(me) + '\n', { flag: 'wx' });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw new KilnError(`--out ${dir}: the run folder is not writable: ${fsReason(e)}`);
    }
    const owner = readLock(path);
    if (owner && owner.host !== me.host) {
      throw new KilnError(`--out ${dir} is locked by process ${owner.pid} on host ${owner.host} (since ${owner.started}); if no run is using it, delete ${path}`);
    }
    if (owner && processAlive(owner.pid) && owner.pid !== process.pid) {
      throw new KilnError(`--out ${dir} is in use by another run (process ${owner.pid}, since ${owner.started}); use another --out, or wait for it to finish (if no run is using it, delete ${path})`);
    }
    if (attempt > 2) throw new KilnError(`--out ${dir}: cannot take the lock ${path}`);
    notes.push(`taking over the stale lock of ${dir}: ${owner ? `process ${owner.pid} (started ${owner.started}) is no longer running` : 'its lock file was unreadable'}`);
    try {
      unlinkSync(path);
    } catch {
      // another run removed it first; the exclusive create decides who owns the folder
    }
  }
  const removed = removeStaleTemporaries(dir);
  if (removed.length) notes.push(`removed ${removed.length} temporary checkpoint folder(s) left by runs that are gone: ${removed.join(', ')}`);
  let held = true;
  // Ctrl-C or a polite kill releases the lock, then ends the process as the signal would have
  const onSignal = (sig: NodeJS.Signals) => {
    release();
    process.kill(process.pid, sig);
  };
  const release = () => {
    if (!held) return;
    held = false;
    process.off('exit', release);
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (readLock(path)?.pid === process.pid) rmSync(path, { force: true });
  };
  process.on('exit', release);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return { dir, notes, release };
}

/** Removes `.tmp-step-NNNNNNN-PID` folders and `.latest-PID` files whose writing process is gone. */
export function removeStaleTemporaries(dir: string): string[] {
  const removed: string[] = [];
  for (const f of readdirSync(dir)) {
    const m = /^\.tmp-step-\d+-(\d+)$/.exec(f) ?? /^\.latest-(\d+)$/.exec(f);
    if (!m) continue;
    const pid = Number(m[1]);
    if (pid !== process.pid && processAlive(pid)) continue;
    rmSync(join(dir, f), { recursive: true, force: true });
    removed.push(f);
  }
  return removed;
}
