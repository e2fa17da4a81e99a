/**
 * jax-js (npm `@jax-js/jax`) as the second peer: JAX-style tracing, jit fusion into generated WGSL — the closest
 * design to Kiln's. Its `webgpu` device runs on the same Dawn adapter Kiln and TF.js use (navigator.gpu must exist
 * before `init()`), its `wasm` device is the CPU path a user without a GPU would take. On Node 20 its einsum parser
 * needs the iterator-helper methods (Node 22 has them), which this file polyfills for the bench process only.
 *
 * jax-js arrays are reference-counted: every function takes ownership of its arguments, so a value used twice is
 * passed as `x.ref` the first time (see its README). The GPT below follows that rule throughout.
 */
import type * as Jax from '@jax-js/jax';
import { acquireDevice } from '../../src/runtime/device.js';
import type { GptShape } from './tfjs-gpt.js';

type JaxModule = typeof Jax;
type Arr = Jax.Array;
export type JaxDevice = 'webgpu' | 'wasm';

/** Iterator.prototype.map/filter/toArray/... for Node < 22, as lazy generators (what the proposal specifies). */
function polyfillIteratorHelpers(): void {
  const proto = Object.getPrototypeOf(Object.getPrototypeOf([][Symbol.iterator]())) as Record<string, unknown>;
  const def = (name: string, f: (this: Iterator<unknown>, ...a: never[]) => unknown) => {
    if (typeof proto[name] !== 'function') Object.defineProperty(proto, name, { value: f, writable: true, configurable: true });
  };
  const iter = (it: Iterator<unknown>): Iterable<unknown> => ({ [Symbol.iterator]: () => it });
  def('map', function* (this: Iterator<unknown>, f: (v: unknown, i: number) => unknown) {
    let i = 0;
    for (const v of iter(this)) yield f(v, i++);
  } as never);
  def('filter', function* (this: Iterator<unknown>, f: (v: unknown, i: number) => boolean) {
    let i = 0;
    for (const v of iter(this)) if (f(v, i++)) yield v;
  } as never);
  def('flatMap', function* (this: Iterator<unknown>, f: (v: unknown, i: number) => Iterable<unknown>) {
    let i = 0;
    for (const v of iter(this)) yield* f(v, i++);
  } as never);
  def('toArray', function (this: Iterator<unknown>) {
    return [...iter(this)];
  });
  def('forEach', function (this: Iterator<unknown>, f: (v: unknown, i: number) => void) {
    let i = 0;
    for (const v of iter(this)) f(v, i++);
  } as never);
  def('some', function (this: Iterator<unknown>, f: (v: unknown, i: number) => boolean) {
    let i = 0;
    for (const v of iter(this)) if (f(v, i++)) return true;
    return false;
  } as never);
  def('every', function (this: Iterator<unknown>, f: (v: unknown, i: number) => boolean) {
    let i = 0;
    for (const v of iter(this)) if (!f(v, i++)) return false;
    return true;
  } as never);
  def('reduce', function (this: Iterator<unknown>, f: (a: unknown, v: unknown, i: number) => unknown, init?: unknown) {
    let i = 0;
    let acc = init;
    let first = arguments.length < 2;
    for (const v of iter(this)) {
      if (first) [acc, first] = [v, false];
      else acc = f(acc, v, i);
      i++;
    }
    return acc;
  } as never);
}

let loaded: Promise<{ jax: JaxModule; devices: JaxDevice[] }> | null = null;

