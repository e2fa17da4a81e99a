/**
 * scatter_add: out[rows, ...r] = sum of upd[i, ...r] over every i with idx[i] == row, summed in increasing i, so
 * the result is the same bits on every run (training resumes exactly; a float atomic add would make the order,
 * and so the last bits, depend on scheduling).
 *
 * Pass 1, one invocation per index position j: zero the output, and link j to the next position with the same
 * row (a u32 work buffer: bit 31 marks the first position of a row, the rest is the next position or END).
 * Pass 2, one invocation per update element (j, c) where j is a row's first position: walk the row's chain,
 * sum, and write the output element, which nothing else writes. Pass 1 scans earlier indices until it meets the
 * row and later ones until the next occurrence: O(positions²) compares at worst (all rows distinct), which is
 * fine for the ~10⁴ token positions of a training micro-batch (docs/codegen.md has the measurement).
 */
import type { AttrsOf } from '../../ir/op.js';
import { numel } from '../../ir/types.js';
import type { KernelPass, KernelWriter } from './writer.js';
import { KernelWriter as Writer } from './writer.js';
import { grid } from './types.js';

const WG = 256;
const END = 0x7fffffff;

export function genScatter(w: KernelWriter): KernelPass[] {
  const a = w.node(w.k.anchor);
  const [idx, upd] = a.inputs.map((q) => w.node(q));
  const rows = (a.attrs as AttrsOf<'scatter_add'>).rows;
  const row = numel(a.type.shape.slice(1));
  const nIdx = numel(idx.type.shape);
  const nOut = numel(a.type.shape);
  const main = `@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = (wid.x + wid.y * nwg.x) * ${WG}u + lid;`;

  const l = new Writer(w.g, w.k, w.storage, w.f16);
  const rowAt = (k: string) => `i32(${l.at(idx.id, k)})`;
  const r = rowAt('j');
  const rk = rowAt('k');
  l.scratch('link', nIdx);
  l.output();
  const links = `${l.header('scatter_add', `link the ${nIdx} positions row by row, zero the output`)}
${l.declarations()}

${main}
  if (e < ${nOut}u) { ${l.store('e', '0.0')}; }
  if (e >= ${nIdx}u) { return; }
  let j = e;
  let r = ${r};
  if (r < 0 || r >= ${rows}) { link[j] = ${END}u; return; } // out-of-range indices are dropped
  var first = 1u;
  var next = ${END}u;
  for (var k = 0u; k < ${nIdx}u; k++) {
    if (${rk} == r) {
      if (k < j) { first = 0u; k = j; } // an earlier position leads this row; go on looking after j
      else if (k > j) { next = k; break; }
    }
  }
  link[j] = (first << 31u) | next;
}
`;

  const s = new Writer(w.g, w.k, w.storage, w.f16);
  const value = (k: string) => s.at(upd.id, row === 1 ? k : `${k} * ${row}u + c`);
  const v = value('k');
  const target = s.at(idx.id, 'j');
  s.scratch('link', nIdx);
  s.output();
  const sum = `${s.header('scatter_add', `${nIdx} positions into ${rows} rows of ${row}, each row summed in index order`)}
${s.declarations()}

${main}
  if (e >= ${nIdx * row}u) { return; }
  let j = e / ${row}u;
  let c = e % ${row}u;
  if ((link[j] >> 31u) == 0u) { return; } // not a row's first position
  var acc = 0.0;
  var k = j;
  loop {
    acc = acc + ${v};
    k = link[k] & ${END}u;
    if (k == ${END}u) { break; }
  }
  ${s.store(`u32(${target}) * ${row}u + c`, 'acc')};
}
`;
  return [
    { label: `k${w.k.id} scatter_add links`, wgsl: links, bindings: l.bindings, dispatch: grid(Math.ceil(Math.max(nOut, nIdx) / WG)) },
    { label: `k${w.k.id} scatter_add sum`, wgsl: sum, bindings: s.bindings, dispatch: grid(Math.ceil((nIdx * row) / WG)) },
  ];
}
