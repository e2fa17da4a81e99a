/** Fused elementwise kernels: one invocation per output element, everything upstream inlined by the writer. */
import { numel } from '../../ir/types.js';
import type { KernelPass, KernelWriter } from './writer.js';
import { grid } from './types.js';

export const ELEMENTWISE_WG = 256;

export function genElementwise(w: KernelWriter): KernelPass[] {
  const root = w.node(w.k.root);
  const n = numel(root.type.shape);
  const value = w.at(root.id, 'i');
  const out = w.output();
  const wgsl = `${w.header('elementwise')}
${w.declarations()}


@compute @workgroup_size(${ELEMENTWISE_WG})
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32, @builtin(num_workgroups) nwg: vec3<u32>) {
  let i = (wid.x + wid.y * nwg.x) * ${ELEMENTWISE_WG}u + lid;
  if (i >= ${w.shapeFree ? `arrayLength(&${out})` : `${n}u`}) { return; }
  ${w.store('i', value)};
}
`;
  return [{ label: `k${w.k.id} elementwise`, wgsl, bindings: w.bindings, dispatch: grid(Math.ceil(n / ELEMENTWISE_WG)) }];
}
