/**
 * Builtin functions and operators of the language, mapped onto the IR op set. Compile-time numbers are computed
 * directly; tensor arguments emit IR nodes; a number mixed with a tensor becomes a constant of the tensor's dtype.
 * softmax / log_softmax take any axis by transposing around the IR's last-axis primitive.
 */
import type { OpRule, ParamInit, UnaryKind } from '../ir/op.js';
import { unaryOps } from '../ir/ops/elementwise.js';
import { OPS } from '../ir/registry.js';
import type { HostTensor } from '../ir/tensor.js';
import { withFloat64 } from '../ir/tensor.js';
import { DTYPES, type DType, isFloat, isInt } from '../ir/types.js';
import type { IndexItem, Span } from './ast.js';
import type { Env, Lowerer } from './lower.js';
import { int, kindName, NONE, num, type Value } from './values.js';

type Pos = { v: Value; span: Span };
type Kw = { name: string; v: Value; span: Span };

class Cx {
  constructor(
    readonly lw: Lowerer,
    readonly env: Env,
    readonly span: Span,
    readonly name: string,
    readonly spans: Map<string, Span>,
  ) {}
  fail(msg: string, arg?: string): never {
    return this.lw.fail(this.env, (arg && this.spans.get(arg)) || this.span, msg);
  }
  op(kind: Parameters<Lowerer['op']>[2], inputs: number[], attrs: object): number {
    return this.lw.op(this.env, this.span, kind, inputs, attrs as never);
  }
  t(id: number): Value {
    return { k: 'tensor', id };
  }
  dtypeOf(id: number): DType {
    return this.lw.type(id).dtype;
  }
  shapeOf(id: number): readonly number[] {
    return this.lw.type(id).shape;
  }
  tensor(v: Value, arg: string): number {
    if (v.k !== 'tensor') this.fail(`${this.name}(): '${arg}' must be a tensor, got ${kindName(v)}`, arg);
    return v.id;
  }
  /** A tensor operand, or a number/bool turned into a scalar constant of `dtype`. */
  operand(v: Value, dtype: DType, arg: string): number {
    if (v.k === 'tensor') return v.id;
    if (v.k === 'num') {
      if (dtype === 'bool') this.fail(`${this.name}: cannot combine the number ${v.v} with a bool tensor`, arg);
      if (isInt(dtype) && !Number.isInteger(v.v)) this.fail(`${this.name}: cannot combine the float ${v.v} with an ${dtype} tensor (cast the tensor first)`, arg);
      if (dtype === 'u32' && v.v < 0) this.fail(`${this.name}: cannot combine the negative number ${v.v} with a u32 tensor`, arg);
      return this.op('constant', [], { dtype, shape: [], values: [v.v] });
    }
    if (v.k === 'bool') {
      if (dtype !== 'bool') this.fail(`${this.name}: cannot combine the bool ${v.v} with a ${dtype} tensor`, arg);
      return this.op('constant', [], { dtype, shape: [], values: [v.v ? 1 : 0] });
    }
    this.fail(`${this.name}: expected a tensor or a number, got ${kindName(v)}`, arg);
  }
  number(v: Value, arg: string): number {
    if (v.k !== 'num') this.fail(`${this.name}(): '${arg}' must be a number, got ${kindName(v)}`, arg);
    return v.v;
  }
  integer(v: Value, arg: string): number {
    if (v.k !== 'num' || !v.int) this.fail(`${this.name}(): '${arg}' must be an integer, got ${kindName(v)}`, arg);
    return v.v;
  }
  bool(v: Value, arg: string): boolean {
    if (v.k !== 'bool') this.fail(`${this.name}(): '${arg}' must be true or false, got ${kindName(v)}`, arg);
    return v.v;
  }
  str(v: Value, arg: string): string {
    if (v.k !== 'str') this.fail(`${this.name}(): '${arg}' must be a string, got ${kindName(v)}`, arg);
    return v.v;
  }
  dtype(v: Value, arg: string): DType {
    if (v.k !== 'dtype') this.fail(`${this.name}(): '${arg}' must be a dtype (${DTYPES.join(', ')}), got ${kindName(v)}`, arg);
    return v.d;
  }
  ints(v: Value, arg: string): number[] {
    if (v.k === 'tuple') return v.items.map((x) => this.integer(x, arg));
    return [this.integer(v, arg)];
  }
  axis(a: number, rank: number, arg = 'axis'): number {
    const x = a < 0 ? a + rank : a;
    if (x < 0 || x >= rank) this.fail(`${this.name}(): axis ${a} is out of range for a tensor of rank ${rank}`, arg);
    return x;
  }
}

type Impl = (a: Map<string, Value>, cx: Cx, items?: IndexItem[]) => Value;
interface Builtin {
  params: [string, Value?][];
  rest?: string;
  impl: Impl;
}

const F = (v: number): Value => num(v, false);
const B = (v: boolean): Value => ({ k: 'bool', v });
const S = (v: string): Value => ({ k: 'str', v });
const DT = (d: DType): Value => ({ k: 'dtype', d });

export const BUILTINS = new Map<string, Builtin>();
/** Builtins reachable only as `ops.name` (the stdlib defines friendlier functions of the same name). */
export const NS_ONLY = new Set(['layer_norm', 'rms_norm', 'cross_entropy', 'cross_entropy_loss']);
/** Operator implementations: not callable by name. */
const INTERNAL = new Set<string>();

function def(name: string, params: (string | [string, Value])[], impl: Impl, rest?: string): void {
  BUILTINS.set(name, { params: params.map((p) => (typeof p === 'string' ? [p] : p)), impl, rest });
}
function internal(name: string, params: string[], impl: Impl): void {
  def(name, params, impl);
  INTERNAL.add(name);
}

export function callBuiltin(lw: Lowerer, env: Env, span: Span, name: string, pos: Pos[], kw: Kw[], items?: IndexItem[]): Value {
  const b = BUILTINS.get(name)!;
  const label = name.startsWith('op') && INTERNAL.has(name) ? `'${name.slice(2)}'` : name;
  // With a *rest parameter, the parameters that have defaults are keyword-only (iota(T, T, axis=1)).
  const a = lw.bindArgs(env, label, b.params.map(([n, d]) => ({ name: n, optional: d !== undefined, kwOnly: !!b.rest && d !== undefined })), pos, kw, span, b.rest);
  for (const [n, d] of b.params) if (!a.has(n) && d) a.set(n, d);
  const spans = new Map<string, Span>();
  const positional = b.params.filter(([, d]) => !(b.rest && d !== undefined));
  pos.forEach((p, i) => spans.set(positional[i]?.[0] ?? b.rest ?? '', p.span));
  kw.forEach((k) => spans.set(k.name, k.span));
  return b.impl(a, new Cx(lw, env, span, label, spans), items);
}

export function isInternalBuiltin(name: string): boolean {
  return INTERNAL.has(name);
}

// ---- arithmetic and comparison ----

const CMP: Record<string, 'eq' | 'ne' | 'lt' | 'le' | 'gt' | 'ge'> = { '==': 'eq', '!=': 'ne', '<': 'lt', '<=': 'le', '>': 'gt', '>=': 'ge' };

