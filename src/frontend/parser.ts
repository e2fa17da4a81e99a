/**
 * The Kiln parser: Chevrotain with embedded actions building the AST directly, and error recovery on, so one
 * run reports several syntax errors. Actions are written to tolerate the placeholder values Chevrotain returns
 * while recording the grammar and after recovering from an error (every property read is optional).
 */
import { EmbeddedActionsParser, type IRecognitionException, type IToken, type ILexingError } from 'chevrotain';
import type { Arg, BinOp, ConfigDecl, DimDecl, DimItem, Expr, FnDecl, ImportDecl, IndexItem, ModelDecl, NamePath, OutputDecl, ParamDecl, Program, Span, Stmt, Target, TopLevel, TypeExpr } from './ast.js';
import * as T from './lexer.js';

const NOSPAN: Span = { line: 0, col: 0, endLine: 0, endCol: 0 };

export function tokSpan(t: IToken | undefined): Span {
  if (!t || !Number.isFinite(t.startLine)) return NOSPAN;
  return { line: t.startLine!, col: t.startColumn!, endLine: t.endLine!, endCol: t.endColumn! };
}

/** A span from the start of `a` to the end of `b` (either may be a placeholder). */
export function join(a: Span | undefined, b: Span | undefined): Span {
  if (!a || !a.line) return b ?? NOSPAN;
  if (!b || !b.line) return a;
  return { line: a.line, col: a.col, endLine: b.endLine, endCol: b.endCol };
}

const sp = (x: { span?: Span } | undefined): Span | undefined => (x && typeof x === 'object' ? x.span : undefined);

function unquote(s: string): string {
  return s.slice(1, -1).replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c === 't' ? '\t' : c));
}

class KilnParser extends EmbeddedActionsParser {
  constructor() {
    super(T.allTokens, { recoveryEnabled: true, maxLookahead: 3 });
    this.performSelfAnalysis();
  }

  program = this.RULE('program', (): Program => {
    const items: TopLevel[] = [];
    this.MANY(() => {
      const it = this.SUBRULE(this.topLevel);
      this.ACTION(() => it && items.push(it));
    });
    return { items };
  });

  topLevel = this.RULE('topLevel', (): TopLevel =>
    this.OR([
      { ALT: () => this.SUBRULE(this.importDecl) },
      { ALT: () => this.SUBRULE(this.modelDecl) },
      { ALT: () => this.SUBRULE(this.fnDecl) },
    ]),
  );

  importDecl = this.RULE('importDecl', (): ImportDecl => {
    const k = this.CONSUME(T.Import);
    const s = this.CONSUME(T.StringLit);
    this.OPTION(() => this.CONSUME(T.Semi));
    return { kind: 'import', path: this.ACTION(() => unquote(s.image)), span: join(tokSpan(k), tokSpan(s)) };
  });

  modelDecl = this.RULE('modelDecl', (): ModelDecl => {
    const k = this.CONSUME(T.Model);
    const name = this.CONSUME(T.Identifier);
    this.CONSUME(T.LBrace);
    const items: (ConfigDecl | DimDecl)[] = [];
    this.MANY(() => {
      const it = this.SUBRULE(this.modelItem);
      this.ACTION(() => it && items.push(it));
    });
    const r = this.CONSUME(T.RBrace);
    return { kind: 'model', name: name.image, items, span: join(tokSpan(k), tokSpan(r)) };
  });

  modelItem = this.RULE('modelItem', (): ConfigDecl | DimDecl => {
    const it = this.OR([
      {
        ALT: (): DimDecl => {
          const k = this.CONSUME(T.Dim);
          const n = this.CONSUME(T.Identifier);
          this.CONSUME(T.Assign);
          const v = this.SUBRULE(this.expr);
          return { kind: 'dim', name: n.image, value: v, span: join(tokSpan(k), sp(v)) };
        },
      },
      {
        ALT: (): ConfigDecl => {
          const n = this.CONSUME2(T.Identifier);
          this.CONSUME(T.Colon);
          const ty = this.CONSUME3(T.Identifier);
          this.CONSUME2(T.Assign);
          const v = this.SUBRULE2(this.expr);
          return { kind: 'config', name: n.image, type: ty.image, value: v, span: join(tokSpan(n), sp(v)) };
        },
      },
    ]);
    this.OPTION(() => this.CONSUME(T.Semi));
    return it;
  });

