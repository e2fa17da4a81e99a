// The declared pipeline: a registered pass with options reaches every verb without touching any of them; the
// rewrite engine; typed output roles; scalar math from the op table; what `kiln compile` shows of each stage.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { compile } from '../../src/cli/commands/compile.js';
import { IRError, KilnError } from '../../src/errors.js';
import { compileModel } from '../../src/frontend/index.js';
import { interpret } from '../../src/interp/interpreter.js';
import { GraphBuilder } from '../../src/ir/builder.js';
import { updateOutput, type Graph } from '../../src/ir/graph.js';
import { graphFromJSON, graphToJSON, printGraph } from '../../src/ir/print.js';
import { verify } from '../../src/ir/verify.js';
import { OPS } from '../../src/ir/registry.js';
import { withFloat64 } from '../../src/ir/tensor.js';
import { grad } from '../../src/autodiff/index.js';
import { compileIR, GENERIC_TARGET, PIPELINE, registerPass, rewrite, runPipeline, unregisterPass, type RewriteRule } from '../../src/passes/index.js';
import { programKey } from '../../src/runtime/pipelines.js';
import { prepareJob } from '../../src/train/trainer.js';

declare module '../../src/passes/registry.js' {
  interface PassOptionsMap {
    'test-marker': { value: number };
  }
}

/** Captures what `fn` writes to stdout. */
async function stdout(fn: () => Promise<void>): Promise<string> {
  const chunks: string[] = [];
  const write = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((s: string) => (chunks.push(String(s)), true)) as typeof process.stdout.write;
  try {
    await fn();
  } finally {
    process.stdout.write = write;
  }
  return chunks.join('');
}

const tinyGpt = { d: 16, heads: 2, layers: 1, vocab: 11, ctx: 8 };
const compileOpts = (extra: Record<string, unknown> = {}) => ({ set: tinyGpt, dim: { B: 1, T: 4 }, entry: 'loss', emit: 'ir', optimizer: 'adamw', passOption: [], disablePass: [], ...extra });

describe('a pass registered with options reaches every verb', () => {
  afterEach(() => unregisterPass('test-marker'));

  it('runs in compile, grad and the training job, with its options from the command line', async () => {
    // A pass that adds a `metric` output holding its option's value: visible wherever the pipeline ran.
    registerPass(
      {
        name: 'test-marker',
        summary: 'adds an output `marker` = value',
        level: 'graph',
        options: { value: 'the constant to output' },
        requires: ['autodiff'],
        configure: (req) => (req.grad || req.train ? { value: 1 } : null),
        run: (s, o) => {
          const b = GraphBuilder.extend(s.graph);
          return { ...s, graph: b.build(s.graph.name, [...s.graph.outputs, { name: 'marker', id: b.scalar(o.value), role: { kind: 'metric' } }]) };
        },
      },
      { after: 'optimizer' },
    );
    expect(PIPELINE.indexOf('test-marker')).toBe(PIPELINE.indexOf('optimizer') + 1);
    // kiln compile --train --pass-option test-marker.value=7
    const text = await stdout(() => compile('src/models/gpt.kiln', compileOpts({ train: true, passOption: ['test-marker.value=7'] }) as never));
    expect(text).toMatch(/marker=%\d+/);
    expect(text).toMatch(/constant 7\b|values=\[7\]|\b7\b/);
    // the library's grad()
    const { graph } = compileModel('src/models/gpt.kiln', { entry: 'loss', set: tinyGpt, dims: { B: 1, T: 4 } });
    const joint = grad(graph, { loss: 'loss' });
    const out = interpret(joint, { inputs: { tokens: { dtype: 'i32', shape: [1, 4], data: Int32Array.of(1, 2, 3, 4) }, targets: { dtype: 'i32', shape: [1, 4], data: Int32Array.of(2, 3, 4, 5) } } });
    expect(out.marker.data[0]).toBe(1);
    // the training job (kiln train's compile path)
    const job = await prepareJob({
      file: 'src/models/gpt.kiln', set: { d: 16, heads: 2, layers: 1, ctx: 8 }, optimizer: { kind: 'sgd' }, schedule: { kind: 'constant', lr: 0.1, warmup: 0, steps: 1 },
      batch: 1, accum: 1, steps: 1, seed: 0, data: 'moby-dick', tokenizer: 'bytes', maxTokens: 4000,
    } as never);
    expect(job.stepGraph.outputs.map((o) => o.name)).toContain('marker');
    // without a gradient the pass is not configured: a forward compile does not run it
    expect(compileIR(graph).outputs.map((o) => o.name)).not.toContain('marker');
  });

  it('a pass whose requirement did not run is refused with the names of both', () => {
    registerPass({ name: 'test-marker', summary: '', level: 'graph', options: { value: '' }, requires: ['autodiff'], configure: () => ({ value: 1 }), run: (s) => s }, { after: 'cse' });
    const { graph } = compileModel('src/models/gpt.kiln', { entry: 'loss', set: tinyGpt, dims: { B: 1, T: 4 } });
    expect(() => compileIR(graph)).toThrow(/pass 'test-marker' requires 'autodiff'/);
  });

  it('refuses unknown passes and options by name', () => {
    expect(() => runPipeline({ name: 'e', nodes: [], outputs: [] }, { printIrAfter: ['frobnicate'] })).toThrow(KilnError);
    return expect(compile('src/models/gpt.kiln', compileOpts({ passOption: ['cse.nope=1'] }) as never)).rejects.toThrow(/pass 'cse' has no option 'nope'/);
  });
});