function scalarBinary(op: string, a: Value, b: Value, cx: Cx): Value {
  if (op === '==' || op === '!=') {
    const eq = JSON.stringify(a) === JSON.stringify(b) || (a.k === 'num' && b.k === 'num' && a.v === b.v);
    return B(op === '==' ? eq : !eq);
  }
  if (a.k === 'tuple' && b.k === 'tuple' && op === '+') return { k: 'tuple', items: [...a.items, ...b.items] };
  if (a.k === 'str' && b.k === 'str' && op === '+') return S(a.v + b.v);
  if (a.k !== 'num' || b.k !== 'num') cx.fail(`${cx.name}: unsupported operands ${kindName(a)} and ${kindName(b)}`);
  const bothInt = a.int && b.int;
  const x = a.v;
  const y = b.v;
  if ((op === '/' || op === '//' || op === '%') && y === 0) cx.fail(`division by zero`);
  switch (op) {
    case '+':
      return num(x + y, bothInt);
    case '-':
      return num(x - y, bothInt);
    case '*':
      return num(x * y, bothInt);
    case '/':
      return F(x / y);
    case '//':
      return num(Math.floor(x / y), bothInt);
    case '%':
      return num(x - Math.floor(x / y) * y, bothInt);
    case '**':
      return num(x ** y, bothInt && y >= 0);
    case '<':
      return B(x < y);
    case '<=':
      return B(x <= y);
    case '>':
      return B(x > y);
    case '>=':
      return B(x >= y);
  }
  cx.fail(`${cx.name}: unsupported on numbers`);
}

function binary(op: string, a: Value, b: Value, cx: Cx): Value {
  if (a.k === 'none' || b.k === 'none') {
    if (op === '==' || op === '!=') return B((a.k === b.k) === (op === '=='));
    cx.fail(`'${op}': operand is none`);
  }
  if (a.k !== 'tensor' && b.k !== 'tensor') return scalarBinary(op, a, b, cx);
  const dtype = a.k === 'tensor' ? cx.dtypeOf(a.id) : cx.dtypeOf((b as { id: number }).id);
  const x = cx.operand(a, dtype, 'a');
  const y = cx.operand(b, dtype, 'b');
  const kind = { '+': 'add', '-': 'sub', '*': 'mul', '/': 'div', '**': 'pow' }[op] as 'add' | undefined;
  if (kind) return cx.t(cx.op(kind, [x, y], {}));
  if (CMP[op]) return cx.t(cx.op(CMP[op], [x, y], {}));
  if (op === '@') return cx.t(cx.op('matmul', [x, y], { transA: false, transB: false }));
  const q = cx.op('div', [x, y], {});
  const fl = isFloat(cx.dtypeOf(q)) ? cx.op('floor', [q], {}) : q;
  if (op === '//') return cx.t(fl);
  if (op === '%') return cx.t(cx.op('sub', [x, cx.op('mul', [fl, y], {})], {}));
  cx.fail(`unknown operator ${op}`);
}

for (const op of ['+', '-', '*', '/', '//', '%', '@', '**', '==', '!=', '<', '<=', '>', '>=']) {
  internal(`op${op}`, ['a', 'b'], (a, cx) => binary(op, a.get('a')!, a.get('b')!, cx));
}

internal('neg', ['x'], (a, cx) => {
  const x = a.get('x')!;
  if (x.k === 'num') return num(-x.v, x.int);
  const t = cx.tensor(x, 'x');
  // one rule on every device: the interpreter would wrap around and WGSL has no unary minus on u32
  const dtype = cx.dtypeOf(t);
  if (dtype === 'u32' || dtype === 'bool') cx.fail(`unary minus is not defined on ${dtype} tensors (it would wrap around): cast to i32 or f32 first, e.g. -x.to(i32)`);
  return cx.t(cx.op('neg', [t], {}));
});
internal('not', ['x'], (a, cx) => {
  const x = a.get('x')!;
  if (x.k === 'bool') return B(!x.v);
  return cx.t(cx.op('not', [cx.tensor(x, 'x')], {}));
});
for (const [name, kind] of [['logical_and', 'and'], ['logical_or', 'or']] as const) {
  internal(name, ['a', 'b'], (a, cx) => {
    const x = a.get('a')!;
    const y = a.get('b')!;
    if (x.k === 'bool' && y.k === 'bool') return B(kind === 'and' ? x.v && y.v : x.v || y.v);
    return cx.t(cx.op(kind, [cx.operand(x, 'bool', 'a'), cx.operand(y, 'bool', 'b')], {}));
  });
}

// ---- elementwise math ----

/**
 * The unary math builtins come from the op table: every unary op is a builtin of the same name (except `neg` and
 * `not`, which are the operators `-` and `!`), and on a number it is the op's own reference implementation,
 * evaluated in double precision — so a config expression such as `silu(2.0)` means what the op means on tensors.
 */
const OPERATOR_ONLY: readonly UnaryKind[] = ['neg', 'not'];
/** Unary ops whose result on an integer is an integer. */
const KEEPS_INT: readonly UnaryKind[] = ['abs', 'floor', 'relu', 'stop_gradient'];

function scalarUnary(kind: UnaryKind, x: number, attrs: object = {}): number {
  const rule = OPS[kind] as OpRule<UnaryKind>;
  const t: HostTensor = { dtype: 'f32', shape: [], data: Float64Array.of(x) as unknown as Float32Array };
  return withFloat64(() => rule.evaluate([t], attrs as never, { dtype: 'f32', shape: [] }, NO_LEAVES).data[0]);
}
const NO_LEAVES = {
  input: () => {
    throw new Error('no inputs in a scalar evaluation');
  },
  param: () => {
    throw new Error('no parameters in a scalar evaluation');
  },
};

for (const kind of (Object.keys(unaryOps) as UnaryKind[]).filter((k) => !OPERATOR_ONLY.includes(k) && k !== 'gelu')) {
  def(kind, ['x'], (a, cx) => {
    const x = a.get('x')!;
    if (x.k === 'num') {
      const r = scalarUnary(kind, x.v);
      return KEEPS_INT.includes(kind) ? num(r, x.int || kind === 'floor') : F(r);
    }
    return cx.t(cx.op(kind, [cx.tensor(x, 'x')], {}));
  });
}
def('gelu', ['x', ['approximate', S('erf')]], (a, cx) => {
  const m = cx.str(a.get('approximate')!, 'approximate');
  if (m !== 'erf' && m !== 'tanh') cx.fail(`gelu(): approximate must be "erf" or "tanh", got "${m}"`, 'approximate');
  const x = a.get('x')!;
  if (x.k === 'num') return F(scalarUnary('gelu', x.v, { approximate: m }));
  return cx.t(cx.op('gelu', [cx.tensor(a.get('x')!, 'x')], { approximate: m }));
});
def('pow', ['x', 'y'], (a, cx) => binary('**', a.get('x')!, a.get('y')!, cx));

