import { KilnError } from '../errors.js';

/**
 * A failure of the WebGPU runtime: no adapter, a lost device, a validation or out-of-memory error reported by WebGPU,
 * a timeout waiting for the GPU. It is a KilnError, so the CLI prints its message (which says what to do) and exits 1.
 * `cause` holds the underlying GPUError / DOMException / lost info where there is one.
 */
export class KilnRuntimeError extends KilnError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message);
    this.name = 'KilnRuntimeError';
    if (options && 'cause' in options) (this as { cause?: unknown }).cause = options.cause;
  }
}
