import type pg from 'pg';
import { errorMessage, HousekeeperError } from '../../shared/errors';
import { databaseNow, sleep, SQLSTATE, sqlState } from '../../shared/postgres';
import { withLockRetry } from '../../shared/lock-retry';
import { displayName, parseQualifiedName, type QualifiedName } from '../../shared/identifiers';
import type { JobDefinition, TargetContext, TargetOutcome } from '../../shared/run-job';
import { archiveCutoff, cutoffLiteral } from './cutoff';
import { buildArchiveSql, type ArchiveSql, type BatchResult } from './batch-sql';
import { archiveTargetSchema, keyColumns, type ArchiveEvent, type ArchiveTargetPolicy } from './policy';
import { checkArchiveTables } from './tables';

export type StopReason = 'done' | 'max rows reached' | 'time budget nearly spent';

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Plan Rows'?: number;
  Plans?: PlanNode[];
}

function findSeqScan(node: PlanNode, relation: string): boolean {
  if (node['Node Type'] === 'Seq Scan' && node['Relation Name'] === relation) return true;
  return (node.Plans ?? []).some((child) => findSeqScan(child, relation));
}

async function explain(client: pg.ClientBase, sql: string, params: unknown[]): Promise<PlanNode> {
  const { rows } = await client.query<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(`EXPLAIN (FORMAT JSON) ${sql}`, params);
  return rows[0]!['QUERY PLAN'][0]!.Plan;
}

/** How long a batch may wait for a row another session holds before it is redone skipping such rows. */
export const ROW_LOCK_PATIENCE_MS = 20;
/** After meeting a held row, this many batches lock-and-skip straight away. */
const SKIP_LOCKED_STREAK = 10;

/** A batch found something that forbids moving its rows; it was rolled back whole. */
export class ArchiveBatchRefused extends HousekeeperError {
  constructor(
    readonly object: string,
    message: string,
  ) {
    super(message);
  }
}

export async function runArchiveTarget(context: TargetContext<ArchiveTargetPolicy, ArchiveEvent>): Promise<TargetOutcome> {
  const { client, policy, logger } = context;
  const source = parseQualifiedName(policy.source, 'source');
  const destination: QualifiedName | undefined = policy.destination ? parseQualifiedName(policy.destination, 'destination') : undefined;
  const tables = await checkArchiveTables(client, source, destination, { ...policy, key: keyColumns(policy) });
  for (const allowed of tables.allowed) logger.warn(`allowed by the policy, and will fire on every batch: ${allowed}`);

  const cutoff = archiveCutoff(await databaseNow(client), policy.retention, policy.timeZone);
  const cutoffs = {
    primary: cutoffLiteral(cutoff, tables.ageTypes.primary),
    ...(tables.ageTypes.fallback ? { fallback: cutoffLiteral(cutoff, tables.ageTypes.fallback) } : {}),
  };
  const sql = buildArchiveSql(source, destination, policy, tables);
  const countKey = destination ? 'rowsMoved' : 'rowsPurged';

  const pickPlan = await explain(client, sql.explainPick, sql.params(cutoffs, policy.batchSize));
  const seqScan = findSeqScan(pickPlan, source.name);
  const ageDescription = policy.ageFallbackColumn ? `COALESCE(${policy.ageColumn}, ${policy.ageFallbackColumn})` : policy.ageColumn;
  logger.info('archive cutoff', {
    cutoff: cutoffs.primary,
    timeZone: policy.timeZone,
    retention: policy.retention,
    age: ageDescription,
    mode: policy.mode,
  });
  if (seqScan) {
    logger.warn(
      `the batch query scans ${displayName(source)} sequentially; add an index on ${policy.ageColumn}` +
        `${policy.ageFallbackColumn ? ` and one on ${policy.ageFallbackColumn}` : ''} (or on ${tables.keyColumns.join(', ')}) so batches stay short`,
    );
  }

  if (context.dryRun) {
    const count = await client.query<{ n: string }>(sql.count, sql.ageParams(cutoffs));
    const expired = Number(count.rows[0]!.n);
    const wouldMove = policy.maxRowsPerRun === undefined ? expired : Math.min(expired, policy.maxRowsPerRun);
    return {
      counts: { expiredRows: expired, [destination ? 'wouldMove' : 'wouldPurge']: wouldMove, seqScan: seqScan ? 1 : 0 },
      notes: [`-- dry run: nothing was changed. ${expired} row(s) of ${displayName(source)} are older than ${cutoffs.primary} (${ageDescription}).`],
    };
  }

  const estimate = await explain(client, sql.count, sql.ageParams(cutoffs));
  const estimatedTotal = Math.max(0, Math.round(estimate.Plans?.[0]?.['Plan Rows'] ?? estimate['Plan Rows'] ?? 0));
  return moveBatches(context, sql, cutoffs, { countKey, estimatedTotal, keyColumns: tables.keyColumns, destinationHasTriggers: tables.destinationHasTriggers });
}