  fnDecl = this.RULE('fnDecl', (): FnDecl => {
    const annotations: { name: string; span: Span }[] = [];
    let first: IToken | undefined;
    this.MANY(() => {
      const at = this.CONSUME(T.At);
      const n = this.CONSUME(T.Identifier);
      this.ACTION(() => {
        first ??= at;
        annotations.push({ name: n.image, span: join(tokSpan(at), tokSpan(n)) });
      });
    });
    const k = this.OR([{ ALT: () => this.CONSUME(T.Fn) }, { ALT: () => this.CONSUME(T.Entry) }]);
    const name = this.CONSUME2(T.Identifier);
    this.CONSUME(T.LParen);
    const params: ParamDecl[] = [];
    this.MANY_SEP({
      SEP: T.Comma,
      DEF: () => {
        const p = this.SUBRULE(this.paramDecl);
        this.ACTION(() => p && params.push(p));
      },
    });
    this.CONSUME(T.RParen);
    let ret: FnDecl['ret'];
    this.OPTION(() => {
      this.CONSUME(T.Arrow);
      ret = this.SUBRULE(this.retSig);
    });
    const { body, end } = this.SUBRULE(this.block);
    return {
      kind: 'fn',
      isEntry: k?.image === 'entry',
      annotations,
      name: name.image,
      nameSpan: tokSpan(name),
      params,
      ret,
      body,
      span: join(tokSpan(first ?? k), end),
    };
  });

  paramDecl = this.RULE('paramDecl', (): ParamDecl => {
    const n = this.CONSUME(T.Identifier);
    let type: TypeExpr | undefined;
    let def: Expr | undefined;
    this.OPTION(() => {
      this.CONSUME(T.Colon);
      type = this.SUBRULE(this.typeExpr);
    });
    this.OPTION2(() => {
      this.CONSUME(T.Assign);
      def = this.SUBRULE(this.expr);
    });
    return { name: n.image, type, default: def, span: join(tokSpan(n), sp(def) ?? sp(type)) };
  });

  retSig = this.RULE('retSig', (): { outs: OutputDecl[]; tuple: boolean } =>
    this.OR([
      {
        ALT: () => {
          this.CONSUME(T.LParen);
          const outs: OutputDecl[] = [];
          this.AT_LEAST_ONE_SEP({
            SEP: T.Comma,
            DEF: () => {
              const o = this.SUBRULE(this.outDecl);
              this.ACTION(() => o && outs.push(o));
            },
          });
          this.CONSUME(T.RParen);
          return { outs, tuple: true };
        },
      },
      {
        ALT: () => {
          const o = this.SUBRULE2(this.outDecl);
          return { outs: [o], tuple: false };
        },
      },
    ]),
  );

  outDecl = this.RULE('outDecl', (): OutputDecl => {
    const n = this.CONSUME(T.Identifier);
    return this.OR([
      {
        ALT: () => {
          this.CONSUME(T.Colon);
          const type = this.SUBRULE(this.typeExpr);
          return { name: n.image, type, span: join(tokSpan(n), sp(type)) };
        },
      },
      {
        ALT: () => {
          const dims = this.OPTION(() => this.SUBRULE(this.dimList));
          const r = dims ? dims.end : tokSpan(n);
          const type: TypeExpr = { base: n.image, dims: dims?.items, span: join(tokSpan(n), r) };
          return { type, span: type.span };
        },
      },
    ]);
  });

  typeExpr = this.RULE('typeExpr', (): TypeExpr => {
    const n = this.CONSUME(T.Identifier);
    const dims = this.OPTION(() => this.SUBRULE(this.dimList));
    return { base: n.image, dims: dims?.items, span: join(tokSpan(n), dims?.end) };
  });

