import { writeFileSync } from 'node:fs';
import { KilnError } from '../../errors.js';
import { compileModel } from '../../frontend/index.js';
import type { Graph } from '../../ir/graph.js';
import { graphToJSON, printGraph } from '../../ir/print.js';
import type { ConfigValue } from '../options.js';

export interface CompileOpts {
  set: Record<string, ConfigValue>;
  dim: Record<string, number>;
  entry: string;
  emit: string;
  grad?: boolean;
  fuseAttention?: boolean;
  printIrAfter?: string;
  output?: string;
}

const EMITS = ['ir', 'json', 'schedule', 'memory', 'wgsl', 'saved'];

/** The scalar output a --grad compile differentiates: `loss` if present, else the first output. */
export function lossOutput(g: Graph): string {
  const named = g.outputs.find((o) => o.name === 'loss');
  const out = named ?? g.outputs[0];
  if (!out || g.nodes[out.id].type.shape.length !== 0) {
    throw new KilnError(`--grad needs an entry whose output 'loss' (or first output) is a scalar; ${g.name} returns ${g.outputs.map((o) => o.name).join(', ')}`);
  }
  return out.name;
}

export async function differentiate(g: Graph, printIrAfter?: string): Promise<Graph> {
  const { grad } = await import('../../autodiff/index.js');
  const dump = printIrAfter ? { printIrAfter: printIrAfter === 'all' ? ('all' as const) : printIrAfter.split(','), sink: (s: string) => process.stderr.write(s + '\n') } : {};
  return grad(g, { loss: lossOutput(g), ...dump });
}

export async function compile(file: string, o: CompileOpts): Promise<void> {
  if (!EMITS.includes(o.emit)) throw new KilnError(`--emit must be one of ${EMITS.join(', ')}, got '${o.emit}'`);
  let { graph } = compileModel(file, { entry: o.entry, set: o.set, dims: o.dim });
  if (o.fuseAttention) {
    // Until the declared pipeline runs it by default: the pass on its own, with the same IR dumps.
    const { runPasses } = await import('../../passes/index.js');
    const after = o.printIrAfter === 'all' ? ('all' as const) : o.printIrAfter?.split(',');
    graph = runPasses(graph, ['attention-fusion'], { printIrAfter: after, sink: (s: string) => process.stderr.write(s + '\n') });
  }
  if (o.grad) graph = await differentiate(graph, o.printIrAfter);
  let text: string;
  switch (o.emit) {
    case 'ir':
      text = printGraph(graph);
      break;
    case 'json':
      text = graphToJSON(graph);
      break;
    case 'saved': {
      const { describeSaved } = await import('../../autodiff/index.js');
      if (!o.grad) throw new KilnError('--emit saved lists what the backward pass keeps alive: add --grad');
      text = describeSaved(graph);
      break;
    }
    default: {
      const { schedule, describeSchedule, planMemory, describeMemory, generateKernels } = await import('../../runtime/index.js');
      const s = schedule(graph);
      if (o.emit === 'schedule') text = describeSchedule(s);
      else if (o.emit === 'memory') text = describeMemory(planMemory(graph, s), s);
      else text = generateKernels(s).map((k) => k.passes.map((p) => p.wgsl).join('\n')).join('\n');
    }
  }
  if (o.output) writeFileSync(o.output, text + '\n');
  else process.stdout.write(text + '\n');
}
