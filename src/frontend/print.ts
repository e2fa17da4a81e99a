/** Canonical text of expressions and types (the formatter's building blocks; also used in messages). */
import type { Expr, IndexItem, NamePath, Target, TypeExpr } from './ast.js';

export function exprText(e: Expr): string {
  switch (e.kind) {
    case 'num':
      return e.text;
    case 'str':
      return e.text;
    case 'bool':
      return String(e.value);
    case 'none':
      return 'none';
    case 'name':
      return e.name;
    case 'paren':
      return `(${exprText(e.expr)})`;
    case 'tuple':
      return e.items.length === 1 ? `(${exprText(e.items[0])},)` : `(${e.items.map(exprText).join(', ')})`;
    case 'unary':
      return e.op === 'not' ? `not ${exprText(e.expr)}` : `-${exprText(e.expr)}`;
    case 'binary':
      return `${exprText(e.left)} ${e.op} ${exprText(e.right)}`;
    case 'call': {
      const args = e.args.map((a) => (a.name ? `${a.name}=${exprText(a.value)}` : exprText(a.value))).join(', ');
      return `${exprText(e.callee)}(${args})${e.as ? ` as ${namePathText(e.as)}` : ''}`;
    }
    case 'member':
      return `${exprText(e.object)}.${e.name}`;
    case 'index':
      return `${exprText(e.object)}[${e.items.map(indexText).join(', ')}]`;
  }
}

function indexText(it: IndexItem): string {
  if (it.kind === 'ellipsis') return '...';
  if (it.kind === 'expr') return exprText(it.expr);
  const s = it.start ? exprText(it.start) : '';
  const en = it.end ? exprText(it.end) : '';
  return it.step ? `${s}:${en}:${exprText(it.step)}` : `${s}:${en}`;
}

export function namePathText(p: NamePath): string {
  return p.parts.map((x, i) => (x.kind === 'ident' ? (i ? `.${x.name}` : x.name) : `[${exprText(x.expr)}]`)).join('');
}

export function typeText(t: TypeExpr): string {
  if (!t.dims) return t.base;
  return `${t.base}[${t.dims.map((d) => (d.kind === 'ellipsis' ? '...' : exprText(d.expr))).join(', ')}]`;
}

export function targetText(t: Target): string {
  return t.kind === 'name' ? t.name : `(${t.items.map(targetText).join(', ')})`;
}
