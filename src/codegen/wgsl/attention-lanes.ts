/**
 * The `thread` attention kernels for CPU-backed adapters with subgroups of a fixed size (lavapipe: 4 or 8 lanes).
 *
 * On lavapipe every load from a storage buffer is a loop over the SIMD lanes, whether or not the lanes read the
 * same address: an invocation that owns one row and reads the other side's vectors itself (the plain `thread`
 * kernels) pays a lane loop per element for data every lane of the subgroup also loads. Here the lanes of a
 * subgroup load each streamed vector together — lane l loads elements l, l + SG, l + 2 SG, ... — and pass each
 * element to every lane with subgroupBroadcast (a register shuffle): SG times fewer loads. Measured on lavapipe
 * (causal forward, B·H 8, T 512, head 64): 179 ms with per-lane loads, ~45 ms with shared loads.
 *
 * Each invocation still owns one row (a query for the forward, the statistics and dQ; a key for dK and dV), held
 * in private arrays, and walks the other side KT entries at a time: the row's data is read once per KT entries and
 * the forward rescales its accumulator once per KT keys. Every loop bound is uniform across the workgroup (as
 * subgroupBroadcast requires); masks, hidden and missing entries are selects, never branches.
 */
import { NEG_INF, grid, literal } from './types.js';
import type { KernelPass, KernelWriter } from './writer.js';
import type { AttentionAttrs } from '../../ir/op.js';

/**
 * Entries of the other side per step. 1 measured fastest on lavapipe (causal fwd+bwd, T 512: KT 1 265 ms, 2 315,
 * 4 312, 8 352): the saved rescales and row reads cost more registers than they save.
 */
const KT = 1;
/** Partial sums of each dot product (see `dots`); 8 measured no faster than 4 with 8 lanes. */
const PARTIALS = 4;
/** Invocations (rows) per workgroup, at least one subgroup: 16 balanced causal blocks best (64: 265 ms, 32: 252, 16: 224). */
const MIN_LANES = 16;

export interface LanesAttention {
  op: string;
  part: 'fwd' | 'stats' | 'q' | 'k' | 'v';
  what: string;
  dims: { B: number; T: number; S: number; D: number; Dv: number };
  a: AttentionAttrs;
  /** The operand value functions (ld_q, ld_k, ...), visible() and keep(). */
  fns: string[];
  /** Expressions in b, i, j: the dropout multiplier and the additive bias. */
  keep: string;
  bias: string;
  SG: number;
}

/**
 * Whether attention on a `thread` target takes these kernels: subgroups on, of one fixed size that is a power of two
 * (the chunking assumes it). Also what the attention-fusion pass asks before fusing by default on a CPU adapter.
 */
export function usesLanesAttention(t: { strategy: string; subgroups: boolean; subgroupSize?: number }): boolean {
  const sg = t.subgroupSize;
  return t.strategy === 'thread' && t.subgroups && sg !== undefined && sg <= 256 && (sg & (sg - 1)) === 0;
}

