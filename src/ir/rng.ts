/**
 * A host-side random stream (training: batch order, masking, span corruption; gradcheck: sampled elements):
 * Philox keyed by a seed, with the counter as its whole state, so a checkpoint stores {seed, counter} and resume continues the same stream.
 */
import { hashString, philox4x32, u32ToUnit } from './philox.js';

export interface RngState {
  seed: number;
  stream: number;
  counter: number;
}

export class Rng {
  private seed: number;
  private stream: number;
  private counter: number;

  constructor(seed: number, stream: string | number = 0, counter = 0) {
    this.seed = seed >>> 0;
    this.stream = typeof stream === 'string' ? hashString(stream) : stream >>> 0;
    this.counter = counter;
  }

  static from(s: RngState): Rng {
    return new Rng(s.seed, s.stream, s.counter);
  }

  state(): RngState {
    return { seed: this.seed, stream: this.stream, counter: this.counter };
  }

  /** Uniform in [0, 1). */
  next(): number {
    const c = this.counter++;
    return u32ToUnit(philox4x32(c >>> 0, Math.floor(c / 4294967296), 0, 0, this.seed, this.stream)[0]);
  }

  /** Uniform integer in [0, n). */
  int(n: number): number {
    return Math.min(n - 1, Math.floor(this.next() * n));
  }

  /** In-place Fisher-Yates shuffle. */
  shuffle<T>(a: T[]): T[] {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      [a[i], a[j]] = [a[j], a[i]];
    }
    return a;
  }
}
