import type pg from 'pg';
import { displayName, parseQualifiedName, type QualifiedName } from '../../shared/identifiers';
import type { JobDefinition, TargetContext, TargetOutcome } from '../../shared/job';
import { databaseNow, queryOne } from '../../shared/postgres';
import { type Sql, sql } from '../../shared/sql';
import { moveBatches, tableDestination } from './apply';
import { readArchiveCatalog } from './catalog';
import archiveObjects from './migrations/0006_archive_objects';
import archiveChecksumKind from './migrations/0007_archive_checksum_kind';
import { planCutoffs } from './plan';
import {
  type ArchiveEvent,
  type ArchiveEventInput,
  type ArchiveTargetPolicy,
  archiveEventSchema,
  archiveTargetSchema,
  destinationTable,
  keyColumns,
  s3Destination,
} from './policy';
import { renderArchiveSql } from './sql';

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

async function explain(client: pg.ClientBase, statement: Sql): Promise<PlanNode> {
  const row = await queryOne<{ 'QUERY PLAN': Array<{ Plan: PlanNode }> }>(client, sql`EXPLAIN (FORMAT JSON) ${statement}`);
  return row['QUERY PLAN'][0]!.Plan;
}

/**
 * One archive target: read (the catalog check refuses anything that could lose, change or
 * duplicate a row), plan (the cutoff from the database clock), render (the batch statements),
 * apply (the batch loop; a dry run counts instead).
 */
export async function runArchiveTarget(context: TargetContext<ArchiveTargetPolicy, ArchiveEvent>): Promise<TargetOutcome> {
  const { client, policy, logger } = context;
  const source = parseQualifiedName(policy.source, 'source');
  const table = destinationTable(policy);
  const s3 = s3Destination(policy);
  const destination: QualifiedName | undefined = table ? parseQualifiedName(table, 'destination') : undefined;
  const catalog = await readArchiveCatalog(client, source, destination, { ...policy, key: keyColumns(policy) });
  // S3: the source's columns must each map to a Parquet type that holds every value exactly. The
  // S3 code (Parquet writer and reader, the SDK) is loaded only by targets that use it, not at init.
  const s3Catalog = s3 ? await (await import('./s3/catalog')).readS3Catalog(client, source, catalog, s3, policy) : undefined;
  for (const allowed of catalog.allowed) logger.warn(`allowed by the policy, and will fire on every batch: ${allowed}`);

  const cutoffs = planCutoffs(await databaseNow(client), policy, catalog.ageTypes);
  const statements = renderArchiveSql(source, destination, policy, catalog, cutoffs);
  const countKey = destination || s3 ? 'rowsMoved' : 'rowsPurged';

  const seqScan = findSeqScan(await explain(client, statements.explainPick(policy.batchSize)), source.name);
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
        `${policy.ageFallbackColumn ? ` and one on ${policy.ageFallbackColumn}` : ''} (or on ${catalog.keyColumns.join(', ')}) so batches stay short`,
    );
  }

  if (context.dryRun) {
    const expired = Number((await queryOne<{ n: string }>(client, statements.count)).n);
    const wouldMove = policy.maxRowsPerRun === undefined ? expired : Math.min(expired, policy.maxRowsPerRun);
    return {
      counts: { expiredRows: expired, [countKey === 'rowsMoved' ? 'wouldMove' : 'wouldPurge']: wouldMove, seqScan: seqScan ? 1 : 0 },
      notes: [`-- dry run: nothing was changed. ${expired} row(s) of ${displayName(source)} are older than ${cutoffs.primary} (${ageDescription}).`],
    };
  }

  const estimate = await explain(client, statements.count);
  const estimatedTotal = Math.max(0, Math.round(estimate.Plans?.[0]?.['Plan Rows'] ?? estimate['Plan Rows'] ?? 0));
  const target = s3Catalog
    ? await (await import('./s3/apply')).s3Destination({ context, catalog: s3Catalog, cutoffs })
    : tableDestination(context, statements, { table, keyColumns: catalog.keyColumns, destinationHasTriggers: catalog.destinationHasTriggers });
  const reconciled = await target.reconcile();
  if (Object.keys(reconciled).length > 0) logger.warn('archive reconciled what an earlier run left', { destination: target.name, ...reconciled });
  return moveBatches(context, target, { countKey, estimatedTotal, batchRows: s3?.rowsPerObject ?? policy.batchSize });
}

export const archiveJob = {
  job: 'archive',
  eventSchema: archiveEventSchema,
  targetSchema: archiveTargetSchema,
  targetName: (policy) => displayName(parseQualifiedName(policy.source, 'source')),
  targetDescription: 'the source table as schema.table',
  runTarget: runArchiveTarget,
  stopReasons: ['done', 'max rows reached', 'time budget nearly spent'],
  metrics: {
    // What was moved, also by a target that failed part way (its earlier batches stay moved).
    archived: {
      name: 'RowsArchived',
      unit: 'Count',
      value: (t) => (t.state === 'skipped' ? undefined : (t.counts.rowsMoved ?? 0) + (t.counts.rowsPurged ?? 0)),
    },
  },
  remainingCount: 'estimatedRemaining',
  migrations: [
    { version: 6, name: 'archive_objects', sql: archiveObjects },
    { version: 7, name: 'archive_checksum_kind', sql: archiveChecksumKind },
  ],
  lambda: { timeoutSeconds: 900, retryAttempts: 1 },
} satisfies JobDefinition<typeof archiveTargetSchema, ArchiveEvent, ArchiveEventInput>;
