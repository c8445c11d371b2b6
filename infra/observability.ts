import { Duration } from 'aws-cdk-lib';
import {
  Alarm,
  ComparisonOperator,
  Dashboard,
  GraphWidget,
  type GraphWidgetProps,
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
import type { databaseNames } from './names';

/** CloudWatch dashboards are 24 columns wide. */
const DASHBOARD_WIDTH = 24;

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
  /** The database watched: in every metric's dimensions, alarm name and description, widget title and query. */
  databaseId: string;
  /** Its physical names (infra/names.ts). */
  names: ReturnType<typeof databaseNames>;
  /** A fleet's shared dashboard, to which this database adds one row; without it, a dashboard of its own. */
  dashboard?: Dashboard;
  jobs: Partial<Record<JobName, WatchedJob>>;
  rollupLagAlarmSeconds: number;
  /** Consecutive schedule periods without an invocation (or a safety metric) before alarming. */
  missedRuns: number;
  /** Notified when any alarm goes to ALARM and back to OK. */
  actions: IAlarmAction[];
}

/** Our EMF metrics carry the dimensions Powertools writes: service, job and database (shared/metrics.ts). */
function jobMetric(database: string, job: JobName, name: string, statistic: string, period = Duration.hours(1)): Metric {
  return new Metric({ namespace: METRICS_NAMESPACE, metricName: name, dimensionsMap: { service: SERVICE_NAME, job, database }, statistic, period });
}

/** Alarms, one dashboard row and saved Logs Insights queries for one database's deployed jobs. */
export class Observability extends Construct {
  readonly alarms: Alarm[] = [];

