/**
 * The frontend's API: compile a .kiln model's entry to a verified IR graph, describe a model, check a file,
 * format source. Every user mistake surfaces as a KilnError (a DiagnosticError when it has a source position).
 */
import { readFileSync } from 'node:fs';
import { KilnError } from '../errors.js';
import type { Graph } from '../ir/graph.js';
import type { DType } from '../ir/types.js';
import type { FnDecl } from './ast.js';
import { type Diagnostic, DiagnosticError, makeDiagnostic } from './diagnostics.js';
import { Env, type LowerOptions, Lowerer, toConfigValue, type ConfigValue } from './lower.js';
import { type Loaded, loadProgram, type Module } from './modules.js';
import { exprText } from './print.js';

export { formatDiagnostic, DiagnosticError, type Diagnostic } from './diagnostics.js';
export { formatSource } from './format.js';
export { MODELS_DIR, STDLIB_DIR } from './modules.js';
export type { ConfigValue } from './lower.js';

export interface CompileOptions extends LowerOptions {
  /** Entry point to compile; default 'forward'. */
  entry?: string;
}

export interface EntryInfo {
  name: string;
  inputs: { name: string; dtype: DType; shape: (number | string)[] }[];
  outputs: string[];
}

export interface ModelInfo {
  name: string;
  file: string;
  /** Hyper-parameters after --set. */
  config: Record<string, ConfigValue>;
  /** Declared dims with their default values (under this config). */
  dims: Record<string, number>;
  entries: EntryInfo[];
}

function readSource(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new KilnError(`cannot read ${path}: ${code === 'EISDIR' ? 'it is a folder' : code === 'ENOENT' ? 'no such file' : (code ?? String(e))}`);
  }
}

/** Wraps a positioned KilnError into a DiagnosticError with the formatted source excerpt. */
function asDiagnostic(e: unknown, loaded: Loaded): Diagnostic | undefined {
  if (e instanceof DiagnosticError) return e.diagnostics[0];
  if (e instanceof KilnError) return makeDiagnostic(e.message, e.loc, (f) => loaded.sources.get(f));
  return undefined;
}

function rethrow(e: unknown, loaded: Loaded): never {
  if (e instanceof KilnError && !(e instanceof DiagnosticError) && e.loc) throw new DiagnosticError([asDiagnostic(e, loaded)!]);
  throw e;
}

function load(text: string, file: string): { loaded: Loaded; main: Module } {
  const loaded = loadProgram(file, text);
  if (loaded.diagnostics.length) throw new DiagnosticError(loaded.diagnostics);
  if (!loaded.main.model) {
    throw new DiagnosticError([makeDiagnostic(`${file} declares no model (expected \`model NAME { ... }\`)`, undefined, () => undefined)]);
  }
  return { loaded, main: loaded.main };
}

const entriesOf = (m: Module): FnDecl[] => m.program.items.filter((i): i is FnDecl => i.kind === 'fn' && i.isEntry);

function findEntry(m: Module, name: string): FnDecl {
  const all = entriesOf(m);
  const e = all.find((x) => x.name === name);
  if (!e) throw new KilnError(`model ${m.model!.name} has no entry '${name}' (entries: ${all.map((x) => x.name).join(', ') || 'none'})`);
  return e;
}

export function compileSource(text: string, file: string, opts: CompileOptions = {}): { graph: Graph; model: ModelInfo } {
  const { loaded, main } = load(text, file);
  try {
    const lw = new Lowerer(main);
    lw.resolveConfig(opts.set);
    const entry = findEntry(main, opts.entry ?? 'forward');
    lw.resolveDims(entry, entriesOf(main), opts);
    const graph = lw.lowerEntry(entry, `${main.model!.name}.${entry.name}`, opts);
    return { graph, model: describe(main, opts) };
  } catch (e) {
    rethrow(e, loaded);
  }
}

export function compileModel(path: string, opts: CompileOptions = {}): { graph: Graph; model: ModelInfo } {
  return compileSource(readSource(path), path, opts);
}

function describe(main: Module, opts: { set?: Record<string, ConfigValue> }): ModelInfo {
  const lw = new Lowerer(main);
  const { config } = lw.resolveConfig(opts.set);
  const env = new Env(undefined, main);
  for (const [k, v] of config) env.define(k, v);
  const dims: Record<string, number> = {};
  for (const d of main.model!.items) {
    if (d.kind !== 'dim') continue;
    const v = lw.eval(d.value, env);
    if (v.k === 'num' && v.int) {
      dims[d.name] = v.v;
      env.define(d.name, v);
    }
  }
  const dimOf = (e: Parameters<Lowerer['eval']>[0]): number | string => {
    if (e.kind === 'name' && !config.has(e.name)) return e.name;
    try {
      const v = lw.eval(e, env);
      return v.k === 'num' ? v.v : exprText(e);
    } catch {
      return exprText(e);
    }
  };
  return {
    name: main.model!.name,
    file: main.file,
    config: Object.fromEntries([...config].map(([k, v]) => [k, toConfigValue(v)])),
    dims,
    entries: entriesOf(main).map((en) => ({
      name: en.name,
      inputs: en.params.map((p) => ({
        name: p.name,
        dtype: (p.type?.base ?? 'f32') as DType,
        shape: (p.type?.dims ?? []).map((d) => (d.kind === 'ellipsis' ? '...' : dimOf(d.expr))),
      })),
      outputs: en.ret ? en.ret.outs.map((o, i, all) => o.name ?? (all.length === 1 ? 'out' : `out${i}`)) : ['out'],
    })),
  };
}

export function loadModelInfo(path: string, opts: { set?: Record<string, ConfigValue> } = {}): ModelInfo {
  const text = readSource(path);
  const { loaded, main } = load(text, path);
  try {
    return describe(main, opts);
  } catch (e) {
    rethrow(e, loaded);
  }
}

/** Parses and type/shape-checks every entry; an empty list means the file is fine. */
export function checkSource(text: string, file: string, opts: LowerOptions = {}): Diagnostic[] {
  const loaded = loadProgram(file, text);
  if (loaded.diagnostics.length) return loaded.diagnostics;
  const main = loaded.main;
  if (!main.model) return [makeDiagnostic(`${file} declares no model (expected \`model NAME { ... }\`)`, undefined, () => undefined)];
  const out: Diagnostic[] = [];
  const seen = new Set<string>();
  for (const entry of entriesOf(main)) {
    try {
      const lw = new Lowerer(main);
      lw.resolveConfig(opts.set);
      lw.resolveDims(entry, entriesOf(main), { ...opts, inputShapes: undefined });
      lw.lowerEntry(entry, `${main.model.name}.${entry.name}`, {});
    } catch (e) {
      const d = asDiagnostic(e, loaded);
      if (!d) throw e;
      if (!seen.has(d.formatted)) out.push(d);
      seen.add(d.formatted);
    }
  }
  return out;
}

export function checkFile(path: string, opts: LowerOptions = {}): Diagnostic[] {
  let text: string;
  try {
    text = readSource(path);
  } catch (e) {
    return [makeDiagnostic((e as Error).message, undefined, () => undefined)];
  }
  return checkSource(text, path, opts);
}
