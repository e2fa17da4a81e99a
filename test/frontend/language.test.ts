import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkSource, compileSource, DiagnosticError, formatDiagnostic, formatSource, MODELS_DIR } from '../../src/frontend/index.js';
import { parse } from '../../src/frontend/parser.js';
import { KilnError } from '../../src/errors.js';
import { interpret } from '../../src/interp/interpreter.js';
import { paramsOf } from '../../src/ir/graph.js';

const FILE = join(MODELS_DIR, 't.kiln'); // next to the real models so `import "std/nn"` resolves as for users
const HEAD = 'model t {\n  n: int = 4\n  layers: int = 2\n  dim B = 2\n}\n';

/** The single diagnostic a source produces, formatted. */
function diag(src: string, opts = {}): string {
  const d = checkSource(src, 't.kiln', opts);
  expect(d.length).toBe(1);
  return d[0].formatted;
}

function run(src: string, inputs: Record<string, number[]>, shapes: Record<string, number[]>, entry = 'forward'): number[] {
  const { graph } = compileSource(src, FILE, { entry });
  const feed = Object.fromEntries(Object.entries(inputs).map(([k, v]) => [k, { dtype: 'f32' as const, shape: shapes[k], data: Float32Array.from(v) }]));
  const out = interpret(graph, { inputs: feed });
  return Array.from(Object.values(out)[0].data);
}

describe('parser', () => {
  it('parses precedence: unary minus binds looser than **, @ with * and /', () => {
    const { program, errors } = parse('fn f() { return -a ** 2 + b @ c * d }');
    expect(errors).toEqual([]);
    const fn = program.items[0] as { body: { value: unknown }[] };
    const v = fn.body[0].value as { op: string; left: { op: string; expr: { op: string } }; right: { op: string; left: { op: string } } };
    expect(v.op).toBe('+');
    expect(v.left.op).toBe('-');
    expect(v.left.expr.op).toBe('**');
    expect(v.right.op).toBe('*');
    expect(v.right.left.op).toBe('@');
  });

  it('reports several syntax errors at once, with positions and what was expected', () => {
    const d = checkSource('fn f(x { return x }\nfn g() { let = 3 }\nfn h() { return 1 +* 2 }\n', 't.kiln');
    expect(d.map((x) => x.formatted)).toEqual([
      "t.kiln:1:8: error: unexpected '{': expected ')'\nfn f(x { return x }\n       ^",
      "t.kiln:2:14: error: unexpected '=': expected a name or '('\nfn g() { let = 3 }\n             ^",
      "t.kiln:3:20: error: unexpected '*': expected an expression\nfn h() { return 1 +* 2 }\n                   ^",
    ]);
  });

  it('reports stray characters', () => {
    expect(checkSource(`${HEAD}entry forward(x: f32[B]) { return x $ 2 }\n`, 't.kiln').map((d) => d.formatted)).toEqual([
      "t.kiln:6:37: error: unexpected character '$'\nentry forward(x: f32[B]) { return x $ 2 }\n                                    ^",
      "t.kiln:6:39: error: unexpected '2': expected '}'\nentry forward(x: f32[B]) { return x $ 2 }\n                                      ^",
    ]);
  });
});

