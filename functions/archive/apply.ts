import { inTransaction } from '../../shared/db';
import { errorMessage } from '../../shared/errors';
import type { StopReason, TargetContext, TargetOutcome } from '../../shared/job';
import { withLockRetry } from '../../shared/lock-retry';
import { queryOne, SQLSTATE, sleep, sqlState } from '../../shared/postgres';
import type { Sql } from '../../shared/sql';
import { ArchiveBatchRefused, type ArchiveDestination } from './destination';
import { nextBatch } from './plan';
import type { ArchiveEvent, ArchiveTargetPolicy } from './policy';
import type { ArchiveStatements, BatchResult } from './sql';

/** How long a batch may wait for a row another session holds before it is redone skipping such rows. */
export const ROW_LOCK_PATIENCE_MS = 20;
/** After meeting a held row, this many batches lock-and-skip straight away. */
const SKIP_LOCKED_STREAK = 10;

/** Why a batch that ran must not commit, or undefined. */
function batchProblem(batch: BatchResult, policy: ArchiveTargetPolicy, table: string | undefined, keyColumns: string[]): string | undefined {
  if (!table) return undefined;
  if (batch.collision_count > 0) {
    const keys =
      `${keyColumns.length === 1 ? keyColumns[0] : `(${keyColumns.join(', ')})`} ${batch.collisions.join(', ')}` +
      (batch.collision_count > batch.collisions.length ? ` and ${batch.collision_count - batch.collisions.length} more` : '');
    return (
      `${table} already holds ${batch.collision_count} key(s) of expired ${policy.source} rows with different contents: ${keys}. ` +
      `Nothing of this batch was moved (batches before it stay moved). Both versions are kept: compare them, then delete or rename the one that is wrong ` +
      `(a reset sequence, a restore, or two sources writing into one archive)`
    );
  }
  if (batch.moved !== batch.inserted + batch.identical || batch.altered > 0) {
    return (
      `${table} did not receive every row this batch deleted unchanged (deleted ${batch.moved}, inserted ${batch.inserted}, ` +
      `already archived ${batch.identical}, changed on the way ${batch.altered}); the batch was rolled back. A trigger on ${table} ` +
      `skips or rewrites rows: fix it, or archive into a table without it`
    );
  }
  return undefined;
}

/** What the table destination needs besides the rendered statements. */
export interface TableInfo {
  /** The archive table, undefined in purge mode. */
  table: string | undefined;
  keyColumns: string[];
  destinationHasTriggers: boolean;
}

/**
 * The archive table (or, without one, purge): each batch is one statement that picks, deletes
 * and inserts, so writing and committing with the delete are one step and there is never
 * anything to reconcile.
 */
export function tableDestination(
  context: TargetContext<ArchiveTargetPolicy, ArchiveEvent>,
  statements: ArchiveStatements,
  info: TableInfo,
): ArchiveDestination {
  const { client, policy, options, budget } = context;
  const retry = {
    client,
    action: `archive batch from ${policy.source}`,
    relations: [policy.source, ...(info.table ? [info.table] : [])],
    attempts: options.lockAttempts,
    lockTimeoutMs: ROW_LOCK_PATIENCE_MS,
    budget,
  };
  let skipLockedFor = 0;
  let lockedRowBatches = 0;
  /**
   * One batch. The plain batch is one statement in its own implicit transaction: its INSERT
   * takes every row its DELETE returns or fails whole, so there is nothing to decide after it,
   * and two round trips less per batch keep the fast path fast. A batch that compares with
   * archived copies, or writes into an archive whose triggers the policy allowed, can end with
   * rows it must not commit (a colliding key, a trigger that skipped or rewrote a row): it runs
   * in an explicit transaction that commits only if the checks pass.
   */
  const execute = async (statement: Sql, checked: boolean): Promise<BatchResult> => {
    if (!checked) {
      const batch = await queryOne<BatchResult>(client, statement);
      const problem = batchProblem(batch, policy, info.table, info.keyColumns);
      // Cannot happen (no trigger or rule runs here, see readArchiveCatalog); stop if it ever does.
      if (problem) throw new ArchiveBatchRefused(`${problem} (committed: report this)`);
      return batch;
    }
    return inTransaction(client, async () => {
      const batch = await queryOne<BatchResult>(client, statement);
      const problem = batchProblem(batch, policy, info.table, info.keyColumns);
      if (problem) throw new ArchiveBatchRefused(problem);
      return batch;
    });
  };
  /** One batch, escalating to SKIP LOCKED on a held row and to the row-by-row comparison on an archived key. */
  const runBatch = async (limit: number, afterKey: string[] | undefined): Promise<BatchResult> => {
    const flags = { limit, afterKey, skipLocked: skipLockedFor > 0, skipExisting: false };
    if (flags.skipLocked) lockedRowBatches++;
    for (;;) {
      try {
        return await execute(statements.batch(flags), flags.skipExisting || info.destinationHasTriggers);
      } catch (error) {
        const code = sqlState(error);
        if (code === SQLSTATE.lockNotAvailable && !flags.skipLocked) {
          flags.skipLocked = true;
          skipLockedFor = SKIP_LOCKED_STREAK;
          lockedRowBatches++;
        } else if (code === SQLSTATE.uniqueViolation && !flags.skipExisting && info.table) {
          flags.skipExisting = true;
        } else {
          throw error; // a table lock we could not get: withLockRetry backs off and retries
        }
      }
    }
  };
  return {
    name: info.table ?? policy.source,
    reconcile: async () => ({}),
    async moveBatch({ limit, afterKey }) {
      const batch = await withLockRetry(retry, () => runBatch(limit, afterKey));
      skipLockedFor = Math.max(0, skipLockedFor - 1);
      return batch;
    },
    /** Batches run with FOR UPDATE SKIP LOCKED because another session held rows. */
    counts: () => ({ lockedRowBatches }),
  };
}

