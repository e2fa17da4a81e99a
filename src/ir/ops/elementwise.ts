/** Elementwise ops: unary math, binary arithmetic and comparison with broadcasting, select, cast. */
import type { GraphBuilder } from '../builder.js';
import type { BinaryKind, OpRule, UnaryKind } from '../op.js';
import type { TensorType } from '../types.js';
import { broadcastShapes, isFloat } from '../types.js';
import { erf, fail, mapBroadcast, requireFloat, requireSameDtype } from './util.js';

type UnaryRules = { [K in UnaryKind]: OpRule<K> };
type BinaryRules = { [K in BinaryKind]: OpRule<K> };

const SQRT_2_OVER_PI = 0.7978845608028654;
const GELU_C = 0.044715;

/** erf for WGSL (no builtin): Abramowitz-Stegun 7.1.26, |error| < 1.5e-7. */
export const WGSL_ERF = /* wgsl */ `
fn kiln_erf(x: f32) -> f32 {
  let z = abs(x);
  let t = 1.0 / (1.0 + 0.3275911 * z);
  let y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp(-z * z);
  return select(-y, y, x >= 0.0);
}`;
/** tanh that cannot overflow: some drivers build tanh from exp and return NaN for large |x|. */
export const WGSL_TANH = /* wgsl */ `
fn kiln_tanh(x: f32) -> f32 {
  let e = exp(-2.0 * abs(x));
  let t = (1.0 - e) / (1.0 + e);
  return select(-t, t, x >= 0.0);
}`;
const WGSL_SIGMOID = /* wgsl */ `
fn kiln_sigmoid(x: f32) -> f32 {
  let e = exp(-abs(x));
  return select(e / (1.0 + e), 1.0 / (1.0 + e), x >= 0.0);
}`;

/**
 * Integer pow, the semantics of `**` on i32/u32 tensors: x^y by repeated multiplication with two's-complement
 * wrap-around at 32 bits (as the product of y copies of x in 32-bit integer arithmetic); a negative exponent gives the
 * integer part of 1 / x^|y|: 1 for x = 1, ±1 for x = -1, 0 otherwise (0 for x = 0 too: no division error).
 */
export function intPow(x: number, y: number): number {
  if (y < 0) return x === 1 ? 1 : x === -1 ? (y % 2 === 0 ? 1 : -1) : 0;
  let r = 1;
  let b = x | 0;
  for (let e = y >>> 0; e > 0; e >>>= 1) {
    if (e & 1) r = Math.imul(r, b);
    b = Math.imul(b, b);
  }
  return r;
}
const WGSL_IPOW = /* wgsl */ `
fn kiln_ipow_i32(x: i32, y: i32) -> i32 {
  if (y < 0) { return select(select(0, select(-1, 1, (y & 1) == 0), x == -1), 1, x == 1); }
  var r = 1;
  var b = x;
  var e = u32(y);
  for (var k = 0u; k < 32u && e > 0u; k++) {
    if ((e & 1u) != 0u) { r = r * b; }
    b = b * b;
    e = e >> 1u;
  }
  return r;
}
fn kiln_ipow_u32(x: u32, y: u32) -> u32 {
  var r = 1u;
  var b = x;
  var e = y;
  for (var k = 0u; k < 32u && e > 0u; k++) {
    if ((e & 1u) != 0u) { r = r * b; }
    b = b * b;
    e = e >> 1u;
  }
  return r;
}`;

const sigmoid = (x: number) => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x)));
const geluTanh = (x: number) => 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * (x + GELU_C * x * x * x)));
const geluErf = (x: number) => 0.5 * x * (1 + erf(x / Math.SQRT2));

function floatUnary(op: string) {
  return (inputs: readonly TensorType[]): TensorType => {
    requireFloat(op, inputs, 0);
    return inputs[0];
  };
}
function numericUnary(op: string) {
  return (inputs: readonly TensorType[]): TensorType => {
    if (inputs[0].dtype === 'bool') fail(op, inputs, 'operand must be numeric, got bool');
    return inputs[0];
  };
}

/** 0 of the node's dtype, as a scalar constant (broadcasts in select). */
const zeroLike = (b: GraphBuilder, id: number) => b.scalar(0, b.type(id).dtype);

