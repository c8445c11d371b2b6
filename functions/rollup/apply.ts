import type pg from 'pg';
import { inTransaction } from '../../shared/db';
import { CatalogError } from '../../shared/errors';
import type { StopReason, TargetContext, TargetOutcome } from '../../shared/job';
import { queryOne, sleep } from '../../shared/postgres';
import { BUCKET_MS, instant } from './buckets';
import type { RollupCatalog } from './catalog';
import { lagSeconds, type Position, type StoredState, sliceEnd, slices } from './plan';
import type { RollupEvent, RollupPolicy } from './policy';
import { type RecomputeRow, renderRecompute } from './sql';
import { advanceChangesSeenUntil, advanceWatermark, readState } from './state';

/** Watermark moves by other sessions one run tolerates (honouring each) before it stops the target. */
const MAX_FOREIGN_MOVES = 3;

/** A slice is never started with less time than this left, however quick the slices so far. */
const MIN_SLICE_ALLOWANCE_MS = 2_000;

export interface RollupWork {
  catalog: RollupCatalog;
  nowMs: number;
  /** The newest boundary this run publishes. */
  upper: number;
  /** Where the watermark is, and what a compare-and-set expects. */
  position: Position;
  /** Published ranges to recompute first (lookback, changed buckets). */
  ranges: Array<[number, number]>;
  /** With a changed-at column: the horizon to record once the ranges are done, and the value the state row holds now. */
  changes?: { horizon: number; expected: string | null };
  /** The state row's name in messages. */
  stateRow: string;
  /** Where to go on from a state another session wrote (plans and reports a floored watermark). */
  resume(stored: StoredState): Position;
  notes: string[];
}

/**
 * The rollup's writes: published ranges recomputed slice by slice (the watermark stays), the
 * changed-at horizon moved once they are all done, then the watermark advanced slice by slice up
 * to the upper bound, each slice and its watermark move one transaction. Stops before a slice
 * that might not fit the budget; honours a watermark another session moved.
 */
export async function applyRollup(context: TargetContext<RollupPolicy, RollupEvent>, work: RollupWork): Promise<TargetOutcome> {
  const { client, policy, logger, budget } = context;
  const { notes } = work;
  const size = BUCKET_MS[policy.bucket];
  const counts = { slices: 0, bucketsWritten: 0, targetRowsWritten: 0, sourceRowsRead: 0, recomputedRanges: 0, lagSeconds: 0 };

  /** Recomputes [from, to) in the caller's transaction. */
  const recompute = async (c: pg.ClientBase, from: number, to: number) => {
    const statements = renderRecompute(policy, work.catalog, from, to);
    for (const statement of statements.slice(0, -1)) await c.query(statement);
    const row = await queryOne<RecomputeRow>(c, statements[statements.length - 1]!);
    return { written: Number(row.written ?? 0), rowsRead: Number(row.rows_read ?? 0) };
  };
  const tally = (from: number, to: number, result: { written: number; rowsRead: number }) => {
    counts.slices++;
    counts.bucketsWritten += Math.round((to - from) / size);
    counts.targetRowsWritten += result.written;
    counts.sourceRowsRead += result.rowsRead;
  };
  /** Recomputes published buckets; the watermark stays where it is. */
  const recomputeOnly = async (from: number, to: number) => tally(from, to, await inTransaction(client, () => recompute(client, from, to)));
  /**
   * Recomputes [from, to) and moves the watermark to `to` in one transaction (after a crash the
   * watermark never claims an uncommitted slice), but only from the value this run last saw: the
   * compare-and-set comes first, and one that finds the watermark moved makes the slice write
   * nothing. Returns the watermark as now stored, or null if it had moved.
   */
  const advance = async (from: number, to: number, expected: string): Promise<string | null> => {
    const moved = await inTransaction(client, async () => {
      const stored = await advanceWatermark(client, policy.name, to, expected);
      return stored === null ? null : { stored, window: await recompute(client, from, to) };
    });
    if (moved) tally(from, to, moved.window);
    return moved?.stored ?? null;
  };
  let longestSliceMs = 0;
  const fits = () => budget.allows(Math.max(MIN_SLICE_ALLOWANCE_MS, longestSliceMs * 2) + policy.pauseMs);
  const timed = async <T>(slice: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    const result = await slice();
    longestSliceMs = Math.max(longestSliceMs, performance.now() - started);
    if (policy.pauseMs > 0) await sleep(policy.pauseMs);
    return result;
  };

  // 1. Already-published buckets that may have changed, recomputed whole.
  let stopReason: StopReason = 'done';
  let rangesDone = true;
  for (const [from, to] of work.ranges) {
    for (const [sliceFrom, sliceTo] of slices(from, to, policy.sliceBuckets, policy.bucket)) {
      if (!fits()) {
        rangesDone = false;
        break;
      }
      await timed(() => recomputeOnly(sliceFrom, sliceTo));
    }
    if (!rangesDone) break;
    counts.recomputedRanges++;
  }
  if (rangesDone && work.changes) {
    // Compare-and-set too: an operator who moved it back during the run asked for a wider rescan.
    if (!(await advanceChangesSeenUntil(client, policy.name, work.changes.horizon, work.changes.expected))) {
      logger.warn('changes_seen_until moved by another session during this run; left as it is for the next run', { expected: work.changes.expected });
      notes.push(`changes_seen_until was moved by another session during this run; the next run scans from its new value`);
    }
  }

  // 2. Advance the watermark slice by slice (a backfill is just a long advance).
  let watermark = work.position.from;
  let expected = work.position.expected;
  let expectedMs = work.position.expectedMs;
  let foreignMoves = 0;
  while (watermark < work.upper) {
    if (!fits()) {
      stopReason = 'time budget nearly spent';
      break;
    }
    const from = watermark;
    const end = sliceEnd(from, work.upper, policy.sliceBuckets, policy.bucket);
    const stored = await timed(() => advance(from, end, expected));
    if (stored !== null) {
      watermark = expectedMs = end;
      expected = stored;
      continue;
    }
    // Someone else moved it (an operator's reset, most likely): honour it, never overwrite it.
    const current = await readState(client, policy.name, policy.bucket);
    if (!current) throw new CatalogError(work.stateRow, `the row was deleted while this run was advancing it; nothing more was written`);
    logger.warn('watermark moved by another session during this run; continuing from it', {
      expected: instant(expectedMs),
      found: instant(current.watermark),
    });
    notes.push(`watermark moved by another session during this run from ${expected} to ${current.watermarkText}; continued from there`);
    if (++foreignMoves > MAX_FOREIGN_MOVES) {
      counts.lagSeconds = lagSeconds(work.nowMs, current.watermark);
      return {
        counts,
        notes,
        failure:
          `${work.stateRow}: the watermark was moved by another session ${foreignMoves} times during this run; stopped without overwriting it. ` +
          "Is something else (another entry point without this rollup's lock) writing housekeeping.rollup_state?",
      };
    }
    ({ from: watermark, expected, expectedMs } = work.resume(current));
  }
  if (!rangesDone) stopReason = 'time budget nearly spent';
  counts.lagSeconds = lagSeconds(work.nowMs, watermark);
  logger.info('rollup watermark', { watermark: instant(watermark), upperBound: instant(work.upper), lagSeconds: counts.lagSeconds });
  return { counts, stopReason, notes };
}