describe('kiln compile through the pipeline', () => {
  it('--passes lists every stage with its summary and options', async () => {
    const text = await stdout(() => compile(undefined, compileOpts({ passes: true }) as never));
    for (const name of PIPELINE) expect(text).toContain(name);
    expect(text).toContain('option autodiff.loss');
    expect(text.split('\n')[0]).toMatch(/^frontend/);
  });

  it('--emit a stage and --print-ir-after every stage, with or without --grad', async () => {
    const sched = await stdout(() => compile('src/models/gpt.kiln', compileOpts({ emit: 'schedule' }) as never));
    expect(sched).toMatch(/^schedule of graph/);
    const dumps: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((s: string) => (dumps.push(String(s)), true)) as typeof process.stderr.write;
    try {
      await stdout(() => compile('src/models/gpt.kiln', compileOpts({ emit: 'wgsl', train: true, printIrAfter: 'all' }) as never));
    } finally {
      process.stderr.write = write;
    }
    const heads = dumps.join('').match(/----- IR after [\w-]+ -----/g)!.map((h) => h.slice(15, -6));
    // every stage a training compile runs (attention-fusion runs by default and fuses the attention;
    // the opt-in ones — LoRA, decomposition, parallelism — do not run)
    expect(heads).toEqual(['canonicalize', 'attention-fusion', 'autodiff', 'optimizer', 'cse', 'dce', 'schedule', 'inplace', 'memory-plan', 'codegen']);
    // after autodiff: the joint graph (grad outputs); after the optimizer: the update outputs
    const train = await stdout(() => compile('src/models/gpt.kiln', compileOpts({ train: true }) as never));
    expect(train).toMatch(/update:h\.0\.attn\.q\.w=%\d+/);
    expect(train).toMatch(/grad_norm=%\d+/);
    const afterAutodiff = await stdout(() => compile('src/models/gpt.kiln', compileOpts({ grad: true, emit: 'autodiff' }) as never));
    expect(afterAutodiff).toMatch(/grad:h\.0\.attn\.q\.w=%\d+/);
    expect(afterAutodiff).not.toMatch(/update:/);
  });
});

describe('shared kernels', () => {
  const programs = (layers: number) => {
    const { graph } = compileModel('src/models/gpt.kiln', { entry: 'loss', set: { ...tinyGpt, layers }, dims: { B: 2, T: 8 } });
    const s = runPipeline(graph, { train: { optimizer: { kind: 'adamw' } }, target: { ...GENERIC_TARGET, strategy: 'thread' } });
    const all = s.kernels!.flatMap((k) => k.passes.map((p) => p.wgsl));
    // The global gradient norm sums one scalar per parameter in a chain of kernels of up to 8 operands each, so its
    // last kernels depend on the parameter count: those write scalars (f32[]) and are left out of the comparison.
    const perLayer = new Set(all.filter((w) => !w.includes('// writes f32[]')).map(programKey));
    return { kernels: all.length, perLayer, wgsl: all };
  };

  it('identical layers compile to identical WGSL: more layers, more kernels, the same programs', () => {
    // layer 0 reads the embeddings where later layers read the previous block: its kernels differ, rightly
    const one = programs(2);
    const three = programs(3);
    expect(three.kernels).toBeGreaterThan(one.kernels);
    expect([...three.perLayer].filter((k) => !one.perLayer.has(k))).toEqual([]);
    expect(three.perLayer.size).toBe(one.perLayer.size);
    // no node ids in any kernel's code
    for (const w of three.wgsl) expect(programKey(w)).not.toMatch(/%\d/);
  });
});

