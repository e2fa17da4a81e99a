/**
 * scatter_add: out[rows, ...r] = sum of upd[i, ...r] over every i with idx[i] == row. Two passes: zero the
 * output, then one invocation per update element adds it in with a float atomic add. WGSL has atomics on
 * i32/u32 only, so the add is a compare-exchange loop on the f32's bit pattern: correct under any number of
 * duplicate indices (the summation order, and so the last bits, depend on scheduling).
 */
import type { AttrsOf } from '../../ir/op.js';
import { numel } from '../../ir/types.js';
import type { KernelPass, KernelWriter } from './writer.js';
import { KernelWriter as Writer } from './writer.js';
import { grid } from './types.js';

const WG = 256;

export function genScatter(w: KernelWriter): KernelPass[] {
  const a = w.node(w.k.anchor);
  const [idx, upd] = a.inputs.map((q) => w.node(q));
  const rows = (a.attrs as AttrsOf<'scatter_add'>).rows;
  const row = numel(a.type.shape.slice(1));
  const nUpd = numel(upd.type.shape);
  const nOut = numel(a.type.shape);

  // Pass 1: zero the output (a separate writer so the pass binds only the output buffer).
  const z = new Writer(w.g, w.k, w.storage);
  z.output();
  const zero = `${z.header('scatter_add', 'zero fill')}
${z.declarations()}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = (wid.x + wid.y * nwg.x) * ${WG}u + lid;
  if (i < ${nOut}u) { out[i] = 0.0; }
}
`;

  const label = w.at(idx.id, row === 1 ? 'e' : `e / ${row}u`);
  const value = w.at(upd.id, 'e');
  w.output(true);
  const add = `${w.header('scatter_add', `${nUpd} updates into ${rows} rows of ${row}, atomic f32 add`)}
${w.declarations()}

fn atomic_add_f32(p: u32, v: f32) {
  var old = atomicLoad(&out[p]);
  loop {
    let r = atomicCompareExchangeWeak(&out[p], old, bitcast<u32>(bitcast<f32>(old) + v));
    if (r.exchanged) { break; }
    old = r.old_value;
  }
}

@compute @workgroup_size(${WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3<u32>) {
  let e = (wid.x + wid.y * nwg.x) * ${WG}u + lid;
  if (e >= ${nUpd}u) { return; }
  let r = i32(${label});
  if (r < 0 || r >= ${rows}) { return; } // out-of-range indices are dropped
  atomic_add_f32(u32(r) * ${row}u${row === 1 ? '' : ` + e % ${row}u`}, ${value});
}
`;
  return [
    { label: `k${w.k.id} scatter_add zero`, wgsl: zero, bindings: z.bindings, dispatch: grid(Math.ceil(nOut / WG)) },
    { label: `k${w.k.id} scatter_add`, wgsl: add, bindings: w.bindings, dispatch: grid(Math.ceil(nUpd / WG)) },
  ];
}
