/**
 * The compiler's passes and the one pipeline they run in. `runPipeline` (pipeline.ts) is how every verb compiles;
 * `registerPass` (registry.ts) is how a pass joins it. The functions themselves stay importable for tests.
 */
import type { Graph } from '../ir/graph.js';
import { runPipeline } from './pipeline.js';
import type { CompileRequest, PassName } from './registry.js';
import { passDef } from './registry.js';

export { ATTENTION_RULES, findAttention, fuseAttention } from './attention.js';
export type { AttentionFusionOptions, AttentionMatch, AttentionRule } from './attention.js';
export { canonicalize, CANONICALIZE_RULES } from './canonicalize.js';
export { cse, valueKey } from './cse.js';
export { dce } from './dce.js';
export { decomposeComposites } from './decompose.js';
export { rewrite } from './rewrite.js';
export type { RewriteRule, RewriteSite, RewriteResult } from './rewrite.js';
export { runPipeline, compileIR } from './pipeline.js';
export { registerPass, unregisterPass, passDef, PIPELINE, registeredPasses, describePipeline, GENERIC_TARGET } from './registry.js';
export type { CompileRequest, CompileState, PassDef, PassName, PassOptionsMap, PassSettings, Target, PassLevel } from './registry.js';

export type DumpOptions = Pick<CompileRequest, 'printIrBefore' | 'printIrAfter' | 'sink'>;

/**
 * Runs just the named graph-level passes (a list or "canonicalize,cse,dce"), in pipeline order, with verification
 * and dumps: for tests and for looking at one pass. Verbs run the whole pipeline instead.
 */
export function runPasses(g: Graph, names: string | string[], opts: DumpOptions = {}): Graph {
  const list = (typeof names === 'string' ? names.split(',') : names).map((s) => s.trim()).filter(Boolean);
  for (const n of list) passDef(n);
  return runPipeline(g, { ...opts, levels: ['graph'], only: list as PassName[], passes: Object.fromEntries(list.map((n) => [n, {}])) }).graph;
}
export { applyRecompute, estimate as estimateRecompute, planRecompute, planBytes, policyKeep, savedValues, forwardNodes, RECOMPUTE_POLICIES } from './recompute.js';
export type { RecomputePolicy, RecomputeRequest, RecomputeResult } from './recompute.js';
