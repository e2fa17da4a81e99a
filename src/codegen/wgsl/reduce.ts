/**
 * Reductions (sum, mean, max_reduce, argmax) over any set of axes. The operand is read through its value
 * function, so an elementwise prologue is computed inline; the result goes through the epilogue, if any.
 *
 * Short reductions (<= SMALL_R elements) run one invocation per output with a sequential loop. Longer ones run
 * one workgroup per output: each invocation folds a strided share, then a tree reduction in workgroup memory,
 * or, when the device has the `subgroups` feature, subgroupAdd/subgroupMax across each subgroup first.
 * Loops have uniform trip counts so barriers and subgroup ops stay in uniform control flow.
 * With `perThread` (CPU-backed adapters, where barriers are costly) every reduction with enough outputs to fill a
 * workgroup runs one invocation per output.
 */
import type { AttrsOf, OpsIn } from '../../ir/op.js';
import { numel, strides } from '../../ir/types.js';
import { normAxes } from '../../ir/ops/util.js';
import type { KernelPass, KernelWriter } from './writer.js';
import { NEG_INF, computeType, grid, literal } from './types.js';

export const REDUCE_WG = 64;
export const SMALL_R = 32;

/** Where the strided loop's trip count goes: a constant, or computed from R when R is a binding's length. */
const TRIPS = '__KILN_TRIPS__';

/** How each reduction combines and finishes, by type: a reduce op without an entry does not compile. */
const REDUCERS: { [K in OpsIn<'reduce'>]: { combine: 'sum' | 'max'; mean: boolean; arg: boolean } } = {
  sum: { combine: 'sum', mean: false, arg: false },
  mean: { combine: 'sum', mean: true, arg: false },
  max_reduce: { combine: 'max', mean: false, arg: false },
  argmax: { combine: 'max', mean: false, arg: true },
};

export interface ReduceOptions {
  subgroups: boolean;
  perThread?: boolean;
}

function coord(v: string, shape: number[], k: number): string {
  if (shape.includes(0)) return '0u'; // no element to index (and no division by zero in the WGSL)
  const st = strides(shape)[k];
  const div = st === 1 ? v : `(${v} / ${st}u)`;
  return k === 0 ? div : `(${div} % ${shape[k]}u)`;
}

