import type pg from 'pg';
import { inTransaction, relationExists } from '../../shared/db';
import { CatalogError } from '../../shared/errors';
import { databaseNow, sleep } from '../../shared/postgres';
import { parseQualifiedName, quoteIdent, quoteQualified } from '../../shared/identifiers';
import type { JobDefinition, TargetContext, TargetOutcome } from '../../shared/run-job';
import { BUCKET_MS, floorToBucket, mergeBuckets, upperBound } from './buckets';
import { blindness, describeHolder, readFence } from './fence';
import { rollupTargetSchema, type RollupEvent, type RollupPolicy } from './policy';
import { prepareRecompute } from './window';

/** Where a run reads the database clock; tests inject a later one to put an open transaction behind a bucket boundary. */
export type ReadNow = (client: pg.ClientBase) => Promise<Date>;

interface State {
  watermark: Date;
  changes_seen_until: Date | null;
}

/** The rollup's state, or undefined before its first run (or before any migration, in a dry run). */
async function readState(client: pg.ClientBase, name: string): Promise<State | undefined> {
  if (!(await relationExists(client, 'housekeeping.rollup_state'))) return undefined;
  const { rows } = await client.query<State>(`SELECT watermark, changes_seen_until FROM housekeeping.rollup_state WHERE name = $1`, [name]);
  return rows[0];
}

