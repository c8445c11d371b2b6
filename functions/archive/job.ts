import type pg from 'pg';
import { databaseNow, sleep, SQLSTATE, sqlState } from '../../shared/postgres';
import { withLockRetry } from '../../shared/lock-retry';
import { displayName, parseQualifiedName, type QualifiedName } from '../../shared/identifiers';
import type { JobDefinition, TargetContext, TargetOutcome } from '../../shared/run-job';
import { archiveCutoff, cutoffLiteral } from './cutoff';
import { buildArchiveSql, type ArchiveSql } from './batch-sql';
import { archiveTargetSchema, type ArchiveEvent, type ArchiveTargetPolicy } from './policy';
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

interface BatchResult {
  moved: number;
  inserted: number;
  last_key: string | null;
}

export async function runArchiveTarget(context: TargetContext<ArchiveTargetPolicy, ArchiveEvent>): Promise<TargetOutcome> {
  const { client, policy, logger } = context;
  const source = parseQualifiedName(policy.source, 'source');
  const destination: QualifiedName | undefined = policy.destination ? parseQualifiedName(policy.destination, 'destination') : undefined;
  const tables = await checkArchiveTables(client, source, destination, policy);
  if (!tables.sourceKeyUnique) {
    logger.warn(`${displayName(source)} is unique on ${policy.key} only together with other columns; batches assume ${policy.key} alone is unique`);
  }

  const cutoff = archiveCutoff(await databaseNow(client), policy.retention, policy.timeZone);
  const cutoffs = {
    primary: cutoffLiteral(cutoff, tables.ageTypes.primary),
    ...(tables.ageTypes.fallback ? { fallback: cutoffLiteral(cutoff, tables.ageTypes.fallback) } : {}),
  };
  const sql = buildArchiveSql(source, destination, policy, tables.copyColumns, {
    partitioned: tables.sourceIsPartitioned,
    integerKey: tables.keyIsInteger,
  });
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
        `${policy.ageFallbackColumn ? ` and one on ${policy.ageFallbackColumn}` : ''} (or on ${policy.key}) so batches stay short`,
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
  return moveBatches(context, sql, cutoffs, { countKey, estimatedTotal });
}

async function moveBatches(
  context: TargetContext<ArchiveTargetPolicy, ArchiveEvent>,
  sql: ArchiveSql,
  cutoffs: { primary: string; fallback?: string },
  info: { countKey: 'rowsMoved' | 'rowsPurged'; estimatedTotal: number },
): Promise<TargetOutcome> {
  const { client, policy, options, logger, budget } = context;
  const started = performance.now();
  let moved = 0;
  let alreadyArchived = 0;
  let batches = 0;
  let longestBatchMs = 0;
  let lastKey: string | undefined;
  let stopReason: StopReason = 'done';
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
  /** One batch, escalating to SKIP LOCKED on a held row and to ON CONFLICT on an archived key. */
  const runBatch = async (params: unknown[], afterKey: boolean): Promise<BatchResult> => {
    const flags = { afterKey, skipLocked: skipLockedFor > 0, skipExisting: false };
    if (flags.skipLocked) lockedRowBatches++;
    for (;;) {
      try {
        return (await client.query<BatchResult>(sql.batch(flags), params)).rows[0]!;
      } catch (error) {
        const code = sqlState(error);
        if (code === SQLSTATE.lockNotAvailable && !flags.skipLocked) {
          flags.skipLocked = true;
          skipLockedFor = SKIP_LOCKED_STREAK;
          lockedRowBatches++;
        } else if (code === SQLSTATE.uniqueViolation && !flags.skipExisting) {
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
      const batch = await withLockRetry(retry, () => runBatch(params, lastKey !== undefined));
      skipLockedFor = Math.max(0, skipLockedFor - 1);
      longestBatchMs = Math.max(longestBatchMs, performance.now() - batchStarted);
      if (batch.moved === 0) break;
      batches++;
      moved += batch.moved;
      alreadyArchived += batch.moved - batch.inserted;
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
  logger.info(`archive stopped: ${stopReason}`, { stopReason, [info.countKey]: moved, batches });
  return {
    counts: {
      [info.countKey]: moved,
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
    stopReason,
  };
}

export const archiveJob: JobDefinition<typeof archiveTargetSchema, ArchiveEvent> = {
  job: 'archive',
  targetSchema: archiveTargetSchema,
  targetName: (policy) => displayName(parseQualifiedName(policy.source, 'source')),
  runTarget: runArchiveTarget,
};
