import type pg from 'pg';
import { inTransaction, relationExists } from '../../shared/db';
import { CatalogError } from '../../shared/errors';
import { databaseNow, sleep } from '../../shared/postgres';
import { parseQualifiedName, quoteIdent, quoteQualified } from '../../shared/identifiers';
import type { JobDefinition, StopReason, TargetContext, TargetOutcome } from '../../shared/job';
import { BUCKET_MS, floorToBucket, instant, mergeBuckets, upperBound } from './buckets';
import { blindness, describeHolder, readFence } from './fence';
import { rollupTargetSchema, type RollupEvent, type RollupPolicy } from './policy';
import { prepareRecompute, type WindowResult } from './window';

/** Where a run reads the database clock; tests inject a later one to put an open transaction behind a bucket boundary. */
export type ReadNow = (client: pg.ClientBase) => Promise<Date>;

interface State {
  /** The watermark exactly as stored (microseconds kept): what a compare-and-set compares with. */
  watermarkText: string;
  watermark: number;
  /** Whether the watermark is a bucket start of this rollup's bucket. */
  aligned: boolean;
  changesText: string | null;
}

/** The rollup's state, or undefined before its first run (or before any migration, in a dry run). */
async function readState(client: pg.ClientBase, name: string, bucket: RollupPolicy['bucket']): Promise<State | undefined> {
  if (!(await relationExists(client, 'housekeeping.rollup_state'))) return undefined;
  const { rows } = await client.query<{ watermark: Date; watermark_text: string; aligned: boolean; changes_text: string | null }>(
    `SELECT watermark, watermark::text AS watermark_text, watermark = date_trunc($2::text, watermark) AS aligned,
            changes_seen_until::text AS changes_text
     FROM housekeeping.rollup_state WHERE name = $1`,
    [name, bucket],
  );
  const row = rows[0];
  return row && { watermarkText: row.watermark_text, watermark: row.watermark.getTime(), aligned: row.aligned, changesText: row.changes_text };
}

/** Watermark moves by other sessions one run tolerates (honouring each) before it stops the target. */
const MAX_FOREIGN_MOVES = 3;

