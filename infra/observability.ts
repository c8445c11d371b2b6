import { Duration } from 'aws-cdk-lib';
import {
  Alarm,
  ComparisonOperator,
  Dashboard,
  GraphWidget,
  Metric,
  TreatMissingData,
  type IAlarmAction,
} from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import { QueryDefinition, QueryString } from 'aws-cdk-lib/aws-logs';
import type { ITopic } from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import { METRIC, METRICS_NAMESPACE } from '../shared/metrics';
import type { JobFunction } from './job-function';
import type { JobName } from './pg-housekeeping';

export interface ObservabilityProps {
  jobs: Partial<Record<JobName, JobFunction>>;
  rollupLagAlarmSeconds: number;
  alarmTopic?: ITopic;
}

/** Our EMF metrics carry the dimensions Powertools writes: service and job. */
export function jobMetric(job: JobName, name: string, statistic: string, period = Duration.hours(1)): Metric {
  return new Metric({ namespace: METRICS_NAMESPACE, metricName: name, dimensionsMap: { service: 'pg-housekeeper', job }, statistic, period });
}

/** Alarms, one dashboard and saved Logs Insights queries for the jobs that are deployed. */
export class Observability extends Construct {
  readonly alarms: Alarm[] = [];

  constructor(scope: Construct, id: string, props: ObservabilityProps) {
    super(scope, id);
    const action: IAlarmAction | undefined = props.alarmTopic ? new SnsAction(props.alarmTopic) : undefined;
    const alarm = (alarmId: string, options: ConstructorParameters<typeof Alarm>[2]) => {
      const created = new Alarm(this, alarmId, options);
      if (action) created.addAlarmAction(action);
      this.alarms.push(created);
      return created;
    };
    const dashboard = new Dashboard(this, 'Dashboard', { dashboardName: undefined });
    const entries = Object.entries(props.jobs) as Array<[JobName, JobFunction]>;

    for (const [job, fn] of entries) {
      alarm(`${job}Errors`, {
        alarmDescription: `pg-housekeeper ${job}: an invocation failed (a target failed, or the job could not run). See the "failed runs" saved query.`,
        metric: fn.function.metricErrors({ period: Duration.minutes(5), statistic: 'Sum' }),
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: TreatMissingData.NOT_BREACHING,
      });
      alarm(`${job}DeadLetters`, {
        alarmDescription: `pg-housekeeper ${job}: events landed in the dead-letter queue after all retries`,
        metric: fn.deadLetterQueue.metricApproximateNumberOfMessagesVisible({ period: Duration.minutes(5), statistic: 'Maximum' }),
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: TreatMissingData.NOT_BREACHING,
      });
    }
    if (props.jobs.partition) {
      alarm('PartitionsAheadLow', {
        alarmDescription: 'pg-housekeeper partition: some table has no partition ready after the current one; inserts fail at the next boundary',
        metric: jobMetric('partition', METRIC.partitionsAhead, 'Minimum'),
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: ComparisonOperator.LESS_THAN_THRESHOLD,
        treatMissingData: TreatMissingData.NOT_BREACHING,
      });
    }
    if (props.jobs.rollup) {
      alarm('RollupLagHigh', {
        alarmDescription: `pg-housekeeper rollup: a rollup's watermark is more than ${props.rollupLagAlarmSeconds} s behind the database clock`,
        metric: jobMetric('rollup', METRIC.rollupLagSeconds, 'Maximum'),
        threshold: props.rollupLagAlarmSeconds,
        evaluationPeriods: 1,
        comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
        treatMissingData: TreatMissingData.NOT_BREACHING,
      });
    }

    dashboard.addWidgets(
      new GraphWidget({
        title: 'Invocations and errors',
        left: entries.flatMap(([, fn]) => [fn.function.metricInvocations(), fn.function.metricErrors()]),
        width: 12,
      }),
      new GraphWidget({ title: 'Run duration (ms, max)', left: entries.map(([job]) => jobMetric(job, METRIC.runDuration, 'Maximum')), width: 12 }),
    );
    const jobWidgets: GraphWidget[] = [];
    if (props.jobs.partition) {
      jobWidgets.push(
        new GraphWidget({
          title: 'Partitions',
          left: [jobMetric('partition', METRIC.partitionsCreated, 'Sum'), jobMetric('partition', METRIC.partitionsRetired, 'Sum')],
          right: [jobMetric('partition', METRIC.partitionsAhead, 'Minimum')],
          width: 8,
        }),
      );
    }
    if (props.jobs.archive) jobWidgets.push(new GraphWidget({ title: 'Rows archived', left: [jobMetric('archive', METRIC.rowsArchived, 'Sum')], width: 8 }));
    if (props.jobs.rollup) jobWidgets.push(new GraphWidget({ title: 'Rollup lag (s, max)', left: [jobMetric('rollup', METRIC.rollupLagSeconds, 'Maximum')], width: 8 }));
    if (jobWidgets.length) dashboard.addWidgets(...jobWidgets);

    const logGroups = entries.map(([, fn]) => fn.logGroup);
    if (logGroups.length === 0) return;
    new QueryDefinition(this, 'FailedRunsQuery', {
      queryDefinitionName: 'pg-housekeeper/failed-runs',
      logGroups,
      queryString: new QueryString({
        fields: ['@timestamp', 'job', 'target', 'runId', 'detail', 'error'],
        filterStatements: ['level = "ERROR"'],
        sort: '@timestamp desc',
        limit: 100,
      }),
    });
    new QueryDefinition(this, 'RunSummariesQuery', {
      queryDefinitionName: 'pg-housekeeper/run-summaries',
      logGroups,
      queryString: new QueryString({
        fields: ['@timestamp', 'job', 'durationMs', 'dryRun'],
        filterStatements: ['message = "run summary"'],
        statsStatements: ['count(*) as runs, sum(strcontains(@message, "\\"failed\\":[\\"")) as runsWithFailures, avg(durationMs) as avgMs, max(durationMs) as maxMs by job, bin(1d)'],
      }),
    });
    new QueryDefinition(this, 'SlowestRunsQuery', {
      queryDefinitionName: 'pg-housekeeper/slowest-targets',
      logGroups,
      queryString: new QueryString({
        fields: ['@timestamp', 'job', 'target', 'durationMs', 'stopReason'],
        filterStatements: ['message like /^target (succeeded|failed)/'],
        sort: 'durationMs desc',
        limit: 25,
      }),
    });
  }
}