  constructor(scope: Construct, id: string, props: ObservabilityProps) {
    super(scope, id);
    const db = props.databaseId;
    const metric = (job: JobName, name: string, statistic: string, period?: Duration) => jobMetric(db, job, name, statistic, period);
    // Named after the stack, the database and what fires, so the notification says which database (infra/names.ts).
    const alarm = (alarmId: string, options: ConstructorParameters<typeof Alarm>[2]) => {
      const created = new Alarm(this, alarmId, { ...options, alarmName: props.names.alarm(alarmId) });
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
    const entries = Object.entries(props.jobs) as Array<[JobName, WatchedJob]>;

    for (const [job, watched] of entries) {
      const { fn, period } = watched;
      const enabled = watched.enabled !== false;
      alarm(`${job}Errors`, {
        alarmDescription: `pg-housekeeper ${job} of database ${db}: an invocation failed (a target failed, or the job could not run). See the saved query ${props.names.query('failed-runs')}.`,
        metric: fn.function.metricErrors({ period: Duration.minutes(5), statistic: 'Sum' }),
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: TreatMissingData.NOT_BREACHING,
      });
      // Messages arriving, not messages visible: each new failure notifies again, and the alarm
      // clears after five quiet minutes instead of staying red while the queue keeps them 14 days.
      alarm(`${job}Failures`, {
        alarmDescription: `pg-housekeeper ${job} of database ${db}: an invocation failed after its retries (or its schedule could not deliver it); the message in the failures queue holds the error`,
        metric: fn.failures.metricNumberOfMessagesSent({ period: Duration.minutes(5), statistic: 'Sum' }),
        threshold: 1,
        evaluationPeriods: 1,
        comparisonOperator: ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: TreatMissingData.NOT_BREACHING,
      });
      alarm(`${job}NotInvoked`, {
        alarmDescription: `pg-housekeeper ${job} of database ${db}: not invoked for ${props.missedRuns} schedule periods of ${period.toHumanString()} (rule disabled or deleted, or invocations throttled)`,
        ...whileRunning(fn.function.metricInvocations({ period, statistic: 'Sum' }), enabled),
        threshold: 1,
        comparisonOperator: ComparisonOperator.LESS_THAN_THRESHOLD,
      });
      alarm(`${job}Stale`, {
        alarmDescription:
          `pg-housekeeper ${job} of database ${db}: a target's last success is more than ${watched.staleAfter.toHumanString()} old ` +
          '(failing, skipped because its lock is held, or the job stopped running). The run summary names the target.',
        ...whileRunning(metric(job, METRIC.secondsSinceLastSuccess, 'Maximum', period), enabled),
        threshold: watched.staleAfter.toSeconds(),
        comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
      });
    }
    if (props.jobs.partition) {
      alarm('PartitionsAheadLow', {
        alarmDescription: `pg-housekeeper partition of database ${db}: some table has no partition ready after the current one (or no run reported it); inserts fail at the next boundary`,
        ...whileRunning(
          metric('partition', JOBS.partition.metrics.ahead.name, 'Minimum', props.jobs.partition.period),
          props.jobs.partition.enabled !== false,
        ),
        threshold: 1,
        comparisonOperator: ComparisonOperator.LESS_THAN_THRESHOLD,
      });
    }
    if (props.jobs.rollup) {
      alarm('RollupLagHigh', {
        alarmDescription: `pg-housekeeper rollup of database ${db}: a rollup's watermark is more than ${props.rollupLagAlarmSeconds} s behind the database clock (or no run reported it)`,
        ...whileRunning(metric('rollup', JOBS.rollup.metrics.lag.name, 'Maximum', props.jobs.rollup.period), props.jobs.rollup.enabled !== false),
        threshold: props.rollupLagAlarmSeconds,
        comparisonOperator: ComparisonOperator.GREATER_THAN_THRESHOLD,
      });
    }

    // One row per database, every widget titled with it: a fleet's dashboard reads top to bottom, database by database.
    // At most six widgets of width 4: the dashboard's 24 columns, one row.
    const graph = (widget: GraphWidgetProps) => new GraphWidget({ ...widget, width: DASHBOARD_WIDTH / 6 });
    const row: GraphWidget[] = [
      graph({
        title: `${db}: invocations and errors`,
        left: entries.flatMap(([job, { fn }]) => [
          fn.function.metricInvocations({ label: `${job} invocations` }),
          fn.function.metricErrors({ label: `${job} errors` }),
        ]),
      }),
      graph({
        title: `${db}: run duration (ms, max) and continuations`,
        left: entries.map(([job]) => metric(job, METRIC.runDuration, 'Maximum')),
        right: entries.map(([job]) => metric(job, METRIC.continuations, 'Sum')),
      }),
      graph({
        title: `${db}: seconds since last success (max over targets)`,
        left: entries.map(([job]) => metric(job, METRIC.secondsSinceLastSuccess, 'Maximum')),
      }),
    ];
    if (props.jobs.partition) {
      row.push(
        graph({
          title: `${db}: partitions`,
          left: [metric('partition', JOBS.partition.metrics.created.name, 'Sum'), metric('partition', JOBS.partition.metrics.retired.name, 'Sum')],
          right: [metric('partition', JOBS.partition.metrics.ahead.name, 'Minimum')],
        }),
      );
    }
    if (props.jobs.archive) row.push(graph({ title: `${db}: rows archived`, left: [metric('archive', JOBS.archive.metrics.archived.name, 'Sum')] }));
    if (props.jobs.rollup)
      row.push(graph({ title: `${db}: rollup lag (s, max)`, left: [metric('rollup', JOBS.rollup.metrics.lag.name, 'Maximum')] }));
    const dashboard = props.dashboard ?? new Dashboard(this, 'Dashboard');
    if (entries.length) dashboard.addWidgets(...row);

    const logGroups = entries.map(([, { fn }]) => fn.logGroup);
    if (logGroups.length === 0) return;
    // Each database's own queries, over its own log groups, filtered by its id as well (a line without it is not this fleet's).
    const onlyThisDatabase = `database = "${db}"`;
    new QueryDefinition(this, 'FailedRunsQuery', {
      queryDefinitionName: props.names.query('failed-runs'),
      logGroups,
      queryString: new QueryString({
        fields: ['@timestamp', 'database', 'job', 'target', 'runId', 'detail', 'error'],
        filterStatements: [onlyThisDatabase, 'level = "ERROR"'],
        sort: '@timestamp desc',
        limit: 100,
      }),
    });
    new QueryDefinition(this, 'RunSummariesQuery', {
      queryDefinitionName: props.names.query('run-summaries'),
      logGroups,
      queryString: new QueryString({
        fields: ['@timestamp', 'database', 'job', 'durationMs', 'dryRun'],
        filterStatements: [onlyThisDatabase, 'message = "run summary"'],
        statsStatements: [
          'count(*) as runs, sum(strcontains(@message, "\\"failed\\":[\\"")) as runsWithFailures, avg(durationMs) as avgMs, max(durationMs) as maxMs by job, bin(1d)',
        ],
      }),
    });
    new QueryDefinition(this, 'SlowestRunsQuery', {
      queryDefinitionName: props.names.query('slowest-targets'),
      logGroups,
      queryString: new QueryString({
        fields: ['@timestamp', 'database', 'job', 'target', 'durationMs', 'stopReason'],
        filterStatements: [onlyThisDatabase, 'message like /^target (succeeded|failed)/'],
        sort: 'durationMs desc',
        limit: 25,
      }),
    });
  }
}
