import { CatalogError } from '../../shared/errors';
import { BUCKET_MS, type Bucket, floorToBucket, instant, mergeBuckets } from './buckets';

/**
 * Pure: how far a rollup run may publish, where it starts, and which published buckets it
 * recomputes. Every instant is epoch ms; the database clock and the fence are arguments, so the
 * plan is the same in every process zone and testable with any clock.
 */

/**
 * The newest bucket boundary a run may publish: the bucket floor of (now − settle delay), never
 * past `fenceMs`, the start of the oldest transaction that could still commit rows stamped at or
 * after it.
 */
export function upperBound(nowMs: number, settleDelayMinutes: number, fenceMs: number | null, bucket: Bucket): number {
  const settled = nowMs - settleDelayMinutes * 60_000;
  return floorToBucket(Math.min(settled, fenceMs ?? Number.POSITIVE_INFINITY), bucket);
}

/**
 * Rows changed at or after this may still be invisible to the run (or not yet written): the
 * earlier of now and the fence, truncated to the `precision` (fractional digits) the changed-at
 * column keeps. Such a column rounds a stamp to the nearest unit, so a stamp taken after the
 * horizon can read up to half a unit before it, but never before the horizon truncated.
 */
export function changesHorizon(nowMs: number, fenceMs: number | null, precision = 6): number {
  const horizon = Math.min(nowMs, fenceMs ?? Number.POSITIVE_INFINITY);
  if (precision >= 3) return horizon;
  const unit = 10 ** (3 - precision);
  return Math.floor(horizon / unit) * unit;
}

/** A first run's watermark: its first event's bucket, never past the upper bound (an empty source, or rows stamped in the future). */
export function initialWatermark(firstEventMs: number | null, upper: number, bucket: Bucket): number {
  return firstEventMs === null ? upper : Math.min(floorToBucket(firstEventMs, bucket), upper);
}

/** A rollup's row in housekeeping.rollup_state, as read. */
export interface StoredState {
  /** The watermark exactly as stored (microseconds kept): what a compare-and-set compares with. */
  watermarkText: string;
  watermark: number;
  /** Whether the watermark is a bucket start of this rollup's bucket (decided by the database, to the microsecond). */
  aligned: boolean;
  changesText: string | null;
}

export interface Position {
  /** Where the run works from: the watermark, floored to its bucket's start. */
  from: number;
  /** The stored watermark a compare-and-set expects. */
  expected: string;
  expectedMs: number;
  /** Set when the watermark was not a bucket start and `from` is its bucket's start. */
  floored?: { stored: string };
}

/**
 * Where to work from, given the stored state: refuses a watermark ahead of the clock, and floors
 * one that is not a bucket start (a reset typed in another session's zone, or a bucket change
 * from hour to day): recomputing from the whole bucket is always safe, a window starting
 * mid-bucket would write a partial bucket beside the whole one.
 */
export function positionOf(stored: StoredState, nowMs: number, bucket: Bucket, stateRow: string): Position {
  if (stored.watermark > nowMs) {
    throw new CatalogError(
      stateRow,
      `watermark ${instant(stored.watermark)} is ahead of the database clock (${instant(nowMs)}); refusing to write. ` +
        'Was it set from another clock? Fix the row in housekeeping.rollup_state.',
    );
  }
  return {
    from: floorToBucket(stored.watermark, bucket),
    expected: stored.watermarkText,
    expectedMs: stored.watermark,
    ...(stored.aligned ? {} : { floored: { stored: stored.watermarkText } }),
  };
}

/**
 * Published buckets that may have changed: the last `lookbackBuckets` before `from`, then the
 * buckets holding rows changed since the last look, merged into ranges of adjacent buckets (a
 * thousand late rows in one hour cost one recompute). Each is recomputed whole, never patched.
 */
export function recomputeRanges(from: number, lookbackBuckets: number, bucket: Bucket, changedBuckets: number[]): Array<[number, number]> {
  const lookback: Array<[number, number]> = lookbackBuckets > 0 ? [[from - lookbackBuckets * BUCKET_MS[bucket], from]] : [];
  return [...lookback, ...mergeBuckets(changedBuckets, bucket)];
}

/** The end of the slice starting at `from`: `sliceBuckets` buckets on, never past `to`. */
export function sliceEnd(from: number, to: number, sliceBuckets: number, bucket: Bucket): number {
  return Math.min(to, from + sliceBuckets * BUCKET_MS[bucket]);
}

/** [from, to) in slices of `sliceBuckets` buckets, one transaction each. */
export function slices(from: number, to: number, sliceBuckets: number, bucket: Bucket): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let start = from; start < to; start = sliceEnd(start, to, sliceBuckets, bucket)) out.push([start, sliceEnd(start, to, sliceBuckets, bucket)]);
  return out;
}

/** How far the published rollup trails the database clock, in whole seconds. */
export function lagSeconds(nowMs: number, watermarkMs: number): number {
  return Math.max(0, Math.round((nowMs - watermarkMs) / 1000));
}
