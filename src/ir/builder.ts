import type { SourceLoc } from '../errors.js';
import { ShapeError } from '../errors.js';
import type { Graph, GraphOutput, Node, Scope } from './graph.js';
import type { AttrsOf, OpKind } from './op.js';
import { OPS } from './registry.js';
import type { DType, Shape, TensorType } from './types.js';
import { fmtType } from './types.js';

export interface NodeOpts {
  name?: string;
  scope?: Scope;
  loc?: SourceLoc;
}

/**
 * Appends nodes to a graph, running each op's shape rule as it goes. Used by the frontend's lowering,
 * by gradient rules and by passes that rebuild graphs.
 */
export class GraphBuilder {
  readonly nodes: Node[];
  /** Defaults applied to every node created while set (the frontend sets them per statement). */
  scope?: Scope;
  loc?: SourceLoc;
  private nextScope = 0;

  constructor(nodes: Node[] = []) {
    this.nodes = nodes;
    for (const n of nodes) if (n.scope && n.scope.id >= this.nextScope) this.nextScope = n.scope.id + 1;
  }

  /** Continue building on a copy of an existing graph (node objects are shared; they are immutable by convention). */
  static extend(g: Graph): GraphBuilder {
    return new GraphBuilder([...g.nodes]);
  }

  newScope(kind: string): Scope {
    return { kind, id: this.nextScope++ };
  }

  type(id: number): TensorType {
    const n = this.nodes[id];
    if (!n) throw new Error(`GraphBuilder: no node %${id}`);
    return n.type;
  }

  op<K extends OpKind>(op: K, inputs: number[], attrs: AttrsOf<K>, opts: NodeOpts = {}): number {
    const rule = OPS[op];
    if (!rule) throw new Error(`unknown op '${op}'`);
    if (rule.arity !== 'variadic' && inputs.length !== rule.arity) {
      throw new ShapeError(`${op} takes ${rule.arity} operand(s), got ${inputs.length}`, opts.loc ?? this.loc);
    }
    const types = inputs.map((i) => this.type(i));
    let type: TensorType;
    try {
      type = rule.infer(types, attrs);
    } catch (e) {
      if (e instanceof ShapeError && !e.loc && (opts.loc ?? this.loc)) throw new ShapeError(e.message, opts.loc ?? this.loc);
      throw e;
    }
    const node: Node = { id: this.nodes.length, op, inputs: [...inputs], attrs, type: { dtype: type.dtype, shape: [...type.shape] } };
    const name = opts.name;
    const scope = opts.scope ?? this.scope;
    const loc = opts.loc ?? this.loc;
    if (name !== undefined) node.name = name;
    if (scope !== undefined) node.scope = scope;
    if (loc !== undefined) node.loc = loc;
    this.nodes.push(node);
    return node.id;
  }

  build(name: string, outputs: GraphOutput[]): Graph {
    return { name, nodes: this.nodes, outputs: outputs.map((o) => ({ ...o })) };
  }

  // ---- small conveniences used by gradient rules and lowering ----

  scalar(value: number, dtype: DType = 'f32'): number {
    return this.op('constant', [], { dtype, shape: [], values: [value] });
  }

  full(value: number, type: TensorType): number {
    return this.op('constant', [], { dtype: type.dtype, shape: [...type.shape], values: [value] });
  }

  unary<K extends OpKind>(op: K, x: number, attrs?: AttrsOf<K>): number {
    return this.op(op, [x], (attrs ?? {}) as AttrsOf<K>);
  }

  binary<K extends OpKind>(op: K, a: number, b: number): number {
    return this.op(op, [a, b], {} as AttrsOf<K>);
  }

  add(a: number, b: number): number {
    return this.binary('add', a, b);
  }
  sub(a: number, b: number): number {
    return this.binary('sub', a, b);
  }
  mul(a: number, b: number): number {
    return this.binary('mul', a, b);
  }
  div(a: number, b: number): number {
    return this.binary('div', a, b);
  }
  neg(a: number): number {
    return this.op('neg', [a], {});
  }
  cast(a: number, to: DType): number {
    return this.type(a).dtype === to ? a : this.op('cast', [a], { to });
  }
  reshape(a: number, shape: Shape): number {
    const t = this.type(a);
    if (t.shape.length === shape.length && t.shape.every((d, i) => d === shape[i])) return a;
    return this.op('reshape', [a], { shape: [...shape] });
  }
  sum(a: number, axes: number[], keepdims = false): number {
    if (axes.length === 0) return a;
    return this.op('sum', [a], { axes, keepdims });
  }
  broadcastTo(a: number, shape: Shape): number {
    const t = this.type(a);
    if (t.shape.length === shape.length && t.shape.every((d, i) => d === shape[i])) return a;
    return this.op('broadcast', [a], { shape: [...shape] });
  }

  /**
   * Sums a broadcast cotangent back to an operand's shape: the gradient of numpy broadcasting.
   * Leading extra axes are summed away, stretched size-1 axes are summed with keepdims.
   */
  unbroadcast(g: number, to: Shape): number {
    const gs = this.type(g).shape;
    if (gs.length === to.length && gs.every((d, i) => d === to[i])) return g;
    const lead = gs.length - to.length;
    if (lead < 0) throw new ShapeError(`unbroadcast: cannot reduce ${fmtType(this.type(g))} to [${to.join(', ')}]`);
    const axes: number[] = [];
    for (let i = 0; i < gs.length; i++) {
      if (i < lead) axes.push(i);
      else if (to[i - lead] === 1 && gs[i] !== 1) axes.push(i);
    }
    const s = this.sum(g, axes, true);
    return this.reshape(s, to);
  }
}