  dimList = this.RULE('dimList', (): { items: DimItem[]; end: Span } => {
    this.CONSUME(T.LBracket);
    const items: DimItem[] = [];
    this.MANY_SEP({
      SEP: T.Comma,
      DEF: () => {
        const d = this.OR([
          { ALT: (): DimItem => ({ kind: 'ellipsis', span: tokSpan(this.CONSUME(T.Ellipsis)) }) },
          { ALT: (): DimItem => ({ kind: 'expr', expr: this.SUBRULE(this.expr) }) },
        ]);
        this.ACTION(() => items.push(d));
      },
    });
    const r = this.CONSUME(T.RBracket);
    return { items, end: tokSpan(r) };
  });

  block = this.RULE('block', (): { body: Stmt[]; end: Span } => {
    this.CONSUME(T.LBrace);
    const body: Stmt[] = [];
    this.MANY(() => {
      const s = this.SUBRULE(this.stmt);
      this.ACTION(() => s && body.push(s));
    });
    const r = this.CONSUME(T.RBrace);
    return { body, end: tokSpan(r) };
  });

  stmt = this.RULE('stmt', (): Stmt => {
    const s = this.OR([
      { ALT: () => this.SUBRULE(this.letStmt) },
      { ALT: () => this.SUBRULE(this.paramStmt) },
      { ALT: () => this.SUBRULE(this.returnStmt) },
      { ALT: () => this.SUBRULE(this.forStmt) },
      { ALT: () => this.SUBRULE(this.ifStmt) },
      { ALT: () => this.SUBRULE(this.assertStmt) },
      { ALT: () => this.SUBRULE(this.assignStmt) },
    ]);
    this.OPTION(() => this.CONSUME(T.Semi));
    return s;
  });

  letStmt = this.RULE('letStmt', (): Stmt => {
    const k = this.CONSUME(T.Let);
    const target = this.SUBRULE(this.target);
    let type: TypeExpr | undefined;
    this.OPTION(() => {
      this.CONSUME(T.Colon);
      type = this.SUBRULE(this.typeExpr);
    });
    this.CONSUME(T.Assign);
    const value = this.SUBRULE(this.expr);
    return { kind: 'let', target, type, value, span: join(tokSpan(k), sp(value)) };
  });

  target = this.RULE('target', (): Target =>
    this.OR([
      {
        ALT: () => {
          const n = this.CONSUME(T.Identifier);
          return { kind: 'name', name: n.image, span: tokSpan(n) };
        },
      },
      {
        ALT: () => {
          const l = this.CONSUME(T.LParen);
          const items: Target[] = [];
          this.AT_LEAST_ONE_SEP({
            SEP: T.Comma,
            DEF: () => {
              const t = this.SUBRULE(this.target);
              this.ACTION(() => t && items.push(t));
            },
          });
          const r = this.CONSUME(T.RParen);
          return { kind: 'tuple', items, span: join(tokSpan(l), tokSpan(r)) };
        },
      },
    ]),
  );

  paramStmt = this.RULE('paramStmt', (): Stmt => {
    const k = this.CONSUME(T.Param);
    const n = this.CONSUME(T.Identifier);
    this.CONSUME(T.Colon);
    const type = this.SUBRULE(this.typeExpr);
    this.CONSUME(T.Assign);
    const init = this.SUBRULE(this.expr);
    return { kind: 'param', name: n.image, type, init, span: join(tokSpan(k), sp(init)) };
  });

  returnStmt = this.RULE('returnStmt', (): Stmt => {
    const k = this.CONSUME(T.Return);
    const first = this.SUBRULE(this.expr);
    const rest: Expr[] = [];
    this.MANY(() => {
      this.CONSUME(T.Comma);
      const e = this.SUBRULE2(this.expr);
      this.ACTION(() => rest.push(e));
    });
    const value: Expr = rest.length ? { kind: 'tuple', items: [first, ...rest], span: join(sp(first), sp(rest[rest.length - 1])) } : first;
    return { kind: 'return', value, span: join(tokSpan(k), sp(value)) };
  });

