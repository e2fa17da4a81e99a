/**
 * The op set: a small, closed list. Every op is defined once, in one file under src/ir/ops/, by an OpRule:
 * its shape/dtype rule, its reference implementation, its gradient rule and its WGSL lowering.
 * `OpRegistry` is a mapped type over OpKind, so forgetting any of the four for a new op is a compile error.
 */
import type { DType, Shape, TensorType } from './types.js';
import type { HostTensor } from './tensor.js';
import type { GraphBuilder } from './builder.js';
import type { Node } from './graph.js';

export type ParamInit =
  | { kind: 'zeros' }
  | { kind: 'ones' }
  | { kind: 'constant'; value: number }
  | { kind: 'normal'; std: number; mean?: number }
  | { kind: 'uniform'; low: number; high: number }
  | { kind: 'xavier_uniform'; gain?: number }
  | { kind: 'xavier_normal'; gain?: number }
  | { kind: 'kaiming_uniform'; gain?: number }
  | { kind: 'kaiming_normal'; gain?: number };

export type UnaryKind =
  | 'neg' | 'abs' | 'exp' | 'log' | 'sqrt' | 'rsqrt' | 'tanh' | 'sigmoid' | 'relu' | 'gelu' | 'silu'
  | 'sin' | 'cos' | 'erf' | 'floor' | 'not' | 'stop_gradient';
export type BinaryKind =
  | 'add' | 'sub' | 'mul' | 'div' | 'pow' | 'max' | 'min'
  | 'eq' | 'ne' | 'lt' | 'le' | 'gt' | 'ge' | 'and' | 'or';
export type ReduceKind = 'sum' | 'mean' | 'max';

/**
 * Which keys a query of a fused attention may see: every key, keys j <= i (causal), keys j <= i or below a
 * per-sequence prefix length (prefix; a lengths operand), or a bool mask operand. Hidden scores become `fill`.
 */
export type AttentionMask = 'none' | 'causal' | 'prefix' | 'bool';
/** Attributes shared by flash_attention and its companion ops (see src/ir/ops/attention.ts). */
export interface AttentionAttrs {
  scale: number;
  mask: AttentionMask;
  /** An additive bias operand (ALiBi, relative positions), added to the scaled scores before masking. */
  bias: boolean;
  /** The score a hidden key gets (the library's where(mask, scores, -1e9) uses -1e9). */
  fill: number;
  /** Dropout on the probabilities, with the `dropout` op's Philox stream (p = 0: no seed operand). */
  p: number;
  stream: number;
}

/** Attributes of every op, by kind. Attribute objects are plain JSON. */
export interface AttrMap {
  // leaves
  input: { name: string; dtype: DType; shape: Shape };
  param: { name: string; dtype: DType; shape: Shape; init: ParamInit };
  constant: { dtype: DType; shape: Shape; values: number[] }; // one value fills the shape
  iota: { dtype: DType; shape: Shape; axis: number };
  // elementwise
  neg: {}; abs: {}; exp: {}; log: {}; sqrt: {}; rsqrt: {}; tanh: {}; sigmoid: {}; relu: {};
  gelu: { approximate: 'tanh' | 'erf' };
  silu: {}; sin: {}; cos: {}; erf: {}; floor: {}; not: {}; stop_gradient: {};
  add: {}; sub: {}; mul: {}; div: {}; pow: {}; max: {}; min: {};
  eq: {}; ne: {}; lt: {}; le: {}; gt: {}; ge: {}; and: {}; or: {};
  select: {};
  cast: { to: DType };
  // reductions
  sum: { axes: number[]; keepdims: boolean };
  mean: { axes: number[]; keepdims: boolean };
  max_reduce: { axes: number[]; keepdims: boolean };
  argmax: { axis: number; keepdims: boolean };
  // linear algebra
  matmul: { transA: boolean; transB: boolean };
  // layout
  reshape: { shape: Shape };
  transpose: { perm: number[] };
  broadcast: { shape: Shape };
  slice: { starts: number[]; ends: number[] }; // one entry per axis, step 1
  concat: { axis: number };
  // indexing
  gather: {}; // table[V, ...r], idx[...i] -> [...i, ...r]
  scatter_add: { rows: number }; // idx[...i], upd[...i, ...r] -> [rows, ...r]; out-of-range indices dropped
  one_hot: { depth: number; dtype: DType };
  update_slice: { axis: number }; // (x, u, pos: i32[1]) -> x with u written along axis at rows pos.. (src/ir/ops/update-slice.ts)
  // neural-net primitives: always over the last axis (the frontend transposes for other axes)
  softmax: {};
  log_softmax: {};
  layer_norm: { eps: number }; // (x, gamma, beta)
  rms_norm: { eps: number }; // (x, gamma)
  cross_entropy: { ignore_index: number }; // (logits[..., V], labels[...]) -> f32[...], 0 where ignored
  dropout: { p: number; stream: number }; // (x, seed: u32[]) -> x * keep / (1 - p)
  // collectives over a group of `size` devices (src/ir/ops/collective.ts)
  all_reduce: { size: number };
  reduce_scatter: { size: number; axis: number };
  all_gather: { size: number; axis: number };
  // point-to-point transfers between pipeline stages (src/ir/ops/p2p.ts)
  send: { to: number; tag: string };
  recv: { from: number; tag: string; dtype: DType; shape: Shape };
  // fused attention (src/ir/ops/attention.ts): operands q, k, v, [bias], [mask | lengths], [seed]
  flash_attention: AttentionAttrs;
  flash_attention_stats: AttentionAttrs; // q, k, out, dout, [bias], [mask] -> [..., T, 2]: (log-sum-exp, dout·out) per row
  flash_attention_grad: AttentionAttrs & { wrt: 'q' | 'k' | 'v' | 'bias' }; // q, k, v, dout, stats, [bias], [mask], [seed]
}

