// The out-of-range id warning of `kiln run` / `kiln grad`: it names real vocabulary mismatches and stays quiet for
// labels the model itself ignores (cross-entropy's ignore_index, or a value the graph masks out with != / ==).
import { describe, expect, it } from 'vitest';
import { outOfRangeIds } from '../../src/cli/commands/run.js';
import { GraphBuilder } from '../../src/ir/builder.js';

describe('outOfRangeIds', () => {
  const V = 5;
  const graph = () => {
    const b = new GraphBuilder();
    const logits = b.op('input', [], { name: 'logits', dtype: 'f32', shape: [4, V] });
    const y = b.op('input', [], { name: 'y', dtype: 'i32', shape: [4] });
    const z = b.op('input', [], { name: 'z', dtype: 'i32', shape: [4] });
    // a hand-written NLL: one_hot of the labels, masked where y == -1
    const picked = b.op('sum', [b.mul(b.op('log_softmax', [logits], {}), b.op('one_hot', [y], { depth: V, dtype: 'f32' }))], { axes: [1], keepdims: false });
    const keep = b.cast(b.op('ne', [y, b.scalar(-1, 'i32')], {}), 'f32');
    const nll = b.op('sum', [b.mul(picked, keep)], { axes: [0], keepdims: false });
    const ce = b.op('cross_entropy', [logits, z], { ignore_index: V });
    return b.build('losses', [{ name: 'nll', id: nll }, { name: 'ce', id: ce }]);
  };
  const feeds = (y: number[], z: number[]) => ({
    logits: { dtype: 'f32' as const, shape: [4, V], data: new Float32Array(4 * V) },
    y: { dtype: 'i32' as const, shape: [4], data: Int32Array.from(y) },
    z: { dtype: 'i32' as const, shape: [4], data: Int32Array.from(z) },
  });

  it('is quiet for ignored labels: -1 masked by the model, an ignore_index equal to the class count', () => {
    expect(outOfRangeIds(graph(), feeds([1, -1, 4, -1], [0, V, 2, V]))).toEqual([]);
  });

  it('names an id outside the table that nothing ignores', () => {
    const w = outOfRangeIds(graph(), feeds([1, 7, 4, -1], [0, -1, 2, V]));
    expect(w).toHaveLength(2);
    expect(w[0]).toMatch(/input 'y' holds 7 at flat position 1, outside the 5 rows of one_hot/);
    expect(w[1]).toMatch(/input 'z' holds -1 at flat position 1, outside the 5 classes of cross_entropy/);
  });
});
