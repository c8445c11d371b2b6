import { Duration } from 'aws-cdk-lib';
import {
  Alarm,
  ComparisonOperator,
  Dashboard,
  GraphWidget,
  type IAlarmAction,
  type IMetric,
  Metric,
  TreatMissingData,
} from 'aws-cdk-lib/aws-cloudwatch';
import { QueryDefinition, QueryString } from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { JOBS, type JobName } from '../functions/registry';
import { METRICS_NAMESPACE, SERVICE_NAME } from '../shared/environment';
import { METRIC } from '../shared/metrics';
import type { JobFunction } from './job-function';

/** What the alarms need to know of one deployed job. */
export interface WatchedJob {
  fn: JobFunction;
  /** Longest gap between two scheduled runs: the period of every alarm that treats missing data as breaching. */
  period: Duration;
  /** Alarm when a target's newest success is older than this. */
  staleAfter: Duration;
  /** false: its schedule is disabled, so the alarms that fire on silence notify no one. */
  enabled?: boolean;
}

export interface ObservabilityProps {
  jobs: Partial<Record<JobName, WatchedJob>>;
  rollupLagAlarmSeconds: number;
  /** Consecutive schedule periods without an invocation (or a safety metric) before alarming. */
  missedRuns: number;
  /** Notified when any alarm goes to ALARM and back to OK. */
  actions: IAlarmAction[];
}

/** Our EMF metrics carry the dimensions Powertools writes: service and job. */
function jobMetric(job: JobName, name: string, statistic: string, period = Duration.hours(1)): Metric {
  return new Metric({ namespace: METRICS_NAMESPACE, metricName: name, dimensionsMap: { service: SERVICE_NAME, job }, statistic, period });
}

/** Alarms, one dashboard and saved Logs Insights queries for the jobs that are deployed. */
export class Observability extends Construct {
  readonly alarms: Alarm[] = [];

