/**
 * Runs a pipeline of pure IR -> IR passes, verifying the graph after each one (a pass that breaks an invariant is
 * caught where it happens, and the error names it) and optionally dumping the text IR before/after chosen passes,
 * like MLIR's --print-ir-before / --print-ir-after.
 */
import { IRError } from '../errors.js';
import type { Graph } from '../ir/graph.js';
import { printGraph } from '../ir/print.js';
import { verify } from '../ir/verify.js';

export interface Pass {
  name: string;
  run(g: Graph): Graph;
}

export interface PassManagerOptions {
  printIrBefore?: string[] | 'all';
  printIrAfter?: string[] | 'all';
  /** Where dumps go (default: stderr). */
  sink?: (text: string) => void;
  /** Verify the input graph too (default true). */
  verifyInput?: boolean;
}

const selected = (sel: string[] | 'all' | undefined, name: string) => sel === 'all' || (sel?.includes(name) ?? false);

export class PassManager {
  constructor(
    readonly passes: Pass[],
    readonly options: PassManagerOptions = {},
  ) {}

  run(g: Graph): Graph {
    const sink = this.options.sink ?? ((t: string) => process.stderr.write(t + '\n'));
    if (this.options.verifyInput !== false) checked(g, 'the input of the pipeline');
    for (const p of this.passes) {
      if (selected(this.options.printIrBefore, p.name)) sink(`// ----- IR before ${p.name} -----\n${printGraph(g)}`);
      g = p.run(g);
      checked(g, `pass '${p.name}'`);
      if (selected(this.options.printIrAfter, p.name)) sink(`// ----- IR after ${p.name} -----\n${printGraph(g)}`);
    }
    return g;
  }
}

function checked(g: Graph, where: string): void {
  try {
    verify(g);
  } catch (e) {
    if (e instanceof IRError) throw new IRError(`after ${where}: ${e.message}`);
    throw e;
  }
}

export const pass = (name: string, run: (g: Graph) => Graph): Pass => ({ name, run });
