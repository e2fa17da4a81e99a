/**
 * The graph-to-graph passes, by name, so a pipeline can be given as text ("canonicalize,cse,dce") by the CLI or
 * tests. Autodiff is not listed here: it needs options (the loss, what to differentiate) and lives in src/autodiff.
 */
import { KilnError } from '../errors.js';
import type { Graph } from '../ir/graph.js';
import { fuseAttention } from './attention.js';
import { canonicalize } from './canonicalize.js';
import { cse } from './cse.js';
import { dce } from './dce.js';
import { decomposeComposites } from './decompose.js';
import type { Pass, PassManagerOptions } from './manager.js';
import { PassManager, pass } from './manager.js';

export { ATTENTION_RULES, findAttention, fuseAttention } from './attention.js';
export type { AttentionFusionOptions, AttentionMatch, AttentionRule } from './attention.js';
export { canonicalize } from './canonicalize.js';
export { cse, valueKey } from './cse.js';
export { dce } from './dce.js';
export { decomposeComposites } from './decompose.js';
export { PassManager, pass } from './manager.js';
export type { Pass, PassManagerOptions } from './manager.js';

export const PASSES: Record<string, (g: Graph) => Graph> = {
  dce,
  cse,
  canonicalize,
  'decompose-composites': decomposeComposites,
  'attention-fusion': (g) => fuseAttention(g),
};

/** Looks passes up by name; `pipeline` is a list or a comma-separated string. Unknown names are a KilnError. */
export function passPipeline(pipeline: string | string[]): Pass[] {
  const names = typeof pipeline === 'string' ? pipeline.split(',').map((s) => s.trim()).filter(Boolean) : pipeline;
  return names.map((name) => {
    const run = PASSES[name];
    if (!run) throw new KilnError(`unknown pass '${name}' (known: ${Object.keys(PASSES).join(', ')})`);
    return pass(name, run);
  });
}

/** Runs a named pipeline with verification after every pass and optional IR dumps. */
export function runPasses(g: Graph, pipeline: string | string[], opts: PassManagerOptions = {}): Graph {
  return new PassManager(passPipeline(pipeline), opts).run(g);
}