  forStmt = this.RULE('forStmt', (): Stmt => {
    const k = this.CONSUME(T.For);
    const v = this.CONSUME(T.Identifier);
    this.CONSUME(T.In);
    const iter = this.SUBRULE(this.expr);
    const { body, end } = this.SUBRULE(this.block);
    return { kind: 'for', var: v.image, iter, body, span: join(tokSpan(k), end) };
  });

  ifStmt = this.RULE('ifStmt', (): Stmt => {
    const k = this.CONSUME(T.If);
    const cond = this.SUBRULE(this.expr);
    const then = this.SUBRULE(this.block);
    let els: Stmt[] | undefined;
    let end: Span | undefined = then?.end;
    this.OPTION(() => {
      this.CONSUME(T.Else);
      this.OR([
        {
          ALT: () => {
            const s = this.SUBRULE(this.ifStmt);
            this.ACTION(() => {
              els = s ? [s] : [];
              end = sp(s);
            });
          },
        },
        {
          ALT: () => {
            const b = this.SUBRULE2(this.block);
            this.ACTION(() => {
              els = b?.body ?? [];
              end = b?.end;
            });
          },
        },
      ]);
    });
    return { kind: 'if', cond, then: then?.body ?? [], else: els, thenEnd: then?.end, span: join(tokSpan(k), end) };
  });

  assertStmt = this.RULE('assertStmt', (): Stmt => {
    const k = this.CONSUME(T.Assert);
    const cond = this.SUBRULE(this.expr);
    let message: Expr | undefined;
    this.OPTION(() => {
      this.CONSUME(T.Comma);
      message = this.SUBRULE2(this.expr);
    });
    return { kind: 'assert', cond, message, span: join(tokSpan(k), sp(message) ?? sp(cond)) };
  });

  assignStmt = this.RULE('assignStmt', (): Stmt => {
    const n = this.CONSUME(T.Identifier);
    this.CONSUME(T.Assign);
    const value = this.SUBRULE(this.expr);
    return { kind: 'assign', name: n.image, nameSpan: tokSpan(n), value, span: join(tokSpan(n), sp(value)) };
  });

  // ---- expressions, lowest precedence first ----

  expr = this.RULE('expr', (): Expr => this.SUBRULE(this.orExpr));

  private binaryLevel(first: () => Expr, next: () => Expr, ops: { tok: () => IToken }[]) {
    let left = first();
    this.MANY(() => {
      const t = this.OR(ops.map((o) => ({ ALT: o.tok })));
      const right = next();
      this.ACTION(() => {
        left = { kind: 'binary', op: t.image as BinOp, left, right, span: join(sp(left), sp(right)) };
      });
    });
    return left;
  }

  orExpr = this.RULE('orExpr', (): Expr => this.binaryLevel(() => this.SUBRULE(this.andExpr), () => this.SUBRULE2(this.andExpr), [{ tok: () => this.CONSUME(T.Or) }]));
  andExpr = this.RULE('andExpr', (): Expr => this.binaryLevel(() => this.SUBRULE(this.notExpr), () => this.SUBRULE2(this.notExpr), [{ tok: () => this.CONSUME(T.And) }]));

  notExpr = this.RULE('notExpr', (): Expr =>
    this.OR([
      {
        ALT: () => {
          const k = this.CONSUME(T.Not);
          const e = this.SUBRULE(this.notExpr);
          return { kind: 'unary', op: 'not', expr: e, span: join(tokSpan(k), sp(e)) };
        },
      },
      { ALT: () => this.SUBRULE(this.cmpExpr) },
    ]),
  );

