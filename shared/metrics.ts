import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import { databaseIdFromEnvironment } from './database-id';
import { METRICS_NAMESPACE, SERVICE_NAME } from './environment';
import type { TargetMetric } from './job';
import type { JobSummary } from './run-job';

/**
 * The metrics of every run, whatever the job: one definition for the handlers that emit and the
 * alarms that watch. Each job declares its own (JobDefinition.metrics).
 */
export const METRIC = {
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
export function createJobMetrics(job: string, database: string | undefined = databaseIdFromEnvironment()): Metrics {
  return new Metrics({ namespace: METRICS_NAMESPACE, serviceName: SERVICE_NAME, defaultDimensions: { job, ...(database ? { database } : {}) } });
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
export function publishRunMetrics(metrics: Metrics, run: RunMetrics, jobMetrics: readonly TargetMetric[]): void {
  if (run.dryRun) return;
  const { summary } = run;
  metrics.addMetric(METRIC.runDuration, MetricUnit.Milliseconds, run.durationMs);
  metrics.addMetric(METRIC.targetsFailed, MetricUnit.Count, summary ? summary.failed.length : 1);
  metrics.addMetric(METRIC.continuations, MetricUnit.Count, run.continuations ?? 0);
  for (const seconds of run.secondsSinceLastSuccess.values()) metrics.addMetric(METRIC.secondsSinceLastSuccess, MetricUnit.Seconds, seconds);
  for (const target of summary?.targets ?? []) {
    for (const metric of jobMetrics) {
      const value = metric.value(target);
      if (value !== undefined) metrics.addMetric(metric.name, MetricUnit[metric.unit], value);
    }
  }
  metrics.publishStoredMetrics();
}