describe('lowering', () => {
  it('evaluates arithmetic with broadcasting, scalars, slicing, tuples and methods', () => {
    const src = `${HEAD}
fn pair(x, k: int = 2) {
  return x * k, x.sum(axis=-1, keepdims=true)
}
entry forward(x: f32[B, 3]) {
  let (a, s) = pair(x)
  let y = (a - s)[:, 0:2] + x[..., -1:]
  return y.softmax(axis=0) * 0 + max(y, 0.5) + -(n // 3)
}`;
    const x = [1, 2, 3, 4, 5, 6];
    const got = run(src, { x }, { x: [2, 3] });
    // a = 2x, s = row sums; y[i, j] = 2x[i, j] - s[i] + x[i, 2]; result = max(y, 0.5) - 1
    const want: number[] = [];
    for (let i = 0; i < 2; i++) {
      const s = x[3 * i] + x[3 * i + 1] + x[3 * i + 2];
      for (let j = 0; j < 2; j++) want.push(Math.max(2 * x[3 * i + j] - s + x[3 * i + 2], 0.5) - 1);
    }
    got.forEach((g, i) => expect(g).toBeCloseTo(want[i], 6));
  });

  it('softmax over a non-last axis transposes around the primitive', () => {
    const src = `${HEAD}entry forward(x: f32[B, 3]) { return softmax(x, axis=0) }`;
    const got = run(src, { x: [0, 1, 2, 3, 5, 7] }, { x: [2, 3] });
    for (let j = 0; j < 3; j++) {
      const a = [0, 1, 2][j], b = [3, 5, 7][j];
      expect(got[j]).toBeCloseTo(Math.exp(a) / (Math.exp(a) + Math.exp(b)), 6);
      expect(got[3 + j]).toBeCloseTo(Math.exp(b) / (Math.exp(a) + Math.exp(b)), 6);
    }
  });

  it('names parameters by call scope: auto names with counters, `as` names, loops with [i]', () => {
    const src = `import "std/nn"
${HEAD}
fn block(x) {
  return linear(linear(x, n), n, bias=false)
}
entry forward(x: f32[B, n]) {
  param scale: f32[n] = ones()
  for i in range(layers) {
    x = block(x) as blocks[i]
  }
  return linear(x, 2) as head.out * scale[0:2]
}`;
    const g = compileSource(src, FILE).graph;
    expect(paramsOf(g).map((p) => p.attrs.name)).toEqual([
      'scale', 'blocks.0.linear.w', 'blocks.0.linear.b', 'blocks.0.linear_1.w', 'blocks.1.linear.w', 'blocks.1.linear.b', 'blocks.1.linear_1.w', 'head.out.w', 'head.out.b',
    ]);
  });

  it('initializers accept arithmetic on config values', () => {
    const src = `${HEAD}entry forward(x: f32[B, n]) {\n  param w: f32[n, n] = normal(0.02 / sqrt(2 * layers))\n  param u: f32[n] = uniform(-1.0 / n, 1.0 / n)\n  return x @ w + u\n}`;
    const g = compileSource(src, FILE).graph;
    expect(paramsOf(g).map((p) => p.attrs.init)).toEqual([{ kind: 'normal', std: 0.01 }, { kind: 'uniform', low: -0.25, high: 0.25 }]);
  });

  it('--set overrides config values, type-checked; unknown keys list the valid ones', () => {
    const src = `${HEAD}entry forward(x: f32[B, n]) { return x }`;
    expect(compileSource(src, FILE, { set: { n: 8 } }).graph.outputs.length).toBe(1);
    expect(() => compileSource(src, FILE, { set: { layrs: 3 } })).toThrow("unknown config key 'layrs' for model t (did you mean 'layers'?); valid keys: n, layers");
    expect(() => compileSource(src, FILE, { set: { n: 2.5 } })).toThrow("--set n=2.5: 'n' is an int");
    expect(() => compileSource(src, FILE, { entry: 'fwd' })).toThrow("model t has no entry 'fwd' (entries: forward)");
  });

  it('entries may return several named outputs', () => {
    const src = `${HEAD}entry forward(x: f32[B, n]) -> (total: f32, doubled: f32[B, n]) { return sum(x), x * 2 }`;
    const g = compileSource(src, FILE).graph;
    expect(g.outputs.map((o) => o.name)).toEqual(['total', 'doubled']);
  });
});

