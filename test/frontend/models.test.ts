import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkFile, compileModel, compileSource, formatSource, loadModelInfo, MODELS_DIR } from '../../src/frontend/index.js';
import { interpret } from '../../src/interp/interpreter.js';
import type { Graph } from '../../src/ir/graph.js';
import { inputsOf, paramsOf } from '../../src/ir/graph.js';
import { graphFromJSON, graphToJSON, printGraph } from '../../src/ir/print.js';
import type { HostTensor } from '../../src/ir/tensor.js';
import { randTensor } from './helpers.js';

const MODELS = ['gpt', 'bert', 'prefixlm', 't5'] as const;
const TINY = { set: { d: 16, layers: 1, d_ff: 32 }, dims: { B: 2, T: 8 } };
const path = (m: string) => join(MODELS_DIR, `${m}.kiln`);
const VOCAB = 256;

function feeds(g: Graph, seed: number): Record<string, HostTensor> {
  const out: Record<string, HostTensor> = {};
  inputsOf(g).forEach((n, i) => {
    const name = n.attrs.name;
    out[name] = name === 'prefix_len' ? { dtype: 'i32', shape: [...n.type.shape], data: Int32Array.from([2, 5]) } : randTensor([...n.type.shape], seed + i, 'i32', VOCAB);
  });
  return out;
}