export async function runRollupTarget(context: TargetContext<RollupPolicy, RollupEvent>, readNow?: ReadNow): Promise<TargetOutcome> {
  const { client, policy, logger, budget } = context;
  const recompute = await prepareRecompute(client, policy);
  const source = quoteQualified(parseQualifiedName(policy.source, 'source'));
  const time = quoteIdent(policy.timeColumn);
  const size = BUCKET_MS[policy.bucket];
  // The clock first, then the fence: a transaction that began before `now` and is still open when
  // the fence is read is in it; one that committed in between is visible to every read below.
  const now = await (readNow ?? databaseNow)(client);
  const nowMs = now.getTime();
  const fence = await readFence(client);
  const fenceMs = fence.at?.getTime() ?? null;
  const upper = upperBound(nowMs, policy.settleDelayMinutes, fenceMs, policy.bucket);
  const unfenced = upperBound(nowMs, policy.settleDelayMinutes, null, policy.bucket);
  const notes: string[] = [];
  if (fence.holder) {
    logger.info('rollup fence', { fence: fence.holder.since, holder: fence.holder, upperBoundHeldBack: upper < unfenced });
    if (upper < unfenced) notes.push(`upper bound held back to ${new Date(upper).toISOString()} by ${describeHolder(fence.holder)}`);
    else if (policy.changedAtColumn) notes.push(`changed-at horizon held at ${fence.holder.since} by ${describeHolder(fence.holder)}`);
  }
  const blind = blindness(fence);
  if (blind) {
    logger.warn(blind, { role: fence.role, hiddenSessions: fence.hidden.sessions, hiddenWriting: fence.hidden.writing });
    notes.push(`warning: ${blind}`);
  }

  let state = await readState(client, policy.name);
  if (state && state.watermark.getTime() > nowMs) {
    throw new CatalogError(
      `housekeeping.rollup_state(${policy.name})`,
      `watermark ${state.watermark.toISOString()} is ahead of the database clock (${now.toISOString()}); refusing to write. ` +
        'Was it set from another clock? Fix the row in housekeeping.rollup_state.',
    );
  }
  const counts = { slices: 0, bucketsWritten: 0, targetRowsWritten: 0, sourceRowsRead: 0, recomputedRanges: 0, lagSeconds: 0 };
  const lag = (watermark: number) => Math.max(0, Math.round((nowMs - watermark) / 1000));

  if (!state) {
    const { rows } = await client.query<{ first: Date | null }>(`SELECT min(${time}) AS first FROM ${source}`);
    const first = rows[0]!.first;
    // An empty source has nothing to roll up: the watermark starts at the upper bound. So does
    // a source whose rows are all in the future: a watermark must never pass the database clock.
    const start = first ? Math.min(floorToBucket(first.getTime(), policy.bucket), upper) : upper;
    if (context.dryRun) {
      return { counts: { ...counts, lagSeconds: lag(start) }, notes: [...notes, `-- dry run: would backfill from ${new Date(start).toISOString()} to ${new Date(upper).toISOString()}`] };
    }
    await client.query(
      `INSERT INTO housekeeping.rollup_state (name, watermark, changes_seen_until) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING`,
      [policy.name, new Date(start), now],
    );
    state = (await readState(client, policy.name))!;
  }
  const startWatermark = state.watermark.getTime();
  if (context.dryRun) {
    const behind = Math.max(0, Math.ceil((upper - startWatermark) / size));
    return {
      counts: { ...counts, lagSeconds: lag(startWatermark) },
      notes: [...notes, `-- dry run: watermark ${state.watermark.toISOString()}, ${behind} bucket(s) to advance, lookback ${policy.lookbackBuckets}`],
    };
  }

  const run = async (from: number, to: number, moveWatermark: boolean) => {
    const result = await inTransaction(client, async () => {
      const window = await recompute(client, new Date(from), new Date(to));
      // Same transaction as the slice: after a crash the watermark never claims an uncommitted slice.
      if (moveWatermark) await client.query(`UPDATE housekeeping.rollup_state SET watermark = $2, updated_at = now() WHERE name = $1`, [policy.name, new Date(to)]);
      return window;
    });
    counts.slices++;
    counts.bucketsWritten += Math.round((to - from) / size);
    counts.targetRowsWritten += result.written;
    counts.sourceRowsRead += result.rowsRead;
  };
  let longestSliceMs = 0;
  const fits = () => budget.allows(Math.max(2_000, longestSliceMs * 2) + policy.pauseMs);
  const timed = async (work: () => Promise<void>) => {
    const started = performance.now();
    await work();
    longestSliceMs = Math.max(longestSliceMs, performance.now() - started);
    if (policy.pauseMs > 0) await sleep(policy.pauseMs);
  };

  // 1. Already-published buckets that may have changed: the lookback, and buckets holding rows
  //    changed since the last look. They are recomputed whole, never patched.
  const lookbackFrom = startWatermark - policy.lookbackBuckets * size;
  const ranges: Array<[number, number]> = policy.lookbackBuckets > 0 ? [[lookbackFrom, startWatermark]] : [];
  const changesHorizon = Math.min(nowMs, fenceMs ?? Number.POSITIVE_INFINITY);
  if (policy.changedAtColumn && state.changes_seen_until) {
    const changedAt = quoteIdent(policy.changedAtColumn);
    const { rows } = await client.query<{ bucket: Date }>(
      `SELECT DISTINCT date_trunc('${policy.bucket}', ${time}) AS bucket FROM ${source}
       WHERE ${changedAt} >= $1 AND ${time} < $2`,
      [state.changes_seen_until, new Date(lookbackFrom)],
    );
    ranges.push(...mergeBuckets(rows.map((r) => r.bucket.getTime()), policy.bucket));
  }
  let stopReason = 'caught up';
  let rangesDone = true;
  for (const [from, to] of ranges) {
    for (let sliceFrom = from; sliceFrom < to; sliceFrom += policy.sliceBuckets * size) {
      if (!fits()) {
        rangesDone = false;
        break;
      }
      await timed(() => run(sliceFrom, Math.min(to, sliceFrom + policy.sliceBuckets * size), false));
    }
    if (!rangesDone) break;
    counts.recomputedRanges++;
  }
  if (rangesDone && policy.changedAtColumn) {
    await client.query(`UPDATE housekeeping.rollup_state SET changes_seen_until = $2 WHERE name = $1`, [policy.name, new Date(changesHorizon)]);
  }

  // 2. Advance the watermark slice by slice (a backfill is just a long advance).
  let watermark = startWatermark;
  while (watermark < upper) {
    if (!fits()) {
      stopReason = 'time budget nearly spent';
      break;
    }
    const end = Math.min(upper, watermark + policy.sliceBuckets * size);
    await timed(() => run(watermark, end, true));
    watermark = end;
  }
  if (!rangesDone) stopReason = 'time budget nearly spent';
  counts.lagSeconds = lag(watermark);
  logger.info('rollup watermark', { watermark: new Date(watermark).toISOString(), upperBound: new Date(upper).toISOString(), lagSeconds: counts.lagSeconds });
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