  cmpExpr = this.RULE('cmpExpr', (): Expr => {
    let left = this.SUBRULE(this.addExpr);
    this.OPTION(() => {
      const t = this.OR([
        { ALT: () => this.CONSUME(T.EqEq) },
        { ALT: () => this.CONSUME(T.NotEq) },
        { ALT: () => this.CONSUME(T.LtEq) },
        { ALT: () => this.CONSUME(T.GtEq) },
        { ALT: () => this.CONSUME(T.Lt) },
        { ALT: () => this.CONSUME(T.Gt) },
      ]);
      const right = this.SUBRULE2(this.addExpr);
      this.ACTION(() => {
        left = { kind: 'binary', op: t.image as BinOp, left, right, span: join(sp(left), sp(right)) };
      });
    });
    return left;
  });

  addExpr = this.RULE('addExpr', (): Expr =>
    this.binaryLevel(() => this.SUBRULE(this.mulExpr), () => this.SUBRULE2(this.mulExpr), [{ tok: () => this.CONSUME(T.Plus) }, { tok: () => this.CONSUME(T.Minus) }]),
  );

  mulExpr = this.RULE('mulExpr', (): Expr =>
    this.binaryLevel(
      () => this.SUBRULE(this.unaryExpr),
      () => this.SUBRULE2(this.unaryExpr),
      [
        { tok: () => this.CONSUME(T.Star) },
        { tok: () => this.CONSUME(T.FloorDiv) },
        { tok: () => this.CONSUME(T.Slash) },
        { tok: () => this.CONSUME(T.Percent) },
        { tok: () => this.CONSUME(T.MatMul) },
      ],
    ),
  );

  unaryExpr = this.RULE('unaryExpr', (): Expr =>
    this.OR([
      {
        ALT: () => {
          const k = this.CONSUME(T.Minus);
          const e = this.SUBRULE(this.unaryExpr);
          return { kind: 'unary', op: '-', expr: e, span: join(tokSpan(k), sp(e)) };
        },
      },
      { ALT: () => this.SUBRULE(this.powExpr) },
    ]),
  );

  powExpr = this.RULE('powExpr', (): Expr => {
    let left = this.SUBRULE(this.postfix);
    this.OPTION(() => {
      this.CONSUME(T.Pow);
      const right = this.SUBRULE(this.unaryExpr);
      this.ACTION(() => {
        left = { kind: 'binary', op: '**', left, right, span: join(sp(left), sp(right)) };
      });
    });
    return left;
  });

  postfix = this.RULE('postfix', (): Expr => {
    let e = this.SUBRULE(this.primary);
    this.MANY(() => {
      this.OR([
        {
          ALT: () => {
            this.CONSUME(T.LParen);
            const args: Arg[] = [];
            this.MANY_SEP({
              SEP: T.Comma,
              DEF: () => {
                const a = this.SUBRULE(this.arg);
                this.ACTION(() => a && args.push(a));
              },
            });
            const r = this.CONSUME(T.RParen);
            let as: NamePath | undefined;
            this.OPTION(() => {
              this.CONSUME(T.As);
              as = this.SUBRULE(this.namePath);
            });
            this.ACTION(() => {
              e = { kind: 'call', callee: e, args, as, span: join(sp(e), as?.span ?? tokSpan(r)) };
            });
          },
        },
        {
          ALT: () => {
            this.CONSUME(T.Dot);
            const n = this.CONSUME(T.Identifier);
            this.ACTION(() => {
              e = { kind: 'member', object: e, name: n.image, span: join(sp(e), tokSpan(n)) };
            });
          },
        },
        {
          ALT: () => {
            this.CONSUME(T.LBracket);
            const items: IndexItem[] = [];
            this.AT_LEAST_ONE_SEP({
              SEP: T.Comma,
              DEF: () => {
                const it = this.SUBRULE(this.indexItem);
                this.ACTION(() => it && items.push(it));
              },
            });
            const r = this.CONSUME(T.RBracket);
            this.ACTION(() => {
              e = { kind: 'index', object: e, items, span: join(sp(e), tokSpan(r)) };
            });
          },
        },
      ]);
    });
    return e;
  });