describe('the four library models', () => {
  for (const m of MODELS) {
    it(`${m}: checks clean, runs forward and loss; loss at init is close to ln(vocab)`, () => {
      expect(checkFile(path(m), TINY)).toEqual([]);
      const fwd = compileModel(path(m), { ...TINY, entry: 'forward' });
      expect(fwd.graph.name).toBe(`${m}.forward`);
      const inputs = feeds(fwd.graph, 1);
      const logits = interpret(fwd.graph, { inputs, seed: 3 }).logits;
      expect(logits.shape).toEqual([2, 8, VOCAB]);
      expect(logits.data.every(Number.isFinite)).toBe(true);
      const loss = compileModel(path(m), { ...TINY, entry: 'loss' });
      const lin = feeds(loss.graph, 1);
      const l = interpret(loss.graph, { inputs: lin, seed: 3 }).loss;
      expect(l.shape).toEqual([]);
      // Near-uniform logits at init: loss = ln V + O(logit variance); a small margin covers it.
      expect(Math.abs(l.data[0] - Math.log(VOCAB))).toBeLessThan(0.15);
      // forward and loss share parameter names, so one checkpoint serves both.
      const fp = paramsOf(fwd.graph).map((p) => p.attrs.name).sort();
      expect(paramsOf(loss.graph).map((p) => p.attrs.name).sort()).toEqual(fp);
    });

    it(`${m}: text IR round-trips through JSON`, () => {
      for (const entry of ['forward', 'loss']) {
        const g = compileModel(path(m), { ...TINY, entry }).graph;
        expect(printGraph(graphFromJSON(graphToJSON(g)))).toBe(printGraph(g));
      }
    });

    it(`${m}: fmt is idempotent and the formatted file lowers to the same IR`, () => {
      const text = readFileSync(path(m), 'utf8');
      const once = formatSource(text, path(m));
      expect(formatSource(once, path(m))).toBe(once);
      // Reformat a deliberately messy copy too: collapse indentation and spacing.
      const messy = text
        .split('\n')
        .map((l) => (l.includes('#') ? l : l.trim().replace(/ = /g, '=').replace(/, /g, ',').replace(/ \+ /g, '+')))
        .join('\n');
      expect(formatSource(messy, path(m))).toBe(once);
      const strip = (g: Graph) => printGraph({ ...g, nodes: g.nodes.map(({ loc: _l, ...n }) => n) });
      for (const entry of ['forward', 'loss']) {
        const a = compileSource(text, path(m), { ...TINY, entry }).graph;
        const b = compileSource(once, path(m), { ...TINY, entry }).graph;
        expect(strip(b)).toBe(strip(a));
      }
    });
  }

  it('model info lists config after --set, dims and entry signatures', () => {
    const info = loadModelInfo(path('t5'), { set: { layers: 3 } });
    expect(info.name).toBe('t5');
    expect(info.config).toMatchObject({ vocab: 256, layers: 3, enc_layers: 3, dec_layers: 3, dropout: 0 });
    expect(info.dims).toEqual({ B: 2, S: 64, T: 64 });
    const loss = info.entries.find((e) => e.name === 'loss')!;
    expect(loss.inputs).toEqual([
      { name: 'src', dtype: 'i32', shape: ['B', 'S'] },
      { name: 'dec_in', dtype: 'i32', shape: ['B', 'T'] },
      { name: 'targets', dtype: 'i32', shape: ['B', 'T'] },
    ]);
    expect(loss.outputs).toEqual(['loss']);
    const p = loadModelInfo(path('prefixlm')).entries.find((e) => e.name === 'forward')!;
    expect(p.inputs[1]).toEqual({ name: 'prefix_len', dtype: 'i32', shape: ['B'] });
  });

  it('symbolic dims come from input shapes when not given', () => {
    const g = compileModel(path('gpt'), { set: { d: 16, layers: 1 }, inputShapes: { tokens: [3, 5] } }).graph;
    expect(g.outputs.map((o) => g.nodes[o.id].type.shape)).toEqual([[3, 5, 256]]);
  });

  it('parameter names of a 2-layer GPT follow the documented scheme', () => {
    const g = compileModel(path('gpt'), { set: { d: 16, layers: 2 }, dims: { T: 4 } }).graph;
    const layer = (i: number) =>
      ['ln_1.g', 'ln_1.b', 'attn.q.w', 'attn.q.b', 'attn.k.w', 'attn.k.b', 'attn.v.w', 'attn.v.b', 'attn.proj.w', 'attn.proj.b', 'ln_2.g', 'ln_2.b', 'mlp.fc.w', 'mlp.fc.b', 'mlp.proj.w', 'mlp.proj.b'].map(
        (s) => `h.${i}.${s}`,
      );
    expect(paramsOf(g).map((p) => p.attrs.name)).toEqual(['wte', 'wpe', ...layer(0), ...layer(1), 'ln_f.g', 'ln_f.b']);
    const untied = compileModel(path('gpt'), { set: { d: 16, layers: 1, tied: false }, dims: { T: 4 } }).graph;
    expect(paramsOf(untied).map((p) => p.attrs.name).slice(-1)).toEqual(['lm_head.w']);
    // Residual projections use the depth-scaled init.
    const proj = paramsOf(g).find((p) => p.attrs.name === 'h.0.attn.proj.w')!;
    expect(proj.attrs.init).toEqual({ kind: 'normal', std: 0.02 / Math.sqrt(4) });
  });

  it('dropout > 0 adds an rng_seed input and one stream per call site', () => {
    const g = compileModel(path('gpt'), { set: { d: 16, layers: 2, dropout: 0.1 }, dims: { T: 4 }, entry: 'loss' }).graph;
    const seed = inputsOf(g).find((n) => n.attrs.name === 'rng_seed')!;
    expect(seed.type).toEqual({ dtype: 'u32', shape: [] });
    const drops = g.nodes.filter((n) => n.op === 'dropout');
    expect(drops.length).toBe(1 + 2 * 3); // embeddings, then per layer: attention probabilities, attention output, mlp output
    expect(new Set(drops.map((n) => (n.attrs as { stream: number }).stream)).size).toBe(drops.length);
    const g0 = compileModel(path('gpt'), { set: { d: 16, layers: 2 }, dims: { T: 4 } }).graph;
    expect(g0.nodes.some((n) => n.op === 'dropout' || (n.op === 'input' && (n.attrs as { name: string }).name === 'rng_seed'))).toBe(false);
  });

  it('composites mark the attention and mlp regions', () => {
    const g = compileModel(path('gpt'), { set: { d: 16, layers: 2 }, dims: { T: 4 } }).graph;
    const kinds = new Map<string, Set<number>>();
    for (const n of g.nodes) if (n.scope) (kinds.get(n.scope.kind) ?? kinds.set(n.scope.kind, new Set()).get(n.scope.kind)!).add(n.scope.id);
    expect(kinds.get('attention')?.size).toBe(2);
    expect(kinds.get('mlp')?.size).toBe(2);
    expect(g.nodes.find((n) => n.op === 'softmax')!.scope!.kind).toBe('attention');
  });
});