for (const [name, kind, pick] of [['max', 'max', Math.max], ['min', 'min', Math.min]] as const) {
  // max(a, b) is elementwise; max(x, axis=..) reduces (min via -max(-x)).
  def(name, ['x', ['y', NONE], ['axis', NONE], ['keepdims', B(false)]], (a, cx) => {
    const x = a.get('x')!;
    const y = a.get('y')!;
    if (y.k !== 'none') {
      if (x.k === 'num' && y.k === 'num') return num(pick(x.v, y.v), x.int && y.int);
      const dtype = x.k === 'tensor' ? cx.dtypeOf(x.id) : cx.dtypeOf(cx.tensor(y, 'y'));
      return cx.t(cx.op(kind, [cx.operand(x, dtype, 'x'), cx.operand(y, dtype, 'y')], {}));
    }
    if (x.k === 'tuple') {
      const xs = x.items.map((i) => cx.number(i, 'x'));
      if (!xs.length) cx.fail(`${name}() of an empty tuple`);
      return num(pick(...xs), x.items.every((i) => i.k === 'num' && i.int));
    }
    const t = cx.tensor(x, 'x');
    const red = (id: number) => cx.op('max_reduce', [id], { axes: axesOf(a, cx, cx.shapeOf(t).length), keepdims: cx.bool(a.get('keepdims')!, 'keepdims') });
    return cx.t(name === 'max' ? red(t) : cx.op('neg', [red(cx.op('neg', [t], {}))], {}));
  });
}

function axesOf(a: Map<string, Value>, cx: Cx, rank: number): number[] {
  const ax = a.get('axis')!;
  if (ax.k === 'none') return Array.from({ length: rank }, (_, i) => i);
  return cx.ints(ax, 'axis').map((x) => cx.axis(x, rank));
}

for (const kind of ['sum', 'mean'] as const) {
  def(kind, ['x', ['axis', NONE], ['keepdims', B(false)]], (a, cx) => {
    const x = a.get('x')!;
    if (x.k === 'tuple') {
      const xs = x.items.map((i) => cx.number(i, 'x'));
      const s = xs.reduce((p, q) => p + q, 0);
      return kind === 'sum' ? num(s, x.items.every((i) => i.k === 'num' && i.int)) : F(s / Math.max(1, xs.length));
    }
    const t = cx.tensor(x, 'x');
    return cx.t(cx.op(kind, [t], { axes: axesOf(a, cx, cx.shapeOf(t).length), keepdims: cx.bool(a.get('keepdims')!, 'keepdims') }));
  });
}
def('argmax', ['x', ['axis', int(-1)], ['keepdims', B(false)]], (a, cx) => {
  const t = cx.tensor(a.get('x')!, 'x');
  return cx.t(cx.op('argmax', [t], { axis: cx.axis(cx.integer(a.get('axis')!, 'axis'), cx.shapeOf(t).length), keepdims: cx.bool(a.get('keepdims')!, 'keepdims') }));
});

def('where', ['cond', 'a', 'b'], (a, cx) => {
  const c = a.get('cond')!;
  const x = a.get('a')!;
  const y = a.get('b')!;
  if (c.k === 'bool') return c.v ? x : y;
  const ct = cx.tensor(c, 'cond');
  const dtype = x.k === 'tensor' ? cx.dtypeOf(x.id) : y.k === 'tensor' ? cx.dtypeOf(y.id) : x.k === 'bool' ? 'bool' : 'f32';
  return cx.t(cx.op('select', [ct, cx.operand(x, dtype, 'a'), cx.operand(y, dtype, 'b')], {}));
});
def('cast', ['x', 'dtype'], (a, cx) => {
  const to = cx.dtype(a.get('dtype')!, 'dtype');
  const x = a.get('x')!;
  if (x.k === 'num' || x.k === 'bool') return cx.t(cx.op('constant', [], { dtype: to, shape: [], values: [x.k === 'num' ? x.v : x.v ? 1 : 0] }));
  const t = cx.tensor(x, 'x');
  return cx.dtypeOf(t) === to ? x : cx.t(cx.op('cast', [t], { to }));
});

// ---- shapes and layout ----

function shapeArg(v: Value, cx: Cx, arg: string): number[] {
  if (v.k === 'tuple' && v.items.length === 1 && v.items[0].k === 'tuple') return cx.ints(v.items[0], arg);
  return cx.ints(v, arg);
}

def('reshape', ['x'], (a, cx) => {
  const t = cx.tensor(a.get('x')!, 'x');
  const shape = shapeArg(a.get('shape')!, cx, 'shape');
  const n = cx.shapeOf(t).reduce((p, q) => p * q, 1);
  const holes = shape.filter((d) => d === -1).length;
  if (holes > 1 || shape.some((d) => d < -1)) cx.fail(`reshape(): invalid target shape [${shape.join(', ')}]`);
  if (holes) {
    const known = shape.filter((d) => d !== -1).reduce((p, q) => p * q, 1);
    if (known === 0 || n % known !== 0) cx.fail(`reshape(): cannot reshape [${cx.shapeOf(t).join(', ')}] to [${shape.join(', ')}]`);
    shape[shape.indexOf(-1)] = n / known;
  }
  return cx.t(cx.op('reshape', [t], { shape }));
}, 'shape');

function transposeIds(cx: Cx, t: number, i: number, j: number): number {
  if (i === j) return t;
  const perm = cx.shapeOf(t).map((_, k) => k);
  perm[i] = j;
  perm[j] = i;
  return cx.op('transpose', [t], { perm });
}
def('transpose', ['x', ['a', int(-2)], ['b', int(-1)]], (a, cx) => {
  const t = cx.tensor(a.get('x')!, 'x');
  const r = cx.shapeOf(t).length;
  if (r < 2) cx.fail(`transpose(): needs a tensor of rank >= 2, got rank ${r}`, 'x');
  return cx.t(transposeIds(cx, t, cx.axis(cx.integer(a.get('a')!, 'a'), r, 'a'), cx.axis(cx.integer(a.get('b')!, 'b'), r, 'b')));
});
def('permute', ['x'], (a, cx) => {
  const t = cx.tensor(a.get('x')!, 'x');
  const r = cx.shapeOf(t).length;
  const perm = shapeArg(a.get('perm')!, cx, 'perm').map((p) => cx.axis(p, r, 'perm'));
  return cx.t(cx.op('transpose', [t], { perm }));
}, 'perm');

function tensorList(v: Value, cx: Cx, arg: string): number[] {
  const items = v.k === 'tuple' && v.items.length === 1 && v.items[0].k === 'tuple' ? v.items[0].items : v.k === 'tuple' ? v.items : [v];
  if (!items.length) cx.fail(`${cx.name}(): needs at least one tensor`);
  return items.map((x) => cx.tensor(x, arg));
}
def('concat', [['axis', int(0)]], (a, cx) => {
  const ts = tensorList(a.get('xs')!, cx, 'xs');
  const axis = cx.axis(cx.integer(a.get('axis')!, 'axis'), cx.shapeOf(ts[0]).length);
  return ts.length === 1 ? cx.t(ts[0]) : cx.t(cx.op('concat', ts, { axis }));
}, 'xs');
def('split', ['x', 'parts', ['axis', int(-1)]], (a, cx) => {
  const t = cx.tensor(a.get('x')!, 'x');
  const shape = cx.shapeOf(t);
  const axis = cx.axis(cx.integer(a.get('axis')!, 'axis'), shape.length);
  const p = a.get('parts')!;
  let sizes: number[];
  if (p.k === 'tuple') sizes = cx.ints(p, 'parts');
  else {
    const n = cx.integer(p, 'parts');
    if (n <= 0 || shape[axis] % n !== 0) cx.fail(`split(): axis ${axis} of size ${shape[axis]} does not split into ${n} equal parts`, 'parts');
    sizes = new Array<number>(n).fill(shape[axis] / n);
  }
  if (sizes.reduce((x, y) => x + y, 0) !== shape[axis] || sizes.some((s) => s < 0)) {
    cx.fail(`split(): sizes (${sizes.join(', ')}) do not add up to ${shape[axis]}, the size of axis ${axis}`, 'parts');
  }
  let st = 0;
  return {
    k: 'tuple',
    items: sizes.map((s) => {
      const starts = shape.map((_, k) => (k === axis ? st : 0));
      const ends = shape.map((d, k) => (k === axis ? st + s : d));
      st += s;
      return cx.t(cx.op('slice', [t], { starts, ends }));
    }),
  };
});

