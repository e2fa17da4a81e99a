import { describe, expect, it } from 'vitest';
import { gradcheck } from '../../src/autodiff/gradcheck.js';
import { randomInput } from '../../src/cli/commands/run.js';
import { compileModel } from '../../src/frontend/index.js';
import { OPS } from '../../src/ir/registry.js';
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
      const r = gradcheck(graph, { inputs, seed: 2, maxElementsPerParam: 8, rtol: 1e-5, atol: 1e-9 });
      expect(r.perParam.length).toBeGreaterThan(10);
      expect(r.ok, `${r.worst!.name}: ratio ${r.worst!.worstRatio}`).toBe(true);
    });
  }
});

// `kiln gradcheck`'s default criterion (|g - fd| <= 1e-8 + 1e-4 |fd|): every library model passes with the CLI's
// default settings, and a gradient rule with a term missing fails.
describe('the default gradcheck criterion', () => {
  const check = (model: string) => {
    const { graph, model: info } = compileModel(`src/models/${model}.kiln`, { entry: 'loss', dims: model === 't5' ? { B: 2, S: 8, T: 4 } : { B: 2, T: 8 }, set: { d: 16, heads: 2, layers: 2, vocab: 32, ctx: 8 } });
    const inputs: Record<string, HostTensor> = {};
    for (const n of graph.nodes) if (n.op === 'input') inputs[(n.attrs as { name: string }).name] = randomInput((n.attrs as { name: string }).name, n.type, 0, info.config);
    return gradcheck(graph, { inputs, seed: 0 });
  };
  for (const model of ['gpt', 'bert', 'prefixlm', 't5']) it(`passes a correct ${model}`, () => expect(check(model).ok).toBe(true));

  it('fails a wrong gradient rule (gelu without its tanh-derivative term)', () => {
    const rule = OPS.gelu.grad as Exclude<typeof OPS.gelu.grad, string>;
    const vjp = rule.vjp;
    rule.vjp = (b, n, g) => [b.mul(g, b.scalar(0.5))]; // the derivative of x/2 only
    try {
      const r = check('gpt');
      expect(r.ok).toBe(false);
      expect(r.worst!.worstRatio).toBeGreaterThan(10);
    } finally {
      rule.vjp = vjp;
    }
  });
});
