/** The Kiln syntax tree. Every node carries its source span (1-based line/col, end inclusive). */
export interface Span {
  line: number;
  col: number;
  endLine: number;
  endCol: number; // column of the last character
}

export type Expr =
  | { kind: 'num'; value: number; isInt: boolean; text: string; span: Span }
  | { kind: 'str'; value: string; text: string; span: Span }
  | { kind: 'bool'; value: boolean; span: Span }
  | { kind: 'none'; span: Span }
  | { kind: 'name'; name: string; span: Span }
  | { kind: 'paren'; expr: Expr; span: Span }
  | { kind: 'tuple'; items: Expr[]; span: Span }
  | { kind: 'unary'; op: '-' | 'not'; expr: Expr; span: Span }
  | { kind: 'binary'; op: BinOp; left: Expr; right: Expr; span: Span }
  | { kind: 'call'; callee: Expr; args: Arg[]; as?: NamePath; span: Span }
  | { kind: 'member'; object: Expr; name: string; span: Span }
  | { kind: 'index'; object: Expr; items: IndexItem[]; span: Span };

export type BinOp = 'or' | 'and' | '==' | '!=' | '<' | '<=' | '>' | '>=' | '+' | '-' | '*' | '/' | '//' | '%' | '@' | '**';

export interface Arg {
  name?: string;
  value: Expr;
  span: Span;
}

export type IndexItem =
  | { kind: 'expr'; expr: Expr }
  | { kind: 'slice'; start?: Expr; end?: Expr; step?: Expr; span: Span }
  | { kind: 'ellipsis'; span: Span };

/** `as h[i].attn`: a parameter-scope name; `[e]` segments are evaluated. */
export interface NamePath {
  parts: ({ kind: 'ident'; name: string } | { kind: 'index'; expr: Expr })[];
  span: Span;
}

/** `f32[B, T, d]`, `i32`, `int`; dims absent means a scalar (or a compile-time value type). */
export interface TypeExpr {
  base: string;
  dims?: DimItem[];
  span: Span;
}
export type DimItem = { kind: 'expr'; expr: Expr } | { kind: 'ellipsis'; span: Span };

export type Target = { kind: 'name'; name: string; span: Span } | { kind: 'tuple'; items: Target[]; span: Span };

export type Stmt =
  | { kind: 'let'; target: Target; type?: TypeExpr; value: Expr; span: Span }
  | { kind: 'assign'; name: string; nameSpan: Span; value: Expr; span: Span }
  | { kind: 'param'; name: string; type: TypeExpr; init: Expr; span: Span }
  | { kind: 'return'; value: Expr; span: Span }
  | { kind: 'for'; var: string; iter: Expr; body: Stmt[]; span: Span }
  | { kind: 'if'; cond: Expr; then: Stmt[]; else?: Stmt[]; thenEnd?: Span; span: Span }
  | { kind: 'assert'; cond: Expr; message?: Expr; span: Span };

export interface ParamDecl {
  name: string;
  type?: TypeExpr;
  default?: Expr;
  span: Span;
}

export interface OutputDecl {
  name?: string;
  type?: TypeExpr;
  span: Span;
}

export interface FnDecl {
  kind: 'fn';
  isEntry: boolean;
  annotations: { name: string; span: Span }[];
  name: string;
  nameSpan: Span;
  params: ParamDecl[];
  /** undefined: not declared; `tuple` true when written `-> (a, b)`. */
  ret?: { outs: OutputDecl[]; tuple: boolean };
  body: Stmt[];
  span: Span;
  /** File the function was written in (filled by the module loader). */
  file?: string;
}

export interface ConfigDecl {
  kind: 'config';
  name: string;
  type: string;
  value: Expr;
  span: Span;
}
export interface DimDecl {
  kind: 'dim';
  name: string;
  value: Expr;
  span: Span;
}

export interface ModelDecl {
  kind: 'model';
  name: string;
  items: (ConfigDecl | DimDecl)[];
  span: Span;
}

export interface ImportDecl {
  kind: 'import';
  path: string;
  span: Span;
}

export type TopLevel = ImportDecl | ModelDecl | FnDecl;

export interface Program {
  items: TopLevel[];
}
