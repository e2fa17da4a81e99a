/**
 * The pass manager: runs the declared pipeline (registry.ts) for one compile request. Between stages it verifies
 * the IR (and each pass's own guarantees), so a pass that breaks an invariant is caught where it happens and the
 * error names it; it dumps the IR (or the schedule, the memory plan, the WGSL) before/after the passes asked for,
 * like MLIR's --print-ir-before / --print-ir-after; and it times every pass.
 */
import { IRError, KilnError } from '../errors.js';
import type { Graph } from '../ir/graph.js';
import { printGraph } from '../ir/print.js';
import { verify } from '../ir/verify.js';
import type { CompileRequest, CompileState, PassLevel, PassName } from './registry.js';
import { passDef, PIPELINE } from './registry.js';
import './builtin.js';
import '../parallel/tensor-parallel.js';
import '../parallel/data-parallel.js';
import '../parallel/zero.js';
import '../parallel/pipeline-parallel.js';
import './precision-pass.js';
import './recompute.js';

const now = () => (typeof performance !== 'undefined' ? performance.now() : Date.now());

function selected(sel: string[] | 'all' | undefined, name: string): boolean {
  return sel === 'all' || (sel?.includes(name) ?? false);
}

function checkDumpNames(sel: string[] | 'all' | undefined, flag: string): void {
  if (!sel || sel === 'all') return;
  for (const name of sel) {
    if (!PIPELINE.includes(name as PassName)) throw new KilnError(`${flag}: unknown pass '${name}' (the pipeline: ${PIPELINE.join(', ')}, or all)`);
  }
}

function verified(g: Graph, where: string): void {
  try {
    verify(g);
  } catch (e) {
    if (e instanceof IRError) throw new IRError(`after ${where}: ${e.message}`);
    throw e;
  }
}

/**
 * Runs every pipeline pass the request configures, in pipeline order, on `graph` (already verified unless
 * `verifyInput` is false). Returns the final graph and whatever kernel-level artefacts the request asked for.
 */
export function runPipeline(graph: Graph, req: CompileRequest = {}, verifyInput = true): CompileState {
  const levels: PassLevel[] = req.levels ?? (req.target ? ['graph', 'kernels'] : ['graph']);
  const sink = req.sink ?? ((t: string) => process.stderr.write(t + '\n'));
  checkDumpNames(req.printIrAfter, '--print-ir-after');
  checkDumpNames(req.printIrBefore, '--print-ir-before');
  if (verifyInput) verified(graph, 'the input of the pipeline');
  let state: CompileState = { graph, ran: [], ms: {} };
  for (const name of PIPELINE) {
    const def = passDef(name);
    if (!levels.includes(def.level) || (req.only && !req.only.includes(name))) continue;
    const setting = req.passes?.[name];
    if (setting === false) continue;
    const base = def.configure(req);
    if (base === null) continue;
    const options = { ...base, ...(setting ?? {}) } as never;
    for (const r of def.requires ?? []) {
      if (!state.ran.includes(r)) throw new KilnError(`pass '${name}' requires '${r}' to run first, and this compile does not run it`);
    }
    const show = () => (def.show ? def.show(state) : printGraph(state.graph));
    if (selected(req.printIrBefore, name)) sink(`// ----- IR before ${name} -----\n${show()}`);
    const t0 = now();
    state = def.run(state, options, { request: req });
    state.ms[name] = now() - t0;
    state.ran.push(name);
    if (def.level === 'graph') verified(state.graph, `pass '${name}'`);
    const broken = def.check?.(state);
    if (broken) throw new IRError(`after pass '${name}': ${broken}`);
    if (selected(req.printIrAfter, name)) sink(`// ----- IR after ${name} -----\n${show()}`);
  }
  return state;
}

/** The graph-level pipeline only (no device): what the interpreter runs and what lowering starts from. */
export function compileIR(graph: Graph, req: Omit<CompileRequest, 'target' | 'levels'> = {}): Graph {
  return runPipeline(graph, { ...req, levels: ['graph'] }).graph;
}
