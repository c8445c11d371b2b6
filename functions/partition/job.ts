import type pg from 'pg';
import { displayName, parseQualifiedName } from '../../shared/identifiers';
import type { JobDefinition, TargetContext, TargetOutcome } from '../../shared/job';
import { databaseNow, queryOne } from '../../shared/postgres';
import { ident, qualified, raw, sql } from '../../shared/sql';
import { TIME_BUDGET_STOP } from '../../shared/time-budget';
import { applySteps } from './apply';
import { type PartitionCatalog, readPartitionCatalog } from './catalog';
import { renderCreateSteps, renderFinishSteps, renderRetireSteps, stepToSql } from './ddl';
import partitionRetirements from './migrations/0004_partition_retirements';
import { describeKeyMs, type PartitionPlan, partitionsAhead, planPartitions } from './plan';
import {
  type PartitionEvent,
  type PartitionEventInput,
  type PartitionTargetInput,
  type PartitionTargetPolicy,
  partitionEventSchema,
  partitionTargetSchema,
} from './policy';

/** Rows counted in DEFAULT are capped: the count is a warning, not worth a full scan of a huge table. */
const DEFAULT_ROWS_COUNT_CAP = 1_000_000;

async function rowsInDefault(client: pg.ClientBase, catalog: PartitionCatalog, from?: string, to?: string): Promise<number> {
  if (!catalog.defaultPartition) return 0;
  const key = ident(catalog.keyColumn);
  const keyType = raw(catalog.keyType);
  const range = from && to ? sql`WHERE ${key} >= ${from}::${keyType} AND ${key} < ${to}::${keyType}` : raw('');
  const { n } = await queryOne<{ n: number }>(
    client,
    sql`SELECT count(*)::int AS n FROM (SELECT 1 FROM ${qualified(catalog.defaultPartition)} ${range} LIMIT ${raw(String(DEFAULT_ROWS_COUNT_CAP))}) AS capped`,
  );
  return n;
}

function describePlan(catalog: PartitionCatalog, plan: PartitionPlan, policy: PartitionTargetPolicy): Record<string, unknown> {
  const show = (ms: number | null) => describeKeyMs(ms, catalog.keyType, policy.timeZone);
  return {
    keyColumn: catalog.keyColumn,
    keyType: catalog.keyType,
    currentPartitionFrom: show(plan.currentFrom),
    retentionCutoff: plan.cutoff === null ? null : show(plan.cutoff),
    create: plan.create.map((p) => `${displayName(p.name)} [${p.fromLiteral}, ${p.toLiteral})${p.fill ? ' (fills part of a period)' : ''}`),
    retire: plan.retire.map((r) => `${r.mode} ${displayName(r.partition)} (upper bound ${show(r.to)})`),
    ...(plan.finish.length > 0 ? { finish: plan.finish.map((f) => `${f.action} ${displayName(f.partition)}: ${f.reason}`) } : {}),
    ...(catalog.rescueHazards.length > 0 ? { rowsInDefaultStayThere: catalog.rescueHazards } : {}),
  };
}

