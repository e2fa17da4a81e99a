/** Compile-time values of the lowering evaluator: numbers, strings, tensors (graph node ids), tuples... */
import type { ParamInit } from '../ir/op.js';
import type { DType } from '../ir/types.js';
import type { FnDecl } from './ast.js';
import type { Module } from './modules.js';

export type Value =
  | { k: 'num'; v: number; int: boolean }
  | { k: 'bool'; v: boolean }
  | { k: 'str'; v: string }
  | { k: 'none' }
  | { k: 'tensor'; id: number }
  | { k: 'tuple'; items: Value[] }
  | { k: 'dtype'; d: DType }
  | { k: 'fn'; fn: FnDecl; module: Module }
  | { k: 'builtin'; name: string }
  | { k: 'ns' }
  | { k: 'init'; init: ParamInit };

export const num = (v: number, int = Number.isInteger(v)): Value => ({ k: 'num', v, int });
export const int = (v: number): Value => ({ k: 'num', v, int: true });
export const NONE: Value = { k: 'none' };

export function isCallable(v: Value): boolean {
  return v.k === 'fn' || v.k === 'builtin';
}

export function kindName(v: Value): string {
  switch (v.k) {
    case 'num':
      return v.int ? `int ${v.v}` : `float ${v.v}`;
    case 'bool':
      return `bool ${v.v}`;
    case 'str':
      return `string ${JSON.stringify(v.v)}`;
    case 'none':
      return 'none';
    case 'tensor':
      return 'a tensor';
    case 'tuple':
      return `a tuple of ${v.items.length}`;
    case 'dtype':
      return `the dtype ${v.d}`;
    case 'fn':
      return `the function '${v.fn.name}'`;
    case 'builtin':
      return `the builtin '${v.name}'`;
    case 'ns':
      return 'the ops namespace';
    case 'init':
      return `the initializer ${v.init.kind}`;
  }
}
