/**
 * The `precision` pass joins the pipeline right before autodiff, after the passes that partition the forward graph
 * (tensor parallel, ZeRO-3, pipeline stages): they match parameters and the ops that read them, and the half casts
 * go in after them (collectives of activations then move half the bytes).
 */
import { KilnError } from '../errors.js';
import { registerPass } from './registry.js';
import { applyPrecision, defaultPrecisionOptions, F32_OPS, HALF_OPS } from './precision.js';

registerPass(
  {
    name: 'precision',
    summary: 'mixed precision: matmuls, attention and embeddings in f16/bf16 and the activations that follow them; norms, losses, reductions, exp/log in f32; f32 master weights read through fused casts; loss-scale state for f16',
    level: 'graph',
    options: {
      dtype: 'the half dtype: f16 or bf16',
      halfOps: `ops computed in half whatever their operands (default ${HALF_OPS.join(', ')}); other ops follow their operands`,
      f32Ops: `ops computed on f32 operands (default ${F32_OPS.join(', ')})`,
      lossScale: 'dynamic loss scaling {init, growthInterval} (f16 default 65536, 2000; null for none, as bf16)',
    },
    guarantees: ['parameters, inputs and outputs keep their dtypes', 'at most one cast node per (value, dtype)'],
    configure: (req) => (req.precision ? defaultPrecisionOptions(req.precision.dtype, req.precision.lossScale) : null),
    run: (s, o) => {
      // the pipeline pass has already cut its stage programs from the f32 graph
      if ((s as { pipeline?: unknown }).pipeline) {
        throw new KilnError('--precision f16/bf16 is not supported with pipeline parallelism yet (each stage would need the loss scale and the half casts at its boundaries); train in f32, or use data/tensor parallelism');
      }
      return { ...s, graph: applyPrecision(s.graph, o) };
    },
  },
  { before: 'autodiff' },
);
