/**
 * The shared part of every kernel generator: bindings, and one WGSL function per inlined IR node.
 *
 * Every value a kernel needs is reached through a function `vN(i: u32)` (N numbered by first use in the kernel,
 * never a node id, so equal kernels have equal source), which returns element i (a flat row-major index into that
 * node's own shape) of its node. For a buffer-resident node it is a load; for an inlined
 * pointwise node it evaluates the op on its operands' functions, with index remapping for broadcasting,
 * transpose, slice, concat, gather... So fusion is just "which nodes are buffers": the scheduler decides,
 * this file follows. Nodes between a fused anchor and the kernel root (the epilogue) take the anchor's value
 * as an extra argument `acc`, since the anchor is computed in registers rather than loaded.
 */
import { IRError } from '../../errors.js';
import type { Graph, Node } from '../../ir/graph.js';
import type { OpKind, OpsIn } from '../../ir/op.js';
import { OPS } from '../../ir/registry.js';
import type { DType, Shape, TensorType } from '../../ir/types.js';
import { fmtType, isHalf, numel, sameShape, strides } from '../../ir/types.js';
import { WGSL_PHILOX } from '../../ir/philox.js';
import type { Kernel, Storage } from '../../schedule/schedule.js';
import type { HalfStorage } from './types.js';
import { WGSL_BF16_ROUND, WGSL_BITS_F32, WGSL_F16_BITS, WGSL_F16_ROUND, computeType, isPacked, literal, loadExpr, packedStoreHelper, storageType, storeStmt } from './types.js';

export interface BufferBinding {
  binding: number;
  /** The IR node whose buffer is bound. */
  node: number;
  access: 'read' | 'read_write';
  /**
   * A kernel-private u32 work buffer instead of a node's buffer (`node` is then the kernel's root): the runtime
   * allocates one per kernel and name, shared by the kernel's passes.
   */
  scratch?: { name: string; words: number };
}

export interface KernelPass {
  label: string;
  wgsl: string;
  bindings: BufferBinding[];
  dispatch: [number, number, number];
}

export interface KernelCode {
  kernel: Kernel;
  passes: KernelPass[];
}

/** Row-major coordinate k of flat index expression `i` in `shape`. */
function coordOf(i: string, shape: Shape, k: number): string {
  // A tensor with a zero dim has no element to index: its index code never runs, but must not divide by zero.
  if (shape.includes(0)) return '0u';
  const st = strides(shape)[k];
  const div = st === 1 ? i : `(${i} / ${st}u)`;
  return k === 0 ? div : `(${div} % ${shape[k]}u)`;
}

/** Sum of terms `coord * stride`; `offsets` adds a constant to each coordinate (slices). */
function linear(terms: { c: string; stride: number }[]): string {
  const parts = terms.filter((t) => t.stride !== 0).map((t) => (t.stride === 1 ? t.c : `${t.c} * ${t.stride}u`));
  return parts.length ? parts.join(' + ') : '0u';
}

/** Flat index into a right-aligned broadcast operand of shape `from`, given flat index `i` of shape `to`. */
export function broadcastIndex(from: Shape, to: Shape, i: string): string {
  if (sameShape(from, to)) return i;
  if (numel(from) === 1) return '0u';
  const lead = to.length - from.length;
  const fs = strides(from);
  const terms: { c: string; stride: number }[] = [];
  for (let k = lead; k < to.length; k++) {
    if (from[k - lead] === 1 || to[k] === 1) continue;
    terms.push({ c: coordOf(i, to, k), stride: fs[k - lead] });
  }
  return linear(terms);
}

