// Recomputation policies on a GPT training step (adamw): peak device memory from the memory plan, recomputed
// values and FLOPs, planning time. Usage: npx tsx bench/recompute.ts LAYERS D T B (the config: 8 256 256 4).
// No device needed: the memory plan is the figure (generic target).
import { compileModel } from '../src/frontend/index.js';
import { compileIR } from '../src/passes/index.js';
import { planRecompute } from '../src/passes/recompute.js';
const [layers, d, T, B] = process.argv.slice(2).map(Number);
const { graph } = compileModel('src/models/gpt.kiln', { entry: 'loss', set: { d, heads: 4, layers, vocab: 256, ctx: T }, dims: { B, T } });
const t0 = Date.now();
const g = compileIR(graph, { grad: { loss: 'loss' }, train: { optimizer: { kind: 'adamw' } }, passes: { cse: false, dce: false } });
const mib = (b: number) => (b / (1 << 20)).toFixed(2);
const none = planRecompute(g, 'none');
console.log(`GPT ${layers}L d${d} T${T} B${B}, adamw step; params+state own buffers included`);
console.log(`| policy | peak MiB | vs none | intermediates MiB | recomputed values | recomputed GFLOPs | plan ms |`);
const row = (name: string, r: ReturnType<typeof planRecompute>, ms: number) => console.log(`| ${name} | ${mib(r.peakBytes)} | ${(r.peakBytes / none.peakBytes).toFixed(3)} | ${mib(r.plan.slotBytes)} | ${r.recomputed} | ${(r.recomputedFlops / 1e9).toFixed(3)} | ${ms} |`);
row('none', none, 0);
for (const p of ['blocks', 'sqrt', 'selective'] as const) { const t = Date.now(); const r = planRecompute(g, p); row(p, r, Date.now() - t); }
for (const frac of [0.8, 0.6, 1 / 2, 1 / 3]) {
  const t = Date.now();
  try { row(`budget ${frac.toFixed(2)}x`, planRecompute(g, 'budget', Math.floor(none.peakBytes * frac)), Date.now() - t); } catch (e) { console.log(`| budget ${frac.toFixed(2)}x | infeasible: ${(e as Error).message} |`); }
}
console.log('total ms', Date.now() - t0);
