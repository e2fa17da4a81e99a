/**
 * Fused attention kernels: flash_attention (forward), flash_attention_stats and flash_attention_grad (backward).
 * The [.., T, S] scores never leave a kernel: each invocation owns one row (a query for the forward, the LSE and
 * dQ; a key for dK and dV) and walks the other side in tiles of KT, holding the tile's scores in registers.
 *
 *   forward   online softmax over key tiles: per tile the row max is updated once, the running sum and the
 *             output accumulator are rescaled once, then the tile's P·V is added; out = acc / l at the end.
 *   stats     the same walk without V: (m + log(l), dout·out) per query, the backward's row statistics.
 *   dQ        per query, over key tiles: p = exp(s − lse), dS = p (z dO·v − delta), dQ += dS k.
 *   dK, dV    per key, over query tiles: dV += p z dO, dK += dS q.
 *   dBias     one invocation per score element (only emitted when a bias needs a gradient).
 * dK and dV are separate nodes (one result per node), so each recomputes p: deterministic, no atomics, every sum in
 * a fixed order (resume stays bit-exact).
 *
 * Strategies: `workgroup` (GPUs) — a workgroup of QT rows stages each tile of the other side (k and v, or q and
 * dO with lse and delta) in workgroup memory once for all its rows; `thread` (CPU-backed adapters such as lavapipe,
 * where each barrier is a coroutine switch per invocation) — the same loops reading operands from memory, no
 * barriers. Causal masking skips whole tiles: a query block stops at its last query, a key block starts at the
 * tile of its first key. Hidden keys inside a tile take the score `fill` (a fully hidden row is uniform, as with
 * the unfused where(mask, scores, -1e9)); dQ and dK skip them (where() passes them no gradient).
 */
import { IRError } from '../../errors.js';
import type { AttentionAttrs, AttrsOf } from '../../ir/op.js';
import { attentionDims } from '../../ir/ops/attention.js';
import { WGSL_PHILOX } from '../../ir/philox.js';
import type { KernelPass, KernelWriter } from './writer.js';
import { broadcastIndex } from './writer.js';
import { NEG_INF, grid, literal, type KernelStrategy } from './types.js';
import { lanesAttentionPass, rowBlockPrologue, usesLanesAttention } from './attention-lanes.js';

/** Rows (invocations) per workgroup. */
const QT = 64;
/** Workgroup memory budget in f32 words (WebGPU's guaranteed 16 KiB). */
const WG_WORDS = 4096;

type Part = 'fwd' | 'stats' | 'q' | 'k' | 'v' | 'bias';

