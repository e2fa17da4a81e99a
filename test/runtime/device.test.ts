/** The device layer: acquisition, a real compute dispatch, limits, features, the doctor report and error surfacing. */
import { afterAll, describe, expect, it } from 'vitest';
import { acquireDevice, describeDevice, KilnRuntimeError } from '../../src/runtime/device.js';
import type { KilnDevice } from '../../src/runtime/device.js';

const SU = () => (globalThis as unknown as { GPUBufferUsage: GPUFlagsConstant & Record<string, number> }).GPUBufferUsage;
const MAP_READ = () => (globalThis as unknown as { GPUMapMode: Record<string, number> }).GPUMapMode.READ;

/** Runs a one-binding-group compute shader over `inputs` (read-only storage) into an f32/u32 output of n words. */
async function runKernel(kd: KilnDevice, code: string, inputs: ArrayBufferView[], outWords: number, workgroups: number): Promise<ArrayBuffer> {
  const { device } = kd;
  const U = SU();
  const bufs = inputs.map((data) => {
    const b = device.createBuffer({ size: Math.max(16, Math.ceil(data.byteLength / 4) * 4), usage: U.STORAGE | U.COPY_DST });
    device.queue.writeBuffer(b, 0, data.buffer, data.byteOffset, data.byteLength);
    return b;
  });
  const out = device.createBuffer({ size: outWords * 4, usage: U.STORAGE | U.COPY_SRC });
  const read = device.createBuffer({ size: outWords * 4, usage: U.MAP_READ | U.COPY_DST });
  device.pushErrorScope('validation');
  const module = device.createShaderModule({ code });
  const pipeline = device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' } });
  const err = await device.popErrorScope();
  if (err) throw new Error(err.message);
  const bindGroup = device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: [...bufs, out].map((buffer, binding) => ({ binding, resource: { buffer } })),
  });
  const enc = device.createCommandEncoder();
  const pass = enc.beginComputePass();
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(workgroups);
  pass.end();
  enc.copyBufferToBuffer(out, 0, read, 0, outWords * 4);
  device.queue.submit([enc.finish()]);
  await kd.guard(read.mapAsync(MAP_READ()), 'reading the result', 30_000);
  const result = read.getMappedRange().slice(0);
  read.unmap();
  for (const b of [...bufs, out, read]) b.destroy();
  kd.throwIfFailed();
  return result;
}

