/**
 * Kiln as a library (`import { ... } from 'kiln'`): compile a .kiln source to IR, run it in the reference
 * interpreter or on WebGPU, differentiate it, build optimizer steps, export it as a package.
 */
export { KilnError } from './errors.js';
export { compileSource, compileModel, loadModelInfo, checkSource, MODELS_DIR } from './frontend/index.js';
export type { CompileOptions as FrontendOptions, ModelInfo, EntryInfo } from './frontend/index.js';
export { interpret } from './interp/interpreter.js';
export { grad } from './autodiff/index.js';
export { compileIR, runPipeline } from './passes/pipeline.js';
export type { CompileRequest } from './passes/registry.js';
export { buildTrainStep, OPTIMIZERS } from './train/optimizers.js';
export type { OptimizerConfig, OptimizerKind } from './train/optimizers.js';
export { acquireDevice, describeDevice } from './runtime/device.js';
export type { KilnDevice } from './runtime/device.js';
export { compileGraph, Executable } from './runtime/executable.js';
export type { CompileOptions, RunOptions, RunResult } from './runtime/executable.js';
export { graphToJSON, graphFromJSON } from './ir/print.js';
export type { Graph } from './ir/graph.js';
export type { HostTensor } from './ir/tensor.js';
export { encodeSafetensors, decodeSafetensors } from './io/safetensors.js';
export { exportModel } from './export/index.js';
export type { ExportOptions, ExportResult } from './export/index.js';