export class KernelWriter {
  readonly bindings: BufferBinding[] = [];
  private readonly bufName = new Map<number, string>();
  private readonly fnSrc = new Map<number, string>();
  private readonly helpers = new Set<string>();
  private readonly accMemo = new Map<number, boolean>();
  private readonly inKernel: Set<number>;
  /**
   * Whether every value the kernel computes is read at the flat index it writes (or at 0 for scalars): then its
   * WGSL does not depend on the shape, only on the element count, which an elementwise kernel takes from its output
   * binding's length, so equal computations on tensors of different shapes share one program (the optimizer's
   * per-parameter updates).
   */
  shapeFree = true;
  /** Kernel-local numbers of value functions, in order of first use: WGSL names never carry node ids. */
  private readonly local = new Map<number, number>();

  constructor(
    readonly g: Graph,
    readonly k: Kernel,
    readonly storage: readonly Storage[],
    /** How f16 buffers are laid out on the target (bf16 is always packed). */
    readonly f16: HalfStorage = 'native',
  ) {
    this.inKernel = new Set(k.nodes);
    // a half output's buffer has padding past its last element, so its arrayLength is not the element count
    if (isHalf(g.nodes[k.root].type.dtype)) this.shapeFree = false;
  }

  node(id: number): Node {
    return this.g.nodes[id];
  }

  helper(src: string): void {
    this.helpers.add(src);
  }

  /** Binds node %id's buffer (read-only) and returns its variable name. */
  input(id: number): string {
    if (id === this.k.inPlace) return 'out'; // the kernel overwrites this parameter element by element
    let name = this.bufName.get(id);
    if (!name) {
      name = `in${this.bufName.size}`;
      this.bufName.set(id, name);
      this.bindings.push({ binding: this.bindings.length, node: id, access: 'read' });
    }
    return name;
  }

  /** The variable of a bound input buffer holding exactly `count` elements (its arrayLength), if any. */
  inputWithLength(count: number): string | undefined {
    const b = this.bindings.find((x) => x.access === 'read' && !x.scratch && !isHalf(this.node(x.node).type.dtype) && numel(this.node(x.node).type.shape) === count && x.node !== this.k.inPlace);
    return b && this.bufName.get(b.node);
  }

  /** Binds the kernel's output buffer; call after reading every value the kernel needs. */
  output(): string {
    this.bindings.push({ binding: this.bindings.length, node: this.k.root, access: 'read_write' });
    const d = this.node(this.k.root).type.dtype;
    if (isPacked(d, this.f16)) this.helper(packedStoreHelper(d));
    return 'out';
  }

  /** The statement writing compute-type value v as element idx of the output (the root's dtype and layout). */
  store(idx: string, v: string): string {
    return storeStmt(idx, v, this.node(this.k.root).type.dtype, this.f16);
  }

  /** Binds a kernel-private array<u32> of `words` elements named `name`. */
  scratch(name: string, words: number): string {
    this.bindings.push({ binding: this.bindings.length, node: this.k.root, access: 'read_write', scratch: { name, words } });
    return name;
  }

  /** Whether the kernel computes node %id itself (rather than loading it). */
  private inline(id: number): boolean {
    const k = this.k;
    if (id === k.root) return k.kind === 'elementwise' || k.epilogue;
    return this.storage[id] === 'inline' && this.inKernel.has(id) && !(k.epilogue && id === k.anchor);
  }

  /** Whether node %id's value depends on the fused anchor (it sits on the epilogue path). */
  needsAcc(id: number): boolean {
    if (!this.k.epilogue) return false;
    if (id === this.k.anchor) return true;
    let r = this.accMemo.get(id);
    if (r === undefined) {
      r = this.inline(id) && this.node(id).inputs.some((q) => this.needsAcc(q));
      this.accMemo.set(id, r);
    }
    return r;
  }

  /** Expression for element `idx` of node %id; `acc` is the anchor's value where the node is on the epilogue path. */
  at(id: number, idx: string, acc = 'acc'): string {
    if (this.k.epilogue && id === this.k.anchor) return acc;
    this.emit(id);
    const f = this.fnName(id);
    return this.needsAcc(id) ? `${f}(${idx}, ${acc})` : `${f}(${idx})`;
  }

