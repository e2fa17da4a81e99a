// The training loop's host RNG is the IR's Philox stream (src/ir/rng.ts), whose state a checkpoint stores.
export { Rng, type RngState } from '../ir/rng.js';
