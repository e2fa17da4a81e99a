/**
 * The page side of the browser test: runs an IR graph (sent as Kiln's JSON form) on `navigator.gpu` through the
 * same runtime and the same generated WGSL as in Node, and returns every output. Bundled by esbuild for the page.
 */
import { graphFromJSON } from '../../src/ir/print.js';
import { allocData, type HostTensor } from '../../src/ir/tensor.js';
import type { DType } from '../../src/ir/types.js';
import { acquireDevice } from '../../src/runtime/device.js';
import { compileGraph } from '../../src/runtime/index.js';

export interface Wire {
  dtype: DType;
  shape: number[];
  data: number[];
}

const toHost = (w: Wire): HostTensor => {
  const data = allocData(w.dtype, w.data.length);
  data.set(w.data);
  return { dtype: w.dtype, shape: w.shape, data };
};

/** Runs `feeds.length` steps (updates stay on the device between them); returns each step's outputs. */
async function kilnRun(graphJson: string, params: Record<string, Wire>, feeds: Record<string, Wire>[]) {
  const dev = await acquireDevice();
  const g = graphFromJSON(graphJson);
  const exe = await compileGraph(g, dev, { seed: null });
  for (const [name, w] of Object.entries(params)) exe.setParam(name, toHost(w));
  const steps: Record<string, Wire>[] = [];
  for (const f of feeds) {
    const inputs = Object.fromEntries(Object.entries(f).map(([k, w]) => [k, toHost(w)]));
    const { outputs } = await exe.run(inputs, { download: g.outputs.map((o) => o.name) });
    steps.push(Object.fromEntries(Object.entries(outputs).map(([k, t]) => [k, { dtype: t.dtype, shape: [...t.shape], data: Array.from(t.data) }])));
  }
  exe.destroy();
  return { backend: dev.backend, adapter: dev.adapterInfo, features: [...dev.features], steps };
}

(globalThis as unknown as { kilnRun: typeof kilnRun }).kilnRun = kilnRun;