  /**
   * The value function of node %id, numbered by first use in this kernel. Equal computations in different places
   * of a graph (layer 0 and layer 1 of a model) therefore get equal WGSL, and share one shader module and pipeline.
   */
  private fnName(id: number): string {
    let k = this.local.get(id);
    if (k === undefined) {
      k = this.local.size;
      this.local.set(id, k);
    }
    return `v${k}`;
  }

  private emit(id: number): void {
    if (this.fnSrc.has(id)) return;
    this.fnSrc.set(id, ''); // reserve: operands are emitted first, so functions appear in dependency order
    const n = this.node(id);
    const t = computeType(n.type.dtype);
    const accParam = this.needsAcc(id) ? `, acc: ${computeType(this.node(this.k.anchor).type.dtype)}` : '';
    const body = this.inline(id) ? this.body(n)
      : `  return ${loadExpr(this.input(id), 'i', n.type.dtype, this.f16)};`;
    const src = `// ${n.op} : ${fmtType(n.type)}\nfn ${this.fnName(id)}(i: u32${accParam}) -> ${t} {\n${body}\n}`;
    this.fnSrc.delete(id);
    this.fnSrc.set(id, src);
  }

  /** Notes an index expression that depends on the shape (anything but the flat index itself or a scalar's 0). */
  flatIndex(idx: string): string {
    if (idx !== 'i' && idx !== '0u') this.shapeFree = false;
    return idx;
  }

  round(e: string, d: DType): string {
    return d === 'f16' ? `kiln_f16(${e})` : d === 'bf16' ? `kiln_bf16(${e})` : e;
  }

  private body(n: Node): string {
    const out = n.type;
    const ct = (x: TensorType): TensorType => ({ dtype: isHalf(x.dtype) ? 'f32' : x.dtype, shape: x.shape });
    const lower = OPS[n.op].lower;
    const attrs = n.attrs as Record<string, unknown>;
    if (lower.kernel === 'elementwise') {
      // IEEE add and mul are commutative: the operand carrying the anchor's value goes first, so `acc + x` and
      // `x + acc` (a chain of partial sums built either way round) are one program.
      const ins = (n.op === 'add' || n.op === 'mul') && !this.needsAcc(n.inputs[0]) && this.needsAcc(n.inputs[1]) && sameShape(this.node(n.inputs[0]).type.shape, this.node(n.inputs[1]).type.shape) ? [n.inputs[1], n.inputs[0]] : n.inputs;
      const args = ins.map((q) => this.at(q, this.flatIndex(broadcastIndex(this.node(q).type.shape, out.shape, 'i'))));
      const lets = args.map((a, k) => `  let a${k} = ${a};`);
      const a2 = n.op === 'cast' && isHalf(attrs.to as DType) ? { ...attrs, to: 'f32' } : attrs;
      if (lower.helpers) this.helper(lower.helpers);
      const e = (lower.expr as (a: string[], at: unknown, i: readonly TensorType[], o: TensorType) => string)(
        args.map((_, k) => `a${k}`),
        a2,
        ins.map((q) => ct(this.node(q).type)),
        ct(out),
      );
      return `${lets.join('\n')}\n  return ${this.round(e, out.dtype)};`;
    }
    const rule = INLINE[n.op as InlineOp] as InlineRule<InlineOp>;
    if (!rule.shapeFree) this.shapeFree = false;
    return rule.body(this, n as Node<InlineOp>, out);
  }

