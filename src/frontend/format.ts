/**
 * `kiln fmt`: prints a file in canonical form: two-space indentation, one statement per line, canonical
 * spacing inside expressions, a blank line between top-level declarations, at most one blank line elsewhere.
 * Comments are kept: a comment on its own line stays above the statement that follows it, a comment at the end
 * of a line stays at the end of that statement's last line. Parentheses the author wrote are kept.
 */
import type { IToken } from 'chevrotain';
import type { ConfigDecl, DimDecl, FnDecl, OutputDecl, Span, Stmt, TopLevel } from './ast.js';
import { DiagnosticError, locOf, makeDiagnostic } from './diagnostics.js';
import { lexComments, parse, stripBom } from './parser.js';
import { exprText, targetText, typeText } from './print.js';

interface Item {
  span: Span;
  /** Lines of the item with their original line numbers for nested blocks' comment placement. */
  render(p: Printer): void;
}

class Printer {
  out: string[] = [];
  private next = 0;
  private lastLine = 0;
  constructor(
    private comments: IToken[],
    private blank: (line: number) => boolean,
  ) {}

  private blankBetween(a: number, b: number): boolean {
    for (let l = a + 1; l < b; l++) if (this.blank(l)) return true;
    return false;
  }

  private pad(indent: number): string {
    return '  '.repeat(indent);
  }

  /** Emits own-line comments that start before `line`, keeping one blank line where the source had some. */
  leading(line: number, indent: number, atBlockStart: boolean): void {
    while (this.next < this.comments.length && this.comments[this.next].startLine! < line) {
      const c = this.comments[this.next++];
      if (!atBlockStart && this.lastLine && this.blankBetween(this.lastLine, c.startLine!)) this.blankLine();
      atBlockStart = false;
      this.out.push(this.pad(indent) + c.image.trimEnd());
      this.lastLine = c.endLine!;
    }
  }

  /** Emits a line for an item that starts at source line `line`, with its trailing comment (on `endLine`). */
  line(text: string, indent: number, endLine: number): void {
    let s = this.pad(indent) + text;
    // Comments inside a multi-line statement move above it; one on its last line stays at the end.
    const inner: string[] = [];
    while (this.next < this.comments.length && this.comments[this.next].startLine! <= endLine) {
      const c = this.comments[this.next++];
      if (c.startLine === endLine) s += `  ${c.image.trimEnd()}`;
      else inner.push(this.pad(indent) + c.image.trimEnd());
    }
    this.out.push(...inner, s);
    this.lastLine = endLine;
  }

  /** Blank line before an item if the source had one since the last emitted line. */
  gap(line: number, atBlockStart: boolean, force = false): void {
    const firstComment = this.next < this.comments.length && this.comments[this.next].startLine! < line ? this.comments[this.next].startLine! : line;
    if (atBlockStart || !this.out.length) return;
    if (force || (this.lastLine && this.blankBetween(this.lastLine, firstComment))) this.blankLine();
  }

  private blankLine(): void {
    if (this.out.length && this.out[this.out.length - 1] !== '') this.out.push('');
  }

  /** Items of a `{ ... }` block whose closing brace is on `endLine`. */
  block(items: Item[], indent: number, endLine: number): void {
    items.forEach((it, i) => {
      this.gap(it.span.line, i === 0);
      this.leading(it.span.line, indent, i === 0);
      it.render(this);
    });
    this.leading(endLine, indent, items.length === 0);
  }
}

/** The line whose trailing comment a block header takes: none when the block's first item shares its line. */
function headerLine(line: number, first: { span: Span } | undefined): number {
  return first && first.span.line === line ? -1 : line;
}

