/**
 * Gradient checking: the compiled gradient (the joint graph, run by the interpreter) against central finite
 * differences of the loss, both in double precision (the interpreter's float64 mode), like torch.autograd.gradcheck.
 * Each parameter is checked on a seeded sample of its elements, with one criterion, torch.autograd.gradcheck's:
 * an element passes when |g - fd| <= atol + rtol * |fd|. The absolute term is what lets a correct model pass where
 * a gradient is ~1e-6 and finite differences carry ~1e-10 of noise; a wrong rule (a missing term, a swapped
 * operand) misses by the size of the gradient itself and fails.
 */
import { interpret } from '../interp/interpreter.js';
import type { Graph } from '../ir/graph.js';
import { initParam } from '../ir/init.js';
import type { AttrsOf } from '../ir/op.js';
import type { HostTensor } from '../ir/tensor.js';
import { Rng } from '../ir/rng.js';
import { grad } from './index.js';

export interface GradcheckOptions {
  loss?: string;
  inputs: Record<string, HostTensor>;
  params?: Record<string, HostTensor>;
  seed?: number;
  eps?: number;
  /** Relative tolerance (default 1e-4). */
  rtol?: number;
  /** Absolute tolerance (default 1e-8). */
  atol?: number;
  maxElementsPerParam?: number;
  /** Float graph inputs to check as well (reported as `input:<name>`). */
  wrtInputs?: string[];
  /** Use a precomputed joint graph (e.g. one built from decomposed composites). */
  joint?: Graph;
}

export interface ParamCheck {
  name: string;
  checked: number;
  /** Largest |g - fd| over the checked elements. */
  maxAbsErr: number;
  /** Largest |g - fd| / |fd| (informative: huge where fd is ~0). */
  maxRelErr: number;
  /** Largest |g - fd| / (atol + rtol * |fd|): the parameter passes when it is at most 1. */
  worstRatio: number;
}

export const GRADCHECK_DEFAULTS = { rtol: 1e-4, atol: 1e-8, eps: 1e-5 } as const;

export interface GradcheckResult {
  perParam: ParamCheck[];
  worst: ParamCheck | undefined;
  ok: boolean;
  rtol: number;
  atol: number;
}

const toF64 = (t: HostTensor): HostTensor => ({ dtype: t.dtype, shape: t.shape, data: t.dtype === 'f32' ? Float64Array.from(t.data) : t.data });

export function gradcheck(g: Graph, o: GradcheckOptions): GradcheckResult {
  const loss = o.loss ?? 'loss';
  const eps = o.eps ?? GRADCHECK_DEFAULTS.eps;
  const rtol = o.rtol ?? GRADCHECK_DEFAULTS.rtol;
  const atol = o.atol ?? GRADCHECK_DEFAULTS.atol;
  const seed = o.seed ?? 0;
  const params: Record<string, HostTensor> = {};
  for (const n of g.nodes) {
    if (n.op !== 'param') continue;
    const a = n.attrs as AttrsOf<'param'>;
    params[a.name] = toF64(o.params?.[a.name] ?? initParam(a.init, n.type, a.name, seed));
  }
  const rng = new Rng(seed, 'gradcheck');
  const inputs = Object.fromEntries(Object.entries(o.inputs).map(([k, v]) => [k, toF64(v)]));
  const joint = o.joint ?? grad(g, { loss, wrtInputs: o.wrtInputs });
  const analytic = interpret(joint, { inputs, params, float64: true });
  const f = () => interpret(g, { inputs, params, float64: true })[loss].data[0];
  const targets: [string, HostTensor, HostTensor | undefined][] = [];
  const gradOut = new Map<string, HostTensor>();
  for (const out of joint.outputs) {
    if (out.role?.kind === 'grad') gradOut.set(out.role.param, analytic[out.name]);
    if (out.role?.kind === 'input-grad') gradOut.set(`input:${out.role.input}`, analytic[out.name]);
  }
  for (const [name, p] of Object.entries(params)) if (p.dtype === 'f32') targets.push([name, p, gradOut.get(name)]);
  for (const name of o.wrtInputs ?? []) targets.push([`input:${name}`, inputs[name], gradOut.get(`input:${name}`)]);
  const perParam: ParamCheck[] = [];
  for (const [name, p, gr] of targets) {
    if (!gr) continue;
    const n = p.data.length;
    const k = Math.min(n, o.maxElementsPerParam ?? 6);
    const idx = k === n ? Array.from({ length: n }, (_, i) => i) : rng.shuffle(Array.from({ length: n }, (_, i) => i)).slice(0, k);
    let maxRel = 0;
    let maxAbs = 0;
    let ratio = 0;
    for (const i of idx) {
      const x = p.data[i];
      p.data[i] = x + eps;
      const up = f();
      p.data[i] = x - eps;
      const down = f();
      p.data[i] = x;
      const fd = (up - down) / (2 * eps);
      const an = gr.data[i];
      const abs = Math.abs(fd - an);
      maxAbs = Math.max(maxAbs, abs);
      maxRel = Math.max(maxRel, abs / Math.abs(fd) || 0);
      ratio = Math.max(ratio, abs / (atol + rtol * Math.abs(fd)));
    }
    perParam.push({ name, checked: idx.length, maxRelErr: maxRel, maxAbsErr: maxAbs, worstRatio: ratio });
  }
  const worst = perParam.reduce<ParamCheck | undefined>((w, p) => (!w || p.worstRatio > w.worstRatio ? p : w), undefined);
  return { perParam, worst, ok: !worst || worst.worstRatio <= 1, rtol, atol };
}
