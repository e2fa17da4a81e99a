/**
 * The op registry: the one table from op kind to its rule. Its type is the mapped type OpRegistry, so an op
 * without a shape rule, reference implementation, gradient rule or lowering does not compile.
 */
import type { OpRegistry } from './op.js';
import { collectiveOps } from './ops/collective.js';
import { attentionOps } from './ops/attention.js';
import { binaryOps, castOp, selectOp, unaryOps } from './ops/elementwise.js';
import { indexingOps } from './ops/indexing.js';
import { layoutOps } from './ops/layout.js';
import { leafOps } from './ops/leaves.js';
import { matmulOp } from './ops/matmul.js';
import { nnOps } from './ops/nn.js';
import { p2pOps } from './ops/p2p.js';
import { dropoutOp } from './ops/random.js';
import { reduceOps } from './ops/reduce.js';
import { updateSliceOp } from './ops/update-slice.js';

export const OPS: OpRegistry = {
  ...leafOps,
  ...unaryOps,
  ...binaryOps,
  select: selectOp,
  cast: castOp,
  ...reduceOps,
  matmul: matmulOp,
  ...layoutOps,
  ...indexingOps,
  update_slice: updateSliceOp,
  ...nnOps,
  dropout: dropoutOp,
  ...collectiveOps,
  ...p2pOps,
  ...attentionOps,
};

export const OP_KINDS = Object.keys(OPS) as (keyof OpRegistry)[];