function stmtItem(s: Stmt, indent: number): Item {
  const simple = (text: string): Item => ({ span: s.span, render: (p) => p.line(text, indent, s.span.endLine) });
  switch (s.kind) {
    case 'let':
      return simple(`let ${targetText(s.target)}${s.type ? `: ${typeText(s.type)}` : ''} = ${exprText(s.value)}`);
    case 'assign':
      return simple(`${s.name} = ${exprText(s.value)}`);
    case 'param':
      return simple(`param ${s.name}: ${typeText(s.type)} = ${exprText(s.init)}`);
    case 'return':
      return simple(`return ${exprText(s.value)}`);
    case 'assert':
      return simple(`assert ${exprText(s.cond)}${s.message ? `, ${exprText(s.message)}` : ''}`);
    case 'for':
      return {
        span: s.span,
        render: (p) => {
          p.line(`for ${s.var} in ${exprText(s.iter)} {`, indent, headerLine(s.span.line, s.body[0]));
          p.block(s.body.map((x) => stmtItem(x, indent + 1)), indent + 1, s.span.endLine);
          p.line('}', indent, s.span.endLine);
        },
      };
    case 'if':
      return {
        span: s.span,
        render: (p) => {
          let cur: Extract<Stmt, { kind: 'if' }> = s;
          p.line(`if ${exprText(cur.cond)} {`, indent, headerLine(cur.span.line, cur.then[0]));
          for (;;) {
            const thenEnd = cur.thenEnd?.line ?? cur.span.endLine;
            p.block(cur.then.map((x) => stmtItem(x, indent + 1)), indent + 1, thenEnd);
            const els = cur.else;
            if (!els) {
              p.line('}', indent, cur.span.endLine);
              return;
            }
            if (els.length === 1 && els[0].kind === 'if' && els[0].span.line === thenEnd) {
              cur = els[0];
              p.line(`} else if ${exprText(cur.cond)} {`, indent, headerLine(cur.span.line, cur.then[0]));
              continue;
            }
            p.line('} else {', indent, headerLine(thenEnd, els[0]));
            p.block(els.map((x) => stmtItem(x, indent + 1)), indent + 1, cur.span.endLine);
            p.line('}', indent, cur.span.endLine);
            return;
          }
        },
      };
  }
}

function outText(o: OutputDecl): string {
  return o.name ? `${o.name}: ${o.type ? typeText(o.type) : ''}` : o.type ? typeText(o.type) : '';
}

function fnItem(f: FnDecl): Item {
  return {
    span: f.span,
    render: (p) => {
      for (const a of f.annotations) p.line(`@${a.name}`, 0, a.span.line);
      const params = f.params
        .map((x) => `${x.name}${x.type ? `: ${typeText(x.type)}` : ''}${x.default ? ` = ${exprText(x.default)}` : ''}`)
        .join(', ');
      const ret = f.ret ? ` -> ${f.ret.tuple ? `(${f.ret.outs.map(outText).join(', ')})` : outText(f.ret.outs[0])}` : '';
      p.line(`${f.isEntry ? 'entry' : 'fn'} ${f.name}(${params})${ret} {`, 0, headerLine(f.nameSpan.line, f.body[0]));
      p.block(f.body.map((s) => stmtItem(s, 1)), 1, f.span.endLine);
      p.line('}', 0, f.span.endLine);
    },
  };
}

function modelItem(it: ConfigDecl | DimDecl): Item {
  const text = it.kind === 'dim' ? `dim ${it.name} = ${exprText(it.value)}` : `${it.name}: ${it.type} = ${exprText(it.value)}`;
  return { span: it.span, render: (p) => p.line(text, 1, it.span.endLine) };
}

function topItem(t: TopLevel): Item {
  if (t.kind === 'import') return { span: t.span, render: (p) => p.line(`import ${JSON.stringify(t.path)}`, 0, t.span.endLine) };
  if (t.kind === 'model') {
    return {
      span: t.span,
      render: (p) => {
        p.line(`model ${t.name} {`, 0, headerLine(t.span.line, t.items[0]));
        p.block(t.items.map(modelItem), 1, t.span.endLine);
        p.line('}', 0, t.span.endLine);
      },
    };
  }
  return fnItem(t);
}

export function formatSource(source: string, file: string): string {
  const text = stripBom(source);
  const { program, errors } = parse(text);
  if (errors.length) {
    throw new DiagnosticError(errors.map((e) => makeDiagnostic(e.message, locOf(file, e.span), () => text)));
  }
  const lines = text.split(/\r?\n/);
  const p = new Printer(lexComments(text), (l) => (lines[l - 1] ?? '').trim() === '');
  program.items.forEach((it, i) => {
    const prev = program.items[i - 1];
    const bothImports = prev?.kind === 'import' && it.kind === 'import';
    p.gap(it.kind === 'fn' && it.annotations.length ? it.annotations[0].span.line : it.span.line, i === 0, !!prev && !bothImports);
    p.leading(it.kind === 'fn' && it.annotations.length ? it.annotations[0].span.line : it.span.line, 0, i === 0);
    topItem(it).render(p);
  });
  p.leading(Number.MAX_SAFE_INTEGER, 0, program.items.length === 0);
  while (p.out.length && p.out[p.out.length - 1] === '') p.out.pop();
  return p.out.length ? `${p.out.join('\n')}\n` : '';
}