  /** Bindings declarations, helper functions and value functions, in that order. */
  declarations(): string {
    const decl = this.bindings.map((b) => {
      const n = this.node(b.node);
      if (b.scratch) return `@group(0) @binding(${b.binding}) var<storage, read_write> ${b.scratch.name}: array<u32>; // ${b.scratch.words} words of work space`;
      const name = b.access === 'read' ? this.bufName.get(b.node)! : 'out';
      const packed = isPacked(n.type.dtype, this.f16);
      const elem = b.access === 'read_write' && packed ? 'atomic<u32>' : storageType(n.type.dtype, this.f16);
      const access = b.access === 'read' ? 'read' : 'read_write';
      return `@group(0) @binding(${b.binding}) var<storage, ${access}> ${name}: array<${elem}>; // ${n.op} ${fmtType(n.type)}${packed ? ' (two per word)' : ''}`;
    });
    const halves = this.k.nodes.some((id) => isHalf(this.node(id).type.dtype)) || this.bindings.some((b) => isHalf(this.node(b.node).type.dtype));
    const half = halves ? [WGSL_BF16_ROUND.trim(), WGSL_F16_BITS.trim()] : [];
    return [...decl, WGSL_BITS_F32, WGSL_F16_ROUND.trim(), ...half, ...this.helpers, '', ...this.fnSrc.values()].join('\n');
  }

  /** The kernel's comment header: what it computes, without node ids or names (so equal kernels have equal source). */
  header(kind: string, extra = ''): string {
    const ops = this.k.nodes
      .map((id) => this.node(id))
      .filter((n) => !['input', 'param'].includes(n.op) && this.storage[n.id] !== 'const')
      .map((n) => n.op);
    const root = this.node(this.k.root);
    return [`// kiln kernel: ${kind}${extra ? ` (${extra})` : ''}`, `// ops: ${ops.join(', ')}`, `// writes ${fmtType(root.type)}`].join('\n');
  }
}

export type { OpKind };

/** Ops a kernel computes inline from a flat index: leaves, layout remaps, gathers and dropout's mask. */
type InlineOp = OpsIn<'leaf' | 'layout' | 'gather' | 'random'>;

interface InlineRule<K extends InlineOp> {
  /** Its index arithmetic is the flat index itself (see KernelWriter.shapeFree). */
  shapeFree: boolean;
  /** The body of the value function `fn vN(i: u32) -> T` of node n. */
  body(w: KernelWriter, n: Node<K>, out: TensorType): string;
}

const buffer = (n: Node): never => {
  throw new IRError(`codegen: ${n.op} %${n.id} is a buffer, never computed inline (a scheduler bug)`);
};

