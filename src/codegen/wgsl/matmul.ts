/**
 * Batched matmul, tiled: each workgroup computes a BM x BN output tile, staging BK-deep slices of A and B
 * through workgroup memory; each invocation accumulates a TM x TN block in registers (register blocking).
 * The `direct` variant (CPU-backed adapters) skips the staging and its barriers and reads operands from memory.
 * transA/transB only change how tiles are loaded (loads stay coalesced along the contiguous axis). Batch dims
 * broadcast like numpy: the batch index maps into each operand with broadcast index arithmetic. Operands are
 * read through their value functions, so a transpose or reshape feeding the matmul costs no extra kernel.
 */
import type { AttrsOf } from '../../ir/op.js';
import { numel } from '../../ir/types.js';
import type { KernelPass, KernelWriter } from './writer.js';
import { broadcastIndex } from './writer.js';
import type { TileConfig } from './tiles.js';

export function genMatmul(w: KernelWriter, tiles: TileConfig): KernelPass[] {
  const mm = w.node(w.k.anchor);
  const { transA, transB } = mm.attrs as AttrsOf<'matmul'>;
  const [A, B] = mm.inputs.map((q) => w.node(q));
  const as = A.type.shape;
  const bs = B.type.shape;
  const outShape = mm.type.shape;
  const batch = outShape.slice(0, -2);
  const M = outShape[outShape.length - 2];
  const N = outShape[outShape.length - 1];
  const K = transA ? as[as.length - 2] : as[as.length - 1];
  const lda = as[as.length - 1];
  const ldb = bs[bs.length - 1];
  const nb = numel(batch);
  const { BM, BN, BK, TM, TN } = tiles;
  const direct = !!tiles.direct;
  const TX = BN / TN;
  const TY = BM / TM;
  const NT = TX * TY;
  // Accumulators are vectors along N: lavapipe's LLVM takes ~10 s to compile the same loop over a scalar array.
  const VW = TN % 4 === 0 ? 4 : TN % 2 === 0 ? 2 : 1;
  const VT = VW === 1 ? 'f32' : `vec${VW}<f32>`;
  const NV = TN / VW;
  const bLane = (j: string) => (VW === 1 ? `Bs[bo + ${j}]` : `${VT}(${Array.from({ length: VW }, (_, c) => `Bs[bo + ${j} * ${VW}u + ${c}u]`).join(', ')})`);
  const accAt = VW === 1 ? 'acc[i * TN + j]' : `acc[i * ${NV}u + j / ${VW}u][j % ${VW}u]`;

  const aBatch = broadcastIndex(as.slice(0, -2), batch, 'bz');
  const bBatch = broadcastIndex(bs.slice(0, -2), batch, 'bz');
  const aIdx = `(${aBatch}) * ${as[as.length - 2] * lda}u + ${transA ? `k * ${lda}u + m` : `m * ${lda}u + k`}`;
  const bIdx = `(${bBatch}) * ${bs[bs.length - 2] * ldb}u + ${transB ? `n * ${ldb}u + k` : `k * ${ldb}u + n`}`;
  const aVal = w.at(A.id, aIdx);
  const bVal = w.at(B.id, bIdx);
  const root = w.node(w.k.root);
  w.output();
  const outStmt = w.store('o', w.k.epilogue ? w.at(root.id, 'o', 'val') : 'val');

  // Bounds tests only where a tile can reach past the matrix (shapes are compile-time constants).
  const aTests = [M % BM ? 'm >= M' : '', !direct && K % BK ? 'k >= K' : ''].filter(Boolean);
  const bTests = [!direct && K % BK ? 'k >= K' : '', N % BN ? 'n >= N' : ''].filter(Boolean);
  const guard = (tests: string[]) => (tests.length ? `  if (${tests.join(' || ')}) { return 0.0; }\n` : '');
  const loads = `fn a_at(bz: u32, m: u32, k: u32) -> f32 {
${guard(aTests)}  return ${aVal};
}
fn b_at(bz: u32, k: u32, n: u32) -> f32 {
${guard(bTests)}  return ${bVal};
}`;
  const bVec = (n: string) => (VW === 1 ? `b_at(bz, k, ${n})` : `${VT}(${Array.from({ length: VW }, (_, c) => `b_at(bz, k, ${n} + ${c}u)`).join(', ')})`);
  // Coalesced staging: consecutive invocations load consecutive addresses of each operand.
  const aLoad = transA ? ['e % BM', 'e / BM'] : ['e / BK', 'e % BK'];
  const bLoad = transB ? ['e % BK', 'e / BK'] : ['e / BN', 'e % BN'];
  const mainLoop = direct
    ? `  // direct: operands straight from memory (the CPU's caches do what workgroup tiles do on a GPU)
  let mi = m0 + lid.y * TM;
  let ni = n0 + lid.x * TN;
  for (var k = 0u; k < K; k++) {
    for (var j = 0u; j < ${NV}u; j++) { rb[j] = ${bVec(`ni + j * ${VW}u`)}; }
    for (var i = 0u; i < TM; i++) {
      let a = ${VT}(a_at(bz, mi + i, k));
      for (var j = 0u; j < ${NV}u; j++) { acc[i * ${NV}u + j] = fma(a, rb[j], acc[i * ${NV}u + j]); }
    }
  }`
    : `  for (var k0 = 0u; k0 < K; k0 += BK) {
    for (var e0 = 0u; e0 < BM * BK; e0 += NT) {
      let e = e0 + tid;
      if (e < BM * BK) {
        let mm = ${aLoad[0]};
        let kk = ${aLoad[1]};
        As[kk * BM + mm] = a_at(bz, m0 + mm, k0 + kk);
      }
    }
    for (var e0 = 0u; e0 < BK * BN; e0 += NT) {
      let e = e0 + tid;
      if (e < BK * BN) {
        let kk = ${bLoad[0]};
        let nn = ${bLoad[1]};
        Bs[kk * BN + nn] = b_at(bz, k0 + kk, n0 + nn);
      }
    }
    workgroupBarrier();
    for (var kk = 0u; kk < BK; kk++) {
      for (var i = 0u; i < TM; i++) { ra[i] = As[kk * BM + lid.y * TM + i]; }
      let bo = kk * BN + lid.x * TN;
      for (var j = 0u; j < ${NV}u; j++) { rb[j] = ${bLane('j')}; }
      for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < ${NV}u; j++) { acc[i * ${NV}u + j] = fma(${VT}(ra[i]), rb[j], acc[i * ${NV}u + j]); }
      }
    }
    workgroupBarrier();
  }`;
  const wgsl = `${w.header('matmul', `${transA ? 'A^T' : 'A'} x ${transB ? 'B^T' : 'B'}, batch ${nb}, ${direct ? `direct (no workgroup tiles), ${BM}x${BN} per workgroup` : `tile ${BM}x${BN}x${BK}`}, ${TM}x${TN} per invocation`)}
${w.declarations()}

const M: u32 = ${M}u;
const N: u32 = ${N}u;
const K: u32 = ${K}u;
const BM: u32 = ${BM}u;
const BN: u32 = ${BN}u;
const BK: u32 = ${BK}u;
const TM: u32 = ${TM}u;
const TN: u32 = ${TN}u;
const NT: u32 = ${NT}u;
${direct ? '' : `
var<workgroup> As: array<f32, ${BM * BK}>; // As[k * BM + m]
var<workgroup> Bs: array<f32, ${BK * BN}>; // Bs[k * BN + n]
`}
${loads}

@compute @workgroup_size(${TX}, ${TY}, 1)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
  let bz = wid.z;
  let m0 = wid.y * BM;
  let n0 = wid.x * BN;
${direct ? '' : `  let tid = lid.y * ${TX}u + lid.x;\n  var ra: array<f32, ${TM}>;\n`}  var acc: array<${VT}, ${TM * NV}>;
  var rb: array<${VT}, ${NV}>;
${mainLoop}
  for (var i = 0u; i < TM; i++) {
    for (var j = 0u; j < TN; j++) {
      let m = m0 + lid.y * TM + i;
      let n = n0 + lid.x * TN + j;
      if (m < M && n < N) {
        let o = bz * ${M * N}u + m * N + n;
        let val = ${accAt};
        ${outStmt};
      }
    }
  }
}
`;
  return [{ label: `k${w.k.id} matmul`, wgsl, bindings: w.bindings, dispatch: [Math.ceil(N / BN), Math.ceil(M / BM), nb] }];
}
