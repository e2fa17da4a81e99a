/** User-facing diagnostics: `file:line:col: error: message`, the source line, and a caret under the span. */
import { KilnError, type SourceLoc } from '../errors.js';
import type { Span } from './ast.js';

export interface DiagLoc extends SourceLoc {
  endLine?: number;
}

export interface Diagnostic {
  message: string;
  loc?: DiagLoc;
  /** The message with position, source line and caret, ready to print. */
  formatted: string;
}

export function locOf(file: string, s: Span | undefined): DiagLoc | undefined {
  if (!s || !s.line) return undefined;
  return { file, line: s.line, col: s.col, endCol: s.endLine === s.line ? s.endCol : undefined, endLine: s.endLine };
}

export function formatDiagnostic(d: Pick<Diagnostic, 'message' | 'loc'>, sourceText?: string): string {
  const l = d.loc;
  if (!l) return `error: ${d.message}`;
  const head = `${l.file}:${l.line}:${l.col}: error: ${d.message}`;
  if (sourceText === undefined) return head;
  const line = sourceText.split(/\r?\n/)[l.line - 1];
  if (line === undefined) return head;
  const end = l.endCol !== undefined && l.endCol >= l.col ? l.endCol : l.endLine && l.endLine > l.line ? line.length : l.col;
  // Keep tabs in the padding so the caret lines up under tab-indented source.
  const pad = line.slice(0, l.col - 1).replace(/[^\t]/g, ' ');
  const width = Math.max(1, Math.min(end, Math.max(line.length, l.col)) - l.col + 1);
  return `${head}\n${line}\n${pad}^${'~'.repeat(width - 1)}`;
}

export function makeDiagnostic(message: string, loc: DiagLoc | undefined, sources: (file: string) => string | undefined): Diagnostic {
  return { message, loc, formatted: formatDiagnostic({ message, loc }, loc ? sources(loc.file) : undefined) };
}

/** A batch of diagnostics as one KilnError whose message is already fully formatted for printing. */
export class DiagnosticError extends KilnError {
  constructor(public readonly diagnostics: Diagnostic[]) {
    super(diagnostics.map((d) => d.formatted).join('\n'), diagnostics[0]?.loc);
    this.name = 'DiagnosticError';
  }
}

/** A user error found while lowering, at a source span; converted to a Diagnostic by the driver. */
export class LowerError extends KilnError {
  constructor(message: string, loc?: DiagLoc) {
    super(message, loc);
    this.name = 'LowerError';
  }
}

function editDistance(a: string, b: string): number {
  const dp = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) dp[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      dp[i][j] = Math.min(dp[i - 1][j] + 1, dp[i][j - 1] + 1, dp[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
  }
  return dp[a.length][b.length];
}

/** " (did you mean 'x'?)" for the closest candidate within a small edit distance, else "". */
export function suggest(name: string, candidates: Iterable<string>): string {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(name.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  const limit = Math.max(1, Math.floor(name.length / 3));
  return best !== undefined && bestD <= limit ? ` (did you mean '${best}'?)` : '';
}
