import type pg from 'pg';
import { displayName, parseQualifiedName } from '../../shared/identifiers';
import type { JobDefinition, PreparedTarget, PrepareItem, TargetContext, TargetOutcome } from '../../shared/job';
import type { JobLogger } from '../../shared/logger';
import { databaseNow, queryOne } from '../../shared/postgres';
import { ident, join, qualified, raw, sql } from '../../shared/sql';
import { TIME_BUDGET_STOP } from '../../shared/time-budget';
import { applySteps } from './apply';
import { type PartitionCatalog, readPartitionCatalog, readPartitionCatalogs } from './catalog';
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

/** rowsInDefault (no range) of many tables in one round trip; 0 for a table without DEFAULT. */
async function rowsInDefaults(client: pg.ClientBase, catalogs: readonly PartitionCatalog[]): Promise<number[]> {
  const counted = catalogs.flatMap((catalog, i) =>
    catalog.defaultPartition
      ? [
          sql`SELECT ${i}::int AS i, count(*)::int AS n FROM (SELECT 1 FROM ${qualified(catalog.defaultPartition)} LIMIT ${raw(String(DEFAULT_ROWS_COUNT_CAP))}) AS capped`,
        ]
      : [],
  );
  const out = catalogs.map(() => 0);
  if (counted.length === 0) return out;
  const { rows } = await client.query<{ i: number; n: number }>(join(counted, ' UNION ALL '));
  for (const row of rows) out[row.i] = row.n;
  return out;
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

/** What prepareTargets read for one target: its catalog and the database clock when it was read. */
interface PreparedPartition {
  catalog: PartitionCatalog;
  now: Date;
  /** Planned already (not in dry runs): runTarget does not plan again. */
  plan?: PartitionPlan;
}

/**
 * Every target's catalog in one round trip (plus one to count DEFAULT rows of the targets that
 * have nothing else to do). A target whose plan has no step is done here: its outcome is what a
 * run would report, without a round trip of its own.
 */
async function preparePartitionTargets(
  client: pg.ClientBase,
  items: ReadonlyArray<PrepareItem<PartitionTargetPolicy>>,
  _options: PartitionEvent,
  dryRun: boolean,
): Promise<PreparedTarget[]> {
  const readings = await readPartitionCatalogs(
    client,
    items.map((item) => parseQualifiedName(item.policy.table, 'table')),
  );
  const prepared: PreparedTarget[] = [];
  const idle: Array<{ at: number; catalog: PartitionCatalog; plan: PartitionPlan; logger: JobLogger; policy: PartitionTargetPolicy }> = [];
  for (const [i, reading] of readings.entries()) {
    if (reading.error) {
      prepared.push({ error: reading.error });
      continue;
    }
    const state: PreparedPartition = { catalog: reading.catalog, now: reading.now };
    prepared.push({ state });
    if (dryRun) continue;
    try {
      const plan = planPartitions(reading.catalog, items[i]!.policy, reading.now);
      state.plan = plan;
      if (plan.create.length + plan.retire.length + plan.finish.length + plan.failures.length === 0) {
        idle.push({ at: i, catalog: reading.catalog, plan, logger: items[i]!.logger, policy: items[i]!.policy });
      }
    } catch {
      // runTarget plans again and fails the target with this error, after its 'started' row.
    }
  }
  const rowsLeft = await rowsInDefaults(
    client,
    idle.map((entry) => entry.catalog),
  );
  for (const [k, { at, catalog, plan, logger, policy }] of idle.entries()) {
    logger.info('partition plan', describePlan(catalog, plan, policy));
    for (const warning of plan.warnings) logger.warn(warning);
    warnRowsLeft(logger, catalog, rowsLeft[k]!, 0);
    const attached = catalog.partitions.filter((p) => !p.detachPending);
    prepared[at] = {
      idle: {
        counts: {
          created: 0,
          dropped: 0,
          detached: 0,
          rowsMovedFromDefault: 0,
          rowsLeftInDefault: rowsLeft[k]!,
          rescuesRefused: 0,
          partitionsAhead: partitionsAhead(plan, attached),
        },
      },
    };
  }
  return prepared;
}

function warnRowsLeft(logger: JobLogger, catalog: PartitionCatalog, rowsLeft: number, refused: number): void {
  if (rowsLeft === 0) return;
  logger.warn(
    `${rowsLeft}${rowsLeft >= DEFAULT_ROWS_COUNT_CAP ? '+' : ''} row(s) remain in DEFAULT partition ${displayName(catalog.defaultPartition!)}: ` +
      (refused > 0 ? 'some could not be moved without firing foreign keys, triggers or rules (see the refusals); the others ' : 'their keys ') +
      'fall outside every partition this policy keeps (older than retention, or beyond premake)',
  );
}

async function runPartitionTarget(context: TargetContext<PartitionTargetPolicy, PartitionEvent>): Promise<TargetOutcome> {
  const { client, policy, options, logger } = context;
  const prepared = context.prepared as PreparedPartition | undefined;
  const parent = parseQualifiedName(policy.table, 'table');
  const catalog = prepared?.catalog ?? (await readPartitionCatalog(client, parent));
  const plan = prepared?.plan ?? planPartitions(catalog, policy, prepared?.now ?? (await databaseNow(client)));
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
  warnRowsLeft(logger, catalog, rowsLeft, created.refused);
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
  prepareTargets: preparePartitionTargets,
  concurrency: (options) => options.concurrency,
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