  arg = this.RULE('arg', (): Arg =>
    this.OR([
      {
        GATE: () => this.LA(2).tokenType === T.Assign,
        ALT: () => {
          const n = this.CONSUME(T.Identifier);
          this.CONSUME(T.Assign);
          const value = this.SUBRULE(this.expr);
          return { name: n.image, value, span: join(tokSpan(n), sp(value)) };
        },
      },
      {
        ALT: () => {
          const value = this.SUBRULE2(this.expr);
          return { value, span: sp(value) ?? NOSPAN };
        },
      },
    ]),
  );

  namePath = this.RULE('namePath', (): NamePath => {
    const n = this.CONSUME(T.Identifier);
    const parts: NamePath['parts'] = [{ kind: 'ident', name: n.image }];
    let end = tokSpan(n);
    this.MANY(() => {
      this.OR([
        {
          ALT: () => {
            this.CONSUME(T.Dot);
            const m = this.CONSUME2(T.Identifier);
            this.ACTION(() => {
              parts.push({ kind: 'ident', name: m.image });
              end = tokSpan(m);
            });
          },
        },
        {
          ALT: () => {
            this.CONSUME(T.LBracket);
            const e = this.SUBRULE(this.expr);
            const r = this.CONSUME(T.RBracket);
            this.ACTION(() => {
              parts.push({ kind: 'index', expr: e });
              end = tokSpan(r);
            });
          },
        },
      ]);
    });
    return { parts, span: join(tokSpan(n), end) };
  });

  indexItem = this.RULE('indexItem', (): IndexItem =>
    this.OR([
      { ALT: (): IndexItem => ({ kind: 'ellipsis', span: tokSpan(this.CONSUME(T.Ellipsis)) }) },
      {
        ALT: (): IndexItem => {
          const start = this.OPTION(() => this.SUBRULE(this.expr));
          let isSlice = false;
          let end: Expr | undefined;
          let step: Expr | undefined;
          let colon: IToken | undefined;
          this.OPTION2(() => {
            colon = this.CONSUME(T.Colon);
            isSlice = true;
            end = this.OPTION3(() => this.SUBRULE2(this.expr));
            this.OPTION4(() => {
              this.CONSUME2(T.Colon);
              step = this.OPTION5(() => this.SUBRULE3(this.expr));
            });
          });
          if (!isSlice && start) return { kind: 'expr', expr: start };
          return { kind: 'slice', start, end, step, span: join(sp(start) ?? tokSpan(colon), sp(step) ?? sp(end) ?? tokSpan(colon)) };
        },
      },
    ]),
  );

  primary = this.RULE('primary', (): Expr =>
    this.OR([
      {
        ALT: () => {
          const t = this.CONSUME(T.Integer);
          return { kind: 'num', value: Number(t.image), isInt: true, text: t.image, span: tokSpan(t) };
        },
      },
      {
        ALT: () => {
          const t = this.CONSUME(T.Float);
          return { kind: 'num', value: Number(t.image), isInt: false, text: t.image, span: tokSpan(t) };
        },
      },
      {
        ALT: () => {
          const t = this.CONSUME(T.StringLit);
          return { kind: 'str', value: this.ACTION(() => unquote(t.image)), text: t.image, span: tokSpan(t) };
        },
      },
      { ALT: () => ({ kind: 'bool', value: true, span: tokSpan(this.CONSUME(T.True)) }) },
      { ALT: () => ({ kind: 'bool', value: false, span: tokSpan(this.CONSUME(T.False)) }) },
      { ALT: () => ({ kind: 'none', span: tokSpan(this.CONSUME(T.None)) }) },
      {
        ALT: () => {
          const t = this.CONSUME(T.Identifier);
          return { kind: 'name', name: t.image, span: tokSpan(t) };
        },
      },
      {
        ALT: () => {
          const l = this.CONSUME(T.LParen);
          const items: Expr[] = [];
          let trailing = false;
          this.OPTION(() => {
            const first = this.SUBRULE(this.expr);
            this.ACTION(() => items.push(first));
            this.MANY(() => {
              this.CONSUME(T.Comma);
              trailing = true;
              this.OPTION2(() => {
                const e = this.SUBRULE2(this.expr);
                this.ACTION(() => {
                  items.push(e);
                  trailing = false;
                });
              });
            });
          });
          const r = this.CONSUME(T.RParen);
          const span = join(tokSpan(l), tokSpan(r));
          if (items.length === 1 && !trailing) return { kind: 'paren', expr: items[0], span };
          return { kind: 'tuple', items, span };
        },
      },
    ]),
  );
}