/** The compute expression wraps f16 through f32 for transcendental helpers written for f32. */
const viaF32 = (fn: string, x: string, out: TensorType) => (out.dtype === 'f16' ? `f16(${fn}(f32(${x})))` : `${fn}(${x})`);

export const unaryOps: UnaryRules = {
  neg: {
    arity: 1,
    infer: numericUnary('neg'),
    evaluate: (i, _a, out) => mapBroadcast(i, out, (x) => -x),
    grad: { saves: { inputs: [], output: false }, vjp: (b, _n, g) => [b.neg(g)] },
    lower: { kernel: 'elementwise', expr: ([x]) => `(-${x})` },
  },
  abs: {
    arity: 1,
    infer: numericUnary('abs'),
    evaluate: (i, _a, out) => mapBroadcast(i, out, Math.abs),
    grad: {
      saves: { inputs: [0], output: false },
      vjp: (b, n, g) => [b.op('select', [b.op('ge', [n.inputs[0], zeroLike(b, n.inputs[0])], {}), g, b.neg(g)], {})],
    },
    lower: { kernel: 'elementwise', expr: ([x]) => `abs(${x})` },
  },
  exp: {
    arity: 1,
    infer: floatUnary('exp'),
    evaluate: (i, _a, out) => mapBroadcast(i, out, Math.exp),
    grad: { saves: { inputs: [], output: true }, vjp: (b, n, g) => [b.mul(g, n.id)] },
    lower: { kernel: 'elementwise', expr: ([x]) => `exp(${x})` },
  },
  log: {
    arity: 1,
    infer: floatUnary('log'),
    evaluate: (i, _a, out) => mapBroadcast(i, out, Math.log),
    grad: { saves: { inputs: [0], output: false }, vjp: (b, n, g) => [b.div(g, n.inputs[0])] },
    lower: { kernel: 'elementwise', expr: ([x]) => `log(${x})` },
  },
  sqrt: {
    arity: 1,
    infer: floatUnary('sqrt'),
    evaluate: (i, _a, out) => mapBroadcast(i, out, Math.sqrt),
    grad: {
      saves: { inputs: [], output: true },
      vjp: (b, n, g) => [b.div(b.mul(g, b.scalar(0.5, n.type.dtype)), n.id)],
    },
    lower: { kernel: 'elementwise', expr: ([x]) => `sqrt(${x})` },
  },
  rsqrt: {
    arity: 1,
    infer: floatUnary('rsqrt'),
    evaluate: (i, _a, out) => mapBroadcast(i, out, (x) => 1 / Math.sqrt(x)),
    grad: {
      saves: { inputs: [], output: true },
      vjp: (b, n, g) => {
        const y3 = b.mul(b.mul(n.id, n.id), n.id);
        return [b.mul(b.mul(g, y3), b.scalar(-0.5, n.type.dtype))];
      },
    },
    lower: { kernel: 'elementwise', expr: ([x]) => `inverseSqrt(${x})` },
  },
  tanh: {
    arity: 1,
    infer: floatUnary('tanh'),
    evaluate: (i, _a, out) => mapBroadcast(i, out, Math.tanh),
    grad: {
      saves: { inputs: [], output: true },
      vjp: (b, n, g) => [b.mul(g, b.sub(b.scalar(1, n.type.dtype), b.mul(n.id, n.id)))],
    },
    lower: { kernel: 'elementwise', expr: ([x], _a, _i, out) => viaF32('kiln_tanh', x, out), helpers: WGSL_TANH },
  },
  sigmoid: {
    arity: 1,
    infer: floatUnary('sigmoid'),
    evaluate: (i, _a, out) => mapBroadcast(i, out, sigmoid),
    grad: {
      saves: { inputs: [], output: true },
      vjp: (b, n, g) => [b.mul(g, b.mul(n.id, b.sub(b.scalar(1, n.type.dtype), n.id)))],
    },
    lower: { kernel: 'elementwise', expr: ([x], _a, _i, out) => viaF32('kiln_sigmoid', x, out), helpers: WGSL_SIGMOID },
  },
  relu: {
    arity: 1,
    infer: floatUnary('relu'),
    evaluate: (i, _a, out) => mapBroadcast(i, out, (x) => (x > 0 ? x : 0)),
    grad: {
      saves: { inputs: [0], output: false },
      vjp: (b, n, g) => [b.op('select', [b.op('gt', [n.inputs[0], zeroLike(b, n.inputs[0])], {}), g, zeroLike(b, g)], {})],
    },
    lower: { kernel: 'elementwise', expr: ([x], _a, _i, out) => `max(${x}, ${out.dtype}(0))` },
  },
  gelu: {
    arity: 1,
    infer: floatUnary('gelu'),
    evaluate: (i, a, out) => mapBroadcast(i, out, a.approximate === 'erf' ? geluErf : geluTanh),
    grad: {
      saves: { inputs: [0], output: false },
      vjp: (b, n, g) => {
        const x = n.inputs[0];
        const dt = n.type.dtype;
        const c = (v: number) => b.scalar(v, dt);
        if (n.attrs.approximate === 'erf') {
          // d/dx x*Phi(x) = Phi(x) + x*phi(x)
          const cdf = b.mul(c(0.5), b.add(c(1), b.unary('erf', b.mul(x, c(Math.SQRT1_2)))));
          const pdf = b.mul(c(1 / Math.sqrt(2 * Math.PI)), b.unary('exp', b.mul(c(-0.5), b.mul(x, x))));
          return [b.mul(g, b.add(cdf, b.mul(x, pdf)))];
        }
        const x2 = b.mul(x, x);
        const u = b.mul(c(SQRT_2_OVER_PI), b.add(x, b.mul(c(GELU_C), b.mul(x2, x))));
        const t = b.unary('tanh', u);
        const du = b.mul(c(SQRT_2_OVER_PI), b.add(c(1), b.mul(c(3 * GELU_C), x2)));
        const left = b.mul(c(0.5), b.add(c(1), t));
        const right = b.mul(b.mul(c(0.5), x), b.mul(b.sub(c(1), b.mul(t, t)), du));
        return [b.mul(g, b.add(left, right))];
      },
    },
    lower: {
      kernel: 'elementwise',
      expr: ([x], a, _i, out) => {
        const f = out.dtype === 'f16' ? `f32(${x})` : x;
        const e =
          a.approximate === 'erf'
            ? `(0.5 * ${f} * (1.0 + kiln_erf(${f} * ${Math.SQRT1_2})))`
            : `(0.5 * ${f} * (1.0 + kiln_tanh(${SQRT_2_OVER_PI} * (${f} + ${GELU_C} * ${f} * ${f} * ${f}))))`;
        return out.dtype === 'f16' ? `f16${e}` : e;
      },
      helpers: WGSL_ERF + WGSL_TANH,
    },
  },
  silu: {
    arity: 1,
    infer: floatUnary('silu'),
    evaluate: (i, _a, out) => mapBroadcast(i, out, (x) => x * sigmoid(x)),
    grad: {
      saves: { inputs: [0], output: false },
      vjp: (b, n, g) => {
        const x = n.inputs[0];
        const one = b.scalar(1, n.type.dtype);
        const s = b.unary('sigmoid', x);
        return [b.mul(g, b.mul(s, b.add(one, b.mul(x, b.sub(one, s)))))];
      },
    },
    lower: {
      kernel: 'elementwise',
      expr: ([x], _a, _i, out) => (out.dtype === 'f16' ? `(${x} * f16(kiln_sigmoid(f32(${x}))))` : `(${x} * kiln_sigmoid(${x}))`),
      helpers: WGSL_SIGMOID,
    },
  },
  sin: {
    arity: 1,
    infer: floatUnary('sin'),
    evaluate: (i, _a, out) => mapBroadcast(i, out, Math.sin),
    grad: { saves: { inputs: [0], output: false }, vjp: (b, n, g) => [b.mul(g, b.unary('cos', n.inputs[0]))] },
    lower: { kernel: 'elementwise', expr: ([x]) => `sin(${x})` },
  },
  cos: {
    arity: 1,
    infer: floatUnary('cos'),
    evaluate: (i, _a, out) => mapBroadcast(i, out, Math.cos),
    grad: { saves: { inputs: [0], output: false }, vjp: (b, n, g) => [b.neg(b.mul(g, b.unary('sin', n.inputs[0])))] },
    lower: { kernel: 'elementwise', expr: ([x]) => `cos(${x})` },
  },
  erf: {
    arity: 1,
    infer: floatUnary('erf'),
    evaluate: (i, _a, out) => mapBroadcast(i, out, erf),
    grad: {
      saves: { inputs: [0], output: false },
      vjp: (b, n, g) => {
        const x = n.inputs[0];
        const dt = n.type.dtype;
        return [b.mul(g, b.mul(b.scalar(2 / Math.sqrt(Math.PI), dt), b.unary('exp', b.neg(b.mul(x, x)))))];
      },
    },
    lower: { kernel: 'elementwise', expr: ([x], _a, _i, out) => viaF32('kiln_erf', x, out), helpers: WGSL_ERF },
  },
  floor: {
    arity: 1,
    infer: floatUnary('floor'),
    evaluate: (i, _a, out) => mapBroadcast(i, out, Math.floor),
    grad: 'zero',
    lower: { kernel: 'elementwise', expr: ([x]) => `floor(${x})` },
  },
  not: {
    arity: 1,
    infer: (inputs) => {
      if (inputs[0].dtype !== 'bool') fail('not', inputs, 'operand must be bool');
      return inputs[0];
    },
    evaluate: (i, _a, out) => mapBroadcast(i, out, (x) => (x ? 0 : 1)),
    grad: 'integer',
    lower: { kernel: 'elementwise', expr: ([x]) => `(!${x})` },
  },
  stop_gradient: {
    arity: 1,
    infer: (inputs) => inputs[0],
    evaluate: (i, _a, out) => mapBroadcast(i, out, (x) => x),
    grad: 'zero',
    lower: { kernel: 'elementwise', expr: ([x]) => x },
  },
};