// ---- indexing ----

/**
 * gather(x, idx, axis=0): x's slices along `axis` picked by idx; the result has idx's shape in place of that axis.
 * Negative indices count from the end, as in Python (-1 is the last); an index still outside [0, size) after that
 * reads as zeros (and `kiln run` warns about it).
 */
def('gather', ['table', 'idx', ['axis', int(0)]], (a, cx) => {
  const t = cx.tensor(a.get('table')!, 'table');
  const idx = cx.tensor(a.get('idx')!, 'idx');
  if (!isInt(cx.dtypeOf(idx))) cx.fail(`gather(): idx must be an integer tensor, got ${cx.dtypeOf(idx)}`, 'idx');
  const shape = cx.shapeOf(t);
  if (!shape.length) cx.fail('gather(): needs a tensor of rank >= 1', 'table');
  const axis = cx.axis(cx.integer(a.get('axis')!, 'axis'), shape.length);
  let i = idx;
  if (cx.dtypeOf(idx) === 'i32') {
    const size = cx.op('constant', [], { dtype: 'i32', shape: [], values: [shape[axis]] });
    i = cx.op('select', [cx.op('lt', [idx, cx.op('constant', [], { dtype: 'i32', shape: [], values: [0] })], {}), cx.op('add', [idx, size], {}), idx], {});
  }
  return cx.t(gatherAxis(cx, t, i, axis));
});

/** gather along any axis: the axis moved to the front, the IR's row gather, the index axes moved back in its place. */
function gatherAxis(cx: Cx, t: number, idx: number, axis: number): number {
  const r = cx.shapeOf(t).length;
  const k = cx.shapeOf(idx).length;
  const front = axis === 0 ? t : cx.op('transpose', [t], { perm: [axis, ...Array.from({ length: r }, (_, j) => j).filter((j) => j !== axis)] });
  const g = cx.op('gather', [front, idx], {});
  if (axis === 0) return g;
  // g: [idx..., x's axes before `axis`..., after...] -> [before..., idx..., after...]
  const perm = [...Array.from({ length: axis }, (_, j) => k + j), ...Array.from({ length: k }, (_, j) => j), ...Array.from({ length: r - 1 - axis }, (_, j) => k + axis + j)];
  return cx.op('transpose', [g], { perm });
}
def('scatter_add', ['idx', 'updates', 'rows'], (a, cx) =>
  cx.t(cx.op('scatter_add', [cx.tensor(a.get('idx')!, 'idx'), cx.tensor(a.get('updates')!, 'updates')], { rows: cx.integer(a.get('rows')!, 'rows') })),
);
def('one_hot', ['idx', 'depth', ['dtype', DT('f32')]], (a, cx) =>
  cx.t(cx.op('one_hot', [cx.tensor(a.get('idx')!, 'idx')], { depth: cx.integer(a.get('depth')!, 'depth'), dtype: cx.dtype(a.get('dtype')!, 'dtype') })),
);
/**
 * update_slice(x, u, pos, axis=0): x with u written along `axis` from row pos on, where pos is an i32 tensor of one
 * element known at run time (a key/value cache's write position); rows past the end are dropped.
 */
def('update_slice', ['x', 'u', 'pos', ['axis', int(0)]], (a, cx) => {
  const x = cx.tensor(a.get('x')!, 'x');
  const axis = cx.axis(cx.integer(a.get('axis')!, 'axis'), cx.shapeOf(x).length, 'axis');
  return cx.t(cx.op('update_slice', [x, cx.tensor(a.get('u')!, 'u'), cx.tensor(a.get('pos')!, 'pos')], { axis }));
});
def('iota', [['axis', int(0)], ['dtype', DT('i32')]], (a, cx) => {
  const shape = shapeArg(a.get('shape')!, cx, 'shape');
  if (!shape.length) cx.fail(`iota(): needs a shape, e.g. iota(T, T, axis=1)`);
  if (shape.some((d) => d < 0)) cx.fail(`iota(): invalid shape [${shape.join(', ')}]`);
  return cx.t(cx.op('iota', [], { shape, axis: cx.axis(cx.integer(a.get('axis')!, 'axis'), shape.length), dtype: cx.dtype(a.get('dtype')!, 'dtype') }));
}, 'shape');
/** arange(stop) / arange(start, stop, step=1): start, start + step, ... up to (not including) stop, as numpy. */
def('arange', ['start', ['stop', NONE], ['step', int(1)], ['dtype', NONE]], (a, cx) => {
  const stopV = a.get('stop')!;
  const [start, stop] = stopV.k === 'none' ? [0, cx.number(a.get('start')!, 'start')] : [cx.number(a.get('start')!, 'start'), cx.number(stopV, 'stop')];
  const step = cx.number(a.get('step')!, 'step');
  if (step === 0) cx.fail('arange(): step must not be 0', 'step');
  const allInt = [start, stop, step].every(Number.isInteger);
  const dv = a.get('dtype')!;
  const dtype = dv.k === 'none' ? (allInt ? 'i32' : 'f32') : cx.dtype(dv, 'dtype');
  const n = Math.max(0, Math.ceil((stop - start) / step));
  if (!isFloat(dtype) && !allInt) cx.fail(`arange(): ${dtype} needs integer start, stop and step`, 'dtype');
  let x = cx.op('iota', [], { shape: [n], axis: 0, dtype });
  if (step !== 1) x = cx.op('mul', [x, cx.op('constant', [], { dtype, shape: [], values: [step] })], {});
  if (start !== 0) x = cx.op('add', [x, cx.op('constant', [], { dtype, shape: [], values: [start] })], {});
  return cx.t(x);
});

/** triu(x, k=0) / tril(x, k=0): x with the elements below (above) the k-th diagonal of the last two axes set to 0. */
for (const [name, cmp] of [['triu', 'ge'], ['tril', 'le']] as const) {
  def(name, ['x', ['k', int(0)]], (a, cx) => {
    const t = cx.tensor(a.get('x')!, 'x');
    const s = cx.shapeOf(t);
    if (s.length < 2) cx.fail(`${name}(): needs a tensor of rank >= 2, got rank ${s.length}`, 'x');
    const [R, C] = s.slice(-2);
    const row = cx.op('iota', [], { shape: [R, C], axis: 0, dtype: 'i32' });
    const col = cx.op('iota', [], { shape: [R, C], axis: 1, dtype: 'i32' });
    const k = cx.op('constant', [], { dtype: 'i32', shape: [], values: [cx.integer(a.get('k')!, 'k')] });
    const keep = cx.op(cmp, [cx.op('sub', [col, row], {}), k], {});
    const zero = cx.op('constant', [], { dtype: cx.dtypeOf(t), shape: [], values: [0] });
    return cx.t(cx.op('select', [keep, t, zero], {}));
  });
}

