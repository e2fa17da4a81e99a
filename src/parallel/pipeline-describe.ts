/** What `kiln compile --parallel pp=N` and `--print-ir-after pipeline` print of a pipeline program. */
import type { Graph } from '../ir/graph.js';
import type { PipelineProgram } from './pipeline-parallel.js';
import { bubbleFraction } from './pipeline-schedule.js';

/**
 * `kiln compile --train --parallel pp=N --emit ...`: every stage's programs (per micro-batch fwd and bwd, per step
 * tie, norm and update) with their send/recv, each as `show` prints it, and each device's memory: parameters with
 * optimizer state and accumulators, the saved activations of one micro-batch, and those times the micro-batches in
 * flight under each schedule (GPipe M, 1F1B pp-s).
 */
export function describePipelineProgram(prog: PipelineProgram, M: number, show: (g: Graph) => { text: string; peakBytes?: number }): string {
  const kib = (b: number) => `${(b / 1024).toFixed(1)} KiB`;
  const bytes = (t: { shape: readonly number[] }) => t.shape.reduce((a, b) => a * b, 1) * 4;
  const out = [`pipeline: ${prog.pp} stages${prog.dp > 1 ? ` x ${prog.dp} data-parallel replicas` : ''} (one device each), blocks ${prog.blocks.map((b, s) => `${s}: ${b.join(',')}`).join('; ')}; ${M} micro-batches; bubble (pp-1)/(M+pp-1) = ${(bubbleFraction(prog.pp, M) * 100).toFixed(1)}%`];
  const shared = [...prog.holders].filter(([, h]) => h.length > 1);
  if (shared.length) out.push(`shared parameters (held by several stages, gradients summed each step): ${shared.map(([p, h]) => `${p} on ${h.join(', ')}`).join('; ')}`);
  const summary: string[] = [];
  prog.devices.forEach((st, s) => {
    const params = new Map<string, number>();
    for (const g of [st.fwd, st.bwd, st.dpsync, st.tie, st.norm, st.update]) for (const n of g?.nodes ?? []) if (n.op === 'param') params.set((n.attrs as { name: string }).name, bytes(n.type));
    const stash = st.fwd.outputs.filter((o) => o.name.startsWith('%')).reduce((t, o) => t + bytes(st.fwd.nodes[o.id].type), 0) + [...st.stashFromRecv.keys()].reduce((t, name) => t + bytes(st.bwd.nodes.find((n) => n.op === 'input' && (n.attrs as { name: string }).name === name)!.type), 0);
    let peak = 0;
    for (const [phase, g] of [['fwd', st.fwd], ['bwd', st.bwd], ['dpsync', st.dpsync], ['tie', st.tie], ['norm', st.norm], ['update', st.update]] as const) {
      if (!g) continue;
      const p2p = g.nodes.filter((n) => n.op === 'send' || n.op === 'recv').map((n) => (n.op === 'send' ? `send ${(n.attrs as { tag: string }).tag} -> ${(n.attrs as { to: number }).to}` : `recv ${(n.attrs as { tag: string }).tag} <- ${(n.attrs as { from: number }).from}`));
      const r = show(g);
      peak = Math.max(peak, r.peakBytes ?? 0);
      out.push(`// ===== stage ${s % prog.pp}${prog.dp > 1 ? ` of replica ${Math.floor(s / prog.pp)}` : ''} (device ${s}), ${phase}${phase === 'fwd' || phase === 'bwd' ? ' (per micro-batch)' : ' (per step)'}: ${g.nodes.length} nodes; ${p2p.length ? p2p.join(', ') : 'no transfers'} =====`);
      out.push(r.text);
    }
    const P = [...params.values()].reduce((a, b) => a + b, 0);
    summary.push(
      `  device ${s}: ${kib(P)} parameters, optimizer state and accumulators (${params.size} tensors); saved activations ${kib(stash)} per micro-batch in flight: ` +
        `GPipe ${M} -> ${kib(M * stash)}, 1F1B ${Math.min(M, prog.pp - (s % prog.pp))} -> ${kib(Math.min(M, prog.pp - (s % prog.pp)) * stash)}` +
        (peak ? `; largest memory plan of its programs ${kib(peak)}` : ''),
    );
  });
  out.push('memory per device:', ...summary);
  return out.join('\n');
}
