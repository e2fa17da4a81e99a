/**
 * Lowering: evaluates a model's entry at compile time, inlining every function call, and emits IR nodes for
 * tensor operations. Config values, dims, shapes and loop counters are ordinary compile-time values, so shape
 * checking is simply running the IR's shape rules as the graph is built.
 */
import { KilnError, ShapeError } from '../errors.js';
import { GraphBuilder } from '../ir/builder.js';
import type { Graph } from '../ir/graph.js';
import type { AttrsOf, OpKind } from '../ir/op.js';
import { DTYPES, type DType, fmtShape, type TensorType } from '../ir/types.js';
import { verify } from '../ir/verify.js';
import type { Expr, FnDecl, NamePath, Span, Stmt, Target, TypeExpr } from './ast.js';
import { BUILTINS, callBuiltin, NS_ONLY } from './builtins.js';
import { type DiagLoc, LowerError, locOf, suggest } from './diagnostics.js';
import type { Module } from './modules.js';
import { exprText, typeText } from './print.js';
import { int, isCallable, kindName, NONE, num, type Value } from './values.js';

export type ConfigValue = number | string | boolean;

export interface LowerOptions {
  set?: Record<string, ConfigValue>;
  dims?: Record<string, number>;
  inputShapes?: Record<string, number[]>;
}

const MAX_DEPTH = 64;
const MAX_NODES = 2_000_000;
/** Largest element count of a tensor: every index the kernels compute must fit a 32-bit signed integer. */
export const MAX_ELEMENTS = 2 ** 31 - 1;
/** Compile-time evaluation budget (expressions evaluated): exponential recursion fails in seconds, not hours. */
export const MAX_EVAL_STEPS = 1_000_000;
const CONFIG_TYPES = ['int', 'float', 'bool', 'str'];

export class Env {
  private vars = new Map<string, Value>();
  constructor(
    readonly parent: Env | undefined,
    readonly module: Module,
  ) {}
  get(name: string, callable = false): Value | undefined {
    for (let e: Env | undefined = this; e; e = e.parent) {
      const v = e.vars.get(name);
      if (v && (!callable || isCallable(v))) return v;
    }
    return undefined;
  }
  has(name: string): boolean {
    return this.get(name) !== undefined;
  }
  define(name: string, v: Value): void {
    this.vars.set(name, v);
  }
  /** Rebinds an existing variable where it was defined; false when there is none. */
  assign(name: string, v: Value): boolean {
    for (let e: Env | undefined = this; e; e = e.parent) {
      if (e.vars.has(name)) {
        e.vars.set(name, v);
        return true;
      }
    }
    return false;
  }
  names(): string[] {
    const out: string[] = [];
    for (let e: Env | undefined = this; e; e = e.parent) out.push(...e.vars.keys());
    return out;
  }
}

class ReturnSignal {
  constructor(readonly value: Value) {}
}

/** Resolved model header: config values and their types, dims with their declarations. */
export interface ResolvedConfig {
  config: Map<string, Value>;
  configTypes: Map<string, string>;
}

export function toConfigValue(v: Value): ConfigValue {
  if (v.k === 'num') return v.v;
  if (v.k === 'bool') return v.v;
  if (v.k === 'str') return v.v;
  return String(v.k);
}

export class Lowerer {
  readonly b = new GraphBuilder();
  /** Config values and dims: visible (as names) only inside the model's own file. */
  readonly globals = new Map<string, Value>();
  private params = new Map<string, DiagLoc | undefined>();
  private path: string[] = [];
  private counters = new Map<string, Map<string, number>>();
  private rngSeed?: number;
  private stream = 0;
  private depth = 0;
  private steps = 0;

  constructor(readonly main: Module) {}

  // ---- errors and locations ----

  loc(env: Env | Module, span: Span | undefined): DiagLoc | undefined {
    const file = 'module' in env ? env.module.file : env.file;
    return locOf(file, span);
  }
  fail(env: Env | Module, span: Span | undefined, msg: string): never {
    throw new LowerError(msg, this.loc(env, span));
  }