/** broadcast_to(x, *shape): numpy broadcasting to `shape`; expand(x, *shape) is the same with -1 keeping a size. */
for (const name of ['broadcast_to', 'expand'] as const) {
  def(name, ['x'], (a, cx) => {
    const t = cx.tensor(a.get('x')!, 'x');
    const s = cx.shapeOf(t);
    const shape = shapeArg(a.get('shape')!, cx, 'shape').map((d, i) => {
      if (d !== -1 || name === 'broadcast_to') return d;
      const j = i - (shape0Len(a, cx) - s.length);
      if (j < 0) cx.fail(`expand(): -1 at axis ${i} has no size to keep (x has rank ${s.length})`, 'shape');
      return s[j];
    });
    if (shape.some((d) => d < 0)) cx.fail(`${name}(): invalid shape [${shape.join(', ')}]`, 'shape');
    return cx.t(cx.op('broadcast', [t], { shape }));
  }, 'shape');
}
function shape0Len(a: Map<string, Value>, cx: Cx): number {
  return shapeArg(a.get('shape')!, cx, 'shape').length;
}

internal('index', ['x'], (a, cx, items) => {
  const x = a.get('x')!;
  items = items ?? [];
  const ev = (e: Parameters<Lowerer['eval']>[0]) => cx.lw.eval(e, cx.env);
  if (x.k === 'tuple') {
    if (items.length !== 1 || items[0].kind === 'ellipsis') cx.fail(`a tuple takes one index`);
    const it = items[0];
    const n = x.items.length;
    if (it.kind === 'expr') {
      const i = cx.integer(ev(it.expr), 'index');
      const k = i < 0 ? i + n : i;
      if (k < 0 || k >= n) cx.fail(`index ${i} is out of range for a tuple of ${n}`);
      return x.items[k];
    }
    const r = sliceBounds(it as Extract<IndexItem, { kind: 'slice' }>, n, cx, ev);
    return { k: 'tuple', items: r.pick ? r.pick.map((i) => x.items[i]) : x.items.slice(r.b[0], r.b[1]) };
  }
  const t = cx.tensor(x, 'x');
  const shape = cx.shapeOf(t);
  // A single integer tensor index is an embedding lookup: table[idx].
  if (items.length === 1 && items[0].kind === 'expr') {
    const v = ev(items[0].expr);
    if (v.k === 'tensor') return cx.t(cx.op('gather', [t, v.id], {}));
    return indexTensor(cx, t, shape, [{ kind: 'int', v: cx.integer(v, 'index') }]);
  }
  const resolved: ({ kind: 'int'; v: number } | { kind: 'slice'; it: Extract<IndexItem, { kind: 'slice' }> } | { kind: 'ellipsis' })[] = items.map((it) => {
    if (it.kind === 'ellipsis') return { kind: 'ellipsis' };
    if (it.kind === 'slice') return { kind: 'slice', it };
    const v = ev(it.expr);
    if (v.k === 'tensor') cx.fail(`tensor indices are only supported alone (table[idx]); use gather() for other axes`);
    return { kind: 'int', v: cx.integer(v, 'index') };
  });
  const ells = resolved.filter((r) => r.kind === 'ellipsis').length;
  if (ells > 1) cx.fail(`an index can hold at most one '...'`);
  const explicit = resolved.length - ells;
  if (explicit > shape.length) cx.fail(`too many indices (${explicit}) for a tensor of rank ${shape.length}`);
  const full: typeof resolved = [];
  for (const r of resolved) {
    if (r.kind === 'ellipsis') for (let i = 0; i < shape.length - explicit; i++) full.push({ kind: 'slice', it: { kind: 'slice', span: cx.span } });
    else full.push(r);
  }
  while (full.length < shape.length) full.push({ kind: 'slice', it: { kind: 'slice', span: cx.span } });
  return indexTensor(cx, t, shape, full.map((r, axis): AxisIndex => (r.kind === 'slice' ? { kind: 'range', ...sliceBounds(r.it as Extract<IndexItem, { kind: 'slice' }>, shape[axis], cx, ev) } : (r as { kind: 'int'; v: number }))));
});

/**
 * A slice's range on an axis of size n, as Python's: a contiguous [start, end), or with a step other than 1 the
 * positions it picks (`x[::2]`, `x[::-1]`: negative steps walk backwards from the end).
 */
function sliceBounds(it: Extract<IndexItem, { kind: 'slice' }>, n: number, cx: Cx, ev: (e: Parameters<Lowerer['eval']>[0]) => Value): { b: [number, number]; pick?: number[] } {
  const step = it.step ? cx.integer(ev(it.step), 'step') : 1;
  if (step === 0) cx.fail('slice step cannot be zero');
  if (step < 0) {
    const clampNeg = (v: number) => Math.min(n - 1, Math.max(-1, v < 0 ? v + n : v));
    const s = it.start ? clampNeg(cx.integer(ev(it.start), 'start')) : n - 1;
    const e = it.end ? clampNeg(cx.integer(ev(it.end), 'end')) : -1;
    const pick: number[] = [];
    for (let i = s; i > e; i += step) pick.push(i);
    return { b: [0, n], pick };
  }
  const clamp = (v: number) => Math.min(n, Math.max(0, v < 0 ? v + n : v));
  const s = it.start ? clamp(cx.integer(ev(it.start), 'start')) : 0;
  const e = Math.max(s, it.end ? clamp(cx.integer(ev(it.end), 'end')) : n);
  if (step === 1) return { b: [s, e] };
  const pick: number[] = [];
  for (let i = s; i < e; i += step) pick.push(i);
  return { b: [0, n], pick };
}

type AxisIndex = { kind: 'int'; v: number } | { kind: 'range'; b: [number, number]; pick?: number[] };

function indexTensor(cx: Cx, t: number, shape: readonly number[], idx: AxisIndex[]): Value {
  const starts: number[] = [];
  const ends: number[] = [];
  const keep: number[] = [];
  shape.forEach((d, axis) => {
    const r = idx[axis] ?? { kind: 'range', b: [0, d] };
    if (r.kind === 'int') {
      const k = r.v < 0 ? r.v + d : r.v;
      if (k < 0 || k >= d) cx.fail(`index ${r.v} is out of range for axis ${axis} of size ${d}`);
      starts.push(k);
      ends.push(k + 1);
    } else {
      starts.push(r.b[0]);
      ends.push(r.b[1]);
      keep.push(r.b[1] - r.b[0]);
    }
  });
  let out = t;
  if (starts.some((s, i) => s !== 0 || ends[i] !== shape[i])) out = cx.op('slice', [t], { starts, ends });
  // strided axes: the picked positions, gathered along the axis (whose gradient scatters back)
  idx.forEach((r, axis) => {
    if (r.kind !== 'range' || !r.pick) return;
    const positions = cx.op('constant', [], { dtype: 'i32', shape: [r.pick.length], values: r.pick.length ? r.pick : [0] });
    out = gatherAxis(cx, out, positions, axis);
    keep[keep.length - idx.slice(axis).filter((q) => q.kind === 'range').length] = r.pick.length;
  });
  if (keep.length !== shape.length) out = cx.op('reshape', [out], { shape: keep });
  return cx.t(out);
}