/** Why a batch that ran must not commit, or undefined. */
function batchProblem(batch: BatchResult, policy: ArchiveTargetPolicy, keyColumns: string[]): string | undefined {
  if (!policy.destination) return undefined;
  if (batch.collision_count > 0) {
    const keys = `${keyColumns.length === 1 ? keyColumns[0] : `(${keyColumns.join(', ')})`} ${batch.collisions.join(', ')}` +
      (batch.collision_count > batch.collisions.length ? ` and ${batch.collision_count - batch.collisions.length} more` : '');
    return (
      `${policy.destination} already holds ${batch.collision_count} key(s) of expired ${policy.source} rows with different contents: ${keys}. ` +
      `Nothing of this batch was moved (batches before it stay moved). Both versions are kept: compare them, then delete or rename the one that is wrong ` +
      `(a reset sequence, a restore, or two sources writing into one archive)`
    );
  }
  if (batch.moved !== batch.inserted + batch.identical || batch.altered > 0) {
    return (
      `${policy.destination} did not receive every row this batch deleted unchanged (deleted ${batch.moved}, inserted ${batch.inserted}, ` +
      `already archived ${batch.identical}, changed on the way ${batch.altered}); the batch was rolled back. A trigger on ${policy.destination} ` +
      `skips or rewrites rows: fix it, or archive into a table without it`
    );
  }
  return undefined;
}

async function moveBatches(
  context: TargetContext<ArchiveTargetPolicy, ArchiveEvent>,
  sql: ArchiveSql,
  cutoffs: { primary: string; fallback?: string },
  info: { countKey: 'rowsMoved' | 'rowsPurged'; estimatedTotal: number; keyColumns: string[]; destinationHasTriggers: boolean },
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
  const retry = {
    client,
    action: `archive batch from ${policy.source}`,
    relations: [policy.source, ...(policy.destination ? [policy.destination] : [])],
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
  const execute = async (text: string, params: unknown[], checked: boolean): Promise<BatchResult> => {
    if (!checked) {
      const batch = (await client.query<BatchResult>(text, params)).rows[0]!;
      const problem = batchProblem(batch, policy, info.keyColumns);
      // Cannot happen (no trigger or rule runs here, see checkArchiveTables); stop if it ever does.
      if (problem) throw new ArchiveBatchRefused(policy.destination ?? policy.source, `${problem} (committed: report this)`);
      return batch;
    }
    await client.query('BEGIN');
    try {
      const batch = (await client.query<BatchResult>(text, params)).rows[0]!;
      const problem = batchProblem(batch, policy, info.keyColumns);
      if (problem) throw new ArchiveBatchRefused(policy.destination ?? policy.source, problem);
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
        return await execute(sql.batch(flags), params, flags.skipExisting || info.destinationHasTriggers);
      } catch (error) {
        const code = sqlState(error);
        if (code === SQLSTATE.lockNotAvailable && !flags.skipLocked) {
          flags.skipLocked = true;
          skipLockedFor = SKIP_LOCKED_STREAK;
          lockedRowBatches++;
        } else if (code === SQLSTATE.uniqueViolation && !flags.skipExisting && policy.destination) {
          flags.skipExisting = true;
        } else {
          throw error; // a table lock we could not get: withLockRetry backs off and retries
        }
      }
    }
  };
  const rate = () => moved / Math.max(0.001, (performance.now() - started) / 1000);

  // Batches wait at most ROW_LOCK_PATIENCE_MS for any lock; the session's own value comes back after.
  await client.query(`SELECT set_config('lock_timeout', $1, false)`, [`${ROW_LOCK_PATIENCE_MS}ms`]);
  try {
    for (;;) {
      if (policy.maxRowsPerRun !== undefined && moved >= policy.maxRowsPerRun) {
        stopReason = 'max rows reached';
        break;
      }
      // Start a batch only if one as slow as the slowest so far still fits in the budget.
      if (!budget.allows(Math.max(1_000, longestBatchMs * 2) + policy.pauseMs)) {
        stopReason = 'time budget nearly spent';
        break;
      }
      const limit = Math.min(policy.batchSize, (policy.maxRowsPerRun ?? Number.POSITIVE_INFINITY) - moved);
      const batchStarted = performance.now();
      const params = sql.params(cutoffs, limit, lastKey);
      let batch: BatchResult;
      try {
        batch = await withLockRetry(retry, () => runBatch(params, lastKey !== undefined));
      } catch (error) {
        // The batch rolled back whole; what earlier batches moved stays moved and is reported.
        failure = errorMessage(error);
        break;
      }
      skipLockedFor = Math.max(0, skipLockedFor - 1);
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
      /** Batches run with FOR UPDATE SKIP LOCKED because another session held rows. */
      lockedRowBatches,
      durationMs: Math.round(durationMs),
      rowsPerSecond: Math.round(moved / Math.max(0.001, durationMs / 1000)),
      longestBatchMs: Math.round(longestBatchMs),
      // What a continuation has left, by the planner's estimate.
      ...(stopReason === 'time budget nearly spent' ? { estimatedRemaining: Math.max(0, info.estimatedTotal - moved) } : {}),
    },
    ...(failure ? { failure } : { stopReason }),
  };
}

export const archiveJob: JobDefinition<typeof archiveTargetSchema, ArchiveEvent> = {
  job: 'archive',
  targetSchema: archiveTargetSchema,
  targetName: (policy) => displayName(parseQualifiedName(policy.source, 'source')),
  runTarget: runArchiveTarget,
};
