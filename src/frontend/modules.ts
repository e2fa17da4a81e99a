/**
 * Loads a .kiln file and everything it imports. `import "std/nn"` resolves to the bundled standard library;
 * any other path is relative to the importing file (".kiln" is added when missing). Import cycles and missing
 * files are diagnostics at the import statement.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { FnDecl, ModelDecl, Program, Span } from './ast.js';
import { type Diagnostic, locOf, makeDiagnostic } from './diagnostics.js';
import { parse, stripBom } from './parser.js';

export const MODELS_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../models');
export const STDLIB_DIR = join(MODELS_DIR, 'std');

export interface Module {
  /** Path shown in diagnostics. */
  file: string;
  abs: string;
  text: string;
  program: Program;
  /** Functions visible in this module: its own, then everything its imports make visible. */
  scope: Map<string, { fn: FnDecl; module: Module }>;
  model?: ModelDecl;
  isMain: boolean;
}

export interface Loaded {
  main: Module;
  modules: Map<string, Module>;
  diagnostics: Diagnostic[];
  sources: Map<string, string>;
}

function displayPath(abs: string): string {
  const rel = relative(process.cwd(), abs);
  return rel && !rel.startsWith('..') && !isAbsolute(rel) ? rel : abs;
}

export function resolveImport(path: string, fromAbs: string): string {
  const withExt = path.endsWith('.kiln') ? path : `${path}.kiln`;
  if (withExt.startsWith('std/')) return join(STDLIB_DIR, withExt.slice(4));
  return resolve(dirname(fromAbs), withExt);
}

export function loadProgram(file: string, text: string): Loaded {
  const modules = new Map<string, Module>();
  const sources = new Map<string, string>();
  const diagnostics: Diagnostic[] = [];
  const src = (f: string) => sources.get(f);
  const diag = (m: Module, msg: string, span: Span | undefined) => diagnostics.push(makeDiagnostic(msg, locOf(m.file, span), src));

  const load = (abs: string, shown: string, source: string, isMain: boolean, stack: string[]): Module => {
    const body = stripBom(source);
    sources.set(shown, body);
    const { program, errors } = parse(body);
    const m: Module = { file: shown, abs, text: body, program, scope: new Map(), isMain };
    modules.set(abs, m);
    for (const e of errors) diag(m, e.message, e.span);
    const own = new Map<string, FnDecl>();
    for (const it of program.items) {
      if (it.kind === 'fn') {
        it.file = shown;
        const prev = own.get(it.name);
        if (prev) diag(m, `function '${it.name}' is already defined at ${shown}:${prev.nameSpan.line}:${prev.nameSpan.col}`, it.nameSpan);
        else own.set(it.name, it);
      } else if (it.kind === 'model') {
        if (m.model) diag(m, `a file holds one model; '${m.model.name}' is already declared at line ${m.model.span.line}`, it.span);
        else m.model = it;
      }
    }
    for (const [name, fn] of own) m.scope.set(name, { fn, module: m });
    for (const it of program.items) {
      if (it.kind !== 'import') continue;
      const target = resolveImport(it.path, abs);
      const chain = [...stack, abs];
      if (chain.includes(target)) {
        const cycle = [...chain.slice(chain.indexOf(target)), target].map((p) => displayPath(p));
        diag(m, `recursive import: ${cycle.join(' -> ')}`, it.span);
        continue;
      }
      let dep = modules.get(target);
      if (!dep) {
        if (!existsSync(target)) {
          diag(m, `cannot find imported file '${it.path}' (looked for ${displayPath(target)})`, it.span);
          continue;
        }
        let text: string;
        try {
          text = readFileSync(target, 'utf8');
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          diag(m, `cannot read imported file '${it.path}' (${displayPath(target)}): ${code === 'EISDIR' ? 'it is a folder' : (code ?? String(e))}`, it.span);
          continue;
        }
        dep = load(target, displayPath(target), text, false, chain);
      }
      for (const [name, entry] of dep.scope) {
        const have = m.scope.get(name);
        if (!have) m.scope.set(name, entry);
        else if (have.fn !== entry.fn && have.module !== m) {
          diag(m, `import of '${it.path}' brings a second function '${name}' (the first comes from ${have.module.file})`, it.span);
        }
      }
    }
    return m;
  };
  const main = load(resolve(file), file, text, true, []);
  return { main, modules, diagnostics, sources };
}
