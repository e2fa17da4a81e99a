/**
 * The built-in stages of the pipeline, registered in the order a compile runs them:
 *   canonicalize -> autodiff -> optimizer -> cse -> dce                       (graph level: IR -> IR)
 *   -> schedule -> inplace -> memory-plan -> codegen                         (kernel level: IR -> kernels)
 * Passes that come later (attention fusion, recomputation, precision, sharding) register themselves between these.
 */
import { buildJointGraph } from '../autodiff/grad.js';
import { generateKernels } from '../codegen/wgsl/index.js';
import { usesLanesAttention } from '../codegen/wgsl/attention-lanes.js';
import { describeMemory, planMemory, verifyMemoryPlan } from '../schedule/memory.js';
import { describeSchedule, DEFAULT_SCHEDULE_OPTIONS, fuseKernels } from '../schedule/schedule.js';
import { markInPlaceUpdates } from '../schedule/inplace.js';
import { buildAccumTrainStep, buildTrainStep } from '../train/optimizers.js';
import { ATTENTION_RULES, fuseAttention } from './attention.js';
import { applyLora } from './lora.js';
import { defaultPrecisionOptions, LOSS_SCALE } from './precision.js';
import { canonicalize, CANONICALIZE_RULES } from './canonicalize.js';
import { cse } from './cse.js';
import { dce } from './dce.js';
import { decomposeComposites } from './decompose.js';
import type { CompileRequest, CompileState } from './registry.js';
import { GENERIC_TARGET, registerPass } from './registry.js';

/** The loss-scaling settings a request implies (f16 precision unless turned off), or null. */
const lossScaled = (req: CompileRequest) => (req.precision ? defaultPrecisionOptions(req.precision.dtype, req.precision.lossScale).lossScale : null);

const graphPass = (f: (s: CompileState) => CompileState['graph']) => (s: CompileState): CompileState => ({ ...s, graph: f(s) });

registerPass({
  name: 'canonicalize',
  summary: 'local algebraic clean-ups (rewrite rules: x*1, reshape of reshape, no-op casts...) to a fixed point',
  level: 'graph',
  options: { disable: `rule names to leave out (${CANONICALIZE_RULES.map((r) => r.name).join(', ')})` },
  guarantees: ['no rule of the list applies'],
  configure: () => ({ disable: [] }),
  run: (s, o) => graphPass((x) => canonicalize(x.graph, o.disable))(s),
});

/** WebGPU's guaranteed maxStorageBufferBindingSize (128 MiB). */
const WEBGPU_MIN_BINDING_BYTES = 2 ** 27;

registerPass({
  name: 'attention-fusion',
  summary: 'rewrites each attention (the @composite scope, or the same chain by hand) into one flash_attention node (by default all of them, except on CPU adapters without fixed-size subgroups, where only those whose unfused scores exceed the storage-binding limit, and a single query, a decode step, stays unfused; all: --fuse-attention; none: --no-fuse-attention)',
  level: 'graph',
  options: {
    enabled: 'false leaves the graph unchanged',
    rules: `rule names to apply (${ATTENTION_RULES.map((r) => r.name).join(', ')})`,
    maxStorageBuffers: 'storage buffers a fused backward kernel may bind (an attention needing more stays unfused)',
    minScoreBytes: 'fuse only attentions whose f32 [.., T, S] scores exceed this many bytes (default 0; the storage-binding limit on CPU adapters without fixed-size subgroups)',
    minQueries: 'fuse only attentions with at least this many queries (default 2: a decode step\'s single query stays unfused; 0 with --fuse-attention)',
  },
  guarantees: ['no T x T score tensor is kept for the backward of a fused attention'],
  // By default every attention: O(T) memory, and on the CPU adapter measured (lavapipe, with the subgroup-shared
  // kernels of attention-lanes.ts) as fast as the unfused chain. Where the target is known to be a CPU adapter
  // without fixed-size subgroups (per-invocation loads: 2-4x slower than unfused), only attentions whose unfused
  // scores could not be bound (the device's limit, or WebGPU's guaranteed 128 MiB): there fusion is what makes a
  // long context run at all. A single query (a decode step) stays unfused: the fused kernels spread their work over
  // query rows, the unfused matmuls over keys (exported decode on lavapipe: 123 tokens/s unfused, 69 fused).
  // --fuse-attention: every attention regardless; --no-fuse-attention: none.
  configure: (req) => {
    const t = req.target ?? GENERIC_TARGET;
    const binding = Number.isFinite(t.maxStorageBufferBindingSize) ? t.maxStorageBufferBindingSize : WEBGPU_MIN_BINDING_BYTES;
    const slowFused = t.strategy === 'thread' && !usesLanesAttention(t);
    return { enabled: true, rules: ATTENTION_RULES.map((r) => r.name), maxStorageBuffers: t.maxStorageBuffersPerShaderStage, minScoreBytes: req.passes?.['attention-fusion'] || !slowFused ? 0 : binding, minQueries: req.passes?.['attention-fusion'] ? 0 : 2 };
  },
  run: (s, o) => graphPass((x) => fuseAttention(x.graph, o))(s),
});