  constructor(scope: Construct, id: string, props: ObservabilityProps) {
    super(scope, id);
    const alarm = (alarmId: string, options: ConstructorParameters<typeof Alarm>[2]) => {
      const created = new Alarm(this, alarmId, options);
      for (const action of props.actions) {
        created.addAlarmAction(action);
        created.addOkAction(action);
      }
      this.alarms.push(created);
      return created;
    };
    /**
     * Missing data is breaching: a job that stops running, or runs and never succeeds, must not
     * look healthy. The period holds at least one scheduled run, and `missedRuns` consecutive
     * periods must breach, so a run that lands late in its window does not page anyone.
     */
    const whileRunning = (metric: IMetric, enabled = true) => ({
      metric,
      evaluationPeriods: props.missedRuns,
      datapointsToAlarm: props.missedRuns,
      treatMissingData: TreatMissingData.BREACHING,
      // A job paused in the config file is silent on purpose: these alarms still show it, but page no one.
      actionsEnabled: enabled,
    });
    const dashboard = new Dashboard(this, 'Dashboard', { dashboardName: undefined });
    const entries = Object.entries(props.jobs) as Array<[JobName, WatchedJob]>;

    for (const [job, watched] of entries) {
      const { fn, period } = watched;
      const enabled = watched.enabled !== false;
      alarm(`${job}Errors`, {
        alarmDescription: `pg-housekeeper ${job}: an invocation failed (a target failed, or the job could not run). See the "failed runs" saved query.`,
        metric: fn.function.metricErrors({ period: Duration.minutes(5), statistic: 'Sum' }),
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: TreatMissingData.NOT_BREACHING,
      });
      // Messages arriving, not messages visible: each new failure notifies again, and the alarm
      // clears after five quiet minutes instead of staying red while the queue keeps them 14 days.
      alarm(`${job}Failures`, {
        alarmDescription: `pg-housekeeper ${job}: an invocation failed after its retries (or its schedule could not deliver it); the message in the failures queue holds the error`,
        metric: fn.failures.metricNumberOfMessagesSent({ period: Duration.minutes(5), statistic: 'Sum' }),
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: TreatMissingData.NOT_BREACHING,
      });
      alarm(`${job}NotInvoked`, {
        alarmDescription: `pg-housekeeper ${job}: not invoked for ${props.missedRuns} schedule periods of ${period.toHumanString()} (rule disabled or deleted, or invocations throttled)`,
        ...whileRunning(fn.function.metricInvocations({ period, statistic: 'Sum' }), enabled),
        threshold: 1,
        comparisonOperator: ComparisonOperator.LESS_THAN_THRESHOLD,
      });
      alarm(`${job}Stale`, {
        alarmDescription:
          `pg-housekeeper ${job}: a target's last success is more than ${watched.staleAfter.toHumanString()} old ` +
          '(failing, skipped because its lock is held, or the job stopped running). The run summary names the target.',
        ...whileRunning(jobMetric(job, METRIC.secondsSinceLastSuccess, 'Maximum', period), enabled),
        threshold: watched.staleAfter.toSeconds(),
        comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
      });
    }
    if (props.jobs.partition) {
      alarm('PartitionsAheadLow', {
        alarmDescription:
          'pg-housekeeper partition: some table has no partition ready after the current one (or no run reported it); inserts fail at the next boundary',
        ...whileRunning(
          jobMetric('partition', JOBS.partition.metrics.ahead.name, 'Minimum', props.jobs.partition.period),
          props.jobs.partition.enabled !== false,
        ),
        threshold: 1,
        comparisonOperator: ComparisonOperator.LESS_THAN_THRESHOLD,
      });
    }
    if (props.jobs.rollup) {
      alarm('RollupLagHigh', {
        alarmDescription: `pg-housekeeper rollup: a rollup's watermark is more than ${props.rollupLagAlarmSeconds} s behind the database clock (or no run reported it)`,
        ...whileRunning(jobMetric('rollup', JOBS.rollup.metrics.lag.name, 'Maximum', props.jobs.rollup.period), props.jobs.rollup.enabled !== false),
        threshold: props.rollupLagAlarmSeconds,
        comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
      });
    }

    dashboard.addWidgets(
      new GraphWidget({
        title: 'Invocations and errors',
        left: entries.flatMap(([, { fn }]) => [fn.function.metricInvocations(), fn.function.metricErrors()]),
        width: 12,
      }),
      new GraphWidget({ title: 'Run duration (ms, max)', left: entries.map(([job]) => jobMetric(job, METRIC.runDuration, 'Maximum')), width: 12 }),
    );
    dashboard.addWidgets(
      new GraphWidget({
        title: 'Continuations (chained hops sent)',
        left: entries.map(([job]) => jobMetric(job, METRIC.continuations, 'Sum')),
        width: 24,
      }),
    );
    const jobWidgets: GraphWidget[] = [
      new GraphWidget({
        title: 'Seconds since last success (max over targets)',
        left: entries.map(([job]) => jobMetric(job, METRIC.secondsSinceLastSuccess, 'Maximum')),
        width: 8,
      }),
    ];
    if (props.jobs.partition) {
      jobWidgets.push(
        new GraphWidget({
          title: 'Partitions',
          left: [
            jobMetric('partition', JOBS.partition.metrics.created.name, 'Sum'),
            jobMetric('partition', JOBS.partition.metrics.retired.name, 'Sum'),
          ],
          right: [jobMetric('partition', JOBS.partition.metrics.ahead.name, 'Minimum')],
          width: 8,
        }),
      );
    }
    if (props.jobs.archive)
      jobWidgets.push(new GraphWidget({ title: 'Rows archived', left: [jobMetric('archive', JOBS.archive.metrics.archived.name, 'Sum')], width: 8 }));
    if (props.jobs.rollup)
      jobWidgets.push(
        new GraphWidget({ title: 'Rollup lag (s, max)', left: [jobMetric('rollup', JOBS.rollup.metrics.lag.name, 'Maximum')], width: 8 }),
      );
    if (entries.length) dashboard.addWidgets(...jobWidgets);

    const logGroups = entries.map(([, { fn }]) => fn.logGroup);
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
        statsStatements: [
          'count(*) as runs, sum(strcontains(@message, "\\"failed\\":[\\"")) as runsWithFailures, avg(durationMs) as avgMs, max(durationMs) as maxMs by job, bin(1d)',
        ],
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
