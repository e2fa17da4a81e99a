/** Shared option parsing for CLI verbs: --set k=v, --dim N=v, --input name=file.npy|random. */
import type { Command } from 'commander';
import { KilnError } from '../errors.js';

export type ConfigValue = string | number | boolean;

/** A numeric option's value, or a KilnError naming the flag: `int` wants an integer, `min` a lower bound. */
export function num(flag: string, v: string, o: { int?: boolean; min?: number; max?: number; above?: number } = {}): number {
  const n = Number(v);
  const what = o.int ? 'an integer' : 'a number';
  if (v.trim() === '' || !Number.isFinite(n) || (o.int && !Number.isInteger(n))) throw new KilnError(`${flag} expects ${what}, got '${v}'`);
  if (o.min !== undefined && n < o.min) throw new KilnError(`${flag} must be at least ${o.min}, got ${v}`);
  if (o.max !== undefined && n > o.max) throw new KilnError(`${flag} must be at most ${o.max}, got ${v}`);
  if (o.above !== undefined && !(n > o.above)) throw new KilnError(`${flag} must be greater than ${o.above}, got ${v}`);
  return n;
}

export function parseValue(v: string): ConfigValue {
  if (v === 'true') return true;
  if (v === 'false') return false;
  if (/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(v)) return Number(v);
  return v;
}

function splitPair(flag: string, s: string): [string, string] {
  const i = s.indexOf('=');
  if (i <= 0) throw new KilnError(`${flag} expects NAME=VALUE, got '${s}'`);
  return [s.slice(0, i).trim(), s.slice(i + 1).trim()];
}

/** Commander collector for repeatable `--set k=v` (also accepts `--set a=1,b=2`). */
export function collectSet(value: string, prev: Record<string, ConfigValue> = {}): Record<string, ConfigValue> {
  const out = { ...prev };
  for (const part of value.split(',')) {
    const [k, v] = splitPair('--set', part);
    out[k] = parseValue(v);
  }
  return out;
}

export function collectDims(value: string, prev: Record<string, number> = {}): Record<string, number> {
  const out = { ...prev };
  for (const part of value.split(',')) {
    const [k, v] = splitPair('--dim', part);
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new KilnError(`--dim ${k} must be a positive integer, got '${v}'`);
    if (n > 2 ** 31 - 1) throw new KilnError(`--dim ${k}=${v} is too large: a dimension is at most ${2 ** 31 - 1}`);
    out[k] = n;
  }
  return out;
}

export function collectPairs(value: string, prev: Record<string, string> = {}): Record<string, string> {
  const [k, v] = splitPair('--input', value);
  return { ...prev, [k]: v };
}

/** Adds the options every model verb shares: --set (config) and --dim (symbolic dims). */
export function withModelOptions(c: Command): Command {
  return c
    .option('--set <k=v>', 'override a config value of the model (repeatable)', collectSet, {})
    .option('--dim <N=v>', 'value of a symbolic dimension such as B or T (repeatable)', collectDims, {});
}

/** Commander collector for a repeatable option whose values are kept as a list. */
export function collectList(value: string, prev: string[] = []): string[] {
  return [...prev, value];
}