let parserInstance: KilnParser | undefined;

export interface SyntaxError {
  message: string;
  span: Span;
}

/** A UTF-8 byte-order mark some editors write is not part of the source. */
export const stripBom = (text: string) => (text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);

/**
 * Nesting limits: the parser and the lowering recurse once per level, so an absurd depth (200 nested parentheses,
 * 50,000 unary minuses, a sum of 5,000 terms) is refused with a position instead of overflowing the stack.
 */
export const MAX_NESTING = 100;
export const MAX_EXPR_DEPTH = 1000;

const OPEN = new Set(['LParen', 'LBracket', 'LBrace']);
const CLOSE = new Set(['RParen', 'RBracket', 'RBrace']);
const PREFIX = new Set(['Minus', 'Plus', 'not']);

/** Bracket/block depth and runs of prefix operators, on the tokens (before any recursion). */
function tokenNesting(tokens: IToken[]): SyntaxError | undefined {
  let depth = 0;
  let run = 0;
  let prev: IToken | undefined;
  const chains: number[] = []; // `else if` chain length per block depth (each link nests one level in the tree)
  for (const [i, t] of tokens.entries()) {
    const k = t.tokenType.name;
    if (k === 'if' && prev?.tokenType.name === 'else') {
      chains[depth] = (chains[depth] ?? 0) + 1;
      if (chains[depth] > MAX_NESTING) return { message: `more than ${MAX_NESTING} 'else if' in one chain here: use a lookup or split it up`, span: tokSpan(t) };
    }
    if (k === 'RBrace' && tokens[i + 1]?.tokenType.name !== 'else') chains[Math.max(0, depth - 1)] = 0;
    if (OPEN.has(k) && ++depth > MAX_NESTING) return { message: `brackets and blocks nest deeper than ${MAX_NESTING} levels here: simplify the code`, span: tokSpan(t) };
    if (CLOSE.has(k)) depth = Math.max(0, depth - 1);
    // a prefix operator follows another operator, an opening bracket, or nothing
    const prefix = PREFIX.has(k) && (!prev || !/^(Identifier|Integer|Float|StringLit|RParen|RBracket|true|false|none)$/.test(prev.tokenType.name));
    run = prefix ? run + 1 : 0;
    if (run > MAX_NESTING) return { message: `more than ${MAX_NESTING} prefix operators in a row here: simplify the expression`, span: tokSpan(t) };
    prev = t;
  }
  return undefined;
}

/** Depth of the syntax tree, walked with an explicit stack; the first node past the limit. */
function treeTooDeep(program: Program): SyntaxError | undefined {
  const stack: [unknown, number][] = [[program, 0]];
  while (stack.length) {
    const [node, d] = stack.pop()!;
    if (!node || typeof node !== 'object') continue;
    const isNode = !Array.isArray(node) && 'kind' in node;
    if (isNode && d > MAX_EXPR_DEPTH) {
      return { message: `the code nests deeper than ${MAX_EXPR_DEPTH} levels here (a very long chain of operators or nested statements): split it up`, span: (node as { span?: Span }).span ?? NOSPAN };
    }
    for (const [k, v] of Object.entries(node)) if (k !== 'span' && v && typeof v === 'object') stack.push([v, d + (isNode ? 1 : 0)]);
  }
  return undefined;
}

