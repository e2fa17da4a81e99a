/**
 * User-facing errors. Anything a user can cause (bad DSL, wrong shapes, bad files) is a KilnError:
 * the CLI prints its message and exits 1 without a stack trace. Any other exception is a Kiln bug.
 */
export interface SourceLoc {
  file: string;
  line: number; // 1-based
  col: number; // 1-based
  endCol?: number;
}

export class KilnError extends Error {
  constructor(
    message: string,
    public readonly loc?: SourceLoc,
  ) {
    super(message);
    this.name = 'KilnError';
  }
}

/** A shape or dtype rule of an op was violated; the message names the op and the operand types. */
export class ShapeError extends KilnError {
  constructor(message: string, loc?: SourceLoc) {
    super(message, loc);
    this.name = 'ShapeError';
  }
}

/** The IR broke an invariant: always a compiler bug, never a user mistake. */
export class IRError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IRError';
  }
}
