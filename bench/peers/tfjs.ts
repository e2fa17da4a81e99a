/**
 * TensorFlow.js as the peer: its WebGPU backend on the same Dawn/Vulkan adapter Kiln uses (Kiln's device layer
 * points Dawn at lavapipe first), and its CPU backend. `navigator.gpu` must exist before the WebGPU backend loads.
 */
import type * as TF from '@tensorflow/tfjs-core';
import { createRequire } from 'node:module';
import { acquireDevice } from '../../src/runtime/device.js';

let loaded: Promise<typeof TF> | null = null;

export function loadTf(): Promise<typeof TF> {
  loaded ??= (async () => {
    await acquireDevice(); // sets VK_ICD_FILENAMES for lavapipe before Dawn loads
    const webgpu = (await import('webgpu')) as unknown as { create: (f: string[]) => GPU; globals: object };
    Object.assign(globalThis, webgpu.globals);
    (globalThis as { navigator?: unknown }).navigator = { gpu: webgpu.create([]), userAgent: 'node' };
    // The CommonJS builds: the ES-module builds use directory imports Node's resolver rejects, and only the union
    // package's build registers the gradient functions training needs. It brings the CPU backend.
    const require = createRequire(import.meta.url);
    const tf = require('@tensorflow/tfjs') as typeof TF;
    require('@tensorflow/tfjs-backend-webgpu');
    return tf;
  })();
  return loaded;
}

export async function useBackend(tf: typeof TF, name: 'webgpu' | 'cpu'): Promise<void> {
  if (!(await tf.setBackend(name))) throw new Error(`TF.js backend ${name} is not available`);
  await tf.ready();
}