// ---- scans ----

/**
 * cumsum(x, axis=-1, exclusive=false, reverse=false): running sums along an axis, lowered to a matmul with a
 * triangular 0/1 matrix built from iotas (so its gradient, a reversed cumsum, is the matmul's own). O(n^2) work per
 * row of length n: meant for sequence-length axes. Integer tensors are summed in f32 and rounded back: exact while
 * every partial sum stays below 2^24 in magnitude.
 */
def('cumsum', ['x', ['axis', int(-1)], ['exclusive', B(false)], ['reverse', B(false)]], (a, cx) => {
  const x0 = cx.tensor(a.get('x')!, 'x');
  const shape = cx.shapeOf(x0);
  if (!shape.length) cx.fail('cumsum(): needs a tensor of rank >= 1', 'x');
  const dtype = cx.dtypeOf(x0);
  if (dtype === 'bool') cx.fail('cumsum(): a bool tensor has no sum (cast it to i32 or f32)', 'x');
  const axis = cx.axis(cx.integer(a.get('axis')!, 'axis'), shape.length);
  const n = shape[axis];
  const x = moveLast(cx, isFloat(dtype) ? x0 : cx.op('cast', [x0], { to: 'f32' }), axis);
  // U[j, i] = 1 where input position j counts towards output position i
  const j = cx.op('iota', [], { shape: [n, n], axis: 0, dtype: 'i32' });
  const i = cx.op('iota', [], { shape: [n, n], axis: 1, dtype: 'i32' });
  const rev = cx.bool(a.get('reverse')!, 'reverse');
  const exc = cx.bool(a.get('exclusive')!, 'exclusive');
  const cmp = rev ? (exc ? 'gt' : 'ge') : exc ? 'lt' : 'le';
  const U = cx.op('cast', [cx.op(cmp, [j, i], {})], { to: cx.dtypeOf(x) });
  const r = shape.length;
  // matmul wants a row axis: a vector is one row
  let y = cx.op('matmul', [r === 1 ? cx.op('reshape', [x], { shape: [1, n] }) : x, U], { transA: false, transB: false });
  if (r === 1) y = cx.op('reshape', [y], { shape: [n] });
  if (axis !== r - 1) y = cx.op('transpose', [y], { perm: Array.from({ length: r }, (_, k) => (k < axis ? k : k === axis ? r - 1 : k - 1)) });
  if (!isFloat(dtype)) y = cx.op('cast', [cx.op('floor', [cx.op('add', [y, scalarOf(cx, 0.5)], {})], {})], { to: dtype });
  return cx.t(y);
});

// ---- einsum ----

/**
 * einsum("bhqd,bhkd->bhqk", a, b): one or two operands, lowered to transpose / reshape / matmul / sum. Labels in
 * both operands and the output are batch axes, in both but not the output are contracted, in one operand and the
 * output are kept, in one operand only are summed first. Without "->" the output is the labels that appear once,
 * in alphabetical order (numpy's implicit mode). Repeated labels within one operand (diagonals) and "..." are not
 * supported.
 */
def('einsum', ['spec'], (a, cx) => {
  const spec = cx.str(a.get('spec')!, 'spec').replace(/\s+/g, '');
  const ops = tensorList(a.get('operands')!, cx, 'operands');
  const m = /^([a-zA-Z]+)(?:,([a-zA-Z]+))?(?:->([a-zA-Z]*))?$/.exec(spec);
  if (!m) return cx.fail(`einsum(): cannot read "${spec}" (expected e.g. "ij,jk->ik"; "..." is not supported)`, 'spec');
  const ins = [m[1], m[2]].filter((x): x is string => x !== undefined);
  if (ins.length !== ops.length) cx.fail(`einsum(): "${spec}" names ${ins.length} operand(s), got ${ops.length}`);
  const count = new Map<string, number>();
  for (const lab of ins.join('')) count.set(lab, (count.get(lab) ?? 0) + 1);
  const out = m[3] ?? [...count].filter(([, c]) => c === 1).map(([l]) => l).sort().join('');
  const size = new Map<string, number>();
  ins.forEach((lab, k) => {
    const shape = cx.shapeOf(ops[k]);
    if (lab.length !== shape.length) cx.fail(`einsum(): operand ${k} has rank ${shape.length} but "${lab}" names ${lab.length} axes`);
    if (new Set(lab).size !== lab.length) cx.fail(`einsum(): repeated label in "${lab}" (diagonals) is not supported`);
    [...lab].forEach((l, i) => {
      const prev = size.get(l);
      if (prev !== undefined && prev !== shape[i]) cx.fail(`einsum(): label '${l}' is ${prev} in one place and ${shape[i]} in another`);
      size.set(l, shape[i]);
    });
  });
  for (const l of out) if (!size.has(l)) cx.fail(`einsum(): output label '${l}' is in no operand`);
  const permute = (t: number, from: string, to: string) =>
    from === to ? t : cx.op('transpose', [t], { perm: [...to].map((l) => from.indexOf(l)) });
  const reshape = (t: number, shape: number[]) => (cx.shapeOf(t).join() === shape.join() ? t : cx.op('reshape', [t], { shape }));
  // labels an operand alone has and the output drops: summed away first
  const own = (t: number, lab: string, other: string) => {
    const drop = [...lab].filter((l) => !out.includes(l) && !other.includes(l));
    if (!drop.length) return { t, lab };
    return { t: cx.op('sum', [t], { axes: drop.map((l) => lab.indexOf(l)), keepdims: false }), lab: [...lab].filter((l) => !drop.includes(l)).join('') };
  };
  const prod = (ls: string) => [...ls].reduce((p, l) => p * size.get(l)!, 1);
  if (ops.length === 1) {
    const x = own(ops[0], ins[0], '');
    return cx.t(permute(x.t, x.lab, out));
  }
  const A = own(ops[0], ins[0], ins[1]);
  const B2 = own(ops[1], ins[1], ins[0]);
  const batch = [...A.lab].filter((l) => B2.lab.includes(l) && out.includes(l)).join('');
  const contr = [...A.lab].filter((l) => B2.lab.includes(l) && !out.includes(l)).join('');
  const left = [...A.lab].filter((l) => !B2.lab.includes(l)).join('');
  const right = [...B2.lab].filter((l) => !A.lab.includes(l)).join('');
  const lead = batch.length ? [prod(batch)] : [];
  const a2 = reshape(permute(A.t, A.lab, batch + left + contr), [...lead, prod(left), prod(contr)]);
  const b2 = reshape(permute(B2.t, B2.lab, batch + contr + right), [...lead, prod(contr), prod(right)]);
  const mm = cx.op('matmul', [a2, b2], { transA: false, transB: false });
  const res = reshape(mm, [...batch, ...left, ...right].map((l) => size.get(l)!));
  return cx.t(permute(res, batch + left + right, out));
}, 'operands');

// ---- neural-net primitives ----