registerPass({
  name: 'lora',
  summary: 'LoRA: x @ W becomes x @ W + (x @ A) @ B * alpha/r for the targeted weights (A Gaussian, B zero: the base model at step 0)',
  level: 'graph',
  options: { r: 'rank of A [in, r] and B [r, out]', alpha: 'scale numerator (the path is scaled by alpha / r)', targets: 'weight path suffixes, e.g. attn.q, attn.v', dropout: 'dropout on the LoRA path input' },
  guarantees: ['with B = 0 the outputs equal the base model\'s'],
  configure: (req) => req.lora ?? null,
  run: (s, o) => graphPass((x) => applyLora(x.graph, o))(s),
});

registerPass({
  name: 'decompose-composites',
  summary: 'expands softmax, norms and cross-entropy into plain ops (the naive chain; off unless asked for)',
  level: 'graph',
  options: {},
  guarantees: ['no op with a decompose rule remains'],
  configure: (req) => (req.passes?.['decompose-composites'] ? {} : null),
  run: (s) => graphPass((x) => decomposeComposites(x.graph))(s),
});

registerPass({
  name: 'autodiff',
  summary: 'reverse-mode differentiation: appends the backward pass and `grad` outputs (the joint graph)',
  level: 'graph',
  options: {
    loss: 'the scalar output to differentiate',
    wrt: 'parameters to differentiate with respect to (default: every float parameter)',
    wrtInputs: 'graph inputs to differentiate with respect to as well',
    keepOutputs: 'keep the entry\'s other outputs (default true)',
    seed: 'a scalar parameter seeding the backward instead of 1 (the loss scale)',
  },
  guarantees: ['one `grad` output per differentiated parameter', 'the differentiated output has role `loss`'],
  configure: (req) => {
    const o = req.grad ?? (req.train ? { loss: 'loss' } : null);
    return o && lossScaled(req) ? { ...o, seed: LOSS_SCALE } : o;
  },
  run: (s, o) => graphPass((x) => buildJointGraph(x.graph, o))(s),
});

registerPass({
  name: 'optimizer',
  summary: 'appends the optimizer step as IR (clipping, SGD/Adam/AdamW/Adafactor, accumulation): `update` outputs',
  level: 'graph',
  options: { config: 'optimizer kind and hyper-parameters', accumulate: 'gradient accumulation across micro-batches (acc.* state)' },
  requires: ['autodiff'],
  guarantees: ['an `update` output for every trainable parameter and optimizer state'],
  configure: (req) => {
    if (!req.train) return null;
    const scale = lossScaled(req);
    return { config: scale ? { ...req.train.optimizer, lossScale: scale } : req.train.optimizer, accumulate: !!req.train.accumulate };
  },
  run: (s, o) => graphPass((x) => (o.accumulate ? buildAccumTrainStep(x.graph, o.config) : buildTrainStep(x.graph, o.config)))(s),
});

registerPass({
  name: 'cse',
  summary: 'common-subexpression elimination: equal op, operands and attributes are one value',
  level: 'graph',
  options: {},
  configure: () => ({}),
  run: (s) => graphPass((x) => cse(x.graph))(s),
});

registerPass({
  name: 'dce',
  summary: 'dead-code elimination: drops nodes no output depends on (inputs and parameters stay)',
  level: 'graph',
  options: {},
  guarantees: ['every node is a leaf or reaches an output'],
  configure: () => ({}),
  run: (s) => graphPass((x) => dce(x.graph))(s),
  check: (s) => (dce(s.graph) === s.graph ? null : 'dead nodes remain'),
});