  /** Emits one IR node; shape-rule violations become diagnostics at `span`. */
  op<K extends OpKind>(env: Env, span: Span | undefined, kind: K, inputs: number[], attrs: AttrsOf<K>): number {
    if (this.b.nodes.length > MAX_NODES) this.fail(env, span, `the graph has more than ${MAX_NODES} nodes`);
    let id: number;
    try {
      id = this.b.op(kind, inputs, attrs, { loc: this.loc(env, span) });
    } catch (e) {
      if (e instanceof ShapeError) throw new LowerError(e.message, this.loc(env, span));
      throw e;
    }
    const { shape, dtype } = this.b.type(id);
    if (kind === 'constant') this.checkConstant(env, span, dtype, (attrs as AttrsOf<'constant'>).values);
    const count = shape.reduce((a, d) => a * d, 1);
    if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0) || count > MAX_ELEMENTS) {
      this.fail(env, span, `${kind} makes a tensor of shape ${fmtShape(shape)} (${count.toExponential(3)} elements): a tensor holds at most ${MAX_ELEMENTS} elements (2^31 - 1, the index range of the compiled kernels)`);
    }
    return id;
  }
  /** A literal must be representable in its dtype: the interpreter would wrap it and WGSL would refuse the literal. */
  private checkConstant(env: Env, span: Span | undefined, dtype: DType, values: ArrayLike<number>): void {
    const range: Partial<Record<DType, [number, number]>> = { i32: [-(2 ** 31), 2 ** 31 - 1], u32: [0, 2 ** 32 - 1], f32: [-3.4028234663852886e38, 3.4028234663852886e38] };
    const r = range[dtype];
    if (!r) return;
    for (let i = 0; i < Math.min(values.length, 1 << 16); i++) {
      const v = values[i];
      if (Number.isFinite(v) ? v < r[0] || v > r[1] : dtype !== 'f32') {
        this.fail(env, span, `the value ${v} does not fit ${dtype} (${r[0]} .. ${r[1]})${dtype === 'f32' ? '' : ': it would wrap around'}`);
      }
    }
  }

  type(id: number): TensorType {
    return this.b.type(id);
  }

  // ---- config and dims ----

  resolveConfig(set: Record<string, ConfigValue> = {}): ResolvedConfig {
    const model = this.main.model!;
    const config = new Map<string, Value>();
    const configTypes = new Map<string, string>();
    const env = new Env(undefined, this.main);
    const decls = model.items.filter((i) => i.kind === 'config');
    for (const k of Object.keys(set)) {
      if (!decls.some((d) => d.name === k)) {
        const keys = decls.map((d) => d.name);
        throw new KilnError(`unknown config key '${k}' for model ${model.name}${suggest(k, keys)}; valid keys: ${keys.join(', ')}`);
      }
    }
    for (const d of decls) {
      if (!CONFIG_TYPES.includes(d.type)) this.fail(this.main, d.span, `unknown config type '${d.type}' (expected int, float, bool or str)`);
      let v: Value;
      if (d.name in set) {
        const s = set[d.name];
        const bad = () => {
          throw new KilnError(`--set ${d.name}=${String(s)}: '${d.name}' is ${d.type === 'int' ? 'an' : 'a'} ${d.type}`);
        };
        if (d.type === 'int') v = typeof s === 'number' && Number.isInteger(s) ? int(s) : bad();
        else if (d.type === 'float') v = typeof s === 'number' ? num(s, false) : bad();
        else if (d.type === 'bool') v = typeof s === 'boolean' ? { k: 'bool', v: s } : bad();
        else v = { k: 'str', v: String(s) };
      } else {
        v = this.eval(d.value, env);
        const ok =
          (d.type === 'int' && v.k === 'num' && v.int) ||
          (d.type === 'float' && v.k === 'num') ||
          (d.type === 'bool' && v.k === 'bool') ||
          (d.type === 'str' && v.k === 'str');
        if (!ok) this.fail(this.main, d.value.span, `config '${d.name}' is declared ${d.type} but its default is ${kindName(v)}`);
        if (d.type === 'float' && v.k === 'num') v = num(v.v, false);
      }
      if (config.has(d.name)) this.fail(this.main, d.span, `config '${d.name}' is declared twice`);
      config.set(d.name, v);
      configTypes.set(d.name, d.type);
      env.define(d.name, v);
      this.globals.set(d.name, v);
    }
    return { config, configTypes };
  }

  /** Symbolic dim names in an entry's input shapes: bare names that are neither config values nor dims yet. */
  private bareDimName(e: Expr): string | undefined {
    return e.kind === 'name' && !this.globals.has(e.name) ? e.name : undefined;
  }

  resolveDims(entry: FnDecl, entries: FnDecl[], opts: LowerOptions): Map<string, number> {
    const model = this.main.model!;
    const declared = model.items.filter((i) => i.kind === 'dim');
    const dims = new Map<string, number>();
    const symbolic = new Set<string>(declared.map((d) => d.name));
    for (const en of entries) {
      for (const p of en.params) for (const d of p.type?.dims ?? []) if (d.kind === 'expr') { const n = this.bareDimName(d.expr); if (n) symbolic.add(n); }
    }
    for (const d of declared) if (this.globals.has(d.name)) this.fail(this.main, d.span, `'${d.name}' is both a config value and a dim`);
    for (const [k, v] of Object.entries(opts.dims ?? {})) {
      if (this.globals.has(k)) throw new KilnError(`'${k}' is a config value, not a dim: use --set ${k}=${v}`);
      if (!symbolic.has(k)) throw new KilnError(`unknown dim '${k}' for model ${model.name}${suggest(k, symbolic)}; dims: ${[...symbolic].join(', ') || 'none'}`);
      if (!Number.isInteger(v) || v <= 0) throw new KilnError(`dim ${k} must be a positive integer, got ${v}`);
      dims.set(k, v);
    }
    const shapes = opts.inputShapes ?? {};
    for (const k of Object.keys(shapes)) {
      if (!entry.params.some((p) => p.name === k)) {
        throw new KilnError(`entry '${entry.name}' has no input '${k}' (inputs: ${entry.params.map((p) => p.name).join(', ') || 'none'})`);
      }
    }
    // Dims not given explicitly are read off the shapes of the inputs given.
    for (const p of entry.params) {
      const actual = shapes[p.name];
      const ds = p.type?.dims;
      if (!actual || !ds) continue;
      if (ds.some((d) => d.kind === 'ellipsis') || ds.length !== actual.length) continue; // reported below
      ds.forEach((d, i) => {
        const n = d.kind === 'expr' ? this.bareDimName(d.expr) : undefined;
        if (n && !dims.has(n)) dims.set(n, actual[i]);
      });
    }
    const env = new Env(undefined, this.main);
    for (const [k, v] of this.globals) env.define(k, v);
    for (const d of declared) {
      if (!dims.has(d.name)) {
        for (const [k, v] of dims) env.define(k, int(v));
        const v = this.eval(d.value, env);
        if (v.k !== 'num' || !v.int || v.v <= 0) this.fail(this.main, d.value.span, `dim ${d.name} must be a positive integer, got ${kindName(v)}`);
        dims.set(d.name, v.v);
      }
    }
    for (const [k, v] of dims) this.globals.set(k, int(v));
    return dims;
  }

  // ---- entries ----

  lowerEntry(entry: FnDecl, graphName: string, opts: LowerOptions): Graph {
    const env = new Env(undefined, this.main);
    const seenInputs = new Map<string, Span>();
    for (const p of entry.params) {
      const first = seenInputs.get(p.name);
      if (first) this.fail(env, p.span, `entry '${entry.name}' has two inputs named '${p.name}' (the first at line ${first.line})`);
      seenInputs.set(p.name, p.span);
      if (!p.type || !p.type.dims && !DTYPES.includes(p.type.base as DType)) {
        this.fail(env, p.span, `entry input '${p.name}' needs a tensor type, e.g. ${p.name}: i32[B, T]`);
      }
      if (p.default) this.fail(env, p.default.span, `entry inputs cannot have default values`);
      const dtype = p.type.base as DType;
      if (!DTYPES.includes(dtype)) this.fail(env, p.type.span, `unknown dtype '${p.type.base}'${suggest(p.type.base, DTYPES)}`);
      const shape: number[] = [];
      for (const d of p.type.dims ?? []) {
        if (d.kind === 'ellipsis') this.fail(env, d.span, `entry inputs need a full shape ('...' is only allowed in function parameters)`);
        if (d.expr.kind === 'name' && !env.has(d.expr.name) && !this.globals.has(d.expr.name) && !this.main.scope.has(d.expr.name)) {
          this.fail(env, d.expr.span, `unresolved dimension '${d.expr.name}' in input '${p.name}': declare \`dim ${d.expr.name} = ...\` in the model header or pass --dim ${d.expr.name}=N`);
        }
        shape.push(this.dimValue(d.expr, env));
      }
      const given = opts.inputShapes?.[p.name];
      if (given && (given.length !== shape.length || given.some((g, i) => g !== shape[i]))) {
        this.fail(env, p.type.span, `input '${p.name}' has shape ${fmtShape(given)} but entry '${entry.name}' expects ${typeText(p.type)} = ${fmtShape(shape)}`);
      }
      const id = this.op(env, p.span, 'input', [], { name: p.name, dtype, shape });
      this.b.nodes[id].name = p.name;
      env.define(p.name, { k: 'tensor', id });
    }
    const result = this.runBody(entry, env);
    const outs = this.entryOutputs(entry, result, env);
    const outNames = new Set<string>();
    for (const [i, o] of outs.entries()) {
      if (outNames.has(o.name)) this.fail(env, entry.ret?.outs[i]?.span ?? entry.nameSpan, `entry '${entry.name}' has two outputs named '${o.name}'`);
      outNames.add(o.name);
    }
    const g = this.b.build(graphName, outs);
    verify(g);
    return g;
  }

  private entryOutputs(entry: FnDecl, result: Value, env: Env): { name: string; id: number }[] {
    const decl = entry.ret;
    const values = decl ? (decl.tuple ? (result.k === 'tuple' ? result.items : [result]) : [result]) : result.k === 'tuple' ? result.items : [result];
    if (decl && decl.outs.length !== values.length) {
      this.fail(env, entry.nameSpan, `entry '${entry.name}' declares ${decl.outs.length} output(s) but returns ${values.length}`);
    }
    return values.map((v, i) => {
      const o = decl?.outs[i];
      const name = o?.name ?? (values.length === 1 ? 'out' : `out${i}`);
      if (v.k !== 'tensor') this.fail(env, o?.span ?? entry.nameSpan, `entry '${entry.name}' must return tensors, but output '${name}' is ${kindName(v)}`);
      if (o?.type) this.checkType(v, o.type, env, false, `output '${name}' of entry '${entry.name}'`, o.span);
      return { name, id: v.id };
    });
  }

  private runBody(fn: FnDecl, env: Env): Value {
    const r = this.execBlock(fn.body, env);
    return r ? r.value : NONE;
  }

  // ---- statements ----

  execBlock(stmts: Stmt[], env: Env): ReturnSignal | undefined {
    for (const s of stmts) {
      const r = this.exec(s, env);
      if (r) return r;
    }
    return undefined;
  }

  private nameNodes(from: number, v: Value, name: string): void {
    if (v.k === 'tensor' && v.id >= from && !this.b.nodes[v.id].name) {
      this.b.nodes[v.id].name = [...this.path, name].join('.');
    }
  }

  exec(s: Stmt, env: Env): ReturnSignal | undefined {
    const start = this.b.nodes.length;
    switch (s.kind) {
      case 'let': {
        const v = this.eval(s.value, env);
        if (s.type) this.checkType(v, s.type, env, false, `'${s.target.kind === 'name' ? s.target.name : 'value'}'`, s.type.span);
        this.bind(s.target, v, env, start);
        return;
      }
      case 'assign': {
        if (!env.get(s.name)) {
          if (this.lookupGlobal(s.name, env)) this.fail(env, s.nameSpan, `cannot assign to '${s.name}': only local variables can be reassigned`);
          this.fail(env, s.nameSpan, `unknown variable '${s.name}' (declare it with \`let ${s.name} = ...\`)`);
        }
        const v = this.eval(s.value, env);
        env.assign(s.name, v);
        this.nameNodes(start, v, s.name);
        return;
      }
      case 'param': {
        const init = this.eval(s.init, env);
        if (init.k !== 'init') this.fail(env, s.init.span, `a parameter's initializer must be zeros(), ones(), normal(std), uniform(low, high), xavier_uniform(), ...; got ${kindName(init)}`);
        const dtype = s.type.base as DType;
        if (!DTYPES.includes(dtype)) this.fail(env, s.type.span, `unknown dtype '${s.type.base}'${suggest(s.type.base, DTYPES)}`);
        const shape: number[] = [];
        for (const d of s.type.dims ?? []) {
          if (d.kind === 'ellipsis') this.fail(env, d.span, `a parameter needs a full shape`);
          shape.push(this.dimValue(d.expr, env));
        }
        const name = [...this.path, s.name].join('.');
        if (this.params.has(name)) {
          const p = this.params.get(name);
          this.fail(env, s.span, `parameter '${name}' is declared twice${p ? ` (first at ${p.file}:${p.line}:${p.col})` : ''}; name the calls apart with \`as\``);
        }
        this.params.set(name, this.loc(env, s.span));
        const id = this.op(env, s.span, 'param', [], { name, dtype, shape, init: init.init });
        this.b.nodes[id].name = name;
        env.define(s.name, { k: 'tensor', id });
        return;
      }
      case 'return':
        return new ReturnSignal(this.eval(s.value, env));
      case 'for': {
        const it = this.eval(s.iter, env);
        if (it.k !== 'tuple') this.fail(env, s.iter.span, `for loops run over range(n) or a tuple, got ${kindName(it)}`);
        for (const x of it.items) {
          const inner = new Env(env, env.module);
          inner.define(s.var, x);
          const r = this.execBlock(s.body, inner);
          if (r) return r;
        }
        return;
      }
      case 'if': {
        const c = this.eval(s.cond, env);
        if (c.k !== 'bool') {
          this.fail(env, s.cond.span, c.k === 'tensor' ? `'if' needs a compile-time condition; use where(cond, a, b) to select between tensors` : `'if' needs a bool, got ${kindName(c)}`);
        }
        const branch = c.v ? s.then : s.else;
        return branch ? this.execBlock(branch, new Env(env, env.module)) : undefined;
      }
      case 'assert': {
        const c = this.eval(s.cond, env);
        if (c.k !== 'bool') this.fail(env, s.cond.span, `assert needs a compile-time bool, got ${kindName(c)}`);
        if (!c.v) {
          const m = s.message ? this.eval(s.message, env) : undefined;
          this.fail(env, s.span, `assertion failed: ${m ? (m.k === 'str' ? m.v : kindName(m)) : exprText(s.cond)}`);
        }
        return;
      }
    }
  }

  private bind(t: Target, v: Value, env: Env, start: number): void {
    if (t.kind === 'name') {
      env.define(t.name, v);
      this.nameNodes(start, v, t.name);
      return;
    }
    if (v.k !== 'tuple') this.fail(env, t.span, `cannot unpack ${kindName(v)} into ${t.items.length} names`);
    if (v.items.length !== t.items.length) this.fail(env, t.span, `cannot unpack a tuple of ${v.items.length} into ${t.items.length} names`);
    t.items.forEach((x, i) => this.bind(x, v.items[i], env, start));
  }

  // ---- types ----

  /** Evaluates a dimension expression to a non-negative integer. */
  dimValue(e: Expr, env: Env): number {
    const v = this.eval(e, env);
    if (v.k !== 'num' || !v.int || v.v < 0) this.fail(env, e.span, `a dimension must be a non-negative integer, got ${kindName(v)}`);
    return v.v;
  }

  /**
   * Checks a value against a declared type. In `bind` mode (function parameters) bare unknown names in the shape
   * are bound to the actual sizes, so `x: f32[..., n]` gives the function `n`.
   */
  checkType(v: Value, t: TypeExpr, env: Env, bindNew: boolean, what: string, span: Span | undefined): void {
    if (CONFIG_TYPES.includes(t.base)) {
      if (t.dims) this.fail(env, t.span, `'${t.base}' takes no shape`);
      const ok = (t.base === 'int' && v.k === 'num' && v.int) || (t.base === 'float' && v.k === 'num') || (t.base === 'bool' && v.k === 'bool') || (t.base === 'str' && v.k === 'str');
      if (!ok) this.fail(env, span, `${what} must be ${t.base === 'int' ? 'an' : 'a'} ${t.base}, got ${kindName(v)}`);
      return;
    }
    if (!DTYPES.includes(t.base as DType)) this.fail(env, t.span, `unknown type '${t.base}'${suggest(t.base, [...DTYPES, ...CONFIG_TYPES])}`);
    if (v.k !== 'tensor') this.fail(env, span, `${what} must be a ${typeText(t)} tensor, got ${kindName(v)}`);
    const actual = this.type(v.id);
    const mismatch = (expected?: number[]) =>
      this.fail(env, span, `${what} must be ${typeText(t)}${expected ? ` = ${fmtShape(expected)}` : ''}, got ${actual.dtype}${fmtShape(actual.shape)}`);
    if (actual.dtype !== t.base) mismatch();
    const items = t.dims ?? [];
    const ell = items.findIndex((d) => d.kind === 'ellipsis');
    const rank = actual.shape.length;
    const fixed = items.length - (ell >= 0 ? 1 : 0);
    if (ell >= 0 ? rank < fixed : rank !== fixed) mismatch();
    const pairs: [Expr, number][] = [];
    items.forEach((d, i) => {
      if (d.kind === 'ellipsis') return;
      const axis = ell >= 0 && i > ell ? rank - (items.length - i) : i;
      pairs.push([d.expr, actual.shape[axis]]);
    });
    const expected: number[] = [];
    for (const [e, size] of pairs) {
      if (bindNew && e.kind === 'name' && !env.has(e.name) && !this.lookupGlobal(e.name, env)) {
        env.define(e.name, int(size));
        expected.push(size);
        continue;
      }
      expected.push(this.dimValue(e, env));
    }
    if (pairs.some(([, size], i) => size !== expected[i])) mismatch(ell >= 0 ? undefined : expected);
  }

  // ---- names ----

  private lookupGlobal(name: string, env: Env, callable = false): Value | undefined {
    const f = env.module.scope.get(name);
    if (f) return { k: 'fn', fn: f.fn, module: f.module };
    if (env.module.isMain) {
      const g = this.globals.get(name);
      if (g && (!callable || isCallable(g))) return g;
    }
    if (name === 'ops') return callable ? undefined : { k: 'ns' };
    if (DTYPES.includes(name as DType)) return callable ? undefined : { k: 'dtype', d: name as DType };
    if (BUILTINS.has(name) && !NS_ONLY.has(name)) return { k: 'builtin', name };
    if (!callable && name === 'pi') return num(Math.PI, false);
    return undefined;
  }

  resolve(name: string, env: Env, span: Span, callable = false): Value {
    const v = env.get(name, callable) ?? this.lookupGlobal(name, env, callable);
    if (v) return v;
    const local = env.get(name);
    if (callable && local) this.fail(env, span, `'${name}' is ${kindName(local)}, not a function`);
    const cands = [...env.names(), ...env.module.scope.keys(), ...(env.module.isMain ? this.globals.keys() : []), ...[...BUILTINS.keys()].filter((b) => !NS_ONLY.has(b)), ...DTYPES];
    if (!callable && env.module.isMain === false && this.globals.has(name)) {
      this.fail(env, span, `unknown name '${name}': config values are only visible in the model file; pass it as an argument`);
    }
    this.fail(env, span, `unknown ${callable ? 'function' : 'name'} '${name}'${suggest(name, cands)}`);
  }

  // ---- expressions ----

  eval(e: Expr, env: Env): Value {
    if (++this.steps > MAX_EVAL_STEPS) {
      this.fail(env, e.span, `compile-time evaluation took more than ${MAX_EVAL_STEPS} steps (${this.b.nodes.length} graph nodes so far): is a recursion exponential, or a loop too long?`);
    }
    switch (e.kind) {
      case 'num':
        return num(e.value, e.isInt);
      case 'str':
        return { k: 'str', v: e.value };
      case 'bool':
        return { k: 'bool', v: e.value };
      case 'none':
        return NONE;
      case 'name':
        return this.resolve(e.name, env, e.span);
      case 'paren':
        return this.eval(e.expr, env);
      case 'tuple':
        return { k: 'tuple', items: e.items.map((x) => this.eval(x, env)) };
      case 'unary': {
        const v = this.eval(e.expr, env);
        return callBuiltin(this, env, e.span, e.op === '-' ? 'neg' : 'not', [{ v, span: e.expr.span }], []);
      }
      case 'binary': {
        if (e.op === 'and' || e.op === 'or') {
          const l = this.eval(e.left, env);
          if (l.k === 'bool' && (e.op === 'and' ? !l.v : l.v)) return l; // compile-time short circuit
          const r = this.eval(e.right, env);
          return callBuiltin(this, env, e.span, e.op === 'and' ? 'logical_and' : 'logical_or', [{ v: l, span: e.left.span }, { v: r, span: e.right.span }], []);
        }
        const l = this.eval(e.left, env);
        const r = this.eval(e.right, env);
        return callBuiltin(this, env, e.span, `op${e.op}`, [{ v: l, span: e.left.span }, { v: r, span: e.right.span }], []);
      }
      case 'member':
        return this.member(e, env);
      case 'index':
        return callBuiltin(this, env, e.span, 'index', [{ v: this.eval(e.object, env), span: e.object.span }], [], e.items);
      case 'call':
        return this.call(e, env);
    }
  }

  private member(e: Extract<Expr, { kind: 'member' }>, env: Env): Value {
    const o = this.eval(e.object, env);
    if (o.k === 'ns') {
      if (!BUILTINS.has(e.name)) this.fail(env, e.span, `ops has no builtin '${e.name}'${suggest(e.name, BUILTINS.keys())}`);
      return { k: 'builtin', name: e.name };
    }
    if (o.k === 'tensor') {
      const t = this.type(o.id);
      switch (e.name) {
        case 'shape':
          return { k: 'tuple', items: t.shape.map((d) => int(d)) };
        case 'dtype':
          return { k: 'dtype', d: t.dtype };
        case 'rank':
        case 'ndim':
          return int(t.shape.length);
        case 'T':
          return callBuiltin(this, env, e.span, 'transpose', [{ v: o, span: e.object.span }], []);
      }
      this.fail(env, e.span, `a tensor has no attribute '${e.name}' (attributes: shape, dtype, rank, T; call methods with parentheses)`);
    }
    this.fail(env, e.span, `${kindName(o)} has no attribute '${e.name}'`);
  }

  private call(e: Extract<Expr, { kind: 'call' }>, env: Env): Value {
    let callee: Value;
    const pos: { v: Value; span: Span }[] = [];
    const c = e.callee;
    if (c.kind === 'member') {
      const o = this.eval(c.object, env);
      if (o.k === 'ns') callee = this.member(c, env);
      else {
        // x.f(a) is f(x, a): functions and builtins (not variables) are looked up by the method name.
        callee = c.name === 'to' ? { k: 'builtin', name: 'cast' } : (this.lookupGlobal(c.name, env, true) ?? this.methodMissing(c, env));
        pos.push({ v: o, span: c.object.span });
      }
    } else if (c.kind === 'name') callee = this.resolve(c.name, env, c.span, true);
    else callee = this.eval(c, env);
    const kw: { name: string; v: Value; span: Span }[] = [];
    for (const a of e.args) {
      const v = this.eval(a.value, env);
      if (a.name) {
        if (kw.some((k) => k.name === a.name)) this.fail(env, a.span, `keyword argument '${a.name}' is given twice`);
        kw.push({ name: a.name, v, span: a.span });
      } else {
        if (kw.length) this.fail(env, a.span, `positional argument after a keyword argument`);
        pos.push({ v, span: a.span });
      }
    }
    if (callee.k === 'builtin') {
      if (e.as) this.fail(env, e.as.span, `only calls of functions can be named with 'as' ('${callee.name}' is a builtin)`);
      return callBuiltin(this, env, e.span, callee.name, pos, kw);
    }
    if (callee.k !== 'fn') this.fail(env, c.span, `${kindName(callee)} is not callable`);
    return this.callFn(callee.fn, callee.module, pos, kw, e.as, e.span, env);
  }

  private methodMissing(c: Extract<Expr, { kind: 'member' }>, env: Env): never {
    const cands = [...env.module.scope.keys(), ...[...BUILTINS.keys()].filter((b) => !NS_ONLY.has(b)), 'to'];
    this.fail(env, c.span, `unknown method '${c.name}'${suggest(c.name, cands)}`);
  }

  /** Binds positional and keyword arguments to parameter names; reports extra, unknown, repeated and missing ones. */
  bindArgs(
    env: Env,
    what: string,
    params: { name: string; optional: boolean; kwOnly?: boolean }[],
    pos: { v: Value; span: Span }[],
    kw: { name: string; v: Value; span: Span }[],
    span: Span,
    rest?: string,
  ): Map<string, Value> {
    const out = new Map<string, Value>();
    const positional = params.filter((p) => !p.kwOnly);
    const sig = () => `${what}(${positional.map((p) => p.name).concat(rest ? [`*${rest}`] : [], params.filter((p) => p.kwOnly).map((p) => p.name)).join(', ')})`;
    pos.forEach((a, i) => {
      if (i < positional.length) out.set(positional[i].name, a.v);
      else if (!rest) this.fail(env, a.span, `${sig()} takes ${positional.length} argument(s) but ${pos.length} were given`);
    });
    if (rest) out.set(rest, { k: 'tuple', items: pos.slice(positional.length).map((a) => a.v) });
    for (const k of kw) {
      if (!params.some((p) => p.name === k.name)) this.fail(env, k.span, `${sig()} has no parameter '${k.name}'${suggest(k.name, params.map((p) => p.name))}`);
      if (out.has(k.name)) this.fail(env, k.span, `${sig()} got two values for '${k.name}'`);
      out.set(k.name, k.v);
    }
    for (const p of params) if (!p.optional && !out.has(p.name)) this.fail(env, span, `${sig()} is missing argument '${p.name}'`);
    return out;
  }

  private autoName(fn: string): string {
    const key = this.path.join('.');
    let m = this.counters.get(key);
    if (!m) this.counters.set(key, (m = new Map()));
    const n = m.get(fn) ?? 0;
    m.set(fn, n + 1);
    return n === 0 ? fn : `${fn}_${n}`;
  }

  private namePath(p: NamePath, env: Env): string[] {
    return p.parts.map((x) => {
      if (x.kind === 'ident') return x.name;
      const v = this.eval(x.expr, env);
      if (v.k === 'num' && v.int) return String(v.v);
      if (v.k === 'str' && /^[A-Za-z0-9_]+$/.test(v.v)) return v.v;
      this.fail(env, x.expr.span, `a name segment must be an integer or a simple string, got ${kindName(v)}`);
    });
  }

  callFn(fn: FnDecl, module: Module, pos: { v: Value; span: Span }[], kw: { name: string; v: Value; span: Span }[], as: NamePath | undefined, span: Span, env: Env): Value {
    if (this.depth >= MAX_DEPTH) this.fail(env, span, `calls nest deeper than ${MAX_DEPTH} levels (is '${fn.name}' recursive?)`);
    const args = this.bindArgs(env, fn.name, fn.params.map((p) => ({ name: p.name, optional: !!p.default })), pos, kw, span);
    const fenv = new Env(undefined, module);
    for (const p of fn.params) {
      const v = args.get(p.name) ?? this.eval(p.default!, fenv);
      const argSpan = pos[fn.params.indexOf(p)]?.span ?? kw.find((k) => k.name === p.name)?.span ?? span;
      if (p.type) this.checkType(v, p.type, fenv, true, `argument '${p.name}' of ${fn.name}()`, args.has(p.name) ? argSpan : p.span);
      fenv.define(p.name, v);
    }
    const segs = as ? this.namePath(as, env) : fn.isEntry ? [] : [this.autoName(fn.name)];
    const savedPath = this.path;
    const savedScope = this.b.scope;
    this.path = [...this.path, ...segs];
    if (fn.annotations.some((a) => a.name === 'composite')) this.b.scope = this.b.newScope(fn.name);
    for (const a of fn.annotations) if (a.name !== 'composite') this.fail(fenv, a.span, `unknown annotation '@${a.name}' (known: @composite)`);
    this.depth++;
    try {
      const r = this.runBody(fn, fenv);
      if (fn.ret) {
        const vals = fn.ret.tuple ? (r.k === 'tuple' ? r.items : [r]) : [r];
        if (vals.length !== fn.ret.outs.length) this.fail(fenv, fn.nameSpan, `${fn.name}() declares ${fn.ret.outs.length} result(s) but returns ${vals.length}`);
        fn.ret.outs.forEach((o, i) => o.type && this.checkType(vals[i], o.type, fenv, false, `the result of ${fn.name}()`, o.span));
      }
      return r;
    } finally {
      this.depth--;
      this.path = savedPath;
      this.b.scope = savedScope;
    }
  }

  /** The u32 scalar input `rng_seed` that every dropout reads; created on first use, outside any composite. */
  seedInput(): number {
    if (this.rngSeed === undefined) {
      this.rngSeed = this.b.op('input', [], { name: 'rng_seed', dtype: 'u32', shape: [] }, { scope: undefined });
      const n = this.b.nodes[this.rngSeed];
      delete n.scope;
      n.name = 'rng_seed';
    }
    return this.rngSeed;
  }
  nextStream(): number {
    return this.stream++;
  }
}
