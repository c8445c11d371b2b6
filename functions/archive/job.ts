import type pg from 'pg';
import { errorMessage } from '../../shared/errors';
import { databaseNow, sleep } from '../../shared/postgres';
import { displayName, parseQualifiedName, type QualifiedName } from '../../shared/identifiers';
import type { JobDefinition, TargetContext, TargetOutcome } from '../../shared/run-job';
import { archiveCutoff, cutoffLiteral } from './cutoff';
import { buildArchiveSql, type BatchResult } from './batch-sql';
import { tableDestination, type ArchiveDestination } from './destination';
import { archiveTargetSchema, destinationTable, keyColumns, s3Destination, type ArchiveEvent, type ArchiveTargetPolicy } from './policy';
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

export { ArchiveBatchRefused, ROW_LOCK_PATIENCE_MS } from './destination';
import { ROW_LOCK_PATIENCE_MS } from './destination';

export async function runArchiveTarget(context: TargetContext<ArchiveTargetPolicy, ArchiveEvent>): Promise<TargetOutcome> {
  const { client, policy, logger } = context;
  const source = parseQualifiedName(policy.source, 'source');
  const table = destinationTable(policy);
  const s3 = s3Destination(policy);
  const destination: QualifiedName | undefined = table ? parseQualifiedName(table, 'destination') : undefined;
  const tables = await checkArchiveTables(client, source, destination, { ...policy, key: keyColumns(policy) });
  // S3: the source's columns must each map to a Parquet type that holds every value exactly.
  // The S3 code (Parquet writer, SDK) is loaded only by targets that use it, not at init.
  const s3Module = s3 ? await import('./s3/destination') : undefined;
  const s3Plan = s3 && s3Module ? await s3Module.planS3Archive(client, source, tables, s3, policy) : undefined;
  for (const allowed of tables.allowed) logger.warn(`allowed by the policy, and will fire on every batch: ${allowed}`);

  const cutoff = archiveCutoff(await databaseNow(client), policy.retention, policy.timeZone);
  const cutoffs = {
    primary: cutoffLiteral(cutoff, tables.ageTypes.primary),
    ...(tables.ageTypes.fallback ? { fallback: cutoffLiteral(cutoff, tables.ageTypes.fallback) } : {}),
  };
  const sql = buildArchiveSql(source, destination, policy, tables);
  const countKey = destination || s3 ? 'rowsMoved' : 'rowsPurged';

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
      counts: { expiredRows: expired, [countKey === 'rowsMoved' ? 'wouldMove' : 'wouldPurge']: wouldMove, seqScan: seqScan ? 1 : 0 },
      notes: [`-- dry run: nothing was changed. ${expired} row(s) of ${displayName(source)} are older than ${cutoffs.primary} (${ageDescription}).`],
    };
  }

  const estimate = await explain(client, sql.count, sql.ageParams(cutoffs));
  const estimatedTotal = Math.max(0, Math.round(estimate.Plans?.[0]?.['Plan Rows'] ?? estimate['Plan Rows'] ?? 0));
  // --- destination: the archive table (or purge), or S3 -------------------------------------
  const target = s3Plan && s3Module
    ? await s3Module.s3ArchiveDestination({ client, policy, plan: s3Plan, cutoffs, runId: context.runId, logger })
    : tableDestination({ client, policy, table, sql, cutoffs, keyColumns: tables.keyColumns, destinationHasTriggers: tables.destinationHasTriggers, lockAttempts: context.options.lockAttempts, budget: context.budget });
  const reconciled = await target.reconcile();
  if (Object.keys(reconciled).length > 0) logger.warn('archive reconciled what an earlier run left', { destination: target.name, ...reconciled });
  return moveBatches(context, target, { countKey, estimatedTotal, batchRows: s3?.rowsPerObject ?? policy.batchSize });
  // --- end destination ------------------------------------------------------------------------
}

async function moveBatches(
  context: TargetContext<ArchiveTargetPolicy, ArchiveEvent>,
  destination: ArchiveDestination,
  info: { countKey: 'rowsMoved' | 'rowsPurged'; estimatedTotal: number; batchRows: number },
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
      if (policy.maxRowsPerRun !== undefined && moved >= policy.maxRowsPerRun) {
        stopReason = 'max rows reached';
        break;
      }
      // Start a batch only if one as slow as the slowest so far still fits in the budget.
      if (!budget.allows(Math.max(1_000, longestBatchMs * 2) + policy.pauseMs)) {
        stopReason = 'time budget nearly spent';
        break;
      }
      const limit = Math.min(info.batchRows, (policy.maxRowsPerRun ?? Number.POSITIVE_INFINITY) - moved);
      const batchStarted = performance.now();
      let batch: BatchResult;
      try {
        batch = await destination.moveBatch({ limit, afterKey: lastKey });
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
      ...destination.counts?.(),
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