for (const kind of ['softmax', 'log_softmax'] as const) {
  def(kind, ['x', ['axis', int(-1)]], (a, cx) => {
    const t = cx.tensor(a.get('x')!, 'x');
    const r = cx.shapeOf(t).length;
    if (r === 0) cx.fail(`${kind}(): needs a tensor of rank >= 1`, 'x');
    const ax = cx.axis(cx.integer(a.get('axis')!, 'axis'), r);
    const moved = transposeIds(cx, t, ax, r - 1);
    return cx.t(transposeIds(cx, cx.op(kind, [moved], {}), ax, r - 1));
  });
}
/**
 * ops.layer_norm / ops.rms_norm over the trailing axes `axes` (an int or a tuple of trailing axes, default -1): the
 * trailing axes are folded into one for the IR's last-axis primitive; the gain (and bias) have the trailing axes'
 * shape. With return_stats=true, layer_norm returns (y, mean, rstd), the statistics kept along the normalised axes.
 */
function trailingAxes(v: Value, rank: number, cx: Cx): number {
  const axes = cx.ints(v, 'axes').map((ax) => cx.axis(ax, rank, 'axes')).sort((x, y) => x - y);
  if (axes.some((ax, i) => ax !== rank - axes.length + i)) cx.fail(`${cx.name}(): axes must be trailing axes (such as -1 or (-2, -1)), got (${cx.ints(v, 'axes').join(', ')})`, 'axes');
  return axes.length;
}
function normOverTrailing(cx: Cx, kind: 'layer_norm' | 'rms_norm', x: number, params: number[], k: number, eps: number): number {
  const shape = cx.shapeOf(x);
  const lead = shape.slice(0, shape.length - k);
  const width = shape.slice(shape.length - k).reduce((p, q) => p * q, 1);
  const flat = (t: number, to: number[]) => (cx.shapeOf(t).join() === to.join() ? t : cx.op('reshape', [t], { shape: to }));
  const ps = params.map((p) => {
    if (cx.shapeOf(p).reduce((q, r) => q * r, 1) !== width) cx.fail(`${kind}(): gain/bias must hold ${width} values (the normalised axes [${shape.slice(shape.length - k).join(', ')}]), got [${cx.shapeOf(p).join(', ')}]`);
    return flat(p, [width]);
  });
  const y = cx.op(kind, [flat(x, [...lead, width]), ...ps], { eps });
  return flat(y, [...shape]);
}
def('layer_norm', ['x', 'gain', 'bias', ['eps', F(1e-5)], ['axes', int(-1)], ['return_stats', B(false)]], (a, cx) => {
  const x = cx.tensor(a.get('x')!, 'x');
  const r = cx.shapeOf(x).length;
  const k = trailingAxes(a.get('axes')!, r, cx);
  const eps = cx.number(a.get('eps')!, 'eps');
  const y = normOverTrailing(cx, 'layer_norm', x, [cx.tensor(a.get('gain')!, 'gain'), cx.tensor(a.get('bias')!, 'bias')], k, eps);
  if (!cx.bool(a.get('return_stats')!, 'return_stats')) return cx.t(y);
  const axes = Array.from({ length: k }, (_, i) => r - k + i);
  const mean = cx.op('mean', [x], { axes, keepdims: true });
  const d = cx.op('sub', [x, mean], {});
  const variance = cx.op('mean', [cx.op('mul', [d, d], {})], { axes, keepdims: true });
  const rstd = cx.op('rsqrt', [cx.op('add', [variance, cx.op('constant', [], { dtype: cx.dtypeOf(x), shape: [], values: [eps] })], {})], {});
  return { k: 'tuple', items: [cx.t(y), cx.t(mean), cx.t(rstd)] };
});
def('rms_norm', ['x', 'gain', ['eps', F(1e-6)], ['axes', int(-1)]], (a, cx) => {
  const x = cx.tensor(a.get('x')!, 'x');
  const k = trailingAxes(a.get('axes')!, cx.shapeOf(x).length, cx);
  return cx.t(normOverTrailing(cx, 'rms_norm', x, [cx.tensor(a.get('gain')!, 'gain')], k, cx.number(a.get('eps')!, 'eps')));
});
def('cross_entropy', ['logits', 'labels', ['ignore_index', int(-100)]], (a, cx) =>
  cx.t(cx.op('cross_entropy', [cx.tensor(a.get('logits')!, 'logits'), cx.tensor(a.get('labels')!, 'labels')], { ignore_index: cx.integer(a.get('ignore_index')!, 'ignore_index') })),
);

/** x with axis `axis` moved to the end (the others keep their order). */
function moveLast(cx: Cx, t: number, axis: number): number {
  const r = cx.shapeOf(t).length;
  if (axis === r - 1) return t;
  return cx.op('transpose', [t], { perm: [...Array.from({ length: r }, (_, i) => i).filter((i) => i !== axis), axis] });
}
const scalarOf = (cx: Cx, v: number, dtype: DType = 'f32') => cx.op('constant', [], { dtype, shape: [], values: [v] });
const sumAll = (cx: Cx, t: number) => (cx.shapeOf(t).length ? cx.op('sum', [t], { axes: cx.shapeOf(t).map((_, i) => i), keepdims: false }) : t);

/** Mask of counted positions (label != ignore_index) as f32, and labels safe to look up (ignored ones read row 0). */
function counted(cx: Cx, labels: number, ignore: number): { valid: number; safe: number } {
  const ok = cx.op('ne', [labels, scalarOf(cx, ignore, cx.dtypeOf(labels))], {});
  return { valid: cx.op('cast', [ok], { to: 'f32' }), safe: cx.op('select', [ok, labels, scalarOf(cx, 0, cx.dtypeOf(labels))], {}) };
}

/**
 * The mean losses, as PyTorch defines them. loss_i = w[y_i] * (-log p_i[y_i]) over positions whose label is not
 * ignore_index, divided by the sum of w[y_i] (the count when there are no weights; 0 when nothing counts). With
 * label smoothing e the target is (1 - e) * onehot + e / C, which adds e * (-Σ_c w_c log p_ic) / C per position.
 * The class axis is `axis` (-1 by default).
 */
function meanNll(cx: Cx, logp: number, labels: number, o: { ignore: number; weight?: number; smoothing: number; axis: number; picked?: number }): number {
  const C = cx.shapeOf(logp).at(-1)!;
  const { valid, safe } = counted(cx, labels, o.ignore);
  const picked = o.picked ?? cx.op('sum', [cx.op('mul', [logp, cx.op('one_hot', [safe], { depth: C, dtype: 'f32' })], {})], { axes: [cx.shapeOf(logp).length - 1], keepdims: false });
  const wy = o.weight === undefined ? valid : cx.op('mul', [cx.op('gather', [o.weight, safe], {}), valid], {});
  let num = sumAll(cx, cx.op('mul', [cx.op('neg', [picked], {}), wy], {}));
  if (o.smoothing) {
    const wl = o.weight === undefined ? logp : cx.op('mul', [logp, o.weight], {});
    const smooth = cx.op('mul', [cx.op('sum', [wl], { axes: [cx.shapeOf(logp).length - 1], keepdims: false }), valid], {});
    num = cx.op('sub', [cx.op('mul', [num, scalarOf(cx, 1 - o.smoothing)], {}), cx.op('mul', [sumAll(cx, smooth), scalarOf(cx, o.smoothing / C)], {})], {});
  }
  return cx.op('div', [num, cx.op('max', [sumAll(cx, wy), scalarOf(cx, 1e-12)], {})], {});
}

