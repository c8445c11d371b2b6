import type pg from 'pg';
import { HousekeeperError } from '../../shared/errors';
import { withLockRetry } from '../../shared/lock-retry';
import { SQLSTATE, sqlState } from '../../shared/postgres';
import type { TimeBudget } from '../../shared/time-budget';
import type { ArchiveSql, BatchResult } from './batch-sql';
import type { ArchiveTargetPolicy } from './policy';

/**
 * Where an archive target's rows go. The batch loop (job.ts) is the same for every destination:
 * it asks for one batch at a time after the last key moved and stops on the budget, the row cap
 * or when nothing expired is left. A destination does four things:
 *
 * - prepare: refuse, before any row moves, whatever it cannot hold exactly (done when it is made);
 * - reconcile: finish or undo what a run that died left behind, before the first batch;
 * - write a batch: the picked rows into the destination, invisibly to its readers;
 * - commit with the delete: the rows leave the source in the same transaction that makes the
 *   written copy count, so every row ends in exactly one place whenever the process dies.
 *
 * The table destination does the last two in one statement (`moveBatch`); the S3 destination
 * writes a pending object, reads it back, commits a manifest row with the delete, then publishes.
 */
export interface ArchiveDestination {
  /** For logs and errors: `archive.orders`, `s3://bucket/prefix/table=public.orders`. */
  readonly name: string;
  /** Counts of what was reconciled (published, garbage removed); empty when there was nothing to do. */
  reconcile(): Promise<Record<string, number>>;
  /** Moves up to `limit` expired rows with keys after `afterKey` (key order); one transaction. */
  moveBatch(request: BatchRequest): Promise<BatchResult>;
  /** Counts the destination adds to the run summary (objects written, bytes...). */
  counts?(): Record<string, number>;
}

export interface BatchRequest {
  limit: number;
  afterKey?: string[];
}

/** A batch found something that forbids moving its rows; it was rolled back whole. */
export class ArchiveBatchRefused extends HousekeeperError {
  constructor(
    readonly object: string,
    message: string,
  ) {
    super(message);
  }
}

/** How long a batch may wait for a row another session holds before it is redone skipping such rows. */
export const ROW_LOCK_PATIENCE_MS = 20;
/** After meeting a held row, this many batches lock-and-skip straight away. */
const SKIP_LOCKED_STREAK = 10;

/** Why a batch that ran must not commit, or undefined. */
function batchProblem(batch: BatchResult, policy: ArchiveTargetPolicy, destination: string | undefined, keyColumns: string[]): string | undefined {
  if (!destination) return undefined;
  if (batch.collision_count > 0) {
    const keys = `${keyColumns.length === 1 ? keyColumns[0] : `(${keyColumns.join(', ')})`} ${batch.collisions.join(', ')}` +
      (batch.collision_count > batch.collisions.length ? ` and ${batch.collision_count - batch.collisions.length} more` : '');
    return (
      `${destination} already holds ${batch.collision_count} key(s) of expired ${policy.source} rows with different contents: ${keys}. ` +
      `Nothing of this batch was moved (batches before it stay moved). Both versions are kept: compare them, then delete or rename the one that is wrong ` +
      `(a reset sequence, a restore, or two sources writing into one archive)`
    );
  }
  if (batch.moved !== batch.inserted + batch.identical || batch.altered > 0) {
    return (
      `${destination} did not receive every row this batch deleted unchanged (deleted ${batch.moved}, inserted ${batch.inserted}, ` +
      `already archived ${batch.identical}, changed on the way ${batch.altered}); the batch was rolled back. A trigger on ${destination} ` +
      `skips or rewrites rows: fix it, or archive into a table without it`
    );
  }
  return undefined;
}

/**
 * The archive table (or, without one, purge): each batch is one statement that picks, deletes
 * and inserts, so writing and committing with the delete are one step and there is never
 * anything to reconcile.
 */
export function tableDestination(options: {
  client: pg.Client;
  policy: ArchiveTargetPolicy;
  /** The archive table, undefined in purge mode. */
  table: string | undefined;
  sql: ArchiveSql;
  cutoffs: { primary: string; fallback?: string };
  keyColumns: string[];
  destinationHasTriggers: boolean;
  lockAttempts: number;
  budget: TimeBudget;
}): ArchiveDestination {
  const { client, policy, table, sql, cutoffs, keyColumns, destinationHasTriggers } = options;
  const retry = {
    client,
    action: `archive batch from ${policy.source}`,
    relations: [policy.source, ...(table ? [table] : [])],
    attempts: options.lockAttempts,
    lockTimeoutMs: ROW_LOCK_PATIENCE_MS,
    budget: options.budget,
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
  const execute = async (text: string, params: unknown[], checked: boolean): Promise<BatchResult> => {
    if (!checked) {
      const batch = (await client.query<BatchResult>(text, params)).rows[0]!;
      const problem = batchProblem(batch, policy, table, keyColumns);
      // Cannot happen (no trigger or rule runs here, see checkArchiveTables); stop if it ever does.
      if (problem) throw new ArchiveBatchRefused(table ?? policy.source, `${problem} (committed: report this)`);
      return batch;
    }
    await client.query('BEGIN');
    try {
      const batch = (await client.query<BatchResult>(text, params)).rows[0]!;
      const problem = batchProblem(batch, policy, table, keyColumns);
      if (problem) throw new ArchiveBatchRefused(table ?? policy.source, problem);
      await client.query('COMMIT');
      return batch;
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    }
  };
  /** One batch, escalating to SKIP LOCKED on a held row and to the row-by-row comparison on an archived key. */
  const runBatch = async (params: unknown[], afterKey: boolean): Promise<BatchResult> => {
    const flags = { afterKey, skipLocked: skipLockedFor > 0, skipExisting: false };
    if (flags.skipLocked) lockedRowBatches++;
    for (;;) {
      try {
        return await execute(sql.batch(flags), params, flags.skipExisting || destinationHasTriggers);
      } catch (error) {
        const code = sqlState(error);
        if (code === SQLSTATE.lockNotAvailable && !flags.skipLocked) {
          flags.skipLocked = true;
          skipLockedFor = SKIP_LOCKED_STREAK;
          lockedRowBatches++;
        } else if (code === SQLSTATE.uniqueViolation && !flags.skipExisting && table) {
          flags.skipExisting = true;
        } else {
          throw error; // a table lock we could not get: withLockRetry backs off and retries
        }
      }
    }
  };
  return {
    name: table ?? policy.source,
    async reconcile() {
      return {};
    },
    async moveBatch({ limit, afterKey }) {
      const params = sql.params(cutoffs, limit, afterKey);
      const batch = await withLockRetry(retry, () => runBatch(params, afterKey !== undefined));
      skipLockedFor = Math.max(0, skipLockedFor - 1);
      return batch;
    },
    /** Batches run with FOR UPDATE SKIP LOCKED because another session held rows. */
    counts: () => ({ lockedRowBatches }),
  };
}
