/**
 * Row-wise primitives over the last axis: softmax, log_softmax, layer_norm, rms_norm, cross_entropy.
 * Two strategies, same arithmetic: `workgroup` — one workgroup per row, each pass over the row a strided loop plus
 * a workgroup tree reduction (GPUs); `thread` — one invocation per row, plain loops and no barriers (CPU-backed
 * adapters such as lavapipe, where every barrier is a coroutine switch per invocation).
 * Numerics: softmax-family subtract the row max before exp; norms compute the mean first and then the centred
 * variance (two passes) rather than E[x^2] - E[x]^2. An elementwise prologue (scale, mask) is recomputed in
 * each pass instead of being stored; the scheduler bounds its cost.
 */
import type { Node } from '../../ir/graph.js';
import type { OpsIn } from '../../ir/op.js';
import { lastAxisRows } from '../../ir/ops/util.js';
import type { KernelPass, KernelWriter } from './writer.js';
import { NEG_INF, grid, literal, type KernelStrategy } from './types.js';

/** Workgroup size for a row of `width`: enough invocations for ~4 elements each, a power of two in [32, 256]. */
export function rowWorkgroupSize(width: number): number {
  let wg = 32;
  while (wg < 256 && wg * 4 < width) wg *= 2;
  return wg;
}

/** Invocations per workgroup in the `thread` strategy (each owns one row). */
const THREAD_ROWS = 64;

export function genRowwise(w: KernelWriter, strategy: KernelStrategy = 'workgroup'): KernelPass[] {
  const a = w.node(w.k.anchor);
  const x = w.node(a.inputs[0]);
  const { rows, width: W } = lastAxisRows(x.type.shape);
  const perRow = strategy === 'workgroup';
  const ROW_WG = perRow ? rowWorkgroupSize(W) : THREAD_ROWS;
  const root = w.node(w.k.root);
  const result = (o: string, v: string) => w.store(o, w.k.epilogue ? w.at(root.id, o, v) : v);
  const xv = (j: string) => w.at(x.id, `base + ${j}`);
  const trips = Math.ceil(W / ROW_WG);
  const loop = perRow
    ? (body: string) => `  for (var t = 0u; t < ${trips}u; t++) {
    let j = t * ${ROW_WG}u + lid;
    if (j < W) { ${body} }
  }`
    : (body: string) => `  for (var j = 0u; j < W; j++) { ${body} }`;
  const wgSum = (v: string) => (perRow ? `wg_sum(lid, ${v})` : v);
  const wgMax = (v: string) => (perRow ? `wg_max(lid, ${v})` : v);
  const rowMax = `  var m = ${NEG_INF};\n${loop(`m = max(m, ${xv('j')});`)}\n  m = ${wgMax('m')};`;
  const rowSumExp = `  var s = 0.0;\n${loop(`s += exp(${xv('j')} - m);`)}\n  s = ${wgSum('s')};`;
  // One entry per row-wise op, by type: a row-wise op without one does not compile.
  const bodies: { [K in OpsIn<'rowwise'>]: (n: Node<K>) => string } = {
    softmax: () => `${rowMax}\n${rowSumExp}\n  let inv = 1.0 / s;\n${loop(`let o = base + j; let val = exp(${xv('j')} - m) * inv; ${result('o', 'val')};`)}`,
    // (x - m) - log s, not x - (m + log s): see maxAndLogSum in src/ir/ops/nn.ts
    log_softmax: () => `${rowMax}\n${rowSumExp}\n  let ls = log(s);\n${loop(`let o = base + j; let val = (${xv('j')} - m) - ls; ${result('o', 'val')};`)}`,
    layer_norm: (n) => {
      const gamma = w.at(n.inputs[1], 'j');
      const beta = w.at(n.inputs[2], 'j');
      return `  var s = 0.0;
${loop(`s += ${xv('j')};`)}
  let mean = ${wgSum('s')} / f32(W);
  var q = 0.0;
${loop(`let d = ${xv('j')} - mean; q += d * d;`)}
  let rstd = inverseSqrt(${wgSum('q')} / f32(W) + ${literal(n.attrs.eps, 'f32')});
${loop(`let o = base + j; let val = (${xv('j')} - mean) * rstd * ${gamma} + ${beta}; ${result('o', 'val')};`)}`;
    },
    rms_norm: (n) => {
      const gamma = w.at(n.inputs[1], 'j');
      return `  var q = 0.0;
${loop(`let v = ${xv('j')}; q += v * v;`)}
  let r = inverseSqrt(${wgSum('q')} / f32(W) + ${literal(n.attrs.eps, 'f32')});
${loop(`let o = base + j; let val = ${xv('j')} * r * ${gamma}; ${result('o', 'val')};`)}`;
    },
    cross_entropy: (n) => {
      const ign = n.attrs.ignore_index;
      const label = w.at(n.inputs[1], 'row');
      // An ignore_index outside the i32 range can never match a label.
      const ignTest = Number.isInteger(ign) && ign >= -2147483648 && ign <= 2147483647 ? `y == ${literal(ign, 'i32')} || ` : '';
      return `${rowMax}
${rowSumExp}
  if (${perRow ? 'lid == 0u' : 'true'}) {
    let y = i32(${label});
    var val = 0.0;
    if (!(${ignTest}y < 0 || y >= i32(W))) { val = log(s) - (${w.at(x.id, 'base + u32(y)')} - m); }
    let o = row;
    ${result('o', 'val')};
  }`;
    },
  };
  const body = (bodies[a.op as OpsIn<'rowwise'>] as (n: Node) => string)(a);
  w.output();
  const reducers = `var<workgroup> sh: array<f32, ${ROW_WG}>;

fn wg_sum(lid: u32, v: f32) -> f32 {
  sh[lid] = v;
  workgroupBarrier();
  for (var s = ${ROW_WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { sh[lid] = sh[lid] + sh[lid + s]; }
    workgroupBarrier();
  }
  let r = sh[0];
  workgroupBarrier();
  return r;
}

fn wg_max(lid: u32, v: f32) -> f32 {
  sh[lid] = v;
  workgroupBarrier();
  for (var s = ${ROW_WG / 2}u; s > 0u; s >>= 1u) {
    if (lid < s) { sh[lid] = max(sh[lid], sh[lid + s]); }
    workgroupBarrier();
  }
  let r = sh[0];
  workgroupBarrier();
  return r;
}
`;
  const row = perRow ? 'wid.x + wid.y * nwg.x' : `(wid.x + wid.y * nwg.x) * ${ROW_WG}u + lid`;
  const wgsl = `${w.header(a.op, perRow ? `one workgroup per row, ${rows} rows of ${W}` : `one invocation per row, ${rows} rows of ${W}`)}
${w.declarations()}

const ROWS: u32 = ${rows}u;
const W: u32 = ${W}u;
${perRow ? `\n${reducers}` : ''}
@compute @workgroup_size(${ROW_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3<u32>) {
  let row = ${row};
  if (row >= ROWS) { return; }
  let base = row * W;
${body}
}
`;
  return [{ label: `k${w.k.id} ${a.op}`, wgsl, bindings: w.bindings, dispatch: grid(perRow ? rows : Math.ceil(rows / ROW_WG)) }];
}