function arith(op: BinaryKind) {
  return (inputs: readonly TensorType[]): TensorType => {
    const d = requireSameDtype(op, inputs);
    if (d === 'bool') fail(op, inputs, 'operands must be numeric, got bool');
    return { dtype: d, shape: broadcastShapes(op, [inputs[0].shape, inputs[1].shape]) };
  };
}
function compare(op: BinaryKind) {
  return (inputs: readonly TensorType[]): TensorType => {
    requireSameDtype(op, inputs);
    return { dtype: 'bool', shape: broadcastShapes(op, [inputs[0].shape, inputs[1].shape]) };
  };
}
function logical(op: BinaryKind) {
  return (inputs: readonly TensorType[]): TensorType => {
    if (inputs.some((t) => t.dtype !== 'bool')) fail(op, inputs, 'operands must be bool');
    return { dtype: 'bool', shape: broadcastShapes(op, [inputs[0].shape, inputs[1].shape]) };
  };
}

/** Integer division and arithmetic follow WGSL: i32 wraps, division truncates toward zero. */
function wrapInt(out: TensorType, v: number): number {
  if (out.dtype === 'i32') return v | 0;
  if (out.dtype === 'u32') return v >>> 0;
  return v;
}

const cmpExpr = (sym: string) => ({ kernel: 'elementwise' as const, expr: ([a, b]: string[]) => `(${a} ${sym} ${b})` });
const cmpEval = (f: (a: number, b: number) => boolean) => (i: readonly import('../tensor.js').HostTensor[], _a: {}, out: TensorType) =>
  mapBroadcast(i, out, (a, b) => (f(a, b) ? 1 : 0));