export function genReduce(w: KernelWriter, opts: ReduceOptions): KernelPass[] {
  const a = w.node(w.k.anchor);
  const x = w.node(a.inputs[0]);
  const S = x.type.shape as number[];
  const axes =
    a.op === 'argmax' ? normAxes('argmax', [], [(a.attrs as AttrsOf<'argmax'>).axis], S.length) : normAxes(a.op, [], (a.attrs as AttrsOf<'sum'>).axes, S.length);
  const kept = S.map((_, i) => i).filter((i) => !axes.includes(i));
  const keptShape = kept.map((d) => S[d]);
  const redShape = axes.map((d) => S[d]);
  const xs = strides(S);
  const M = numel(keptShape);
  const R = numel(redShape);
  const terms = [
    ...kept.map((d, j) => (keptShape[j] === 1 ? '' : `${coord('o', keptShape, j)} * ${xs[d]}u`)),
    ...axes.map((d, j) => (redShape[j] === 1 ? '' : `${coord('r', redShape, j)} * ${xs[d]}u`)),
  ].filter(Boolean);
  // A reduction of every axis reads its input in flat order: index r, whatever the shape.
  const indexFn = `fn in_index(o: u32, r: u32) -> u32 { return ${kept.length === 0 ? 'r' : terms.join(' + ') || '0u'}; }`;

  const T = computeType(x.type.dtype);
  const outT = computeType(a.type.dtype);
  const how = REDUCERS[a.op as OpsIn<'reduce'>];
  const isArg = how.arg;
  const isMax = how.combine === 'max';
  const ident = isMax ? (T === 'f32' ? NEG_INF : T === 'i32' ? literal(-2147483648, 'i32') : '0u') : literal(0, x.type.dtype);
  const combine = (p: string, q: string) => (isMax ? `max(${p}, ${q})` : `${p} + ${q}`);
  const finish = (v: string) => (how.mean ? `${v} / ${T}(${R})` : v);
  const xval = (idx: string) => w.at(x.id, `in_index(${idx})`);
  const root = w.node(w.k.root);
  const result = (o: string, v: string) => w.store(o, w.k.epilogue ? w.at(root.id, o, v) : v);

  const small = R <= SMALL_R || (!!opts.perThread && M >= REDUCE_WG);
  const useSubgroups = opts.subgroups && !isArg && !small;
  let main: string;
  let dispatch: [number, number, number];
  if (small) {
    // One invocation per output, sequential over the (short) reduced extent.
    const body = isArg
      ? `  var bv = ${xval('o, 0u')};\n  var bi = 0u;\n  for (var r = 1u; r < R; r++) {\n    let v = ${xval('o, r')};\n    if (v > bv) { bv = v; bi = r; }\n  }\n  let val = i32(bi);`
      : `  var acc = ${ident};\n  for (var r = 0u; r < R; r++) { acc = ${combine('acc', xval('o, r'))}; }\n  let val = ${finish('acc')};`;
    const valueLines = body;
    const outExpr = result('o', 'val');
    main = `@compute @workgroup_size(${REDUCE_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3<u32>) {
  let o = (wid.x + wid.y * nwg.x) * ${REDUCE_WG}u + lid;
  if (o >= M) { return; }
${valueLines}
  ${outExpr};
}`;
    dispatch = grid(Math.ceil(M / REDUCE_WG));
  } else if (isArg) {
    const outExpr = result('o', 'i32(shi[0])');
    main = `var<workgroup> shv: array<${T}, ${REDUCE_WG}>;
var<workgroup> shi: array<u32, ${REDUCE_WG}>;
const NONE: u32 = 0xffffffffu;

@compute @workgroup_size(${REDUCE_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3<u32>) {
  let o = wid.x + wid.y * nwg.x;
  if (o >= M) { return; }
  var bv = ${ident};
  var bi = NONE;
  for (var j = 0u; j < ${TRIPS}; j++) {
    let r = j * ${REDUCE_WG}u + lid;
    if (r < R) {
      let v = ${xval('o, r')};
      if (bi == NONE || v > bv) { bv = v; bi = r; }
    }
  }
  shv[lid] = bv;
  shi[lid] = bi;
  workgroupBarrier();
  for (var s = ${REDUCE_WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) {
      let v = shv[lid + s];
      let i = shi[lid + s];
      // the first maximum wins, as in numpy
      if (i != NONE && (shi[lid] == NONE || v > shv[lid] || (v == shv[lid] && i < shi[lid]))) { shv[lid] = v; shi[lid] = i; }
    }
    workgroupBarrier();
  }
  if (lid == 0u) { ${outExpr}; }
}`;
    dispatch = grid(M);
  } else {
    const fold = `  var acc = ${ident};
  for (var j = 0u; j < ${TRIPS}; j++) {
    let r = j * ${REDUCE_WG}u + lid;
    if (r < R) { acc = ${combine('acc', xval('o, r'))}; }
  }`;
    const outExpr = result('o', 'val');
    const tail = useSubgroups
      ? `  let part = ${isMax ? 'subgroupMax' : 'subgroupAdd'}(acc);
  if (sgi == 0u) { sh[lid / sgs] = part; }
  workgroupBarrier();
  if (lid == 0u) {
    var t = sh[0];
    for (var k = 1u; k < (${REDUCE_WG}u + sgs - 1u) / sgs; k++) { t = ${combine('t', 'sh[k]')}; }
    let val = ${finish('t')};
    ${outExpr};
  }`
      : `  sh[lid] = acc;
  workgroupBarrier();
  for (var s = ${REDUCE_WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { sh[lid] = ${combine('sh[lid]', 'sh[lid + s]')}; }
    workgroupBarrier();
  }
  if (lid == 0u) {
    let val = ${finish('sh[0]')};
    ${outExpr};
  }`;
    main = `var<workgroup> sh: array<${T}, ${REDUCE_WG}>;

@compute @workgroup_size(${REDUCE_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3<u32>${useSubgroups ? ', @builtin(subgroup_invocation_id) sgi: u32, @builtin(subgroup_size) sgs: u32' : ''}) {
  let o = wid.x + wid.y * nwg.x;
  if (o >= M) { return; }
${fold}
${tail}
}`;
    dispatch = grid(M);
  }
  void outT;
  // A full reduction whose values are all read at their flat index takes its length from an input binding, so the
  // same program sums a tensor of any shape (the per-parameter squared norms of gradient clipping).
  const lengthFrom = kept.length === 0 && R > 0 && !isArg && w.shapeFree ? w.inputWithLength(R) : undefined;
  if (lengthFrom) main = main.replace(/(fn main\(.*\) \{\n)/, `$1  let R = arrayLength(&${lengthFrom});\n`);
  main = main.replaceAll(TRIPS, lengthFrom ? `(R + ${REDUCE_WG - 1}u) / ${REDUCE_WG}u` : `${Math.ceil(R / REDUCE_WG)}u`);
  w.output();
  const mode = small ? 'one invocation per output' : useSubgroups ? 'workgroup per output, subgroup ops' : 'workgroup per output, tree';
  const wgsl = `${useSubgroups ? 'enable subgroups;\n' : ''}${w.header(`reduce ${a.op}`, mode)}
${w.declarations()}

const M: u32 = ${M}u; // outputs
${lengthFrom ? `// R: elements folded into each output (the length of ${lengthFrom})` : `const R: u32 = ${R}u; // elements folded into each output`}
${indexFn}

${main}
`;
  return [{ label: `k${w.k.id} reduce ${a.op}`, wgsl, bindings: w.bindings, dispatch }];
}
