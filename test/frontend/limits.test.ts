/**
 * Hostile sources get a positioned error, never a stack overflow, a hang or a crash later on: deep nesting,
 * exponential compile-time recursion, sizes past the kernels' index range, duplicate names, unary minus on u32,
 * and a byte-order mark (accepted).
 */
import { describe, expect, it } from 'vitest';
import { checkSource, compileSource } from '../../src/frontend/index.js';
import { interpret } from '../../src/interp/interpreter.js';

const HDR = 'model m {\n  d: int = 4\n}\n\n';
const entry = (body: string, sig = 'x: f32[d]) -> y: f32[d]') => `${HDR}entry forward(${sig} {\n${body}\n}\n`;
/** The one formatted diagnostic of a source (file:line:col: error: ...). */
const diag = (src: string) => {
  const ds = checkSource(src, 'h.kiln');
  expect(ds.length, ds.map((d) => d.formatted).join('\n')).toBe(1);
  return ds[0].formatted.split('\n')[0];
};

describe('nesting limits', () => {
  it('200 nested parentheses, 3,000 nested ifs, 50,000 unary minuses / nots, a 3,000-link else-if chain: file:line:col, no stack overflow', () => {
    expect(diag(entry(`  return ${'('.repeat(200)}x${')'.repeat(200)}`))).toBe('h.kiln:6:109: error: brackets and blocks nest deeper than 100 levels here: simplify the code');
    expect(diag(entry(`${'if true {\n'.repeat(3000)}return x\n${'}\n'.repeat(3000)}  return x`))).toBe('h.kiln:105:9: error: brackets and blocks nest deeper than 100 levels here: simplify the code');
    expect(diag(entry(`  return ${'-'.repeat(50000)}x`))).toBe('h.kiln:6:110: error: more than 100 prefix operators in a row here: simplify the expression');
    expect(diag(entry(`  assert ${'not '.repeat(50000)}true\n  return x`))).toMatch(/^h.kiln:6:\d+: error: more than 100 prefix operators in a row/);
    expect(diag(entry(`  if false { return x }${' else if false { return x }'.repeat(3000)}\n  return x`))).toMatch(/^h.kiln:6:\d+: error: more than 100 'else if' in one chain here/);
  });

  it('a sum of 5,000 terms is refused with a position; 900 terms compile and compute 900 x', () => {
    expect(diag(entry(`  return ${Array(5000).fill('x').join(' + ')}`))).toMatch(/^h.kiln:6:\d+: error: the code nests deeper than 1000 levels here/);
    const { graph } = compileSource(entry(`  return ${Array(900).fill('x').join(' + ')}`), 'h.kiln');
    const x = Float32Array.of(1, -2, 0.5, 3);
    const y = interpret(graph, { inputs: { x: { dtype: 'f32', shape: [4], data: x } } }).y;
    expect(Array.from(y.data)).toEqual(Array.from(x, (v) => v * 900));
  });

  it('ordinary nesting still works: a - -b, not not, else-if chains', () => {
    const src = entry('  let a = x - -x\n  assert not not true\n  if false { return x } else if false { return -x } else { return a }');
    expect(checkSource(src, 'h.kiln')).toEqual([]);
  });
});