describe('rewrite engine', () => {
  const chain = (): Graph => {
    const b = new GraphBuilder();
    const x = b.op('input', [], { name: 'x', dtype: 'f32', shape: [2, 3] });
    const r = b.reshape(b.reshape(b.reshape(x, [3, 2]), [6]), [2, 3]);
    return b.build('chain', [{ name: 'y', id: b.mul(b.unary('exp', r), b.scalar(1)) }]);
  };

  it('applies rules to a fixed point, tags what a rule made, and reports hits per rule', () => {
    const fold: RewriteRule = {
      name: 'fold-reshapes',
      ops: ['reshape'],
      rewrite: (s) => (s.arg(0).op === 'reshape' ? s.b.op('reshape', [s.arg(0).inputs[0]], { shape: (s.node.attrs as { shape: number[] }).shape }) : null),
    };
    const noop: RewriteRule = { name: 'drop-noop-reshape', ops: ['reshape'], rewrite: (s) => (s.arg(0).type.shape.join() === s.node.type.shape.join() ? s.node.inputs[0] : null) };
    const g = chain();
    const r = rewrite(g, [fold, noop]);
    verify(r.graph);
    expect(r.graph.nodes.filter((n) => n.op === 'reshape')).toHaveLength(0);
    expect(r.hits['fold-reshapes']).toBeGreaterThanOrEqual(2);
    expect(r.hits['drop-noop-reshape']).toBe(1);
    const x = { dtype: 'f32' as const, shape: [2, 3], data: Float32Array.of(0.1, 0.2, 0.3, -1, 2, 0) };
    expect(Array.from(interpret(r.graph, { inputs: { x } }).y.data)).toEqual(Array.from(interpret(g, { inputs: { x } }).y.data));
    // a node made by a rule says so in the IR dump
    const once = rewrite(g, [fold], 1).graph;
    expect(printGraph(once)).toMatch(/rule=fold-reshapes/);
  });

  it('a rule that emits nodes but declines is a compiler bug, named', () => {
    const bad: RewriteRule = { name: 'sloppy', ops: ['exp'], rewrite: (s) => (s.b.scalar(3), null) };
    expect(() => rewrite(chain(), [bad])).toThrow(IRError);
    expect(() => rewrite(chain(), [bad])).toThrow(/sloppy/);
  });

  it('canonicalize runs in the default pipeline', () => {
    const out = compileIR(chain());
    expect(out.nodes.filter((n) => n.op === 'reshape' || n.op === 'mul')).toHaveLength(0);
  });
});

describe('typed output roles', () => {
  it('survive passes and JSON; the verifier checks an update against its parameter', () => {
    const { graph } = compileModel('src/models/gpt.kiln', { entry: 'loss', set: tinyGpt, dims: { B: 1, T: 4 } });
    const step = compileIR(graph, { train: { optimizer: { kind: 'sgd' } } });
    const roles = step.outputs.map((o) => o.role?.kind ?? 'output');
    expect(roles[0]).toBe('loss');
    expect(roles).toContain('metric');
    expect(roles.filter((r) => r === 'update').length).toBeGreaterThan(10);
    expect(graphFromJSON(graphToJSON(step)).outputs).toEqual(step.outputs);
    const b = new GraphBuilder();
    const w = b.op('param', [], { name: 'w', dtype: 'f32', shape: [3], init: { kind: 'zeros' } });
    expect(() => verify(b.build('bad', [updateOutput('v', w)]))).toThrow(/update of parameter 'v', which the graph does not have/);
    expect(() => verify(b.build('bad', [updateOutput('w', b.op('sum', [w], { axes: [0], keepdims: false }))]))).toThrow(/f32\[\] but parameter 'w' is f32\[3\]/);
  });
});

describe('scalar math in the DSL comes from the op table', () => {
  it('every unary builtin on a number equals the op on a scalar tensor', () => {
    const src = `model m {
  a: float = silu(2.0)
  b: float = sigmoid(-3.0)
  c: float = gelu(1.0, approximate="tanh")
  e: float = erf(0.5)
  f: int = floor(2.7)
}
entry forward(x: f32[1]) -> y: f32[1] {
  return x * a + b + c + e + f
}
`;
    const file = join(mkdtempSync(join(tmpdir(), 'kiln-scalar-')), 'm.kiln');
    writeFileSync(file, src);
    const { model } = compileModel(file, { entry: 'forward' });
    const on = (op: 'silu' | 'sigmoid' | 'gelu' | 'erf', x: number, attrs: object = {}) =>
      withFloat64(() => OPS[op].evaluate([{ dtype: 'f32', shape: [], data: Float64Array.of(x) as never }], attrs as never, { dtype: 'f32', shape: [] }, {} as never).data[0]);
    expect(model.config.a).toBe(on('silu', 2));
    expect(model.config.b).toBe(on('sigmoid', -3));
    expect(model.config.c).toBe(on('gelu', 1, { approximate: 'tanh' }));
    expect(model.config.e).toBe(on('erf', 0.5));
    expect(model.config.f).toBe(2);
  });
});