export function genAttention(w: KernelWriter, strategy: KernelStrategy = 'workgroup', subgroupSize?: number): KernelPass[] {
  const n = w.node(w.k.anchor);
  if (w.k.epilogue) throw new IRError(`codegen: attention kernel %${n.id} cannot take an epilogue`);
  const a = n.attrs as AttentionAttrs;
  const part: Part = n.op === 'flash_attention' ? 'fwd' : n.op === 'flash_attention_stats' ? 'stats' : (n.attrs as AttrsOf<'flash_attention_grad'>).wrt;
  const irPart = n.op === 'flash_attention' ? 'fwd' : n.op === 'flash_attention_stats' ? 'stats' : 'grad';
  const types = n.inputs.map((q) => w.node(q).type);
  const { L, batch, B, T, S, D, Dv } = attentionDims(n.op, irPart, types, a);
  const op = (i: number | undefined) => n.inputs[i!];
  const scores = [...batch, T, S];
  const f = (x: number) => literal(x, 'f32');

  // ---- operand access (value functions: an inlined transpose/reshape producer costs no kernel) ----
  const fns: string[] = [];
  fns.push(`fn ld_q(b: u32, i: u32, d: u32) -> f32 { return ${w.at(op(L.q), `(b * ${T}u + i) * ${D}u + d`)}; }`);
  fns.push(`fn ld_k(b: u32, j: u32, d: u32) -> f32 { return ${w.at(op(L.k), `(b * ${S}u + j) * ${D}u + d`)}; }`);
  if (L.v !== undefined) fns.push(`fn ld_v(b: u32, j: u32, d: u32) -> f32 { return ${w.at(op(L.v), `(b * ${S}u + j) * ${Dv}u + d`)}; }`);
  if (L.out !== undefined) fns.push(`fn ld_o(b: u32, i: u32, d: u32) -> f32 { return ${w.at(op(L.out), `(b * ${T}u + i) * ${Dv}u + d`)}; }`);
  if (L.dout !== undefined) fns.push(`fn ld_do(b: u32, i: u32, d: u32) -> f32 { return ${w.at(op(L.dout), `(b * ${T}u + i) * ${Dv}u + d`)}; }`);
  if (L.stats !== undefined) {
    fns.push(`fn ld_lse(b: u32, i: u32) -> f32 { return ${w.at(op(L.stats), `(b * ${T}u + i) * 2u`)}; }`);
    fns.push(`fn delta(b: u32, i: u32) -> f32 { return ${w.at(op(L.stats), `(b * ${T}u + i) * 2u + 1u`)}; }`);
  }
  const bias = L.bias !== undefined ? `ld_bias((b * ${T}u + i) * ${S}u + j)` : '0.0';
  if (L.bias !== undefined) fns.push(`fn ld_bias(e: u32) -> f32 { return ${w.at(op(L.bias), broadcastIndex(w.node(op(L.bias)).type.shape, scores, 'e'))}; }`);
  let visible: string;
  switch (a.mask) {
    case 'none':
      visible = 'true';
      break;
    case 'causal':
      visible = 'j <= i';
      break;
    case 'prefix':
      fns.push(`fn ld_len(b: u32) -> i32 { return i32(${w.at(op(L.mask), broadcastIndex(w.node(op(L.mask)).type.shape, batch, 'b'))}); }`);
      visible = '(j <= i || i32(j) < ld_len(b))';
      break;
    case 'bool':
      fns.push(`fn ld_mask(e: u32) -> bool { return ${w.at(op(L.mask), broadcastIndex(w.node(op(L.mask)).type.shape, scores, 'e'))}; }`);
      visible = `ld_mask((b * ${T}u + i) * ${S}u + j)`;
      break;
  }
  fns.push(`fn visible(b: u32, i: u32, j: u32) -> bool { return ${visible}; }`);
  // The dropout multiplier of probability (b, i, j): the `dropout` op's test on the same flat index.
  let keep = '1.0';
  if (L.seed !== undefined) {
    w.helper(WGSL_PHILOX);
    fns.push(`fn keep(b: u32, i: u32, j: u32) -> f32 {
  let r = kiln_philox(vec4<u32>((b * ${T}u + i) * ${S}u + j, 0u, 0u, 0u), vec2<u32>(${w.at(op(L.seed), '0u')}, ${a.stream >>> 0}u));
  return select(0.0, ${f(1 / (1 - a.p))}, (r.x >> 8u) >= ${Math.ceil(a.p * 16777216)}u);
}`);
    keep = 'keep(b, i, j)';
  }
  w.output();

  if (part === 'bias') return [biasPass(w, n.id, fns, { B, T, S, D, Dv, a, keep, bias })];
  const what = { fwd: 'forward', stats: 'log-sum-exp and dout·out', q: 'dQ', k: 'dK', v: 'dV' }[part];
  // CPU adapters with fixed-size subgroups: the lanes of a subgroup share each load (attention-lanes.ts).
  if (usesLanesAttention({ strategy, subgroups: subgroupSize !== undefined, subgroupSize })) {
    return [lanesAttentionPass(w, { op: n.op, part, what, dims: { B, T, S, D, Dv }, a, fns, keep, bias, SG: subgroupSize! })];
  }

  const byQuery = part === 'fwd' || part === 'stats' || part === 'q';
  const R = byQuery ? T : S; // rows: one invocation each
  const C = byQuery ? S : T; // the other side, walked in tiles
  const shared = strategy === 'workgroup';
  // Words of the other side one tile entry stages.
  const perEntry = byQuery ? D + (part === 'stats' ? 0 : Dv) : D + Dv + 2;
  const KT = shared ? Math.max(1, Math.min(32, Math.floor(WG_WORDS / perEntry))) : 16;
  const rowsPerWg = QT;
  const blocks = Math.ceil(R / rowsPerWg);
  const causal = a.mask === 'causal';

  // Tile entry accessors: workgroup memory or straight from the operands.
  const tq = (c: string, d: string) => (shared ? `tq[${c} * ${D}u + ${d}]` : `ld_q(b, ${c}, ${d})`);
  const tk = (c: string, d: string) => (shared ? `tk[${c} * ${D}u + ${d}]` : `ld_k(b, ${c}, ${d})`);
  const tv = (c: string, d: string) => (shared ? `tv[${c} * ${Dv}u + ${d}]` : `ld_v(b, ${c}, ${d})`);
  const tdo = (c: string, d: string) => (shared ? `tdo[${c} * ${Dv}u + ${d}]` : `ld_do(b, ${c}, ${d})`);
  const tlse = (c: string) => (shared ? `tlse[${c}]` : `ld_lse(b, ${c})`);
  const tdelta = (c: string) => (shared ? `tdelta[${c}]` : `delta(b, ${c})`);
  // In the shared strategy the tile index is c (tile-local); otherwise the global index of the other side.
  const at = (c: string) => (shared ? c : 'x');

  let wgDecl = '';
  let stage = '';
  if (shared) {
    const decl = (name: string, words: number) => `var<workgroup> ${name}: array<f32, ${Math.max(1, words)}>;`;
    const loads: string[] = [];
    const load = (name: string, width: number, expr: string) =>
      loads.push(`  for (var e = lid; e < ${KT * width}u; e += ${rowsPerWg}u) {
    let c = e / ${width}u;
    let x = t0 + c;
    var val = 0.0;
    if (x < ${C}u) { ${expr} }
    ${name}[e] = val;
  }`);
    if (byQuery) {
      wgDecl = [decl('tk', KT * D), part !== 'stats' ? decl('tv', KT * Dv) : ''].join('\n');
      load('tk', D, `val = ld_k(b, x, e % ${D}u);`);
      if (part !== 'stats') load('tv', Dv, `val = ld_v(b, x, e % ${Dv}u);`);
    } else {
      wgDecl = [decl('tq', KT * D), decl('tdo', KT * Dv), decl('tlse', KT), decl('tdelta', KT)].join('\n');
      load('tq', D, `val = ld_q(b, x, e % ${D}u);`);
      load('tdo', Dv, `val = ld_do(b, x, e % ${Dv}u);`);
      load('tlse', 1, 'val = ld_lse(b, x);');
      load('tdelta', 1, 'val = delta(b, x);');
    }
    stage = `    workgroupBarrier();\n${loads.join('\n')}\n    workgroupBarrier();`;
  }

  // Range of the other side a row (or, for the tile loop bound, the whole block) can see under a causal mask.
  const lastRow = `min(blk * ${rowsPerWg}u + ${rowsPerWg - 1}u, ${R - 1}u)`;
  const firstRow = `blk * ${rowsPerWg}u`;
  const tileLo = !byQuery && causal ? `(${firstRow} / ${KT}u) * ${KT}u` : '0u';
  const tileHi = byQuery && causal ? `min(${lastRow} + 1u, ${C}u)` : `${C}u`;

  const score = (kdot: string) => `${kdot} * ${f(a.scale)} + ${bias}`;
  let init = '';
  let tile = '';
  let finish = '';
  if (byQuery) {
    init = `  var qr: array<f32, ${D}>;
  for (var d = 0u; d < ${D}u; d++) { qr[d] = ld_q(b, r, d); }`;
    const dot = `var dot = 0.0; for (var d = 0u; d < ${D}u; d++) { dot += qr[d] * ${tk(at('c'), 'd')}; }`;
    if (part === 'fwd' || part === 'stats') {
      const withV = part === 'fwd';
      init += `
  var m = ${NEG_INF};
  var l = 0.0;${withV ? `\n  var acc: array<f32, ${Dv}>;` : ''}`;
      tile = `      var sc: array<f32, ${KT}>;
      var tm = m;
      for (var c = 0u; c < ${KT}u; c++) {
        let x = t0 + c;
        if (x >= t_end) { break; }
        let i = r; let j = x;
        var s = ${f(a.fill)};
        if (visible(b, i, j)) { ${dot} s = ${score('dot')}; }
        sc[c] = s;
        tm = max(tm, s);
      }
      let corr = exp(m - tm);
      l = l * corr;${withV ? `\n      for (var d = 0u; d < ${Dv}u; d++) { acc[d] = acc[d] * corr; }` : ''}
      for (var c = 0u; c < ${KT}u; c++) {
        let x = t0 + c;
        if (x >= t_end) { break; }
        let i = r; let j = x;
        let p = exp(sc[c] - tm);
        l += p;${withV ? `\n        let pz = p * ${keep};\n        if (pz != 0.0) { for (var d = 0u; d < ${Dv}u; d++) { acc[d] += pz * ${tv(at('c'), 'd')}; } }` : ''}
      }
      m = tm;`;
      finish = withV
        ? `    let inv = 1.0 / l;\n    for (var d = 0u; d < ${Dv}u; d++) { ${w.store(`(b * ${T}u + r) * ${Dv}u + d`, 'acc[d] * inv')}; }`
        : `    var dl = 0.0;
    for (var d = 0u; d < ${Dv}u; d++) { dl += ld_do(b, r, d) * ld_o(b, r, d); }
    ${w.store(`(b * ${T}u + r) * 2u`, 'm + log(l)')};
    ${w.store(`(b * ${T}u + r) * 2u + 1u`, 'dl')};`;
    } else {
      // dQ
      init += `
  var dor: array<f32, ${Dv}>;
  for (var d = 0u; d < ${Dv}u; d++) { dor[d] = ld_do(b, r, d); }
  let lse = ld_lse(b, r);
  let dl = delta(b, r);
  var acc: array<f32, ${D}>;`;
      tile = `      for (var c = 0u; c < ${KT}u; c++) {
        let x = t0 + c;
        if (x >= t_end) { break; }
        let i = r; let j = x;
        if (visible(b, i, j)) {
          ${dot}
          let p = exp(${score('dot')} - lse);
          var dp = 0.0;
          for (var d = 0u; d < ${Dv}u; d++) { dp += dor[d] * ${tv(at('c'), 'd')}; }
          let ds = p * (${keep} * dp - dl);
          for (var d = 0u; d < ${D}u; d++) { acc[d] += ds * ${tk(at('c'), 'd')}; }
        }
      }`;
      finish = `    for (var d = 0u; d < ${D}u; d++) { ${w.store(`(b * ${T}u + r) * ${D}u + d`, `acc[d] * ${f(a.scale)}`)}; }`;
    }
  } else {
    // dK or dV: the row is key r; the tile walks queries x.
    const wrtV = part === 'v';
    const W = wrtV ? Dv : D;
    init = `  var kr: array<f32, ${D}>;
  for (var d = 0u; d < ${D}u; d++) { kr[d] = ld_k(b, r, d); }${wrtV ? '' : `\n  var vr: array<f32, ${Dv}>;\n  for (var d = 0u; d < ${Dv}u; d++) { vr[d] = ld_v(b, r, d); }`}
  var acc: array<f32, ${W}>;`;
    const dot = `var dot = 0.0; for (var d = 0u; d < ${D}u; d++) { dot += kr[d] * ${tq(at('c'), 'd')}; }`;
    tile = `      for (var c = 0u; c < ${KT}u; c++) {
        let x = t0 + c;
        if (x >= t_end) { break; }
        let i = x; let j = r;
        ${wrtV
          ? `var s = ${f(a.fill)};
        if (visible(b, i, j)) { ${dot} s = ${score('dot')}; }
        let pz = exp(s - ${tlse(at('c'))}) * ${keep};
        for (var d = 0u; d < ${Dv}u; d++) { acc[d] += pz * ${tdo(at('c'), 'd')}; }`
          : `if (visible(b, i, j)) {
          ${dot}
          let p = exp(${score('dot')} - ${tlse(at('c'))});
          var dp = 0.0;
          for (var d = 0u; d < ${Dv}u; d++) { dp += ${tdo(at('c'), 'd')} * vr[d]; }
          let ds = p * (${keep} * dp - ${tdelta(at('c'))});
          for (var d = 0u; d < ${D}u; d++) { acc[d] += ds * ${tq(at('c'), 'd')}; }
        }`}
      }`;
    const sc = wrtV ? '' : ` * ${f(a.scale)}`;
    finish = `    for (var d = 0u; d < ${W}u; d++) { ${w.store(`(b * ${S}u + r) * ${W}u + d`, `acc[d]${sc}`)}; }`;
  }

  const header = w.header(n.op, `${what}, ${shared ? `${rowsPerWg} rows per workgroup sharing tiles of ${KT}` : `one ${byQuery ? 'query' : 'key'} per invocation, tiles of ${KT}`}; ${B} x ${T} queries x ${S} keys, head ${D}/${Dv}, mask ${a.mask}`);
  // Both strategies give a workgroup QT rows of one batch entry, so the batch index, the tile bounds and every
  // loop counter are uniform across the workgroup: CPU adapters (which run a workgroup's invocations as SIMD
  // lanes) then load each key/query element once for all lanes instead of gathering it per lane. Rows past the
  // end compute a copy of the last row and do not store it.
  const main = `@compute @workgroup_size(${rowsPerWg})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3<u32>) {
${rowBlockPrologue(B, blocks, rowsPerWg, R)}
${init}
  let tile_hi = ${tileHi};
  for (var t0 = ${tileLo}; t0 < tile_hi; t0 += ${KT}u) {
${stage}
    let t_end = min(t0 + ${KT}u, tile_hi);
${tile}
  }
  if (r0 < ${R}u) {
${finish}
  }
}`;
  const wgsl = `${header}
${w.declarations()}
${wgDecl}

${fns.join('\n')}

${main}
`;
  return [{ label: `k${w.k.id} ${n.op} ${what}`, wgsl, bindings: w.bindings, dispatch: grid(B * blocks) }];
}

