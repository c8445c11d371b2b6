/**
 * THE FILE YOU EDIT: which databases, and in each which tables get which policy, on which
 * schedule. `databases` lists the fleet: one entry per database (README, "A fleet of databases");
 * adding a database is adding an entry. Each `policy` is exactly the
 * policy its Lambda runs (README: "Partition policy", "Archive policy", "Rollup policy"), shipped
 * inside the function (the schedule sends `{}`), and is validated when you run `cdk synth`: a bad
 * field fails the synth, naming it.
 * A schedule is a six-field EventBridge Scheduler cron in the time zone you name (daylight saving
 * handled by the service), or a rate. `enabled: false` keeps a job's schedule paused across deploys.
 * Remove a job's entry to not deploy it.
 */
import { Duration } from 'aws-cdk-lib';
import type { DatabaseConfig, DatabaseJobs } from './fleet';

/** One database's jobs. */
export type HousekeepingConfig = DatabaseJobs;

/** The jobs `cdk deploy -c secretArn=…` runs against one database (id `main`); entries below may reuse them. */
export const housekeeping: HousekeepingConfig = {
  partition: {
    // Every day at 03:00 in Seoul; premake 7 leaves a week of partitions to notice a failing run.
    schedule: { cron: '0 3 * * ? *', timeZone: 'Asia/Seoul' },
    timeout: Duration.minutes(5),
    policy: {
      targets: [
        { table: 'public.events', interval: 'day', premake: 7, retention: { keep: 30, mode: 'drop' } },
        { table: 'public.invoices', interval: 'month', premake: 3, retention: { duration: '24 months', mode: 'detach' } },
      ],
    },
  },
  archive: {
    // Nightly from 01:00 Seoul time; a backlog bigger than one 15-minute invocation continues in
    // chained invocations until it is done, but no batch starts after 05:00 (business hours stay quiet).
    schedule: { cron: '0 1 * * ? *', timeZone: 'Asia/Seoul' },
    window: { start: '01:00', end: '05:00', timeZone: 'Asia/Seoul' },
    maxContinuations: 15,
    timeout: Duration.minutes(15),
    policy: {
      targets: [
        {
          source: 'public.orders',
          destination: 'archive.orders',
          ageColumn: 'completed_at',
          ageFallbackColumn: 'created_at',
          retention: '13 months',
          pauseMs: 20,
        },
      ],
    },
  },
  rollup: {
    // Every 15 minutes: hourly buckets settle 5 minutes after the hour and are recomputed twice more.
    schedule: { rate: Duration.minutes(15) },
    timeout: Duration.minutes(10),
    policy: {
      targets: [
        {
          name: 'usage_hourly',
          source: 'public.usage',
          timeColumn: 'occurred_at',
          changedAtColumn: 'updated_at',
          target: 'public.usage_hourly',
          spec: {
            groupBy: ['tenant_id'],
            measures: [
              { name: 'events', fn: 'count' },
              { name: 'units', fn: 'sum', column: 'units' },
            ],
          },
        },
      ],
    },
  },
  rollupLagAlarmSeconds: 7_200,
};

/** What the sandbox (-c demo=true) runs against the demo tables it seeds. */
/**
 * The sandbox's archive bucket, which the sandbox stack makes (with versioning, encryption, a
 * lifecycle to cheaper storage classes, and an Athena table over it): bucket names are global,
 * so it carries the account and region `cdk deploy` runs with.
 */
export const sandboxArchiveBucket = `pg-housekeeper-demo-${process.env.CDK_DEFAULT_ACCOUNT ?? 'local'}-${process.env.CDK_DEFAULT_REGION ?? 'local'}`;

export const demoHousekeeping: HousekeepingConfig = {
  partition: {
    schedule: { rate: Duration.hours(1) },
    policy: {
      targets: [
        { table: 'demo.events', interval: 'day', premake: 7, retention: { keep: 14 } },
        { table: 'demo.invoices', interval: 'month', premake: 3, retention: { duration: '12 months', mode: 'detach' } },
      ],
    },
  },
  archive: {
    schedule: { rate: Duration.hours(1) },
    policy: {
      targets: [
        {
          source: 'demo.orders',
          destination: 'demo.orders_archive',
          ageColumn: 'completed_at',
          ageFallbackColumn: 'created_at',
          retention: '90 days',
        },
        {
          source: 'demo.page_views',
          destination: { s3: { bucket: sandboxArchiveBucket, prefix: 'demo' } },
          ageColumn: 'viewed_at',
          retention: '30 days',
        },
      ],
    },
  },
  rollup: {
    schedule: { rate: Duration.minutes(15) },
    policy: {
      targets: [
        {
          name: 'demo_events_hourly',
          source: 'demo.events',
          timeColumn: 'occurred_at',
          target: 'demo.events_hourly',
          spec: { groupBy: ['kind'], measures: [{ name: 'events', fn: 'count' }] },
        },
      ],
    },
  },
};

/**
 * The databases `cdk deploy` maintains, one entry each: its id (on every metric, alarm, log line
 * and function name), its secret's complete ARN (`kmsKeyArn` when the secret is encrypted with a
 * customer-managed key; required for another account's secret), its network, and its jobs. Ids
 * are unique; a bad entry fails `cdk synth`, naming it (`databases[1].id: ...`). For example:
 *
 *   { id: 'orders', secretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:orders-db-AbCdEf',
 *     network: { vpcId: 'vpc-0abc', subnetIds: ['subnet-0aaa', 'subnet-0bbb'] }, jobs: housekeeping },
 *
 * The entry with `sandbox: true` is what `cdk deploy -c demo=true` makes: its own small RDS
 * PostgreSQL, secret and demo tables.
 */
export const databases: DatabaseConfig[] = [{ id: 'demo', sandbox: true, jobs: demoHousekeeping }];