export const binaryOps: BinaryRules = {
  add: {
    arity: 2,
    infer: arith('add'),
    evaluate: (i, _a, out) => mapBroadcast(i, out, (a, b) => wrapInt(out, a + b)),
    grad: {
      saves: { inputs: [], output: false },
      vjp: (b, n, g) => [b.unbroadcast(g, b.type(n.inputs[0]).shape), b.unbroadcast(g, b.type(n.inputs[1]).shape)],
    },
    lower: { kernel: 'elementwise', expr: ([a, b]) => `(${a} + ${b})` },
  },
  sub: {
    arity: 2,
    infer: arith('sub'),
    evaluate: (i, _a, out) => mapBroadcast(i, out, (a, b) => wrapInt(out, a - b)),
    grad: {
      saves: { inputs: [], output: false },
      vjp: (b, n, g) => [b.unbroadcast(g, b.type(n.inputs[0]).shape), b.unbroadcast(b.neg(g), b.type(n.inputs[1]).shape)],
    },
    lower: { kernel: 'elementwise', expr: ([a, b]) => `(${a} - ${b})` },
  },
  mul: {
    arity: 2,
    infer: arith('mul'),
    evaluate: (i, _a, out) => mapBroadcast(i, out, (a, b) => (out.dtype === 'i32' ? Math.imul(a, b) : out.dtype === 'u32' ? Math.imul(a, b) >>> 0 : a * b)),
    grad: {
      saves: { inputs: [0, 1], output: false },
      vjp: (b, n, g) => {
        const [x, y] = n.inputs;
        return [b.unbroadcast(b.mul(g, y), b.type(x).shape), b.unbroadcast(b.mul(g, x), b.type(y).shape)];
      },
    },
    lower: { kernel: 'elementwise', expr: ([a, b]) => `(${a} * ${b})` },
  },
  div: {
    arity: 2,
    infer: arith('div'),
    evaluate: (i, _a, out) => mapBroadcast(i, out, (a, b) => (isFloat(out.dtype) ? a / b : b === 0 ? a : wrapInt(out, Math.trunc(a / b)))),
    grad: {
      saves: { inputs: [1], output: true },
      vjp: (b, n, g) => {
        const [x, y] = n.inputs;
        const gx = b.div(g, y);
        return [b.unbroadcast(gx, b.type(x).shape), b.unbroadcast(b.neg(b.mul(gx, n.id)), b.type(y).shape)];
      },
    },
    lower: { kernel: 'elementwise', expr: ([a, b]) => `(${a} / ${b})` },
  },
  pow: {
    arity: 2,
    infer: arith('pow'),
    evaluate: (i, _a, out) => mapBroadcast(i, out, out.dtype === 'i32' ? intPow : out.dtype === 'u32' ? (x, y) => intPow(x >>> 0, y >>> 0) >>> 0 : Math.pow),
    grad: {
      saves: { inputs: [0, 1], output: true },
      vjp: (b, n, g) => {
        const [x, y] = n.inputs;
        const dt = n.type.dtype;
        const gx = b.mul(g, b.mul(y, b.binary('pow', x, b.sub(y, b.scalar(1, dt)))));
        const gy = b.mul(g, b.mul(n.id, b.unary('log', x)));
        return [b.unbroadcast(gx, b.type(x).shape), b.unbroadcast(gy, b.type(y).shape)];
      },
    },
    // WGSL pow is undefined for x < 0; integral exponents (x^2, x^3) are common in models, so handle the sign.
    // Integer pow has no WGSL builtin: square-and-multiply with 32-bit wrapping, as intPow.
    lower: {
      kernel: 'elementwise',
      expr: ([a, b], _at, _i, out) =>
        out.dtype === 'i32' || out.dtype === 'u32'
          ? `kiln_ipow_${out.dtype}(${a}, ${b})`
          : `select(pow(abs(${a}), ${b}) * select(1.0, -1.0, fract(${b} * 0.5) != 0.0 && ${a} < 0.0), pow(${a}, ${b}), ${a} >= 0.0 || fract(${b}) != 0.0)`,
      helpers: WGSL_IPOW,
    },
  },
  max: {
    arity: 2,
    infer: arith('max'),
    evaluate: (i, _a, out) => mapBroadcast(i, out, Math.max),
    grad: {
      saves: { inputs: [0, 1], output: false },
      vjp: (b, n, g) => {
        const [x, y] = n.inputs;
        const c = b.op('ge', [x, y], {});
        const z = zeroLike(b, g);
        return [b.unbroadcast(b.op('select', [c, g, z], {}), b.type(x).shape), b.unbroadcast(b.op('select', [c, z, g], {}), b.type(y).shape)];
      },
    },
    lower: { kernel: 'elementwise', expr: ([a, b]) => `max(${a}, ${b})` },
  },
  min: {
    arity: 2,
    infer: arith('min'),
    evaluate: (i, _a, out) => mapBroadcast(i, out, Math.min),
    grad: {
      saves: { inputs: [0, 1], output: false },
      vjp: (b, n, g) => {
        const [x, y] = n.inputs;
        const c = b.op('le', [x, y], {});
        const z = zeroLike(b, g);
        return [b.unbroadcast(b.op('select', [c, g, z], {}), b.type(x).shape), b.unbroadcast(b.op('select', [c, z, g], {}), b.type(y).shape)];
      },
    },
    lower: { kernel: 'elementwise', expr: ([a, b]) => `min(${a}, ${b})` },
  },
  eq: { arity: 2, infer: compare('eq'), evaluate: cmpEval((a, b) => a === b), grad: 'integer', lower: cmpExpr('==') },
  ne: { arity: 2, infer: compare('ne'), evaluate: cmpEval((a, b) => a !== b), grad: 'integer', lower: cmpExpr('!=') },
  lt: { arity: 2, infer: compare('lt'), evaluate: cmpEval((a, b) => a < b), grad: 'integer', lower: cmpExpr('<') },
  le: { arity: 2, infer: compare('le'), evaluate: cmpEval((a, b) => a <= b), grad: 'integer', lower: cmpExpr('<=') },
  gt: { arity: 2, infer: compare('gt'), evaluate: cmpEval((a, b) => a > b), grad: 'integer', lower: cmpExpr('>') },
  ge: { arity: 2, infer: compare('ge'), evaluate: cmpEval((a, b) => a >= b), grad: 'integer', lower: cmpExpr('>=') },
  and: { arity: 2, infer: logical('and'), evaluate: cmpEval((a, b) => !!a && !!b), grad: 'integer', lower: cmpExpr('&&') },
  or: { arity: 2, infer: logical('or'), evaluate: cmpEval((a, b) => !!a || !!b), grad: 'integer', lower: cmpExpr('||') },
};