export interface MoveInfo {
  countKey: 'rowsMoved' | 'rowsPurged';
  /** The planner's estimate of the expired rows, for progress. */
  estimatedTotal: number;
  /** Rows per batch: the policy's batchSize, or an S3 destination's rowsPerObject. */
  batchRows: number;
}

/**
 * The batch loop: each batch one transaction, until nothing expired is left to pick, the row cap
 * is reached, or the next batch might not fit the budget. A failing batch rolls back whole and
 * ends the run; what earlier batches moved stays moved and is reported.
 */
export async function moveBatches(
  context: TargetContext<ArchiveTargetPolicy, ArchiveEvent>,
  destination: ArchiveDestination,
  info: MoveInfo,
): Promise<TargetOutcome> {
  const { client, policy, options, logger, budget } = context;
  const started = performance.now();
  let moved = 0;
  let alreadyArchived = 0;
  let batches = 0;
  let longestBatchMs = 0;
  let lastKey: string[] | undefined;
  let stopReason: StopReason = 'done';
  let failure: string | undefined;
  const rate = () => moved / Math.max(0.001, (performance.now() - started) / 1000);

  // Batches wait at most ROW_LOCK_PATIENCE_MS for any lock; the session's own value comes back after.
  await client.query(`SELECT set_config('lock_timeout', $1, false)`, [`${ROW_LOCK_PATIENCE_MS}ms`]);
  try {
    for (;;) {
      const next = nextBatch({ moved, longestBatchMs }, { ...policy, batchSize: info.batchRows }, budget);
      if ('stop' in next) {
        stopReason = next.stop;
        break;
      }
      const batchStarted = performance.now();
      const afterKey = lastKey;
      let batch: BatchResult;
      try {
        batch = await destination.moveBatch({ limit: next.limit, ...(afterKey ? { afterKey } : {}) });
      } catch (error) {
        // The batch rolled back whole; what earlier batches moved stays moved and is reported.
        failure = errorMessage(error);
        break;
      }
      longestBatchMs = Math.max(longestBatchMs, performance.now() - batchStarted);
      // Done only when nothing expired is left to pick: a batch whose picked rows all changed
      // since (or were held) moves none, and the rows after it still wait.
      if (batch.picked === 0) break;
      batches++;
      moved += batch.moved;
      alreadyArchived += batch.identical;
      lastKey = batch.last_key ?? lastKey;
      const progress = { done: moved, estimatedTotal: Math.max(info.estimatedTotal, moved), ratePerSecond: rate() };
      context.onProgress?.(progress);
      if (batches % options.progressEveryBatches === 0) {
        const remaining = Math.max(0, info.estimatedTotal - moved);
        logger.info('archive progress', {
          [info.countKey]: moved,
          batches,
          rowsPerSecond: Math.round(progress.ratePerSecond),
          estimatedRemaining: remaining,
          estimatedSecondsLeft: progress.ratePerSecond > 0 ? Math.round(remaining / progress.ratePerSecond) : null,
        });
      }
      if (policy.pauseMs > 0) await sleep(policy.pauseMs);
    }
  } finally {
    // Also when the loop itself threw: what the destination left running ends, and what it opened
    // (the S3 destination's reading session) is closed.
    try {
      await destination.finish?.();
    } catch (error) {
      failure ??= errorMessage(error);
    }
    await client.query(`SELECT set_config('lock_timeout', $1, false)`, [`${options.lockTimeoutMs}ms`]);
  }

  const durationMs = performance.now() - started;
  if (failure) logger.error(`archive stopped: ${failure}`, { [info.countKey]: moved, batches });
  else logger.info(`archive stopped: ${stopReason}`, { stopReason, [info.countKey]: moved, batches });
  return {
    counts: {
      [info.countKey]: moved,
      /** Rows deleted from the source because the archive already held a byte-identical copy. */
      ...(info.countKey === 'rowsMoved' ? { alreadyArchived } : {}),
      batches,
      ...destination.counts(),
      durationMs: Math.round(durationMs),
      rowsPerSecond: Math.round(moved / Math.max(0.001, durationMs / 1000)),
      longestBatchMs: Math.round(longestBatchMs),
      // What a continuation has left, by the planner's estimate.
      ...(stopReason === 'time budget nearly spent' ? { estimatedRemaining: Math.max(0, info.estimatedTotal - moved) } : {}),
    },
    ...(failure ? { failure } : { stopReason }),
  };
}