export type OpKind = keyof AttrMap;
export type AttrsOf<K extends OpKind> = AttrMap[K];

/** Context the interpreter gives leaf ops. */
export interface EvalContext {
  input(name: string, type: TensorType): HostTensor;
  param(name: string, type: TensorType, init: ParamInit): HostTensor;
}

/**
 * Gradient rule. `vjp` receives the forward node and the cotangent of its output and emits, with the builder,
 * one cotangent per input (null where none flows). `saves` declares which forward values the rule reads
 * (the recomputation pass uses it to decide what must stay alive).
 *   - 'nondiff': the op has no derivative (e.g. argmax); a float gradient reaching it is an error.
 *   - 'integer': the op's output is integer/bool, so no gradient can reach it.
 *   - 'zero': gradient deliberately stops (stop_gradient).
 */
export type GradRule<K extends OpKind> =
  | 'nondiff'
  | 'integer'
  | 'zero'
  | {
      saves: { inputs: readonly number[]; output: boolean };
      vjp(b: GraphBuilder, node: Node & { attrs: AttrsOf<K> }, g: number): (number | null)[];
    };

/**
 * The kernel family of every op: its fusion class for the scheduler (pointwise families inline into consumers;
 * reduce/matmul/rowwise/scatter own kernels) and the generator codegen hands it to. Codegen keeps one typed table
 * per family (`{ [K in OpsIn<F>]: ... }`), so an op added here without its lowering is a compile error.
 */
export interface FamilyOf {
  input: 'leaf'; param: 'leaf'; constant: 'leaf'; iota: 'leaf';
  neg: 'elementwise'; abs: 'elementwise'; exp: 'elementwise'; log: 'elementwise'; sqrt: 'elementwise';
  rsqrt: 'elementwise'; tanh: 'elementwise'; sigmoid: 'elementwise'; relu: 'elementwise'; gelu: 'elementwise';
  silu: 'elementwise'; sin: 'elementwise'; cos: 'elementwise'; erf: 'elementwise'; floor: 'elementwise';
  not: 'elementwise'; stop_gradient: 'elementwise';
  add: 'elementwise'; sub: 'elementwise'; mul: 'elementwise'; div: 'elementwise'; pow: 'elementwise';
  max: 'elementwise'; min: 'elementwise'; eq: 'elementwise'; ne: 'elementwise'; lt: 'elementwise';
  le: 'elementwise'; gt: 'elementwise'; ge: 'elementwise'; and: 'elementwise'; or: 'elementwise';
  select: 'elementwise'; cast: 'elementwise';
  sum: 'reduce'; mean: 'reduce'; max_reduce: 'reduce'; argmax: 'reduce';
  matmul: 'matmul';
  reshape: 'layout'; transpose: 'layout'; broadcast: 'layout'; slice: 'layout'; concat: 'layout';
  gather: 'gather'; one_hot: 'gather'; update_slice: 'gather'; scatter_add: 'scatter';
  softmax: 'rowwise'; log_softmax: 'rowwise'; layer_norm: 'rowwise'; rms_norm: 'rowwise'; cross_entropy: 'rowwise';
  dropout: 'random';
  all_reduce: 'collective'; reduce_scatter: 'collective'; all_gather: 'collective';
  send: 'collective'; recv: 'collective';
  flash_attention: 'attention'; flash_attention_stats: 'attention'; flash_attention_grad: 'attention';
}

export type KernelFamily = 'elementwise' | 'leaf' | 'layout' | 'reduce' | 'matmul' | 'gather' | 'scatter' | 'rowwise' | 'random' | 'collective' | 'attention';

/** The ops of one kernel family (or several). */
export type OpsIn<F extends KernelFamily> = { [K in OpKind]: FamilyOf[K] extends F ? K : never }[OpKind];

// Every op has a family and every family entry is an op (a compile error otherwise).
type Exactly<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const familiesCoverOps: Exactly<keyof FamilyOf, OpKind> = true;
void familiesCoverOps;

/**
 * How the op lowers to WGSL. Elementwise ops give a WGSL expression over their operand expressions;
 * every other op names its kernel family, whose generator (src/codegen/wgsl) has an entry for it.
 */
export type Lowering<K extends OpKind> = FamilyOf[K] extends 'elementwise'
  ? {
      kernel: 'elementwise';
      /** args are WGSL expressions of the operands, already converted to the op's compute type. */
      expr(args: string[], attrs: AttrsOf<K>, inputs: readonly TensorType[], out: TensorType): string;
      /** WGSL helper functions the expression calls (deduplicated by the generator). */
      helpers?: string;
    }
  : { kernel: FamilyOf[K] };

export interface OpRule<K extends OpKind> {
  /** Number of operands, or 'variadic' (concat). */
  arity: number | 'variadic';
  /** Shape/dtype rule. Throws ShapeError naming the op and the operand types. */
  infer(inputs: readonly TensorType[], attrs: AttrsOf<K>): TensorType;
  /** Reference implementation. Obvious before fast: this is the oracle. */
  evaluate(inputs: readonly HostTensor[], attrs: AttrsOf<K>, out: TensorType, ctx: EvalContext): HostTensor;
  grad: GradRule<K>;
  lower: Lowering<K>;
  /**
   * Composite primitives (softmax, norms, cross-entropy) can expand into the plain ops they stand for; autodiff
   * of the expansion is the "naive chain" that tests compare the fused gradient rule against.
   */
  decompose?(b: GraphBuilder, node: Node & { attrs: AttrsOf<K> }): number;
}

export type OpRegistry = { [K in OpKind]: OpRule<K> };
