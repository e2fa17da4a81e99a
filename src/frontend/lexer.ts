/** Tokens of the Kiln language. Comments start with `#` and run to the end of the line. */
import { createToken, Lexer, type TokenType } from 'chevrotain';

export const Identifier = createToken({ name: 'Identifier', pattern: /[A-Za-z_][A-Za-z0-9_]*/ });
const kw = (name: string) => createToken({ name, pattern: new RegExp(`${name}\\b`), longer_alt: Identifier });

export const Model = kw('model');
export const Fn = kw('fn');
export const Entry = kw('entry');
export const Let = kw('let');
export const Param = kw('param');
export const Return = kw('return');
export const For = kw('for');
export const In = kw('in');
export const If = kw('if');
export const Else = kw('else');
export const Import = kw('import');
export const Dim = kw('dim');
export const As = kw('as');
export const And = kw('and');
export const Or = kw('or');
export const Not = kw('not');
export const True = kw('true');
export const False = kw('false');
export const None = kw('none');
export const Assert = kw('assert');

export const Float = createToken({ name: 'Float', pattern: /(?:\d+\.\d*(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\.\d+(?:[eE][+-]?\d+)?)/ });
export const Integer = createToken({ name: 'Integer', pattern: /\d+/ });
export const StringLit = createToken({ name: 'StringLit', pattern: /"(?:[^"\\\n]|\\.)*"/ });
export const Comment = createToken({ name: 'Comment', pattern: /#[^\n\r]*/, group: 'comments' });
export const WhiteSpace = createToken({ name: 'WhiteSpace', pattern: /[ \t\r\n]+/, group: Lexer.SKIPPED });

/** `@` opens an annotation only as the first thing on a line; elsewhere `@` is matrix multiplication. */
export const At = createToken({
  name: 'At',
  pattern: (text: string, offset: number): RegExpExecArray | null => {
    if (text[offset] !== '@' || !/[A-Za-z_]/.test(text[offset + 1] ?? '')) return null;
    for (let i = offset - 1; i >= 0 && text[i] !== '\n'; i--) if (text[i] !== ' ' && text[i] !== '\t') return null;
    return /@/.exec('@');
  },
  line_breaks: false,
  start_chars_hint: ['@'],
});
export const Arrow = createToken({ name: 'Arrow', pattern: /->/ });
export const Ellipsis = createToken({ name: 'Ellipsis', pattern: /\.\.\./ });
export const Dot = createToken({ name: 'Dot', pattern: /\./ });
export const EqEq = createToken({ name: 'EqEq', pattern: /==/ });
export const NotEq = createToken({ name: 'NotEq', pattern: /!=/ });
export const LtEq = createToken({ name: 'LtEq', pattern: /<=/ });
export const GtEq = createToken({ name: 'GtEq', pattern: /\>=/ });
export const Lt = createToken({ name: 'Lt', pattern: /</ });
export const Gt = createToken({ name: 'Gt', pattern: />/ });
export const Assign = createToken({ name: 'Assign', pattern: /=/ });
export const Plus = createToken({ name: 'Plus', pattern: /\+/ });
export const Minus = createToken({ name: 'Minus', pattern: /-/ });
export const Pow = createToken({ name: 'Pow', pattern: /\*\*/ });
export const Star = createToken({ name: 'Star', pattern: /\*/ });
export const FloorDiv = createToken({ name: 'FloorDiv', pattern: /\/\// });
export const Slash = createToken({ name: 'Slash', pattern: /\// });
export const Percent = createToken({ name: 'Percent', pattern: /%/ });
export const MatMul = createToken({ name: 'MatMul', pattern: /@/ });
export const LParen = createToken({ name: 'LParen', pattern: /\(/ });
export const RParen = createToken({ name: 'RParen', pattern: /\)/ });
export const LBracket = createToken({ name: 'LBracket', pattern: /\[/ });
export const RBracket = createToken({ name: 'RBracket', pattern: /\]/ });
export const LBrace = createToken({ name: 'LBrace', pattern: /\{/ });
export const RBrace = createToken({ name: 'RBrace', pattern: /\}/ });
export const Comma = createToken({ name: 'Comma', pattern: /,/ });
export const Colon = createToken({ name: 'Colon', pattern: /:/ });
export const Semi = createToken({ name: 'Semi', pattern: /;/ });

export const allTokens: TokenType[] = [
  WhiteSpace, Comment, StringLit,
  Model, Fn, Entry, Let, Param, Return, For, In, If, Else, Import, Dim, As, And, Or, Not, True, False, None, Assert,
  Identifier, Float, Integer,
  At, Arrow, Ellipsis, Dot, EqEq, NotEq, LtEq, GtEq, Lt, Gt, Assign, Plus, Minus, Pow, Star, FloorDiv, Slash, Percent,
  MatMul, LParen, RParen, LBracket, RBracket, LBrace, RBrace, Comma, Colon, Semi,
];

export const KilnLexer = new Lexer(allTokens, { positionTracking: 'full', ensureOptimizations: false });