export async function runRollupTarget(context: TargetContext<RollupPolicy, RollupEvent>, readNow?: ReadNow): Promise<TargetOutcome> {
  const { client, policy, logger, budget } = context;
  const recompute = await prepareRecompute(client, policy);
  const source = quoteQualified(parseQualifiedName(policy.source, 'source'));
  const time = quoteIdent(policy.timeColumn);
  const size = BUCKET_MS[policy.bucket];
  const stateRow = `housekeeping.rollup_state(${policy.name})`;
  // The clock first, then the fence: a transaction that began before `now` and is still open when
  // the fence is read is in it; one that committed in between is visible to every read below.
  const now = await (readNow ?? databaseNow)(client);
  const nowMs = now.getTime();
  const fence = await readFence(client);
  const fenceMs = fence.at?.getTime() ?? null;
  const upper = upperBound(nowMs, policy.settleDelayMinutes, fenceMs, policy.bucket);
  const unfenced = upperBound(nowMs, policy.settleDelayMinutes, null, policy.bucket);
  // Rows changed at or after this may still be invisible to us (or not yet written).
  const changesHorizon = Math.min(nowMs, fenceMs ?? Number.POSITIVE_INFINITY);
  const notes: string[] = [];
  if (fence.holder) {
    logger.info('rollup fence', { fence: fence.holder.since, holder: fence.holder, upperBoundHeldBack: upper < unfenced });
    if (upper < unfenced) notes.push(`upper bound held back to ${instant(upper)} by ${describeHolder(fence.holder)}`);
    else if (policy.changedAtColumn) notes.push(`changed-at horizon held at ${fence.holder.since} by ${describeHolder(fence.holder)}`);
  }
  const blind = blindness(fence);
  if (blind) {
    logger.warn(blind, { role: fence.role, hiddenSessions: fence.hidden.sessions, hiddenWriting: fence.hidden.writing });
    notes.push(`warning: ${blind}`);
  }

  /**
   * Where to work from, given the stored state: refuses a watermark ahead of the clock, and floors
   * one that is not a bucket start (a reset typed in another session's zone, or a bucket change
   * from hour to day): recomputing from the whole bucket is always safe, a window starting
   * mid-bucket would write a partial bucket beside the whole one.
   */
  const positionOf = (stored: State) => {
    if (stored.watermark > nowMs) {
      throw new CatalogError(
        stateRow,
        `watermark ${instant(stored.watermark)} is ahead of the database clock (${instant(nowMs)}); refusing to write. ` +
          'Was it set from another clock? Fix the row in housekeeping.rollup_state.',
      );
    }
    const from = floorToBucket(stored.watermark, policy.bucket);
    if (!stored.aligned) {
      logger.warn('watermark not on a bucket boundary: recomputing from the start of its bucket', {
        stored: stored.watermarkText,
        bucket: policy.bucket,
        flooredTo: instant(from),
      });
      notes.push(`watermark ${stored.watermarkText} is not on a ${policy.bucket} boundary: recomputed from ${instant(from)}`);
    }
    return { from, expected: stored.watermarkText, expectedMs: stored.watermark };
  };

  let state = await readState(client, policy.name, policy.bucket);
  const counts = { slices: 0, bucketsWritten: 0, targetRowsWritten: 0, sourceRowsRead: 0, recomputedRanges: 0, lagSeconds: 0 };
  const lag = (watermark: number) => Math.max(0, Math.round((nowMs - watermark) / 1000));

  if (!state) {
    const { rows } = await client.query<{ first: Date | null }>(`SELECT min(${time}) AS first FROM ${source}`);
    const first = rows[0]!.first;
    // An empty source has nothing to roll up: the watermark starts at the upper bound. So does
    // a source whose rows are all in the future: a watermark must never pass the database clock.
    const start = first ? Math.min(floorToBucket(first.getTime(), policy.bucket), upper) : upper;
    if (context.dryRun) {
      return { counts: { ...counts, lagSeconds: lag(start) }, notes: [...notes, `-- dry run: would backfill from ${instant(start)} to ${instant(upper)}`] };
    }
    await client.query(
      `INSERT INTO housekeeping.rollup_state (name, watermark, changes_seen_until) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING`,
      [policy.name, instant(start), instant(changesHorizon)],
    );
    state = (await readState(client, policy.name, policy.bucket))!;
  }
  const position = positionOf(state);
  if (context.dryRun) {
    const behind = Math.max(0, Math.ceil((upper - position.from) / size));
    return {
      counts: { ...counts, lagSeconds: lag(position.from) },
      notes: [...notes, `-- dry run: watermark ${instant(position.from)}, ${behind} bucket(s) to advance, lookback ${policy.lookbackBuckets}`],
    };
  }

  const tally = (from: number, to: number, result: WindowResult) => {
    counts.slices++;
    counts.bucketsWritten += Math.round((to - from) / size);
    counts.targetRowsWritten += result.written;
    counts.sourceRowsRead += result.rowsRead;
  };
  /** Recomputes published buckets; the watermark stays where it is. */
  const recomputeOnly = async (from: number, to: number) => tally(from, to, await inTransaction(client, () => recompute(client, from, to)));
  /**
   * Recomputes [from, to) and moves the watermark to `to` in one transaction (after a crash the
   * watermark never claims an uncommitted slice), but only from the value this run last saw.
   * The compare-and-set comes first and takes the state row's lock: an operator's UPDATE waits
   * for this slice rather than being overwritten by it, and one that got in before makes this
   * slice write nothing. Returns the watermark as now stored, or null if it had moved.
   */
  const advance = async (from: number, to: number, expected: string): Promise<string | null> => {
    const moved = await inTransaction(client, async () => {
      const { rows } = await client.query<{ stored: string }>(
        `UPDATE housekeeping.rollup_state SET watermark = $2, updated_at = now()
         WHERE name = $1 AND watermark = $3::timestamptz RETURNING watermark::text AS stored`,
        [policy.name, instant(to), expected],
      );
      return rows[0] ? { stored: rows[0].stored, window: await recompute(client, from, to) } : null;
    });
    if (moved) tally(from, to, moved.window);
    return moved?.stored ?? null;
  };
  let longestSliceMs = 0;
  const fits = () => budget.allows(Math.max(2_000, longestSliceMs * 2) + policy.pauseMs);
  const timed = async <T>(work: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    const result = await work();
    longestSliceMs = Math.max(longestSliceMs, performance.now() - started);
    if (policy.pauseMs > 0) await sleep(policy.pauseMs);
    return result;
  };

  // 1. Already-published buckets that may have changed: the lookback, and buckets holding rows
  //    changed since the last look. They are recomputed whole, never patched.
  const lookbackFrom = position.from - policy.lookbackBuckets * size;
  const ranges: Array<[number, number]> = policy.lookbackBuckets > 0 ? [[lookbackFrom, position.from]] : [];
  if (policy.changedAtColumn && state.changesText !== null) {
    const changedAt = quoteIdent(policy.changedAtColumn);
    // Untyped parameters take the columns' own types: for `timestamp` columns the UTC wall clock.
    const { rows } = await client.query<{ bucket: Date }>(
      `SELECT DISTINCT date_trunc($3::text, ${time}) AS bucket FROM ${source} WHERE ${changedAt} >= $1 AND ${time} < $2`,
      [state.changesText, instant(lookbackFrom), policy.bucket],
    );
    ranges.push(...mergeBuckets(rows.map((r) => r.bucket.getTime()), policy.bucket));
  }
  let stopReason: StopReason = 'caught up';
  let rangesDone = true;
  for (const [from, to] of ranges) {
    for (let sliceFrom = from; sliceFrom < to; sliceFrom += policy.sliceBuckets * size) {
      if (!fits()) {
        rangesDone = false;
        break;
      }
      await timed(() => recomputeOnly(sliceFrom, Math.min(to, sliceFrom + policy.sliceBuckets * size)));
    }
    if (!rangesDone) break;
    counts.recomputedRanges++;
  }
  if (rangesDone && policy.changedAtColumn) {
    // Compare-and-set too: an operator who moved it back during the run asked for a wider rescan.
    const { rowCount } = await client.query(
      `UPDATE housekeeping.rollup_state SET changes_seen_until = $2 WHERE name = $1 AND changes_seen_until IS NOT DISTINCT FROM $3::timestamptz`,
      [policy.name, instant(changesHorizon), state.changesText],
    );
    if (rowCount === 0) {
      logger.warn('changes_seen_until moved by another session during this run; left as it is for the next run', { expected: state.changesText });
      notes.push(`changes_seen_until was moved by another session during this run; the next run scans from its new value`);
    }
  }

  // 2. Advance the watermark slice by slice (a backfill is just a long advance).
  let watermark = position.from;
  let expected = position.expected;
  let expectedMs = position.expectedMs;
  let foreignMoves = 0;
  while (watermark < upper) {
    if (!fits()) {
      stopReason = 'time budget nearly spent';
      break;
    }
    const from = watermark;
    const end = Math.min(upper, from + policy.sliceBuckets * size);
    const stored = await timed(() => advance(from, end, expected));
    if (stored !== null) {
      watermark = expectedMs = end;
      expected = stored;
      continue;
    }
    // Someone else moved it (an operator's reset, most likely): honour it, never overwrite it.
    const current = await readState(client, policy.name, policy.bucket);
    if (!current) throw new CatalogError(stateRow, `the row was deleted while this run was advancing it; nothing more was written`);
    logger.warn('watermark moved by another session during this run; continuing from it', {
      expected: instant(expectedMs),
      found: instant(current.watermark),
    });
    notes.push(`watermark moved by another session during this run from ${expected} to ${current.watermarkText}; continued from there`);
    if (++foreignMoves > MAX_FOREIGN_MOVES) {
      counts.lagSeconds = lag(current.watermark);
      return {
        counts,
        notes,
        failure:
          `${stateRow}: the watermark was moved by another session ${foreignMoves} times during this run; stopped without overwriting it. ` +
          'Is something else (another entry point without this rollup\'s lock) writing housekeeping.rollup_state?',
      };
    }
    ({ from: watermark, expected, expectedMs } = positionOf(current));
  }
  if (!rangesDone) stopReason = 'time budget nearly spent';
  counts.lagSeconds = lag(watermark);
  logger.info('rollup watermark', { watermark: instant(watermark), upperBound: instant(upper), lagSeconds: counts.lagSeconds });
  return { counts, stopReason, notes };
}

export function createRollupJob(options: { readNow?: ReadNow } = {}): JobDefinition<typeof rollupTargetSchema, RollupEvent> {
  return {
    job: 'rollup',
    targetSchema: rollupTargetSchema,
    targetName: (policy) => policy.name,
    lockKey: (policy) => policy.lockKey,
    runTarget: (context) => runRollupTarget(context, options.readNow),
  };
}

export const rollupJob = createRollupJob();
