import { describe, expect, it } from 'vitest';
import { changesHorizon, initialWatermark, lagSeconds, positionOf, recomputeRanges, slices, upperBound } from '../../functions/rollup/plan';
import { CatalogError } from '../../shared/errors';

const H = 3_600_000;
/** An injected database clock: 2026-11-23 10:07:30 UTC. */
const now = Date.parse('2026-11-23T10:07:30Z');
const hour = (h: number) => Date.parse('2026-11-23T00:00:00Z') + h * H;

describe('rollup plan: how far a run publishes', () => {
  it('settles, then stops at the fence', () => {
    expect(upperBound(now, 5, null, 'hour')).toBe(hour(10));
    expect(upperBound(now, 10, null, 'hour')).toBe(hour(9));
    expect(upperBound(now, 5, hour(8) + 12 * 60_000, 'hour')).toBe(hour(8));
    expect(upperBound(now, 5, null, 'day')).toBe(hour(0));
  });

  it('records the earlier of now and the fence as the changed-at horizon', () => {
    expect(changesHorizon(now, null)).toBe(now);
    expect(changesHorizon(now, hour(9))).toBe(hour(9));
  });

  it('truncates the horizon to what a changed-at column with fewer fractional digits keeps (it rounds stamps to the nearest)', () => {
    const at = now + 789;
    expect(changesHorizon(at, null)).toBe(at);
    expect(changesHorizon(at, null, 3)).toBe(at);
    expect(changesHorizon(at, null, 2)).toBe(now + 780);
    expect(changesHorizon(at, null, 1)).toBe(now + 700);
    expect(changesHorizon(at, null, 0)).toBe(now);
    expect(changesHorizon(at, hour(9) + 456, 0)).toBe(hour(9));
  });

  it('starts a new rollup at its first event, never past the upper bound', () => {
    expect(initialWatermark(hour(3) + 1_234, hour(10), 'hour')).toBe(hour(3));
    expect(initialWatermark(null, hour(10), 'hour')).toBe(hour(10));
    expect(initialWatermark(hour(40), hour(10), 'hour')).toBe(hour(10));
  });
});

describe('rollup plan: where a run starts', () => {
  const stored = (watermark: number, aligned = true) => ({ watermarkText: 'as stored', watermark, aligned, changesText: null });

  it('works from the watermark and expects it as stored', () => {
    expect(positionOf(stored(hour(7)), now, 'hour', 'state')).toEqual({ from: hour(7), expected: 'as stored', expectedMs: hour(7) });
  });

  it('floors a watermark off the grid to its bucket start, and says so', () => {
    expect(positionOf(stored(hour(7) + 30 * 60_000, false), now, 'hour', 'state')).toEqual({
      from: hour(7),
      expected: 'as stored',
      expectedMs: hour(7) + 30 * 60_000,
      floored: { stored: 'as stored' },
    });
  });

  it('refuses a watermark ahead of the database clock', () => {
    expect(() => positionOf(stored(hour(11)), now, 'hour', 'housekeeping.rollup_state(u)')).toThrowError(CatalogError);
  });
});

describe('rollup plan: what a run recomputes', () => {
  it('the lookback before the watermark, then the changed buckets merged into ranges', () => {
    expect(recomputeRanges(hour(8), 2, 'hour', [hour(2), hour(1) + 5, hour(5)])).toEqual([
      [hour(6), hour(8)],
      [hour(1), hour(3)],
      [hour(5), hour(6)],
    ]);
    expect(recomputeRanges(hour(8), 0, 'hour', [])).toEqual([]);
  });

  it('in slices of sliceBuckets, the last one short', () => {
    expect(slices(hour(0), hour(5), 2, 'hour')).toEqual([
      [hour(0), hour(2)],
      [hour(2), hour(4)],
      [hour(4), hour(5)],
    ]);
    expect(slices(hour(3), hour(3), 2, 'hour')).toEqual([]);
  });

  it('reports lag in whole seconds, never negative', () => {
    expect(lagSeconds(now, hour(10))).toBe(450);
    expect(lagSeconds(now, now + 5_000)).toBe(0);
  });
});
