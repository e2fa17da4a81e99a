import { describe, expect, it } from 'vitest';
import { gradcheck } from '../../src/autodiff/gradcheck.js';
import { randomInput } from '../../src/cli/commands/run.js';
import { compileModel } from '../../src/frontend/index.js';
import type { HostTensor } from '../../src/ir/tensor.js';

describe('full-model gradient checks of the library models (tiny sizes, double precision)', () => {
  for (const model of ['gpt', 'bert', 'prefixlm', 't5']) {
    it(model, () => {
      const { graph, model: info } = compileModel(`src/models/${model}.kiln`, {
        entry: 'loss',
        set: { d: 8, heads: 2, layers: 1, vocab: 11, d_ff: 16, ctx: 8 },
        dims: model === 't5' ? { B: 2, S: 5, T: 4 } : { B: 2, T: 4 },
      });
      const inputs: Record<string, HostTensor> = {};
      for (const n of graph.nodes) if (n.op === 'input') inputs[(n.attrs as { name: string }).name] = randomInput((n.attrs as { name: string }).name, n.type, 5, info.config);
      const r = gradcheck(graph, { inputs, seed: 2, maxElementsPerParam: 8, tol: 1e-5, floor: 1e-4 });
      expect(r.perParam.length).toBeGreaterThan(10);
      expect(r.worst!.maxRelErr).toBeLessThan(1e-5);
    });
  }
});