/** Loads and initialises jax-js on the process's Dawn adapter; rejects (with jax-js's reason) if it cannot. */
export function loadJax(): Promise<{ jax: JaxModule; devices: JaxDevice[] }> {
  loaded ??= (async () => {
    polyfillIteratorHelpers();
    await acquireDevice(); // sets VK_ICD_FILENAMES for lavapipe before Dawn loads
    const g = globalThis as { navigator?: { gpu?: unknown; userAgent?: string } };
    if (!g.navigator?.gpu) {
      const webgpu = (await import('webgpu')) as unknown as { create: (f: string[]) => GPU; globals: object };
      Object.assign(globalThis, webgpu.globals);
      g.navigator = { gpu: webgpu.create([]), userAgent: 'Node' };
    }
    const jax = (await import('@jax-js/jax')) as JaxModule;
    const devices = (await jax.init('webgpu', 'wasm')).filter((d): d is JaxDevice => d === 'webgpu' || d === 'wasm');
    if (!devices.length) throw new Error('jax-js initialised neither its webgpu nor its wasm device');
    return { jax, devices };
  })();
  return loaded;
}

/** An f32 array on `device`. */
export const jaxArray = (jax: JaxModule, data: Float32Array | Int32Array, shape: number[], device: JaxDevice): Arr =>
  jax.numpy.array(data as Float32Array<ArrayBuffer>, { shape, dtype: data instanceof Int32Array ? jax.numpy.int32 : jax.numpy.float32, device });

/** op(a) @ op(b) (op transposes where asked), jitted; `run` runs it once and awaits the result's data. */
export function jaxMatmul(jax: JaxModule, a: Arr, b: Arr, transA: boolean, transB: boolean): { run: () => Promise<Float32Array>; dispose: () => void } {
  const np = jax.numpy;
  const f = jax.jit((x: Arr, y: Arr) => np.matmul(transA ? np.transpose(x, [1, 0]) : x, transB ? np.transpose(y, [1, 0]) : y));
  return {
    run: async () => (await f(a.ref, b.ref).data()) as Float32Array,
    dispose: () => {
      a.dispose();
      b.dispose();
      f.dispose();
    },
  };
}

/** The library GPT's mean cross-entropy (same as tfjs-gpt.ts), written for jax-js with owned arguments. */
function gptLoss(jax: JaxModule, P: Record<string, Arr>, tokens: Arr, onehot: Arr, s: GptShape): Arr {
  const np = jax.numpy;
  const nn = jax.nn;
  const { B, T, d, heads } = s;
  const dh = d / heads;
  // Every parameter is used exactly once below except wte (embedding and head): take a ref of everything up
  // front and release the originals at the end, so the ownership bookkeeping stays local.
  const p = (name: string) => P[name].ref;
  const ln = (x: Arr, pre: string) => {
    const xc = x.ref.sub(np.mean(x, -1, { keepdims: true }));
    const v = np.mean(np.square(xc.ref), -1, { keepdims: true });
    return xc.mul(np.reciprocal(np.sqrt(v.add(1e-5)))).mul(p(`${pre}.g`)).add(p(`${pre}.b`));
  };
  const linear = (x: Arr, pre: string) => {
    const din = x.shape.at(-1)!;
    return np.matmul(x.reshape([B * T, din]), p(`${pre}.w`)).reshape([B, T, -1]).add(p(`${pre}.b`));
  };
  const split = (x: Arr) => x.reshape([B, T, heads, dh]).transpose([0, 2, 1, 3]);
  const gelu = (x: Arr) => {
    const inner = x.ref.add(x.ref.mul(x.ref).mul(x.ref).mul(0.044715)).mul(Math.sqrt(2 / Math.PI));
    return x.mul(0.5).mul(np.tanh(inner).add(1));
  };
  let x = np.take(p('wte'), tokens, 0).add(np.reshape(p('wpe').slice([0, T]), [1, T, d]));
  const causal = np.tril(np.ones([T, T])).astype(np.bool);
  for (let l = 0; l < s.layers; l++) {
    const h = ln(x.ref, `h.${l}.ln_1`);
    const q = split(linear(h.ref, `h.${l}.attn.q`));
    const k = split(linear(h.ref, `h.${l}.attn.k`));
    const v = split(linear(h, `h.${l}.attn.v`));
    const sc = np.where(causal.ref, np.matmul(q, k.transpose([0, 1, 3, 2])).mul(1 / Math.sqrt(dh)), -1e9);
    const o = np.matmul(nn.softmax(sc, -1), v).transpose([0, 2, 1, 3]).reshape([B, T, d]);
    x = x.add(linear(o, `h.${l}.attn.proj`));
    x = x.ref.add(linear(gelu(linear(ln(x, `h.${l}.ln_2`), `h.${l}.mlp.fc`)), `h.${l}.mlp.proj`));
  }
  causal.dispose();
  const logits = np.matmul(ln(x, 'ln_f').reshape([B * T, d]), np.transpose(p('wte'), [1, 0]));
  const nll = nn.logSoftmax(logits, -1).mul(onehot).sum(-1).mul(-1);
  for (const a of Object.values(P)) a.dispose();
  return np.mean(nll);
}