async function runPartitionTarget(context: TargetContext<PartitionTargetPolicy, PartitionEvent>): Promise<TargetOutcome> {
  const { client, policy, options, logger } = context;
  const parent = parseQualifiedName(policy.table, 'table');
  const catalog = await readPartitionCatalog(client, parent);
  const plan = planPartitions(catalog, policy, await databaseNow(client));
  const finishSteps = renderFinishSteps(catalog, plan);
  const createSteps = renderCreateSteps(catalog, plan);
  const retireSteps = renderRetireSteps(catalog, plan);
  logger.info('partition plan', describePlan(catalog, plan, policy));
  for (const warning of plan.warnings) logger.warn(warning);
  const attached = catalog.partitions.filter((p) => !p.detachPending);

  if (context.dryRun) {
    let wouldMove = 0;
    const refusals: string[] = [];
    for (const planned of plan.create) {
      const rows = await rowsInDefault(client, catalog, planned.fromLiteral, planned.toLiteral);
      if (rows === 0) continue;
      if (catalog.rescueHazards.length === 0) wouldMove += rows;
      else
        refusals.push(
          `-- would refuse ${displayName(planned.name)}: DEFAULT holds ${rows} row(s) of its range and moving them would fire ${catalog.rescueHazards.join(', ')}`,
        );
    }
    const sql = [
      ...finishSteps.map((step, i) => `-- finish an earlier run's retirement: ${plan.finish[i]!.reason}\n${stepToSql(step)}`),
      ...createSteps.map(stepToSql),
      ...retireSteps.map(stepToSql),
    ];
    const lines = [...plan.failures.map((f) => `-- cannot: ${f}`), ...refusals, ...sql];
    return {
      counts: {
        wouldCreate: createSteps.length,
        wouldDrop: retireSteps.filter((s) => s.kind === 'drop').length + finishSteps.filter((s) => s.kind === 'drop').length,
        wouldDetach: retireSteps.filter((s) => s.kind === 'detach').length,
        wouldMoveFromDefault: wouldMove,
        wouldRefuse: refusals.length,
        partitionsAhead: partitionsAhead(plan, [...attached, ...plan.create]),
      },
      notes:
        lines.length > 0 ? ['-- dry run: nothing was changed. This is the SQL a real run would execute:', ...lines] : ['-- dry run: nothing to do'],
    };
  }

  const applyOptions = { budget: context.budget, lockTimeoutMs: options.lockTimeoutMs, lockAttempts: options.lockAttempts, logger };
  // What an earlier run left half done first: it locks only the detached tables, never what creation needs.
  const finished = await applySteps(client, finishSteps, applyOptions);
  // Creation commits before retention starts: a failed drop can never undo the partitions that keep inserts working.
  const created = await applySteps(client, createSteps, applyOptions);
  const retired =
    created.stoppedOnLock && retireSteps.length > 0
      ? { done: [], warnings: [], notRun: 0, failures: [`retention not attempted: its ${retireSteps.length} step(s) wait for the same blocker`] }
      : await applySteps(client, retireSteps, applyOptions);
  const rowsLeft = await rowsInDefault(client, catalog);
  if (rowsLeft > 0) {
    logger.warn(
      `${rowsLeft}${rowsLeft >= DEFAULT_ROWS_COUNT_CAP ? '+' : ''} row(s) remain in DEFAULT partition ${displayName(catalog.defaultPartition!)}: ` +
        (created.refused > 0
          ? 'some could not be moved without firing foreign keys, triggers or rules (see the refusals); the others '
          : 'their keys ') +
        'fall outside every partition this policy keeps (older than retention, or beyond premake)',
    );
  }
  const failures = [...plan.failures, ...finished.failures, ...created.failures, ...retired.failures];
  const retiredSteps = [...finished.done, ...retired.done];
  // Steps the budget left are the next hop's (or the next run's) work, not a failure.
  const stepsLeft = finished.notRun + created.notRun + retired.notRun;
  return {
    counts: {
      created: created.done.length,
      dropped: retiredSteps.filter((s) => s.kind === 'drop').length,
      detached: retiredSteps.filter((s) => s.kind === 'detach').length,
      rowsMovedFromDefault: created.rowsMovedFromDefault,
      rowsLeftInDefault: rowsLeft,
      rescuesRefused: created.refused,
      partitionsAhead: partitionsAhead(plan, [...attached, ...created.done.map((s) => s.range!)]),
      ...(stepsLeft > 0 ? { stepsLeft } : {}),
    },
    ...(failures.length > 0 ? { failure: failures.join('; ') } : {}),
    ...(created.warnings.length > 0 ? { notes: created.warnings.map((w) => `warning: ${w}`) } : {}),
    ...(stepsLeft > 0 ? { stopReason: TIME_BUDGET_STOP } : {}),
  };
}

/** The ledger is itself partitioned by month; the partition job keeps it so. */
const LEDGER_TARGET: PartitionTargetInput = { table: 'housekeeping.job_runs', interval: 'month', premake: 2 };

/** Counts are what was done, also by a target that failed part way (its partitions exist); a skipped target did nothing. */
const ran = (target: { state: string }) => target.state !== 'skipped';

export const partitionJob = {
  job: 'partition',
  eventSchema: partitionEventSchema,
  targetSchema: partitionTargetSchema,
  targetName: (policy) => displayName(parseQualifiedName(policy.table, 'table')),
  targetDescription: 'the table as schema.table',
  implicitTargets: (options, dryRun) =>
    options.maintainLedger && !dryRun ? [{ ...LEDGER_TARGET, retention: { keep: options.ledgerRetentionMonths, mode: 'drop' } }] : [],
  runTarget: runPartitionTarget,
  stopReasons: [TIME_BUDGET_STOP],
  metrics: {
    created: { name: 'PartitionsCreated', unit: 'Count', value: (t) => (ran(t) ? (t.counts.created ?? 0) : undefined) },
    retired: { name: 'PartitionsRetired', unit: 'Count', value: (t) => (ran(t) ? (t.counts.dropped ?? 0) + (t.counts.detached ?? 0) : undefined) },
    /** One value per target whose catalog was read; alarm on the Minimum: below 1, tomorrow's inserts have nowhere to go. */
    ahead: { name: 'PartitionsAhead', unit: 'Count', value: (t) => (ran(t) ? t.counts.partitionsAhead : undefined) },
  },
  remainingCount: 'stepsLeft',
  migrations: [{ version: 4, name: 'partition_retirements', sql: partitionRetirements }],
  // Hourly runs: a failed one is retried long before tomorrow's partition is needed.
  lambda: { timeoutSeconds: 300, retryAttempts: 1 },
} satisfies JobDefinition<typeof partitionTargetSchema, PartitionEvent, PartitionEventInput>;