function lossArgs(a: Map<string, Value>, cx: Cx, input: 'logits' | 'logp') {
  const x0 = cx.tensor(a.get(input)!, input);
  const labels = cx.tensor(a.get('labels')!, 'labels');
  if (!isInt(cx.dtypeOf(labels))) cx.fail(`${cx.name}(): labels must be integers, got ${cx.dtypeOf(labels)}`, 'labels');
  const axis = cx.axis(cx.integer(a.get('axis')!, 'axis'), cx.shapeOf(x0).length);
  const x = moveLast(cx, x0, axis);
  const wv = a.get('weight')!;
  const weight = wv.k === 'none' ? undefined : cx.tensor(wv, 'weight');
  const C = cx.shapeOf(x).at(-1)!;
  if (weight !== undefined && cx.shapeOf(weight).join() !== String(C)) cx.fail(`${cx.name}(): weight must be f32[${C}] (one per class), got [${cx.shapeOf(weight).join(', ')}]`, 'weight');
  return { x, labels, weight, ignore: cx.integer(a.get('ignore_index')!, 'ignore_index'), axis };
}

/** ops.cross_entropy_loss: the stdlib's cross_entropy (mean over counted positions) with weights, smoothing, any axis. */
def('cross_entropy_loss', ['logits', 'labels', ['ignore_index', int(-100)], ['weight', NONE], ['label_smoothing', F(0)], ['axis', int(-1)]], (a, cx) => {
  const o = lossArgs(a, cx, 'logits');
  const smoothing = cx.number(a.get('label_smoothing')!, 'label_smoothing');
  if (!(smoothing >= 0 && smoothing <= 1)) cx.fail(`cross_entropy(): label_smoothing must be in [0, 1], got ${smoothing}`, 'label_smoothing');
  if (o.weight === undefined && !smoothing) {
    // the plain case: the fused primitive (one row-wise kernel forward, softmax - onehot backward)
    const per = cx.op('cross_entropy', [o.x, o.labels], { ignore_index: o.ignore });
    const { valid } = counted(cx, o.labels, o.ignore);
    return cx.t(cx.op('div', [sumAll(cx, per), cx.op('max', [sumAll(cx, valid), scalarOf(cx, 1)], {})], {}));
  }
  const logp = cx.op('log_softmax', [o.x], {});
  return cx.t(meanNll(cx, logp, o.labels, { ignore: o.ignore, weight: o.weight, smoothing, axis: o.axis }));
});

/** nll_loss(logp, labels, weight=none, ignore_index=-100, axis=-1): mean of -logp[label] over counted positions. */
def('nll_loss', ['logp', 'labels', ['weight', NONE], ['ignore_index', int(-100)], ['axis', int(-1)]], (a, cx) => {
  const o = lossArgs(a, cx, 'logp');
  return cx.t(meanNll(cx, o.x, o.labels, { ignore: o.ignore, weight: o.weight, smoothing: 0, axis: o.axis }));
});

def('matmul', ['a', 'b', ['transpose_a', B(false)], ['transpose_b', B(false)]], (a, cx) =>
  cx.t(
    cx.op('matmul', [cx.tensor(a.get('a')!, 'a'), cx.tensor(a.get('b')!, 'b')], {
      transA: cx.bool(a.get('transpose_a')!, 'transpose_a'),
      transB: cx.bool(a.get('transpose_b')!, 'transpose_b'),
    }),
  ),
);
/** dropout(x, p, training=true): identity when training is false, so one model file serves training and inference. */
def('dropout', ['x', 'p', ['training', B(true)]], (a, cx) => {
  const p = cx.number(a.get('p')!, 'p');
  if (!(p >= 0 && p < 1)) cx.fail(`dropout(): p must be in [0, 1), got ${p}`, 'p');
  const x = a.get('x')!;
  if (p === 0 || !cx.bool(a.get('training')!, 'training')) return x;
  const t = cx.tensor(x, 'x');
  return cx.t(cx.op('dropout', [t, cx.lw.seedInput()], { p, stream: cx.lw.nextStream() }));
});

// ---- constants and initializers ----

const init = (i: ParamInit): Value => ({ k: 'init', init: i });
for (const kind of ['zeros', 'ones'] as const) {
  // zeros() is an initializer; zeros(B, T) a constant tensor.
  def(kind, [['dtype', DT('f32')]], (a, cx) => {
    const shape = shapeArg(a.get('shape')!, cx, 'shape');
    if (a.get('shape')!.k === 'tuple' && (a.get('shape') as { items: Value[] }).items.length === 0) return init({ kind });
    return cx.t(cx.op('constant', [], { dtype: cx.dtype(a.get('dtype')!, 'dtype'), shape, values: [kind === 'ones' ? 1 : 0] }));
  }, 'shape');
}
def('full', ['shape', 'value', ['dtype', DT('f32')]], (a, cx) =>
  cx.t(cx.op('constant', [], { dtype: cx.dtype(a.get('dtype')!, 'dtype'), shape: cx.ints(a.get('shape')!, 'shape'), values: [cx.number(a.get('value')!, 'value')] })),
);
def('constant', ['value'], (a, cx) => init({ kind: 'constant', value: cx.number(a.get('value')!, 'value') }));
def('normal', [['std', F(1)], ['mean', F(0)]], (a, cx) => {
  const std = cx.number(a.get('std')!, 'std');
  const mean = cx.number(a.get('mean')!, 'mean');
  if (!(std >= 0) || !Number.isFinite(std)) cx.fail(`normal(): std must be a finite number >= 0, got ${std}`, 'std');
  return init(mean === 0 ? { kind: 'normal', std } : { kind: 'normal', std, mean });
});
def('uniform', ['low', 'high'], (a, cx) => {
  const low = cx.number(a.get('low')!, 'low');
  const high = cx.number(a.get('high')!, 'high');
  if (!(low <= high)) cx.fail(`uniform(): low (${low}) must not exceed high (${high})`);
  return init({ kind: 'uniform', low, high });
});
for (const kind of ['xavier_uniform', 'xavier_normal', 'kaiming_uniform', 'kaiming_normal'] as const) {
  def(kind, [['gain', NONE]], (a, cx) => {
    const g = a.get('gain')!;
    return init(g.k === 'none' ? { kind } : { kind, gain: cx.number(g, 'gain') });
  });
}

// ---- compile-time helpers ----

def('range', ['a', ['b', NONE]], (a, cx) => {
  const x = cx.integer(a.get('a')!, 'a');
  const bv = a.get('b')!;
  const [lo, hi] = bv.k === 'none' ? [0, x] : [x, cx.integer(bv, 'b')];
  if (hi - lo > 100_000) cx.fail(`range(): ${hi - lo} iterations is too many`);
  return { k: 'tuple', items: Array.from({ length: Math.max(0, hi - lo) }, (_, i) => int(lo + i)) };
});
def('len', ['x'], (a, cx) => {
  const x = a.get('x')!;
  if (x.k === 'tuple') return int(x.items.length);
  if (x.k === 'str') return int(x.v.length);
  const t = cx.tensor(x, 'x');
  const s = cx.shapeOf(t);
  if (!s.length) cx.fail(`len() of a scalar tensor`, 'x');
  return int(s[0]);
});
def('int', ['x'], (a, cx) => int(Math.trunc(cx.number(a.get('x')!, 'x'))));
def('float', ['x'], (a, cx) => F(cx.number(a.get('x')!, 'x')));