describe('budgets and sizes', () => {
  it('exponential compile-time recursion stops at the evaluation budget, quickly, with a position', () => {
    const src = `${HDR}fn f(x, n) {\n  if n == 0 { return x }\n  return f(x, n - 1) + f(x, n - 1)\n}\n\nentry forward(x: f32[d]) -> y: f32[d] {\n  return f(x, 30)\n}\n`;
    const t0 = performance.now();
    expect(diag(src)).toMatch(/^h.kiln:7:\d+: error: compile-time evaluation took more than 1000000 steps \(\d+ graph nodes so far\): is a recursion exponential/);
    expect(performance.now() - t0).toBeLessThan(60_000);
  });

  it('element counts past the index range are refused where the tensor is made; the largest legal size passes', () => {
    expect(diag(`model m {\n  d: int = 1000000000000\n}\n\nentry forward(x: f32[d]) -> y: f32[d] {\n  return x\n}\n`)).toBe(
      'h.kiln:5:15: error: input makes a tensor of shape [1000000000000] (1.000e+12 elements): a tensor holds at most 2147483647 elements (2^31 - 1, the index range of the compiled kernels)',
    );
    expect(diag(entry('  return x + sum(zeros(100000, 100000))'))).toMatch(/^h.kiln:6:18: error: constant makes a tensor of shape \[100000, 100000\] \(1.000e\+10 elements\)/);
    expect(diag(entry('  return x + sum(zeros(2**53 + 1, 1))'))).toMatch(/^h.kiln:6:18: error: constant makes a tensor of shape \[9007199254740992, 1\]/);
    expect(diag(entry('  return x + sum(zeros(65536, 32768))'))).toMatch(/\[65536, 32768\] \(2.147e\+9 elements\)/); // 2^31: one too many
    expect(checkSource(entry('  return x + sum(zeros(2147483647, 1))'), 'h.kiln')).toEqual([]);
  });

  it('literals that do not fit their dtype are refused (they would wrap, and WGSL would refuse 1000000000000u)', () => {
    expect(diag(entry('  return x + 1000000000000', 'x: u32[d]) -> y: u32[d]'))).toBe('h.kiln:6:10: error: the value 1000000000000 does not fit u32 (0 .. 4294967295): it would wrap around');
    expect(diag(entry('  return x + 1e24', 'x: i32[d]) -> y: i32[d]'))).toMatch(/^h.kiln:6:10: error: the value 1e\+24 does not fit i32/);
    expect(diag(entry('  return x * 1e39'))).toMatch(/^h.kiln:6:10: error: the value 1e\+39 does not fit f32/);
    const { graph } = compileSource(entry('  return x + 4294967295', 'x: u32[d]) -> y: u32[d]'), 'h.kiln');
    const y = interpret(graph, { inputs: { x: { dtype: 'u32', shape: [4], data: Uint32Array.of(0, 0, 0, 0) } } }).y;
    expect(Array.from(y.data)).toEqual([4294967295, 4294967295, 4294967295, 4294967295]);
  });
});

describe('ordinary mistakes are positioned errors', () => {
  it('duplicate entry input or output names', () => {
    expect(diag(`${HDR}entry forward(x: f32[d], x: f32[d]) -> y: f32[d] {\n  return x\n}\n`)).toBe("h.kiln:5:26: error: entry 'forward' has two inputs named 'x' (the first at line 5)");
    expect(diag(`${HDR}entry forward(x: f32[d]) -> (y: f32[d], y: f32[d]) {\n  return x, x\n}\n`)).toBe("h.kiln:5:41: error: entry 'forward' has two outputs named 'y'");
  });

  it('unary minus on u32 (and bool) is refused in check, the same rule on every device; on i32 it is defined', () => {
    expect(diag(entry('  return -x', 'x: u32[d]) -> y: u32[d]'))).toBe('h.kiln:6:10: error: unary minus is not defined on u32 tensors (it would wrap around): cast to i32 or f32 first, e.g. -x.to(i32)');
    const { graph } = compileSource(entry('  return -x', 'x: i32[d]) -> y: i32[d]'), 'h.kiln');
    const y = interpret(graph, { inputs: { x: { dtype: 'i32', shape: [4], data: Int32Array.of(1, -2, 0, 7) } } }).y;
    expect(Array.from(y.data)).toEqual([-1, 2, 0, -7]);
  });

  it('a UTF-8 byte-order mark is accepted, and positions are those of the text after it', () => {
    expect(checkSource('\ufeff' + entry('  return x'), 'h.kiln')).toEqual([]);
    expect(diag('\ufeff' + entry('  return x @ x', 'x: f32[2, d]) -> y: f32[2, d]'))).toMatch(/^h.kiln:6:10: error: matmul/);
  });
});
