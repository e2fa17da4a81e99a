import { GraphBuilder } from '../../src/ir/builder.js';
import type { StagePrograms } from '../../src/parallel/pipeline-schedule.js';

/** Stage s of a chain of pp stages whose programs only pass a scalar on (forward) and back (backward). */
export function emptyGraph(s: number, pp: number): StagePrograms {
  const prog = (name: string, from: number | null, to: number | null, tag: string) => {
    const b = new GraphBuilder();
    const x = from === null ? b.scalar(0) : b.op('recv', [], { from, tag, dtype: 'f32', shape: [] });
    const outs = to === null ? [{ name: 'done', id: b.add(x, b.scalar(0)) }] : [{ name: `send:${to}:${tag}`, id: b.op('send', [b.add(x, b.scalar(0))], { to, tag }) }];
    return b.build(name, outs);
  };
  const stepProg = (name: string) => {
    const b = new GraphBuilder();
    return b.build(name, [{ name: 'grad_norm', id: b.scalar(1) }]);
  };
  return {
    fwd: prog(`s${s}.fwd`, s > 0 ? s - 1 : null, s < pp - 1 ? s + 1 : null, 'act'),
    bwd: prog(`s${s}.bwd`, s < pp - 1 ? s + 1 : null, s > 0 ? s - 1 : null, 'grad'),
    dpsync: null,
    tie: null,
    norm: stepProg(`s${s}.norm`),
    update: stepProg(`s${s}.update`),
    stashFromRecv: new Map(),
  };
}