describe('acquireDevice', () => {
  let kd: KilnDevice;
  afterAll(async () => {
    if (kd) {
      await kd.device.queue.onSubmittedWorkDone();
      kd.destroy();
    }
  });

  it('acquires one shared device', async () => {
    const p = acquireDevice();
    expect(acquireDevice()).toBe(p);
    kd = await p;
    expect(kd.device).toBeTruthy();
    expect(['dawn-node', 'browser']).toContain(kd.backend);
    expect(kd.lost).toBe(false);
  });

  it('adds two f32 arrays of 37 elements on the GPU', async () => {
    const n = 37;
    const a = Float32Array.from({ length: n }, (_, i) => i * 0.5 - 3);
    const b = Float32Array.from({ length: n }, (_, i) => Math.fround(1 / (i + 1)));
    const code = /* wgsl */ `
      @group(0) @binding(0) var<storage, read> a: array<f32>;
      @group(0) @binding(1) var<storage, read> b: array<f32>;
      @group(0) @binding(2) var<storage, read_write> c: array<f32>;
      @compute @workgroup_size(16)
      fn main(@builtin(global_invocation_id) gid: vec3u) {
        let i = gid.x;
        if (i < ${n}u) { c[i] = a[i] + b[i]; }
      }`;
    const got = new Float32Array(await runKernel(kd, code, [a, b], n, Math.ceil(n / 16)));
    const want = a.map((x, i) => Math.fround(x + b[i]));
    expect(Array.from(got)).toEqual(Array.from(want));
  });

  it('reports positive limits, raised to the adapter maxima', () => {
    for (const [k, v] of Object.entries(kd.limits)) {
      expect(typeof v, k).toBe('number');
      expect(v, k).toBeGreaterThan(0);
    }
    // WebGPU's defaults; requesting the adapter's maxima never gives less.
    expect(kd.limits.maxStorageBufferBindingSize).toBeGreaterThanOrEqual(128 * 1024 * 1024);
    expect(kd.limits.maxComputeInvocationsPerWorkgroup).toBeGreaterThanOrEqual(256);
    expect(kd.limits.maxComputeWorkgroupStorageSize).toBeGreaterThanOrEqual(16384);
    expect(kd.limits.maxStorageBuffersPerShaderStage).toBeGreaterThanOrEqual(8);
  });

  it('lists only granted optional features', () => {
    for (const f of kd.features) {
      expect(['shader-f16', 'subgroups', 'timestamp-query']).toContain(f);
      expect(kd.device.features.has(f)).toBe(true);
    }
  });

  it('describes the device for kiln doctor', () => {
    const text = describeDevice(kd);
    const name = kd.adapterInfo.description || kd.adapterInfo.device || kd.adapterInfo.vendor;
    expect(name.length).toBeGreaterThan(0);
    expect(text).toContain(name);
    expect(text).toContain(kd.backend);
    expect(text).toContain('maxStorageBufferBindingSize');
    expect(text.split('\n').length).toBeGreaterThan(5);
  });

  it('runs f16 arithmetic when shader-f16 is granted', async ({ skip }) => {
    if (!kd.features.has('shader-f16')) skip();
    const code = /* wgsl */ `
      enable f16;
      @group(0) @binding(0) var<storage, read_write> o: array<f32>;
      @compute @workgroup_size(1)
      fn main() {
        let x = f16(1.0) + f16(0.0004); // below half an f16 ulp at 1.0 (0.00049), so it rounds away
        o[0] = f32(x);
        o[1] = f32(f16(65504.0));
      }`;
    const got = new Float32Array(await runKernel(kd, code, [], 2, 1));
    expect(got[0]).toBe(1);
    expect(got[1]).toBe(65504);
  });

  it('runs subgroupAdd when subgroups is granted', async ({ skip }) => {
    if (!kd.features.has('subgroups')) skip();
    const code = /* wgsl */ `
      enable subgroups;
      @group(0) @binding(0) var<storage, read_write> o: array<u32>;
      @compute @workgroup_size(64)
      fn main(@builtin(local_invocation_index) li: u32, @builtin(subgroup_size) sg: u32) {
        let s = subgroupAdd(1u);
        if (li == 0u) { o[0] = sg; o[1] = s; }
      }`;
    const got = new Uint32Array(await runKernel(kd, code, [], 2, 1));
    expect(got[1]).toBe(got[0]); // every lane of the first subgroup adds 1
    const { subgroupMinSize: lo, subgroupMaxSize: hi } = kd.adapterInfo;
    if (lo !== undefined) expect(got[0]).toBeGreaterThanOrEqual(lo);
    if (hi !== undefined) expect(got[0]).toBeLessThanOrEqual(hi);
  });

  it('turns uncaptured WebGPU errors into KilnRuntimeErrors (on a fresh device)', async () => {
    const own = await acquireDevice({ fresh: true });
    expect(own).not.toBe(kd);
    const seen: KilnRuntimeError[] = [];
    let off = () => {};
    const first = new Promise<void>((resolve) => {
      off = own.onError((e) => {
        seen.push(e);
        resolve();
      });
    });
    own.device.createBuffer({ size: 2 ** 52, usage: SU().STORAGE });
    await first; // delivered asynchronously
    await expect(own.guard(own.device.queue.onSubmittedWorkDone(), 'waiting for the queue', 10_000)).rejects.toBeInstanceOf(KilnRuntimeError);
    expect(seen.length).toBeGreaterThan(0);
    expect(seen[0].message).toMatch(/validation/);
    expect(() => own.throwIfFailed()).toThrow(KilnRuntimeError);
    off();
    own.destroy();
    expect(own.lost).toBe(true);
    // The shared device is unaffected.
    expect(() => kd.throwIfFailed()).not.toThrow();
  });

  it('a lost device makes an executable refuse to run with a clear error instead of hanging', async () => {
    const { compileGraph } = await import('../../src/runtime/index.js');
    const { GraphBuilder } = await import('../../src/ir/builder.js');
    const own = await acquireDevice({ fresh: true });
    const b = new GraphBuilder();
    const x = b.op('input', [], { name: 'x', dtype: 'f32', shape: [4] });
    const exe = await compileGraph(b.build('lost', [{ name: 'y', id: b.mul(x, x) }]), own);
    const x4 = { dtype: 'f32' as const, shape: [4], data: Float32Array.of(1, 2, 3, 4) };
    expect(Array.from((await exe.run({ x: x4 })).outputs.y.data)).toEqual([1, 4, 9, 16]);
    own.destroy();
    await expect(exe.run({ x: x4 })).rejects.toThrow(/the GPU device was lost/);
    await expect(exe.run({ x: x4 })).rejects.toBeInstanceOf(KilnRuntimeError);
  });

  it('rejects features the adapter does not have', async () => {
    await expect(acquireDevice({ fresh: true, requireFeatures: ['no-such-feature'] })).rejects.toThrow(/lacks required feature/);
  });
});
