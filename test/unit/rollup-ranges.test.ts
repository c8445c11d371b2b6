import { describe, expect, it } from 'vitest';
import { mergeBuckets } from '../../functions/rollup/buckets';

describe('mergeBuckets', () => {
  it('merges adjacent and duplicate buckets into ranges, so many late rows cost one recompute per run of buckets', () => {
    const h = 3_600_000;
    expect(mergeBuckets([5 * h, 1 * h, 2 * h, 2 * h, 9 * h, 3 * h], 'hour')).toEqual([
      [1 * h, 4 * h],
      [5 * h, 6 * h],
      [9 * h, 10 * h],
    ]);
    expect(mergeBuckets([], 'hour')).toEqual([]);
  });
});
