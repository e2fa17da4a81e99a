/**
 * LoRA as a compiler pass (Hu et al. 2021): each selected product `x @ W` (W a parameter named `<path>.<target>.w`,
 * stored [in, out]) becomes `x @ W + (dropout(x) @ A) @ B * (alpha / r)` with new parameters A [in, r] (Gaussian,
 * std 1/sqrt(in)) and B [r, out] (zeros), so at step 0 the model is exactly the base model. The trainer then trains
 * only A and B (W and everything else frozen): no gradient, update or optimizer state for the base weights.
 */
import { KilnError } from '../errors.js';
import { GraphBuilder } from '../ir/builder.js';
import type { Graph, Node } from '../ir/graph.js';
import type { AttrsOf } from '../ir/op.js';
import type { RewriteRule } from './rewrite.js';
import { rewrite } from './rewrite.js';

export interface LoraOptions {
  r: number;
  alpha: number;
  /** Suffixes of the weight paths to adapt, e.g. ['attn.q', 'attn.v'] matches `h.0.attn.q.w`. */
  targets: string[];
  /** Dropout on the LoRA path's input (0: none). */
  dropout: number;
}

export const LORA_A = '.lora_a';
export const LORA_B = '.lora_b';
export const isLoraParam = (name: string): boolean => name.endsWith(LORA_A) || name.endsWith(LORA_B);
/** Globs selecting every LoRA parameter (what a LoRA run trains, and what a base checkpoint lacks). */
export const LORA_GLOBS: readonly string[] = [`*${LORA_A}`, `*${LORA_B}`];

/** Parses `r=8,alpha=16,targets=attn.q,attn.v[,dropout=0.1]` (targets take the remaining comma-separated items). */
export function parseLoraSpec(spec: string): LoraOptions {
  const o: Partial<LoraOptions> = { targets: [], dropout: 0 };
  let key = '';
  for (const part of spec.split(',').map((s) => s.trim()).filter(Boolean)) {
    const m = /^(\w+)=(.*)$/.exec(part);
    if (m) [key] = [m[1]];
    const value = m ? m[2] : part;
    if (key === 'targets') o.targets!.push(value);
    else if (key === 'r' || key === 'alpha' || key === 'dropout') o[key] = Number(value);
    else throw new KilnError(`--lora: unknown setting '${part}' (expected r=, alpha=, targets=, dropout=)`);
  }
  if (!(Number.isInteger(o.r) && o.r! > 0)) throw new KilnError(`--lora: r must be a positive integer, got ${o.r}`);
  if (o.alpha === undefined) o.alpha = o.r;
  if (!(Number.isFinite(o.alpha) && o.alpha! > 0)) throw new KilnError(`--lora: alpha must be a positive number, got ${o.alpha}`);
  if (!(o.dropout! >= 0 && o.dropout! < 1)) throw new KilnError(`--lora: dropout must be in [0, 1), got ${o.dropout}`);
  if (!o.targets!.length) throw new KilnError('--lora: name the weights to adapt, e.g. targets=attn.q,attn.v');
  return o as LoraOptions;
}

const paramName = (n: Node) => (n.op === 'param' ? (n.attrs as AttrsOf<'param'>).name : undefined);

/** The graph with its `rng_seed` input (created if absent) as node 0. */
function seedFirst(g: Graph): Graph {
  const old = g.nodes.find((n) => n.op === 'input' && (n.attrs as AttrsOf<'input'>).name === 'rng_seed');
  const b = new GraphBuilder();
  const seed = b.op('input', [], { name: 'rng_seed', dtype: 'u32', shape: [] }, { name: 'rng_seed' });
  const map = new Array<number>(g.nodes.length);
  for (const n of g.nodes) {
    if (n === old) {
      map[n.id] = seed;
      continue;
    }
    map[n.id] = b.nodes.length;
    b.nodes.push({ ...n, id: b.nodes.length, inputs: n.inputs.map((i) => map[i]) });
  }
  return b.build(g.name, g.outputs.map((o) => ({ ...o, id: map[o.id] })));
}

/** The LoRA rewrite; throws when a target matches no weight of the graph. */
export function applyLora(g: Graph, o: LoraOptions): Graph {
  const matches = (name: string | undefined) => !!name && o.targets.some((t) => name === `${t}.w` || name.endsWith(`.${t}.w`));
  // the LoRA dropout reads the graph's rng_seed input: put it (or a new one) first, so every rewrite can use it
  if (o.dropout > 0) g = seedFirst(g);
  const seed = 0;
  let stream = 0x4c6f0000; // distinct from the frontend's dropout streams
  const rule: RewriteRule = {
    name: 'lora',
    ops: ['matmul'],
    rewrite: ({ node, b, arg }) => {
      const w = arg(1);
      const name = paramName(w);
      const attrs = node.attrs as AttrsOf<'matmul'>;
      if (node.rule === 'lora' || !matches(name) || attrs.transA || attrs.transB || w.type.shape.length !== 2) return null;
      const [din, dout] = w.type.shape;
      const base = name!.slice(0, -2);
      const A = b.op('param', [], { name: base + LORA_A, dtype: w.type.dtype, shape: [din, o.r], init: { kind: 'normal', std: 1 / Math.sqrt(din) } });
      const B = b.op('param', [], { name: base + LORA_B, dtype: w.type.dtype, shape: [o.r, dout], init: { kind: 'zeros' } });
      const x = node.inputs[0];
      let xl = x;
      if (o.dropout > 0) xl = b.op('dropout', [x, seed], { p: o.dropout, stream: stream++ });
      const y = b.op('matmul', [x, node.inputs[1]], attrs);
      const delta = b.op('matmul', [b.op('matmul', [xl, A], { transA: false, transB: false }), B], { transA: false, transB: false });
      return b.add(y, b.mul(delta, b.scalar(o.alpha / o.r, b.type(delta).dtype)));
    },
  };
  const r = rewrite(g, [rule], 1);
  if (!r.hits.lora) {
    const weights = g.nodes.map(paramName).filter((n): n is string => !!n && n.endsWith('.w'));
    throw new KilnError(`--lora targets ${o.targets.join(', ')} match no weight of ${g.name} (weights: ${weights.slice(0, 6).join(', ')}${weights.length > 6 ? ', ...' : ''})`);
  }
  return r.graph;
}
