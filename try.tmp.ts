import { compileModel } from './src/frontend/index.js';
import { compileIR } from './src/passes/index.js';
import { partitionPipeline } from './src/parallel/pipeline-parallel.js';
import { printGraph } from './src/ir/print.js';
const cfg = { d: 8, heads: 2, layers: 2, vocab: 7, d_ff: 16, ctx: 4 };
const { graph } = compileModel('src/models/gpt.kiln', { entry: 'loss', set: cfg, dims: { B: 2, T: 4 } });
const prog = partitionPipeline(graph, { pp: 2, optimizer: { kind: 'adamw' } });
for (const [s, st] of prog.stages.entries()) {
  console.log('stage', s, 'fwd', st.fwd.nodes.length, st.fwd.outputs.map(o=>o.name).join(' '));
  console.log('  bwd', st.bwd.nodes.length, st.bwd.outputs.map(o=>o.name).join(' '), [...st.stashFromRecv]);
  console.log('  tie', st.tie?.outputs.map(o=>o.name).join(' '), 'norm', st.norm.outputs.map(o=>o.name).join(' '), 'update', st.update.outputs.length);
}
console.log(prog.blocks, [...prog.holders].filter(([k,v])=>v.length>1));