export const selectOp: OpRule<'select'> = {
  arity: 3,
  infer: (inputs) => {
    if (inputs[0].dtype !== 'bool') fail('select', inputs, 'the condition must be bool');
    if (inputs[1].dtype !== inputs[2].dtype) fail('select', inputs, 'both branches must have the same dtype');
    return { dtype: inputs[1].dtype, shape: broadcastShapes('select', inputs.map((t) => t.shape)) };
  },
  evaluate: (i, _a, out) => mapBroadcast(i, out, (c, a, b) => (c ? a : b)),
  grad: {
    saves: { inputs: [0], output: false },
    vjp: (b, n, g) => {
      const [c, x, y] = n.inputs;
      const z = zeroLike(b, g);
      return [null, b.unbroadcast(b.op('select', [c, g, z], {}), b.type(x).shape), b.unbroadcast(b.op('select', [c, z, g], {}), b.type(y).shape)];
    },
  },
  // WGSL select(f, t, cond) takes the false value first.
  lower: { kernel: 'elementwise', expr: ([c, a, b]) => `select(${b}, ${a}, ${c})` },
};

export const castOp: OpRule<'cast'> = {
  arity: 1,
  infer: (inputs, a) => ({ dtype: a.to, shape: inputs[0].shape }),
  evaluate: (i, a, out) =>
    mapBroadcast(i, out, (x) => {
      switch (a.to) {
        case 'bool':
          return x ? 1 : 0;
        case 'i32':
          return Number.isFinite(x) ? Math.trunc(x) | 0 : 0;
        case 'u32':
          return Number.isFinite(x) ? Math.trunc(x) >>> 0 : 0;
        default:
          return x;
      }
    }),
  grad: {
    saves: { inputs: [], output: false },
    vjp: (b, n, g) => {
      const from = b.type(n.inputs[0]).dtype;
      return [isFloat(from) && isFloat(n.attrs.to) ? b.cast(g, from) : null];
    },
  },
  lower: {
    kernel: 'elementwise',
    expr: ([x], a, inputs) => {
      const from = inputs[0].dtype;
      if (a.to === 'bool') return `(${x} != ${from === 'bool' ? 'false' : `${from}(0)`})`;
      if (from === 'bool') return `select(${a.to}(0), ${a.to}(1), ${x})`;
      return `${a.to}(${x})`;
    },
  },
};
