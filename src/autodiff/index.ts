import type { Graph } from '../ir/graph.js';
import { cse } from '../passes/cse.js';
import { dce } from '../passes/dce.js';
import type { PassManagerOptions } from '../passes/manager.js';
import { PassManager, pass } from '../passes/manager.js';
import type { GradOptions } from './grad.js';
import { buildJointGraph } from './grad.js';

export { buildJointGraph, GRAD_PREFIX, INPUT_GRAD_PREFIX } from './grad.js';
export type { GradOptions } from './grad.js';
export { describeSaved, savedForBackward } from './saved.js';

/**
 * The joint forward + backward graph of `g`: `grad:<param>` outputs beside the originals, cleaned by DCE and CSE
 * so it holds only what the loss and the gradients need.
 */
export function grad(g: Graph, opts: GradOptions & PassManagerOptions): Graph {
  const pm = new PassManager(
    [pass('autodiff', (x) => buildJointGraph(x, opts)), pass('cse', cse), pass('dce', dce)],
    opts,
  );
  return pm.run(g);
}