export interface JaxGptStep {
  /** One forward + loss (jitted). */
  forward: () => Promise<number>;
  /** One training step: jit(valueAndGrad(loss)) and an Adam update of every parameter, all in one jit. */
  step: () => Promise<number>;
  dispose: () => void;
}

/**
 * The GPT forward and training step on `device` with Kiln's initial weights (by Kiln's names, [in, out] layout).
 * Adam at step 1 every time (lr 1e-3, β 0.9/0.999, ε 1e-8), as the Kiln side is fed step = 1.
 */
export function jaxGpt(jax: JaxModule, device: JaxDevice, params: Record<string, { data: Float32Array; shape: readonly number[] }>, tokens: Int32Array, targets: Int32Array, s: GptShape, vocab: number): JaxGptStep {
  const np = jax.numpy;
  let P: Record<string, Arr> = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, jaxArray(jax, v.data, [...v.shape], device)]));
  let M: Record<string, Arr> = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, np.zeros([...v.shape], { device })]));
  let V: Record<string, Arr> = Object.fromEntries(Object.entries(params).map(([k, v]) => [k, np.zeros([...v.shape], { device })]));
  const tok = jaxArray(jax, tokens, [s.B, s.T], device);
  const oh = jax.nn.oneHot(jaxArray(jax, targets, [s.B * s.T], device), vocab);
  const lossFn = (p: Record<string, Arr>, t: Arr, o: Arr) => gptLoss(jax, p, t, o, s);
  const fwd = jax.jit(lossFn);
  const [b1, b2, lr, eps] = [0.9, 0.999, 1e-3, 1e-8];
  const step = jax.jit((p: Record<string, Arr>, m: Record<string, Arr>, v: Record<string, Arr>, t: Arr, o: Arr) => {
    const [loss, g] = jax.valueAndGrad(lossFn)(jax.tree.ref(p), t, o);
    const nm: Record<string, Arr> = {};
    const nv: Record<string, Arr> = {};
    const np2: Record<string, Arr> = {};
    for (const k of Object.keys(p)) {
      const gk = (g as Record<string, Arr>)[k];
      nm[k] = m[k].mul(b1).add(gk.ref.mul(1 - b1));
      nv[k] = v[k].mul(b2).add(gk.ref.mul(gk).mul(1 - b2));
      // bias correction at step 1: m / (1 - β1), v / (1 - β2)
      const upd = nm[k].ref.mul(1 / (1 - b1)).div(np.sqrt(nv[k].ref.mul(1 / (1 - b2))).add(eps));
      np2[k] = p[k].sub(upd.mul(lr));
    }
    return [loss, np2, nm, nv] as [Arr, Record<string, Arr>, Record<string, Arr>, Record<string, Arr>];
  });
  return {
    forward: async () => (await fwd(jax.tree.ref(P), tok.ref, oh.ref).data())[0],
    step: async () => {
      const [loss, p2, m2, v2] = step(P, M, V, tok.ref, oh.ref);
      [P, M, V] = [p2, m2, v2];
      await jax.blockUntilReady([P, M, V]);
      return (await loss.data())[0];
    },
    dispose: () => {
      for (const t of [P, M, V]) for (const a of Object.values(t)) a.dispose();
      tok.dispose();
      oh.dispose();
      fwd.dispose();
      step.dispose();
    },
  };
}
