import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { databaseIdFromEnvironment } from './database-id';
import type { JobName, JobSummary } from './run-job';

/** CloudWatch namespace and metric names: one definition for the handlers that emit and the alarms that watch. */
export const METRICS_NAMESPACE = 'PgHousekeeper';
export const METRIC = {
  partitionsCreated: 'PartitionsCreated',
  partitionsRetired: 'PartitionsRetired',
  /** One value per target whose catalog was read; alarm on the Minimum: below 1, tomorrow's inserts have nowhere to go. */
  partitionsAhead: 'PartitionsAhead',
  rowsArchived: 'RowsArchived',
  rollupLagSeconds: 'RollupLagSeconds',
  runDuration: 'RunDurationMs',
  targetsFailed: 'TargetsFailed',
  /** One value per target on every run, whatever its state, from the ledger; alarm on the Maximum. */
  secondsSinceLastSuccess: 'SecondsSinceLastSuccess',
  /** Per run: 1 when it sent a continuation (a chain's next hop), else 0. */
  continuations: 'Continuations',
} as const;

/**
 * Dimensions `service`, `job` and, in a deployed function, `database`: two databases' runs are two
 * metrics, so each database's alarms watch its own (infra/observability.ts builds the same dimensions).
 */
export function createJobMetrics(job: JobName, database: string | undefined = databaseIdFromEnvironment()): Metrics {
  return new Metrics({ namespace: METRICS_NAMESPACE, serviceName: 'pg-housekeeper', defaultDimensions: { job, ...(database ? { database } : {}) } });
}

export interface RunMetrics {
  /** Undefined when the run died before any target (no connection): TargetsFailed then counts the run itself. */
  summary: JobSummary | undefined;
  durationMs: number;
  dryRun: boolean;
  /** Per target, from the ledger after the run; empty when the ledger could not be read. */
  secondsSinceLastSuccess: ReadonlyMap<string, number>;
  /** Continuations this run sent (0 or 1). */
  continuations?: number;
}

/**
 * Emits one EMF record for a run. A dry run emits nothing: it acted on nothing, and its plan's
 * numbers (partitions ahead, lag) would tell the safety alarms that maintenance happened.
 */
export function publishRunMetrics(metrics: Metrics, run: RunMetrics): void {
  if (run.dryRun) return;
  const { summary } = run;
  metrics.addMetric(METRIC.runDuration, MetricUnit.Milliseconds, run.durationMs);
  metrics.addMetric(METRIC.targetsFailed, MetricUnit.Count, summary ? summary.failed.length : 1);
  metrics.addMetric(METRIC.continuations, MetricUnit.Count, run.continuations ?? 0);
  for (const seconds of run.secondsSinceLastSuccess.values()) metrics.addMetric(METRIC.secondsSinceLastSuccess, MetricUnit.Seconds, seconds);
  for (const target of summary?.targets ?? []) {
    // Counts are what was done, also by a target that failed part way (its partitions exist).
    const c = target.counts;
    if (summary!.job === 'partition') {
      if (target.state === 'skipped') continue;
      metrics.addMetric(METRIC.partitionsCreated, MetricUnit.Count, c.created ?? 0);
      metrics.addMetric(METRIC.partitionsRetired, MetricUnit.Count, (c.dropped ?? 0) + (c.detached ?? 0));
      if (c.partitionsAhead !== undefined) metrics.addMetric(METRIC.partitionsAhead, MetricUnit.Count, c.partitionsAhead);
    } else if (summary!.job === 'archive') {
      if (target.state !== 'skipped') metrics.addMetric(METRIC.rowsArchived, MetricUnit.Count, (c.rowsMoved ?? 0) + (c.rowsPurged ?? 0));
    } else if (target.state === 'succeeded' && c.lagSeconds !== undefined) {
      metrics.addMetric(METRIC.rollupLagSeconds, MetricUnit.Seconds, c.lagSeconds);
    }
  }
  metrics.publishStoredMetrics();
}
