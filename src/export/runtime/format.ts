/**
 * The serialised form of compiled graphs that an exported module carries: everything the runtime needs to run
 * precompiled kernels (WGSL, bindings, dispatch sizes, the buffer plan) and nothing of the compiler. Written by
 * src/export/plan.ts at export time, read by src/export/runtime/model.ts in the app.
 */
export type PlanDType = 'f32' | 'f16' | 'bf16' | 'i32' | 'u32' | 'bool';

export interface TensorSpec {
  name: string;
  dtype: PlanDType;
  shape: number[];
}

/** A device buffer of one entry. Params are shared by name across entries (one buffer per param per model). */
export interface BufferSpec {
  role: 'param' | 'input' | 'const' | 'output' | 'slot' | 'scratch';
  bytes: number;
  /** The param's name (role 'param'). */
  param?: string;
  /** Initial contents as 32-bit words in the device layout (role 'const'). */
  words?: { dtype: 'f32' | 'i32' | 'u32'; values: number[] };
}

export interface PassSpec {
  label: string;
  /** Index into ModulePlan.shaders (identical sources share one pipeline). */
  shader: number;
  bindings: { binding: number; buffer: number; size: number; access: 'read' | 'read_write' }[];
  dispatch: [number, number, number];
}

export interface EntryPlan {
  name: string;
  /** Each input/output/param's device buffer (index into `buffers`). */
  inputs: (TensorSpec & { buffer: number })[];
  outputs: (TensorSpec & { buffer: number })[];
  /** Outputs that become a param's new value after each call (an optimizer step): copied into the param's buffer. */
  updates: { param: string; buffer: number }[];
  buffers: BufferSpec[];
  passes: PassSpec[];
  /**
   * State the entry carries from call to call: names that are both an input and an output of the same type (a
   * decode step's key/value caches). `generate` keeps them on the device, copying each output into its input.
   */
  carry?: string[];
}

export interface ModulePlan {
  format: 1;
  model: string;
  shaders: string[];
  entries: EntryPlan[];
  /** Every param any entry uses, as stored in the weights file. */
  params: TensorSpec[];
  weights: { file: string; sha256: string; bytes: number };
  /** WebGPU features the shaders enable, and limits above WebGPU's defaults that the plan assumes. */
  features: string[];
  limits: Record<string, number>;
}
