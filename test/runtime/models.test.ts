/**
 * The library models (src/models/*.kiln) at tiny sizes: forward graphs, and joint forward+backward graphs from
 * autodiff, on WebGPU (fused) against the interpreter.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileModel, loadModelInfo, MODELS_DIR } from '../../src/frontend/index.js';
import type { Graph } from '../../src/ir/graph.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import { planMemory, schedule, verifyMemoryPlan } from '../../src/schedule/index.js';
import { checkAgainstInterpreter } from './helpers.js';
import { randTensor } from './graphs.js';

const MODELS = readdirSync(MODELS_DIR).filter((f) => f.endsWith('.kiln'));
const TINY: Record<string, number> = { vocab: 13, d: 16, d_model: 16, heads: 2, n_heads: 2, layers: 1, n_layers: 1, enc_layers: 1, dec_layers: 1, d_ff: 32, ctx: 6, max_len: 6, prefix: 2 };
const TINY_DIMS: Record<string, number> = { B: 2, T: 6, S: 6, L: 6, P: 2 };
const AUTODIFF = join(import.meta.dirname, '../../src/autodiff/index.ts');

function tiny(file: string) {
  const info = loadModelInfo(join(MODELS_DIR, file));
  const set: Record<string, number> = {};
  for (const [k, v] of Object.entries(TINY)) if (k in info.config) set[k] = v;
  // dropout on: the GPU's Philox masks must match the interpreter's exactly for the outputs to agree
  if ('dropout' in info.config) set.dropout = 0.1;
  const dims: Record<string, number> = {};
  for (const [k, v] of Object.entries(TINY_DIMS)) if (k in info.dims) dims[k] = v;
  return { info, set, dims };
}

function inputsFor(g: Graph, vocab: number): Record<string, HostTensor> {
  const out: Record<string, HostTensor> = {};
  let seed = 1;
  for (const n of g.nodes) {
    if (n.op !== 'input') continue;
    const a = n.attrs as { name: string };
    const t = n.type;
    out[a.name] =
      t.dtype === 'i32' || t.dtype === 'u32' ? randTensor(t.dtype, [...t.shape], seed++, { lo: 0, hi: vocab }) : randTensor(t.dtype, [...t.shape], seed++, { lo: 0, hi: 1 });
  }
  return out;
}

const TOL = { rtol: 2e-4, atol: 2e-5 };

describe('library models on WebGPU', () => {
  it('has the four library models', () => {
    expect(MODELS.length).toBeGreaterThanOrEqual(4);
  });
  it('the library GPT (default size): fusion cuts the kernel count, memory reuse cuts intermediate bytes', () => {
    const { graph } = compileModel(join(MODELS_DIR, 'gpt.kiln'), { entry: 'loss' });
    const s = schedule(graph);
    expect(s.kernels.length).toBeLessThan(s.unfusedKernelCount / 1.5);
    const plan = planMemory(graph, s);
    verifyMemoryPlan(plan);
    expect(plan.slotBytes).toBeLessThan(plan.totalIntermediateBytes / 2);
  });
  for (const file of MODELS) {
    it(`${file}: every entry's forward graph matches the interpreter`, async () => {
      const { info, set, dims } = tiny(file);
      const vocab = Number(info.config.vocab ?? 2);
      for (const entry of info.entries) {
        const { graph } = compileModel(join(MODELS_DIR, file), { entry: entry.name, set, dims });
        await checkAgainstInterpreter(graph, inputsFor(graph, vocab), { modes: [{ fuse: true }], tol: TOL });
      }
    });
  }
});

describe.skipIf(!existsSync(AUTODIFF))('library models: joint forward + backward on WebGPU', () => {
  for (const file of MODELS) {
    it(`${file}: loss gradients match the interpreter`, async () => {
      const { grad } = (await import(AUTODIFF)) as { grad: (g: Graph, o: { loss: string }) => Graph };
      const { info, set, dims } = tiny(file);
      const entry = info.entries.find((e) => e.name === 'loss') ?? info.entries.find((e) => e.outputs.includes('loss'));
      expect(entry, `${file} has a loss entry`).toBeDefined();
      const { graph } = compileModel(join(MODELS_DIR, file), { entry: entry!.name, set, dims });
      const joint = grad(graph, { loss: 'loss' });
      await checkAgainstInterpreter(joint, inputsFor(joint, Number(info.config.vocab ?? 2)), { modes: [{ fuse: true }], tol: { rtol: 1e-3, atol: 1e-5 } });
    });
  }
});