describe('diagnostics', () => {
  it('unknown names suggest close matches', () => {
    expect(diag(`${HEAD}entry forward(x: f32[B]) { return x * lyers }`)).toBe(
      "t.kiln:6:39: error: unknown name 'lyers' (did you mean 'layers'?)\nentry forward(x: f32[B]) { return x * lyers }\n                                      ^~~~~",
    );
  });

  it('shape mismatches name the op and both shapes, at the expression', () => {
    expect(diag(`${HEAD}entry forward(x: f32[B, 3], y: f32[4, 5]) {\n  return x @ y\n}`)).toBe(
      't.kiln:7:10: error: matmul: inner dimensions differ: 3 vs 4 (operands f32[2, 3], f32[4, 5])\n  return x @ y\n         ^~~~~',
    );
    expect(diag(`${HEAD}entry forward(x: f32[B, 3], y: f32[B, 4]) {\n  return x + y\n}`)).toMatch(/^t\.kiln:7:10: error: add: shapes \[2, 3\] and \[2, 4\] cannot be broadcast together/);
  });

  it('dtype mismatches', () => {
    expect(diag(`${HEAD}entry forward(x: f32[B], i: i32[B]) {\n  return x + i\n}`)).toBe(
      't.kiln:7:10: error: add: operands must have the same dtype (operands f32[2], i32[2])\n  return x + i\n         ^~~~~',
    );
    expect(diag(`${HEAD}entry forward(i: i32[B]) {\n  return i * 0.5\n}`)).toBe(
      "t.kiln:7:14: error: '*': cannot combine the float 0.5 with an i32 tensor (cast the tensor first)\n  return i * 0.5\n             ^~~",
    );
  });

  it('wrong arguments: missing, extra, unknown keyword; declared types', () => {
    const fn = `${HEAD}fn g(a, b: int) { return a }\n`;
    expect(diag(`${fn}entry forward(x: f32[B]) { return g(x) }`)).toBe(
      "t.kiln:7:35: error: g(a, b) is missing argument 'b'\nentry forward(x: f32[B]) { return g(x) }\n                                  ^~~~",
    );
    expect(diag(`${fn}entry forward(x: f32[B]) { return g(x, 1, 2) }`)).toBe(
      't.kiln:7:43: error: g(a, b) takes 2 argument(s) but 3 were given\nentry forward(x: f32[B]) { return g(x, 1, 2) }\n                                          ^',
    );
    expect(diag(`${HEAD}entry forward(x: f32[B]) { return softmax(x, axs=0) }`)).toBe(
      "t.kiln:6:46: error: softmax(x, axis) has no parameter 'axs' (did you mean 'axis'?)\nentry forward(x: f32[B]) { return softmax(x, axs=0) }\n                                             ^~~~~",
    );
    expect(diag(`${fn}entry forward(x: f32[B]) { return g(x, 1.5) }`)).toBe(
      "t.kiln:7:40: error: argument 'b' of g() must be an int, got float 1.5\nentry forward(x: f32[B]) { return g(x, 1.5) }\n                                       ^~~",
    );
    expect(diag(`${HEAD}fn h(x: f32[..., 3]) { return x }\nentry forward(x: f32[B, 4]) { return h(x) }`)).toBe(
      "t.kiln:7:40: error: argument 'x' of h() must be f32[..., 3], got f32[2, 4]\nentry forward(x: f32[B, 4]) { return h(x) }\n                                       ^",
    );
  });

  it('unresolved symbolic dims and duplicate parameters', () => {
    expect(diag(`${HEAD}entry forward(x: f32[B, S]) { return x }`)).toBe(
      "t.kiln:6:25: error: unresolved dimension 'S' in input 'x': declare `dim S = ...` in the model header or pass --dim S=N\nentry forward(x: f32[B, S]) { return x }\n                        ^",
    );
    expect(checkSource(`${HEAD}entry forward(x: f32[B, S]) { return x }`, 't.kiln', { dims: { S: 3 } })).toEqual([]);
    expect(diag(`import "std/nn"\n${HEAD}entry forward(x: f32[B, n]) { return linear(x, 2) as a + linear(x, 2) as a }`)).toMatch(
      /layers\.kiln:\d+:3: error: parameter 'a\.w' is declared twice \(first at [^)]*layers\.kiln:\d+:3\); name the calls apart with `as`/,
    );
  });

  it('imports: missing files and cycles', () => {
    const dir = mkdtempSync(join(tmpdir(), 'kiln-imports-'));
    writeFileSync(join(dir, 'a.kiln'), 'import "b"\nfn fa() { return 1 }\n');
    writeFileSync(join(dir, 'b.kiln'), 'import "a.kiln"\nfn fb() { return 2 }\n');
    const main = join(dir, 'main.kiln');
    const d = checkSource(`import "a"\nimport "nothere"\n${HEAD}entry forward(x: f32[B]) { return x * fa() }`, main);
    expect(d.map((x) => x.message)).toEqual([
      expect.stringMatching(/^recursive import: .*a\.kiln -> .*b\.kiln -> .*a\.kiln$/),
      expect.stringMatching(/^cannot find imported file 'nothere' \(looked for .*nothere\.kiln\)$/),
    ]);
    expect(d[1].loc).toMatchObject({ line: 2, col: 1 });
  });

  it('DiagnosticError messages are fully formatted, and formatDiagnostic draws carets', () => {
    try {
      compileSource(`${HEAD}entry forward(x: f32[B]) { return x * lyers }`, 't.kiln');
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(DiagnosticError);
      expect(e).toBeInstanceOf(KilnError);
      expect((e as Error).message.split('\n')).toHaveLength(3);
    }
    expect(formatDiagnostic({ message: 'boom', loc: { file: 'f.kiln', line: 2, col: 3, endCol: 5 } }, 'one\n\tabcdef\n')).toBe('f.kiln:2:3: error: boom\n\tabcdef\n\t ^~~');
  });
});

describe('formatter', () => {
  it('prints canonical spacing and indentation, keeping comments', () => {
    const src = '# top\nmodel m {  n: int=4 # width\n dim B=2 }\nentry forward(x:f32[B,n])->y:f32[B,n]{\n# lead\nlet y=x*2+(-x)[..., 0:n] ;\nreturn y # out\n}\n';
    expect(formatSource(src, 'm.kiln')).toBe(
      '# top\nmodel m {\n  n: int = 4  # width\n  dim B = 2\n}\n\nentry forward(x: f32[B, n]) -> y: f32[B, n] {\n  # lead\n  let y = x * 2 + (-x)[..., 0:n]\n  return y  # out\n}\n',
    );
  });
});
