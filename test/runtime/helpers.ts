/** Shared helpers for WebGPU tests: one device per test file, and comparison against the interpreter. */
import { expect } from 'vitest';
import type { Graph } from '../../src/ir/graph.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import { fmtType, isFloat } from '../../src/ir/types.js';
import { interpret } from '../../src/interp/interpreter.js';
import { acquireDevice } from '../../src/runtime/device.js';
import type { KilnDevice } from '../../src/runtime/device.js';
import type { CompileOptions, Executable } from '../../src/runtime/index.js';
import { compileGraph } from '../../src/runtime/index.js';

let shared: Promise<KilnDevice> | undefined;
export function sharedDevice(): Promise<KilnDevice> {
  shared ??= acquireDevice();
  return shared;
}

export interface Tol {
  rtol?: number;
  atol?: number;
}

/** Asserts got ~= want: exact for integers and bools, |g - w| <= atol + rtol * |w| for floats. */
export function expectClose(label: string, got: HostTensor, want: HostTensor, tol: Tol = {}): void {
  const { rtol = 1e-5, atol = 1e-6 } = tol;
  expect(fmtType(got), `${label}: type`).toBe(fmtType(want));
  const float = isFloat(want.dtype);
  let worst = -1;
  let worstErr = 0;
  for (let i = 0; i < want.data.length; i++) {
    const g = got.data[i];
    const w = want.data[i];
    if (Number.isNaN(w) && Number.isNaN(g)) continue;
    const err = Math.abs(g - w);
    const bad = float ? !(err <= atol + rtol * Math.abs(w)) : g !== w;
    if (bad && (worst < 0 || err > worstErr)) {
      worst = i;
      worstErr = err;
    }
  }
  if (worst >= 0) {
    expect.fail(`${label}: element ${worst} is ${got.data[worst]}, expected ${want.data[worst]} (|err| ${worstErr}; rtol ${rtol}, atol ${atol})`);
  }
}

/**
 * Compiles `g` (fused and unfused unless told otherwise), runs it on the device and compares every output with
 * the interpreter. Returns the executables' stats for further assertions.
 */
export async function checkAgainstInterpreter(
  g: Graph,
  inputs: Record<string, HostTensor>,
  opts: { tol?: Tol | ((output: string) => Tol); modes?: CompileOptions[]; seed?: number; params?: Record<string, HostTensor> } = {},
): Promise<Executable['stats'][]> {
  const dev = await sharedDevice();
  const want = interpret(g, { inputs, seed: opts.seed ?? 0, params: opts.params });
  const stats: Executable['stats'][] = [];
  for (const mode of opts.modes ?? [{ fuse: false }, { fuse: true }]) {
    const exe = await compileGraph(g, dev, { ...mode, seed: opts.seed ?? 0 });
    try {
      for (const [name, t] of Object.entries(opts.params ?? {})) exe.setParam(name, t);
      const { outputs } = await exe.run(inputs);
      for (const o of g.outputs) {
        const tol = typeof opts.tol === 'function' ? opts.tol(o.name) : opts.tol;
        expectClose(`${g.name}/${o.name} (${JSON.stringify(mode)})`, outputs[o.name], want[o.name], tol);
      }
      stats.push(exe.stats);
    } finally {
      exe.destroy();
    }
  }
  return stats;
}