/** dBias (the score gradient dS itself): one invocation per score element. */
function biasPass(
  w: KernelWriter,
  id: number,
  fns: string[],
  o: { B: number; T: number; S: number; D: number; Dv: number; a: AttentionAttrs; keep: string; bias: string },
): KernelPass {
  const { B, T, S, D, Dv, a } = o;
  const n = B * T * S;
  const wgsl = `${w.header('flash_attention_grad', `dBias: one invocation per score, ${B} x ${T} x ${S}`)}
${w.declarations()}

${fns.join('\n')}

@compute @workgroup_size(${QT})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = (wid.x + wid.y * nwg.x) * ${QT}u + lid;
  if (e >= ${n}u) { return; }
  let b = e / ${T * S}u;
  let i = (e / ${S}u) % ${T}u;
  let j = e % ${S}u;
  var ds = 0.0;
  if (visible(b, i, j)) {
    var dot = 0.0;
    for (var d = 0u; d < ${D}u; d++) { dot += ld_q(b, i, d) * ld_k(b, j, d); }
    let p = exp(dot * ${literal(a.scale, 'f32')} + ${o.bias} - ld_lse(b, i));
    var dp = 0.0;
    for (var d = 0u; d < ${Dv}u; d++) { dp += ld_do(b, i, d) * ld_v(b, j, d); }
    ds = p * (${o.keep} * dp - delta(b, i));
  }
  ${w.store('e', 'ds')};
}
`;
  return { label: `k${w.k.id} flash_attention_grad dBias`, wgsl, bindings: w.bindings, dispatch: grid(Math.ceil(n / QT)) };
}