export function lanesAttentionPass(w: KernelWriter, o: LanesAttention): KernelPass {
  const { part, a, SG, keep, bias } = o;
  const { B, T, S, D, Dv } = o.dims;
  const f = (x: number) => literal(x, 'f32');
  const LANES = Math.max(MIN_LANES, SG);
  const byQuery = part === 'fwd' || part === 'stats' || part === 'q';
  const R = byQuery ? T : S; // rows: one invocation each
  const C = byQuery ? S : T; // the other side, streamed
  const blocks = Math.ceil(R / LANES);
  const causal = a.mask === 'causal';
  const chunks = (n: number) => Math.ceil(n / SG);
  const pad = (n: number) => chunks(n) * SG;
  const keys = Array.from({ length: KT }, (_, k) => k);
  const each = (fn: (k: number) => string, sep = '\n') => keys.map(fn).join(sep);

  // A row vector in a private array padded to whole chunks (the padding stays 0).
  const rowArray = (name: string, n: number, ld: string) =>
    `  var ${name}: array<f32, ${pad(n)}>;\n  for (var e = 0u; e < ${n}u; e++) { ${name}[e] = ${ld}(b, r, e); }`;
  // Element t*SG + c of the streamed vector `y` (loaded by lane c) in every lane.
  const bc = (y: string, c: number) => `subgroupBroadcast(${y}, ${c}u)`;
  // The streamed vector of entry k, chunk t: lane l loads element t*SG + l (clamped: the padding is never used).
  const load = (ld: string, n: number, k: number) => `${ld}(b, x${k}, min(t * ${SG}u + lane, ${n - 1}u))`;
  /**
   * acc_k += Σ row[e] · streamed_k[e] for every entry k of the step, chunk by chunk, into PARTIALS partial sums
   * (element c of a chunk goes to partial c mod PARTIALS): one accumulator would make each entry's dot product a
   * chain of dependent FMAs, latency-bound (lavapipe, T 512 fwd+bwd: 171 -> 135 ms with 8 lanes, 268 -> 233 ms with 4).
   */
  const dots = (row: string, ld: string, n: number, acc: string) => {
    const P = Math.min(SG, PARTIALS);
    const parts = Array.from({ length: P }, (_, p) => p);
    // pairwise: ((a0 + a1) + (a2 + a3))
    const tree = (xs: string[]): string => (xs.length === 1 ? xs[0] : `(${tree(xs.slice(0, xs.length >> 1))} + ${tree(xs.slice(xs.length >> 1))})`);
    const sum = (k: number) => tree(parts.map((p) => `${acc}${k}_${p}`));
    return `${each((k) => `    ${parts.map((p) => `var ${acc}${k}_${p} = 0.0;`).join(' ')}`)}
    for (var t = 0u; t < ${chunks(n)}u; t++) {
${each((k) => `      let y${k} = ${load(ld, n, k)};`)}
${Array.from({ length: SG }, (_, c) => `      { let rv = ${row}[t * ${SG}u + ${c}u];${each((k) => ` ${acc}${k}_${c % P} = fma(rv, ${bc(`y${k}`, c)}, ${acc}${k}_${c % P});`, '')} }`).join('\n')}
    }
${each((k) => `    ${acc}${k} += ${sum(k)};`)}`;
  };
  /** out[e] = out[e] * scaleBy + Σ_k coef_k · streamed_k[e]. */
  const axpy = (out: string, ld: string, n: number, coef: string, scaleBy?: string) => `    for (var t = 0u; t < ${chunks(n)}u; t++) {
${each((k) => `      let y${k} = ${load(ld, n, k)};`)}
${Array.from({ length: SG }, (_, c) => `      { let e = t * ${SG}u + ${c}u; ${out}[e] = ${[scaleBy ? `${out}[e] * ${scaleBy}` : `${out}[e]`, ...keys.map((k) => `${coef}${k} * ${bc(`y${k}`, c)}`)].join(' + ')}; }`).join('\n')}
    }`;
  // Per entry k of the step: its index x_k (clamped, so loads stay in range), whether it exists, the pair (i, j).
  const entries = `${each((k) => `    let x${k} = min(t0 + ${k}u, ${C - 1}u);\n    let ok${k} = t0 + ${k}u < t_end;`)}`;
  const pair = (k: number) => (byQuery ? `let i = r; let j = x${k};` : `let i = x${k}; let j = r;`);
  const score = (k: number) => `s${k} * ${f(a.scale)} + ${bias}`;
  const zeros = (name: string) => each((k) => `    var ${name}${k} = 0.0;`);

  let init = '';
  let step = '';
  let finish = '';
  if (part === 'fwd' || part === 'stats') {
    const withV = part === 'fwd';
    init = `${rowArray('qr', D, 'ld_q')}
  var m = ${NEG_INF};
  var l = 0.0;${withV ? `\n  var acc: array<f32, ${pad(Dv)}>;` : ''}`;
    step = `${zeros('s')}
${dots('qr', 'ld_k', D, 's')}
${each((k) => `    var sc${k} = ${NEG_INF};\n    { ${pair(k)} sc${k} = select(${NEG_INF}, select(${f(a.fill)}, ${score(k)}, visible(b, i, j)), ok${k}); }`)}
    let tm = max(m, ${keys.slice(1).reduce((e, k) => `max(${e}, sc${k})`, 'sc0')});
    let corr = exp(m - tm);
${each((k) => `    let p${k} = select(0.0, exp(sc${k} - tm), ok${k});`)}
    l = l * corr + ${each((k) => `p${k}`, ' + ')};
    m = tm;${withV ? `\n${each((k) => `    var pz${k} = 0.0;\n    { ${pair(k)} pz${k} = p${k} * ${keep}; }`)}\n${axpy('acc', 'ld_v', Dv, 'pz', 'corr')}` : ''}`;
    finish = withV
      ? `    let inv = 1.0 / l;\n    for (var e = 0u; e < ${Dv}u; e++) { ${w.store(`(b * ${T}u + r) * ${Dv}u + e`, 'acc[e] * inv')}; }`
      : `    var dl = 0.0;
    for (var e = 0u; e < ${Dv}u; e++) { dl += ld_do(b, r, e) * ld_o(b, r, e); }
    ${w.store(`(b * ${T}u + r) * 2u`, 'm + log(l)')};
    ${w.store(`(b * ${T}u + r) * 2u + 1u`, 'dl')};`;
  } else if (part === 'q') {
    init = `${rowArray('qr', D, 'ld_q')}
${rowArray('dor', Dv, 'ld_do')}
  let lse = ld_lse(b, r);
  let dl = delta(b, r);
  var acc: array<f32, ${pad(D)}>;`;
    step = `${zeros('s')}
${zeros('dp')}
${dots('qr', 'ld_k', D, 's')}
${dots('dor', 'ld_v', Dv, 'dp')}
${each((k) => `    var ds${k} = 0.0;\n    { ${pair(k)} ds${k} = select(0.0, exp(${score(k)} - lse) * (${keep} * dp${k} - dl), ok${k} && visible(b, i, j)); }`)}
${axpy('acc', 'ld_k', D, 'ds')}`;
    finish = `    for (var e = 0u; e < ${D}u; e++) { ${w.store(`(b * ${T}u + r) * ${D}u + e`, `acc[e] * ${f(a.scale)}`)}; }`;
  } else {
    // dK or dV: the row is key r; the step walks queries.
    const wrtV = part === 'v';
    const W = wrtV ? Dv : D;
    init = `${rowArray('kr', D, 'ld_k')}${wrtV ? '' : `\n${rowArray('vr', Dv, 'ld_v')}`}
  var acc: array<f32, ${pad(W)}>;`;
    const stats = each((k) => `    let lse${k} = ld_lse(b, x${k});${wrtV ? '' : ` let dl${k} = delta(b, x${k});`}`);
    step = wrtV
      ? `${zeros('s')}
${dots('kr', 'ld_q', D, 's')}
${stats}
${each((k) => `    var pz${k} = 0.0;\n    { ${pair(k)} pz${k} = select(0.0, exp(select(${f(a.fill)}, ${score(k)}, visible(b, i, j)) - lse${k}) * ${keep}, ok${k}); }`)}
${axpy('acc', 'ld_do', Dv, 'pz')}`
      : `${zeros('s')}
${zeros('dp')}
${dots('kr', 'ld_q', D, 's')}
${dots('vr', 'ld_do', Dv, 'dp')}
${stats}
${each((k) => `    var ds${k} = 0.0;\n    { ${pair(k)} ds${k} = select(0.0, exp(${score(k)} - lse${k}) * (${keep} * dp${k} - dl${k}), ok${k} && visible(b, i, j)); }`)}
${axpy('acc', 'ld_q', D, 'ds')}`;
    finish = `    for (var e = 0u; e < ${W}u; e++) { ${w.store(`(b * ${S}u + r) * ${W}u + e`, `acc[e]${wrtV ? '' : ` * ${f(a.scale)}`}`)}; }`;
  }

  // Causal: a query block stops after its last query; a key block starts at its first key.
  const lastRow = `min(blk * ${LANES}u + ${LANES - 1}u, ${R - 1}u)`;
  const lo = !byQuery && causal ? `blk * ${LANES}u` : '0u';
  const hi = byQuery && causal ? `min(${lastRow} + 1u, ${C}u)` : `${C}u`;
  const header = w.header(
    o.op,
    `${o.what}, one ${byQuery ? 'query' : 'key'} per invocation, the other side loaded once per subgroup of ${SG} and broadcast, ${KT} per step; ${B} x ${T} queries x ${S} keys, head ${D}/${Dv}, mask ${a.mask}`,
  );
  const wgsl = `enable subgroups;
${header}
${w.declarations()}

${o.fns.join('\n')}

@compute @workgroup_size(${LANES})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
${rowBlockPrologue(B, blocks, LANES, R)}
${init}
  let t_end = ${hi};
  for (var t0 = ${lo}; t0 < t_end; t0 += ${KT}u) {
${entries}
${step}
  }
  if (r0 < ${R}u) {
${finish}
  }
}
`;
  return { label: `k${w.k.id} ${o.op} ${o.what}`, wgsl, bindings: w.bindings, dispatch: grid(B * blocks) };
}

/**
 * The first lines of a row-per-invocation attention kernel: workgroup g holds `rows` rows of batch entry b (so b,
 * the block and every loop bound are workgroup-uniform); r0 is this invocation's row, r the row it computes (rows
 * past the end compute a copy of the last row and do not store it).
 */
export function rowBlockPrologue(B: number, blocks: number, rows: number, R: number): string {
  return `  let g = wid.x + wid.y * nwg.x;
  if (g >= ${B * blocks}u) { return; } // uniform: the whole workgroup leaves
  let b = g / ${blocks}u;
  let blk = g % ${blocks}u;
  let r0 = blk * ${rows}u + lid;
  let r = min(r0, ${R - 1}u);`;
}