export function parse(source: string): { program: Program; errors: SyntaxError[] } {
  const parser = (parserInstance ??= new KilnParser());
  const text = stripBom(source);
  const lex = T.KilnLexer.tokenize(text);
  const nesting = tokenNesting(lex.tokens);
  if (nesting) return { program: { items: [] }, errors: [nesting] };
  const errors: SyntaxError[] = lex.errors.map((e: ILexingError) => ({
    message: `unexpected character '${text.substr(e.offset, Math.max(1, Math.min(e.length, 1)))}'`,
    span: { line: e.line ?? 1, col: e.column ?? 1, endLine: e.line ?? 1, endCol: e.column ?? 1 },
  }));
  parser.input = lex.tokens;
  const program = parser.program();
  for (const e of parser.errors) errors.push(syntaxError(e, text));
  const deep = program && !errors.length ? treeTooDeep(program) : undefined;
  if (deep) return { program: { items: [] }, errors: [deep] };
  errors.sort((a, b) => a.span.line - b.span.line || a.span.col - b.span.col);
  return { program: program ?? { items: [] }, errors };
}

/** Lexes only: the formatter needs the comments, which the parser never sees. */
export function lexComments(text: string): IToken[] {
  return (T.KilnLexer.tokenize(stripBom(text)).groups.comments ?? []) as IToken[];
}

function describe(t: IToken): string {
  if (t.tokenType.name === 'EOF') return 'end of file';
  return `'${t.image}'`;
}

function syntaxError(e: IRecognitionException, text: string): SyntaxError {
  const t = e.token;
  let span = tokSpan(t);
  if (t.tokenType.name === 'EOF' || !span.line) {
    const lines = text.split('\n');
    const last = lines.length;
    span = { line: last, col: lines[last - 1].length + 1, endLine: last, endCol: lines[last - 1].length + 1 };
    const prev = (e as IRecognitionException & { previousToken?: IToken }).previousToken;
    if (prev && Number.isFinite(prev.endLine)) {
      const p = prev;
      span = { line: p.endLine!, col: p.endColumn! + 1, endLine: p.endLine!, endCol: p.endColumn! + 1 };
    }
  }
  let message: string;
  const expected = expectedFrom(e.message);
  if (e.name === 'NotAllInputParsedException') message = `unexpected ${describe(t)}: expected 'fn', 'entry', 'model' or 'import'`;
  else message = `unexpected ${describe(t)}${expected ? `: expected ${expected}` : ''}`;
  return { message, span };
}

const TOKEN_TEXT: Record<string, string> = {
  Identifier: 'a name', Integer: 'an integer', Float: 'a number', StringLit: 'a string', LParen: "'('", RParen: "')'",
  LBracket: "'['", RBracket: "']'", LBrace: "'{'", RBrace: "'}'", Comma: "','", Colon: "':'", Assign: "'='", Arrow: "'->'",
  Dot: "'.'", Ellipsis: "'...'", Semi: "';'", At: "'@'", Minus: "'-'", Plus: "'+'", Star: "'*'", Slash: "'/'",
};
const EXPR_START = new Set(['Identifier', 'Integer', 'Float', 'StringLit', 'LParen', 'Minus', 'not', 'true', 'false', 'none']);

/** Turns Chevrotain's "Expecting: one of these possible Token sequences" into a short list of what fits. */
function expectedFrom(msg: string): string | undefined {
  const single = /Expecting token of type --> (\w+) <--/.exec(msg);
  if (single) return TOKEN_TEXT[single[1]] ?? `'${single[1].toLowerCase()}'`;
  const firsts = [...new Set([...msg.matchAll(/\[([^\]]*)\]/g)].map((m) => m[1].split(',')[0].trim()))];
  if (!firsts.length) return undefined;
  const exprLike = firsts.filter((f) => EXPR_START.has(f)).length >= 5;
  const names = firsts
    .filter((f) => !(exprLike && EXPR_START.has(f)))
    .map((f) => TOKEN_TEXT[f] ?? `'${f.toLowerCase()}'`);
  return [...(exprLike ? ['an expression'] : []), ...names].slice(0, 5).join(' or ');
}
