/** The WebGPU runtime's public API. */
export { compileGraph, Executable, formatProfile, deviceKey } from './executable.js';
export { UPDATE_PREFIX } from '../ir/graph.js';
export type { CompileOptions, RunOptions, RunResult, KernelTiming, ExecutableStats } from './executable.js';
export { createPipelineChecked, createPipelines } from './pipelines.js';
export type { PipelineRequest, CompiledPipeline } from './pipelines.js';
export { autotuneMatmul } from './autotune.js';
export type { AutotuneResult } from './autotune.js';
export { tuneGraph, loadTileCacheFile, saveTileCacheFile, tileCachePath } from './tune.js';
export type { TunedShape } from './tune.js';
export { schedule, describeSchedule, planMemory, describeMemory, verifyMemoryPlan } from '../schedule/index.js';
export type { Schedule, Kernel, MemoryPlan } from '../schedule/index.js';
export { generateKernels, chooseMatmulTiles, tileCache } from '../codegen/wgsl/index.js';
export type { TileConfig, KernelCode } from '../codegen/wgsl/index.js';
