import type pg from 'pg';
import { databaseNow } from '../../shared/postgres';
import { displayName, parseQualifiedName, quoteIdent, quoteQualified } from '../../shared/identifiers';
import type { JobDefinition, TargetContext, TargetOutcome } from '../../shared/run-job';
import { TIME_BUDGET_STOP } from '../../shared/time-budget';
import { applySteps } from './apply';
import { readPartitionCatalog, type PartitionCatalog } from './catalog';
import { renderCreateSteps, renderRetireSteps, stepToSql } from './ddl';
import { describeKeyMs, planPartitions, type PartitionPlan } from './plan';
import { partitionTargetSchema, type PartitionEvent, type PartitionTargetInput, type PartitionTargetPolicy } from './policy';

/** Rows counted in DEFAULT are capped: the count is a warning, not worth a full scan of a huge table. */
const DEFAULT_ROWS_COUNT_CAP = 1_000_000;

async function rowsInDefault(client: pg.ClientBase, catalog: PartitionCatalog, from?: string, to?: string): Promise<number> {
  if (!catalog.defaultPartition) return 0;
  const key = quoteIdent(catalog.keyColumn);
  const range = from && to ? `WHERE ${key} >= $1::${catalog.keyType} AND ${key} < $2::${catalog.keyType}` : '';
  const { rows } = await client.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM (SELECT 1 FROM ${quoteQualified(catalog.defaultPartition)} ${range} LIMIT ${DEFAULT_ROWS_COUNT_CAP}) AS capped`,
    from && to ? [from, to] : [],
  );
  return rows[0]!.n;
}

function describePlan(catalog: PartitionCatalog, plan: PartitionPlan, policy: PartitionTargetPolicy): Record<string, unknown> {
  const show = (ms: number | null) => describeKeyMs(ms, catalog.keyType, policy.timeZone);
  return {
    keyColumn: catalog.keyColumn,
    keyType: catalog.keyType,
    currentPartitionFrom: show(plan.currentFrom),
    retentionCutoff: plan.cutoff === null ? null : show(plan.cutoff),
    create: plan.create.map((p) => `${displayName(p.name)} [${p.fromLiteral}, ${p.toLiteral})`),
    retire: plan.retire.map((r) => `${r.mode} ${displayName(r.partition)} (upper bound ${show(r.to)})`),
  };
}

export async function runPartitionTarget(context: TargetContext<PartitionTargetPolicy, PartitionEvent>): Promise<TargetOutcome> {
  const { client, policy, options, logger } = context;
  const parent = parseQualifiedName(policy.table, 'table');
  const catalog = await readPartitionCatalog(client, parent);
  const plan = planPartitions(catalog, policy, await databaseNow(client));
  const createSteps = renderCreateSteps(catalog, plan);
  const retireSteps = renderRetireSteps(catalog, plan);
  logger.info('partition plan', describePlan(catalog, plan, policy));
  for (const warning of plan.warnings) logger.warn(warning);

  if (context.dryRun) {
    let wouldMove = 0;
    for (const planned of plan.create) wouldMove += await rowsInDefault(client, catalog, planned.fromLiteral, planned.toLiteral);
    const sql = [...createSteps, ...retireSteps].map(stepToSql);
    return {
      counts: {
        wouldCreate: createSteps.length,
        wouldDrop: retireSteps.filter((s) => s.kind === 'drop').length,
        wouldDetach: retireSteps.filter((s) => s.kind === 'detach').length,
        wouldMoveFromDefault: wouldMove,
        partitionsAhead: plan.aheadBefore + plan.aheadPlanned.size,
      },
      notes: sql.length > 0 ? ['-- dry run: nothing was changed. This is the SQL a real run would execute:', ...sql] : ['-- dry run: nothing to do'],
    };
  }

  const applyOptions = { budget: context.budget, lockTimeoutMs: options.lockTimeoutMs, lockAttempts: options.lockAttempts, logger };
  // Creation commits before retention starts: a failed drop can never undo the partitions that keep inserts working.
  const created = await applySteps(client, createSteps, applyOptions);
  const retired =
    created.stoppedOnLock && retireSteps.length > 0
      ? { done: [], notRun: 0, failures: [`retention not attempted: its ${retireSteps.length} step(s) wait for the same blocker`] }
      : await applySteps(client, retireSteps, applyOptions);
  const rowsLeft = await rowsInDefault(client, catalog);
  if (rowsLeft > 0) {
    logger.warn(
      `${rowsLeft}${rowsLeft >= DEFAULT_ROWS_COUNT_CAP ? '+' : ''} row(s) remain in DEFAULT partition ${displayName(catalog.defaultPartition!)}: ` +
        'their keys fall outside every partition this policy keeps (older than retention, or beyond premake)',
    );
  }
  const failures = [...created.failures, ...retired.failures];
  // Steps the budget left are the next hop's (or the next run's) work, not a failure.
  const stepsLeft = created.notRun + retired.notRun;
  return {
    counts: {
      created: created.done.length,
      dropped: retired.done.filter((s) => s.kind === 'drop').length,
      detached: retired.done.filter((s) => s.kind === 'detach').length,
      rowsMovedFromDefault: created.rowsMovedFromDefault,
      rowsLeftInDefault: rowsLeft,
      partitionsAhead: plan.aheadBefore + created.done.filter((s) => plan.aheadPlanned.has(s.partition)).length,
      ...(stepsLeft > 0 ? { stepsLeft } : {}),
    },
    ...(failures.length > 0 ? { failure: failures.join('; ') } : {}),
    ...(stepsLeft > 0 ? { stopReason: TIME_BUDGET_STOP } : {}),
  };
}

/** The ledger is itself partitioned by month; the partition job keeps it so. */
export const LEDGER_TARGET: PartitionTargetInput = { table: 'housekeeping.job_runs', interval: 'month', premake: 2 };

export const partitionJob: JobDefinition<typeof partitionTargetSchema, PartitionEvent> = {
  job: 'partition',
  targetSchema: partitionTargetSchema,
  targetName: (policy) => displayName(parseQualifiedName(policy.table, 'table')),
  implicitTargets: (options, dryRun) =>
    options.maintainLedger && !dryRun ? [{ ...LEDGER_TARGET, retention: { keep: options.ledgerRetentionMonths, mode: 'drop' } }] : [],
  runTarget: runPartitionTarget,
};
