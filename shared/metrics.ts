import { Metrics, MetricUnit } from '@aws-lambda-powertools/metrics';
import type { JobName, JobSummary } from './run-job';

/** CloudWatch namespace and metric names: one definition for the handlers that emit and the alarms that watch. */
export const METRICS_NAMESPACE = 'PgHousekeeper';
export const METRIC = {
  partitionsCreated: 'PartitionsCreated',
  partitionsRetired: 'PartitionsRetired',
  /** One value per target; alarm on the Minimum: below 1, tomorrow's inserts have nowhere to go. */
  partitionsAhead: 'PartitionsAhead',
  rowsArchived: 'RowsArchived',
  rollupLagSeconds: 'RollupLagSeconds',
  runDuration: 'RunDurationMs',
  targetsFailed: 'TargetsFailed',
} as const;

export function createJobMetrics(job: JobName): Metrics {
  return new Metrics({ namespace: METRICS_NAMESPACE, serviceName: 'pg-housekeeper', defaultDimensions: { job } });
}

/** Emits one EMF record for a run. `summary` is undefined when the run died before any target (no connection). */
export function publishRunMetrics(metrics: Metrics, summary: JobSummary | undefined, durationMs: number): void {
  metrics.addMetric(METRIC.runDuration, MetricUnit.Milliseconds, durationMs);
  metrics.addMetric(METRIC.targetsFailed, MetricUnit.Count, summary ? summary.failed.length : 1);
  for (const target of summary?.targets ?? []) {
    const c = target.counts;
    if (target.state !== 'succeeded') continue;
    if (summary!.job === 'partition') {
      metrics.addMetric(METRIC.partitionsCreated, MetricUnit.Count, c.created ?? 0);
      metrics.addMetric(METRIC.partitionsRetired, MetricUnit.Count, (c.dropped ?? 0) + (c.detached ?? 0));
      if (c.partitionsAhead !== undefined) metrics.addMetric(METRIC.partitionsAhead, MetricUnit.Count, c.partitionsAhead);
    } else if (summary!.job === 'archive') {
      metrics.addMetric(METRIC.rowsArchived, MetricUnit.Count, (c.rowsMoved ?? 0) + (c.rowsPurged ?? 0));
    } else if (c.lagSeconds !== undefined) {
      metrics.addMetric(METRIC.rollupLagSeconds, MetricUnit.Seconds, c.lagSeconds);
    }
  }
  metrics.publishStoredMetrics();
}
