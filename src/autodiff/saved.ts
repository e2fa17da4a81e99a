/**
 * What the backward pass keeps alive from the forward pass: the forward values that backward nodes read.
 * This is the input of recomputation (gradient checkpointing): each such value is either stored until its
 * backward use or recomputed from earlier saved values.
 */
import type { Graph } from '../ir/graph.js';
import { fmtType } from '../ir/types.js';

/**
 * Forward nodes: the ancestors of the entry's own outputs (role `output` or `loss`). Everything else is the backward
 * pass, or an optimizer step after it.
 */
export function forwardNodes(g: Graph): boolean[] {
  const fwd = new Array<boolean>(g.nodes.length).fill(false);
  const stack = g.outputs.filter((o) => !o.role || o.role.kind === 'output' || o.role.kind === 'loss').map((o) => o.id);
  while (stack.length) {
    const id = stack.pop()!;
    if (fwd[id]) continue;
    fwd[id] = true;
    stack.push(...g.nodes[id].inputs);
  }
  return fwd;
}

/** Ids of forward values (not parameters or inputs) read by at least one backward node. */
export function savedForBackward(g: Graph, fwd = forwardNodes(g)): number[] {
  const saved = new Set<number>();
  for (const n of g.nodes) {
    if (fwd[n.id]) continue;
    for (const i of n.inputs) {
      const src = g.nodes[i];
      if (fwd[i] && src.op !== 'param' && src.op !== 'input' && src.op !== 'constant' && src.op !== 'iota') saved.add(i);
    }
  }
  return [...saved].sort((a, b) => a - b);
}

export function describeSaved(g: Graph): string {
  const ids = savedForBackward(g);
  let bytes = 0;
  const lines = ids.map((id) => {
    const n = g.nodes[id];
    const size = n.type.shape.reduce((p, d) => p * d, 1) * 4; // the device stores every dtype in 4-byte words
    bytes += size;
    return `  %${id}: ${fmtType(n.type)} = ${n.op}${n.name ? `  # ${n.name}` : ''}${n.scope ? ` ${n.scope.kind}#${n.scope.id}` : ''}`;
  });
  return [`forward values kept alive for the backward pass of ${g.name}: ${ids.length} (${(bytes / 1024).toFixed(1)} KiB)`, ...lines].join('\n');
}
