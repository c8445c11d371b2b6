import type pg from 'pg';
import { displayName, parseQualifiedName } from '../../shared/identifiers';
import type { JobDefinition, TargetContext, TargetOutcome } from '../../shared/job';
import { databaseNow, queryOne } from '../../shared/postgres';
import { applyRollup } from './apply';
import { BUCKET_MS, instant } from './buckets';
import { readRollupCatalog } from './catalog';
import { blindness, describeHolder, readFence } from './fence';
import rollupState from './migrations/0003_rollup_state';
import { changesHorizon, initialWatermark, lagSeconds, positionOf, recomputeRanges, type StoredState, upperBound } from './plan';
import { type RollupEvent, type RollupEventInput, type RollupPolicy, rollupEventSchema, rollupTargetSchema } from './policy';
import { renderChangedBuckets, renderFirstEvent } from './sql';
import { createState, readState } from './state';

/** Where a run reads the database clock; tests inject a later one to put an open transaction behind a bucket boundary. */
export type ReadNow = (client: pg.ClientBase) => Promise<Date>;

/**
 * One rollup target: read (the catalog check, the database clock, then the fence, then the
 * state row), plan (upper bound, where to start, which published buckets to recompute), apply
 * (slices; a dry run says how far it would go instead).
 */
async function runRollupTarget(context: TargetContext<RollupPolicy, RollupEvent>, readNow?: ReadNow): Promise<TargetOutcome> {
  const { client, policy, logger } = context;
  const catalog = await readRollupCatalog(client, policy);
  const stateRow = `housekeeping.rollup_state(${policy.name})`;
  // The clock first, then the fence: a transaction that began before `now` and is still open when
  // the fence is read is in it; one that committed in between is visible to every read below.
  const nowMs = (await (readNow ?? databaseNow)(client)).getTime();
  const fence = await readFence(client);
  const fenceMs = fence.at?.getTime() ?? null;
  const upper = upperBound(nowMs, policy.settleDelayMinutes, fenceMs, policy.bucket);
  const unfenced = upperBound(nowMs, policy.settleDelayMinutes, null, policy.bucket);
  const horizon = changesHorizon(nowMs, fenceMs, catalog.changedAtPrecision);
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
  const empty = { slices: 0, bucketsWritten: 0, targetRowsWritten: 0, sourceRowsRead: 0, recomputedRanges: 0, lagSeconds: 0 };

  /** Where to work from; a watermark off the bucket grid is floored, and the run says so. */
  const resume = (stored: StoredState) => {
    const position = positionOf(stored, nowMs, policy.bucket, stateRow);
    if (position.floored) {
      logger.warn('watermark not on a bucket boundary: recomputing from the start of its bucket', {
        stored: position.floored.stored,
        bucket: policy.bucket,
        flooredTo: instant(position.from),
      });
      notes.push(`watermark ${position.floored.stored} is not on a ${policy.bucket} boundary: recomputed from ${instant(position.from)}`);
    }
    return position;
  };

  let state = await readState(client, policy.name, policy.bucket);
  if (!state) {
    const { first } = await queryOne<{ first: Date | null }>(client, renderFirstEvent(policy, catalog));
    const start = initialWatermark(first?.getTime() ?? null, upper, policy.bucket);
    if (context.dryRun) {
      return {
        counts: { ...empty, lagSeconds: lagSeconds(nowMs, start) },
        notes: [...notes, `-- dry run: would backfill from ${instant(start)} to ${instant(upper)}`],
      };
    }
    await createState(client, policy.name, start, horizon);
    state = (await readState(client, policy.name, policy.bucket))!;
  }
  const position = resume(state);
  if (context.dryRun) {
    const behind = Math.max(0, Math.ceil((upper - position.from) / BUCKET_MS[policy.bucket]));
    return {
      counts: { ...empty, lagSeconds: lagSeconds(nowMs, position.from) },
      notes: [...notes, `-- dry run: watermark ${instant(position.from)}, ${behind} bucket(s) to advance, lookback ${policy.lookbackBuckets}`],
    };
  }

  const lookbackFrom = position.from - policy.lookbackBuckets * BUCKET_MS[policy.bucket];
  const changesSince = policy.changedAtColumn ? state.changesText : null;
  const changed =
    policy.changedAtColumn && changesSince !== null
      ? (
          await client.query<{ bucket: Date }>(
            renderChangedBuckets({ ...policy, changedAtColumn: policy.changedAtColumn }, catalog, changesSince, lookbackFrom),
          )
        ).rows.map((r) => r.bucket.getTime())
      : [];
  return applyRollup(context, {
    catalog,
    nowMs,
    upper,
    position,
    ranges: recomputeRanges(position.from, policy.lookbackBuckets, policy.bucket, changed),
    ...(policy.changedAtColumn ? { changes: { horizon, expected: state.changesText } } : {}),
    stateRow,
    resume,
    notes,
  });
}

export const rollupJob = {
  job: 'rollup',
  eventSchema: rollupEventSchema,
  targetSchema: rollupTargetSchema,
  targetName: (policy) => policy.name,
  targetDescription: "the rollup's name",
  lockKey: (policy) => policy.lockKey,
  // A spec rollup deletes each window of its target whole; a function decides for itself.
  exclusiveOutput: (policy) => (policy.spec ? { field: 'target', table: displayName(parseQualifiedName(policy.target, 'target')) } : undefined),
  runTarget: (context) => runRollupTarget(context),
  stopReasons: ['done', 'time budget nearly spent'],
  metrics: {
    /** Database now − watermark, per rollup that succeeded: the number to alarm on. */
    lag: { name: 'RollupLagSeconds', unit: 'Seconds', value: (t) => (t.state === 'succeeded' ? t.counts.lagSeconds : undefined) },
  },
  remainingCount: 'lagSeconds',
  migrations: [{ version: 3, name: 'rollup_state', sql: rollupState }],
  // Every few minutes: the next tick is the retry.
  lambda: { timeoutSeconds: 900, retryAttempts: 0 },
} satisfies JobDefinition<typeof rollupTargetSchema, RollupEvent, RollupEventInput>;

/** The rollup job reading the database clock through `readNow` (tests move the clock). */
export function createRollupJob(options: { readNow: ReadNow }): typeof rollupJob {
  return { ...rollupJob, runTarget: (context) => runRollupTarget(context, options.readNow) };
}