registerPass({
  name: 'schedule',
  summary: 'fusion: decides which ops form one kernel (pointwise ops inline, anchors own kernels, epilogues fuse)',
  level: 'kernels',
  options: {
    fuse: 'false: one kernel per op (the unfused baseline)',
    maxStorageBuffers: 'storage buffers one kernel may bind (the device limit)',
    maxRowwisePrologue: 'largest per-element cost a row-wise prologue may recompute',
  },
  guarantees: ['every kernel binds at most maxStorageBuffers buffers'],
  configure: (req) => ({ ...DEFAULT_SCHEDULE_OPTIONS, maxStorageBuffers: (req.target ?? GENERIC_TARGET).maxStorageBuffersPerShaderStage }),
  run: (s, o) => ({ ...s, schedule: fuseKernels(s.graph, o) }),
  show: (s) => describeSchedule(s.schedule!),
});

registerPass({
  name: 'inplace',
  summary: 'writes `update` outputs straight into their parameter\'s buffer where the kernel reads it element for element',
  level: 'kernels',
  options: {},
  requires: ['schedule'],
  configure: () => ({}),
  run: (s) => ({ ...s, schedule: markInPlaceUpdates(s.schedule!) }),
  show: (s) => describeSchedule(s.schedule!),
});

registerPass({
  name: 'memory-plan',
  summary: 'assigns every intermediate a buffer slot by liveness; refuses tensors over the device\'s binding limits',
  level: 'kernels',
  options: {
    verify: 'prove no two live tensors share a slot (on by default: it costs well under a millisecond per 100 kernels)',
    maxStorageBufferBindingSize: 'largest tensor one binding may hold (device limit)',
    maxBufferSize: 'largest buffer (device limit)',
  },
  requires: ['schedule'],
  guarantees: ['no two tensors alive at the same kernel share a slot'],
  configure: (req) => {
    const t = req.target ?? GENERIC_TARGET;
    return { verify: true, maxStorageBufferBindingSize: t.maxStorageBufferBindingSize, maxBufferSize: t.maxBufferSize };
  },
  run: (s, o) => {
    const limited = Number.isFinite(o.maxStorageBufferBindingSize) || Number.isFinite(o.maxBufferSize);
    const plan = planMemory(s.graph, s.schedule!, limited ? o : undefined);
    if (o.verify) verifyMemoryPlan(plan);
    return { ...s, plan };
  },
  show: (s) => describeMemory(s.plan!, s.schedule),
});

registerPass({
  name: 'codegen',
  summary: 'WGSL for every kernel (one generator per kernel kind; names independent of node ids, so equal kernels share pipelines)',
  level: 'kernels',
  options: {
    strategy: 'workgroup (GPUs) or thread (CPU-backed adapters such as lavapipe)',
    subgroups: 'use subgroup operations (reductions; attention on CPU adapters)',
    subgroupSize: 'the fixed subgroup size of the device, if it has one (lets CPU attention kernels share loads)',
    deviceKey: 'the device in the matmul tile cache',
    matmulTiles: 'force one tile config for every matmul (the autotuner)',
    f16: 'native (array<f16>, needs shader-f16) or packed (two per u32 word) storage of f16 tensors',
  },
  requires: ['schedule'],
  configure: (req) => {
    const t = req.target ?? GENERIC_TARGET;
    return { strategy: t.strategy, subgroups: t.subgroups, subgroupSize: t.subgroupSize ?? null, deviceKey: t.deviceKey, matmulTiles: req.matmulTiles ?? null, f16: t.f16 ?? 'native' };
  },
  run: (s, o) => ({
    ...s,
    kernels: generateKernels(s.schedule!, { strategy: o.strategy, subgroups: o.subgroups, subgroupSize: o.subgroupSize ?? undefined, deviceKey: o.deviceKey, matmulTiles: o.matmulTiles ?? undefined, f16: o.f16 }),
  }),
  show: (s) => s.kernels!.flatMap((k) => k.passes.map((p) => `// ${p.label}\n${p.wgsl}`)).join('\n'),
});