/** One entry per inline op, by type: an op of these families without an entry does not compile. */
const INLINE: { [K in InlineOp]: InlineRule<K> } = {
  input: { shapeFree: true, body: (_w, n) => buffer(n) },
  param: { shapeFree: true, body: (_w, n) => buffer(n) },
  constant: {
    shapeFree: true,
    body: (_w, n, out) => {
      if (n.attrs.values.length !== 1) throw new IRError(`codegen: constant %${n.id} with ${n.attrs.values.length} values must be a buffer`);
      return `  return ${literal(n.attrs.values[0], out.dtype)};`;
    },
  },
  iota: { shapeFree: false, body: (_w, n, out) => `  return ${computeType(out.dtype)}(${coordOf('i', out.shape, n.attrs.axis)});` },
  reshape: { shapeFree: true, body: (w, n) => `  return ${w.at(n.inputs[0], 'i')};` },
  broadcast: {
    shapeFree: true, // unless broadcastIndex remaps the index, which flatIndex notes
    body: (w, n, out) => `  return ${w.at(n.inputs[0], w.flatIndex(broadcastIndex(w.node(n.inputs[0]).type.shape, out.shape, 'i')))};`,
  },
  transpose: {
    shapeFree: false,
    body: (w, n, out) => {
      const xs = strides(w.node(n.inputs[0]).type.shape);
      const terms = n.attrs.perm.map((p, k) => ({ c: coordOf('i', out.shape, k), stride: out.shape[k] === 1 ? 0 : xs[p] }));
      return `  return ${w.at(n.inputs[0], linear(terms))};`;
    },
  },
  slice: {
    shapeFree: false,
    body: (w, n, out) => {
      const a = n.attrs;
      const xs = strides(w.node(n.inputs[0]).type.shape);
      const terms = out.shape.map((_, k) => ({ c: out.shape[k] === 1 ? `${a.starts[k]}u` : a.starts[k] ? `(${coordOf('i', out.shape, k)} + ${a.starts[k]}u)` : coordOf('i', out.shape, k), stride: xs[k] }));
      return `  return ${w.at(n.inputs[0], linear(terms))};`;
    },
  },
  concat: {
    shapeFree: false,
    body: (w, n, out) => {
      const ax = n.attrs.axis;
      const inner = numel(out.shape.slice(ax + 1));
      const lines = [`  let c = ${coordOf('i', out.shape, ax)};`, `  let outer = i / ${inner * out.shape[ax]}u;`, `  let inner = i % ${inner}u;`];
      let off = 0;
      n.inputs.forEach((q, k) => {
        const width = w.node(q).type.shape[ax];
        const idx = `outer * ${width * inner}u + (c - ${off}u) * ${inner}u + inner`;
        const last = k === n.inputs.length - 1;
        lines.push(last ? `  return ${w.at(q, idx)};` : `  if (c < ${off + width}u) { return ${w.at(q, idx)}; }`);
        off += width;
      });
      return lines.join('\n');
    },
  },
  gather: {
    shapeFree: false,
    body: (w, n, out) => {
      const [table, idx] = n.inputs;
      const ts = w.node(table).type.shape;
      const row = numel(ts.slice(1));
      return [
        `  let r = i32(${w.at(idx, row === 1 ? 'i' : `i / ${row}u`)});`,
        `  if (r < 0 || r >= ${ts[0]}) { return ${literal(0, out.dtype)}; }`,
        `  return ${w.at(table, row === 1 ? 'u32(r)' : `u32(r) * ${row}u + i % ${row}u`)};`,
      ].join('\n');
    },
  },
  one_hot: {
    shapeFree: false,
    body: (w, n, out) =>
      [
        `  let v = i32(${w.at(n.inputs[0], `i / ${n.attrs.depth}u`)});`,
        `  return select(${literal(0, out.dtype)}, ${literal(1, out.dtype)}, v == i32(i % ${n.attrs.depth}u));`,
      ].join('\n'),
  },
  update_slice: {
    shapeFree: false,
    body: (w, n, out) => {
      const [x, u, pos] = n.inputs;
      const ax = n.attrs.axis;
      const m = w.node(u).type.shape[ax];
      const inner = numel(out.shape.slice(ax + 1));
      // the row j of u this element would come from (pos known at run time); outside [0, m): x's own element
      return [
        `  let j = i32(${coordOf('i', out.shape, ax)}) - ${w.at(pos, '0u')};`,
        `  if (j >= 0 && j < ${m}) {`,
        `    return ${w.at(u, `(i / ${inner * out.shape[ax]}u) * ${m * inner}u + u32(j) * ${inner}u + i % ${inner}u`)};`,
        '  }',
        `  return ${w.at(x, 'i')};`,
      ].join('\n');
    },
  },
  dropout: {
    shapeFree: true, // the mask is a function of the flat index alone
    body: (w, n, out) => {
      const a = n.attrs;
      w.helper(WGSL_PHILOX);
      // keep <=> (u >> 8) * 2^-24 >= p <=> (u >> 8) >= ceil(p * 2^24): an exact integer test, bit-identical to dropoutKeep.
      const threshold = Math.ceil(a.p * 16777216);
      const scale = literal(1 / (1 - a.p), 'f32');
      return [
        `  let seed = ${w.at(n.inputs[1], '0u')};`,
        `  let r = kiln_philox(vec4<u32>(i, 0u, 0u, 0u), vec2<u32>(seed, ${a.stream >>> 0}u));`,
        `  let x = ${w.at(n.inputs[0], 'i')};`,
        `  return select(0.0, ${w.round(`x * ${scale}`, out.dtype)}, (r.x >> 8u) >= ${threshold}u);`,
      ].join('\n');
    },
  },
};
