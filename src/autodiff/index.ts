import type { Graph } from '../ir/graph.js';
import type { DumpOptions } from '../passes/index.js';
import { compileIR } from '../passes/pipeline.js';
import type { GradOptions } from './grad.js';

export { buildJointGraph, GRAD_PREFIX, INPUT_GRAD_PREFIX } from './grad.js';
export type { GradOptions } from './grad.js';
export { describeSaved, savedForBackward } from './saved.js';

/**
 * The joint forward + backward graph of `g` through the compiler's pipeline (canonicalize, autodiff, CSE, DCE and
 * whatever else is registered at graph level): `grad` outputs beside the originals, holding only what the loss
 * and the gradients need.
 */
export function grad(g: Graph, opts: GradOptions & DumpOptions): Graph {
  const { printIrBefore, printIrAfter, sink, ...gradOpts } = opts;
  return compileIR(g, { grad: gradOpts, printIrBefore, printIrAfter, sink });
}
