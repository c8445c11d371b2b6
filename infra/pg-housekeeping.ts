import { CfnOutput, Duration, RemovalPolicy, TimeZone } from 'aws-cdk-lib';
import type { IAlarmAction } from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import { SecurityGroup, type IConnectable, type ISecurityGroup, type IVpc, type SubnetSelection } from 'aws-cdk-lib/aws-ec2';
import { Policy, PolicyStatement, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Key } from 'aws-cdk-lib/aws-kms';
import { RecursiveLoop } from 'aws-cdk-lib/aws-lambda';
import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Schedule, ScheduleExpression, ScheduleTargetInput, TimeWindow } from 'aws-cdk-lib/aws-scheduler';
import { LambdaInvoke } from 'aws-cdk-lib/aws-scheduler-targets';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import { Topic, type ITopic } from 'aws-cdk-lib/aws-sns';
import { EmailSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import { Construct } from 'constructs';
import type { z } from 'zod';
import { archiveEventSchema, type ArchiveEventInput } from '../functions/archive/policy';
import { archiveS3Targets, grantArchiveS3 } from './archive-s3';
import { partitionEventSchema, type PartitionEventInput } from '../functions/partition/policy';
import { rollupEventSchema, type RollupEventInput } from '../functions/rollup/policy';
import { parseConfig } from '../shared/config';
import { identifierProblem } from '../shared/identifiers';
import { LAMBDA_RECURSION_LIMIT, MAX_CONTINUATIONS_CAP } from '../shared/lambda-limits';
import { windowProblems, type MaintenanceWindow } from '../shared/window';
import { JobFunction } from './job-function';
import { Observability, type WatchedJob } from './observability';
import { resolveSchedule, type JobSchedule, type ResolvedSchedule } from './schedule-expression';
import { longestGapSeconds } from './schedule-gap';

export type JobName = 'partition' | 'archive' | 'rollup';

export interface ScheduledJob<Policy> {
  /**
   * When it runs: `{ cron: '0 3 * * ? *', timeZone: 'Asia/Seoul' }` (EventBridge Scheduler cron,
   * six fields, evaluated in the zone with its daylight saving changes) or `{ rate: Duration.minutes(15) }`.
   */
  schedule: JobSchedule;
  /** false: deployed with its schedule disabled (no drift: a deploy keeps it so); "run now" still works. Default true. */
  enabled?: boolean;
  /**
   * A run that stops on its time budget with work left invokes the function again, up to this many
   * times in a row (0: never; the next scheduled run goes on). Default 15, which Lambda's recursive
   * loop detection allows; more turns the function's recursive loop detection off (README).
   */
  maxContinuations?: number;
  /** Outside these wall-clock hours no archive batch or rollup slice starts, and no continuation follows. */
  window?: MaintenanceWindow;
  /** Exactly the event the Lambda receives (README); validated at synth and shipped inside the function. */
  policy: Policy;
  /** Lambda timeout; the job's time budget is what remains of it minus a margin. */
  timeout?: Duration;
  memorySize?: number;
  /**
   * The longest gap between two scheduled runs. Derived from `rate(...)` and from most `cron(...)`
   * expressions; required for the others (day-of-month or month restricted).
   */
  runsEvery?: Duration;
  /** Alarm when a target has not succeeded for this long. Default: `missedRunsBeforeAlarm` periods plus the timeout. */
  staleAfter?: Duration;
  /** Lambda's retries of a failed invocation, 0 to 2. Default 1 for partition and archive, 0 for rollup. */
  retryAttempts?: number;
}

export interface PgHousekeepingProps {
  /** Secret in the RDS JSON shape: host, port, username, password, dbname. */
  databaseSecret: ISecret;
  /**
   * The RDS instance or cluster (anything with connections): the jobs' security group is allowed
   * to its port, and the functions run in its VPC unless `vpc` is given.
   */
  database?: IConnectable & { vpc?: IVpc };
  vpc?: IVpc;
  vpcSubnets?: SubnetSelection;
  /** The functions' security groups. In a VPC without them, one group is made for all jobs (output `JobsSecurityGroupId`). */
  securityGroups?: ISecurityGroup[];
  partition?: ScheduledJob<PartitionEventInput>;
  archive?: ScheduledJob<ArchiveEventInput>;
  rollup?: ScheduledJob<RollupEventInput>;
  logRetention?: RetentionDays;
  /** Default RETAIN: the logs are the record of every DROP and DELETE, and outlive the stack. */
  logRemovalPolicy?: RemovalPolicy;
  /** Alarm when a rollup's lag (database now − watermark) exceeds this. Default 2 hours. */
  rollupLagAlarmSeconds?: number;
  /** Schedule periods without an invocation or a safety metric before alarming. Default 2. */
  missedRunsBeforeAlarm?: number;
  /** Existing topic every alarm notifies (ALARM and OK). */
  alarmTopic?: ITopic;
  /** Creates an encrypted topic with this address subscribed (confirm the email AWS sends). */
  alarmEmail?: string;
  /** Reserved concurrency per function. Off by default: the advisory locks already serialize runs. */
  reservedConcurrency?: number;
  /** A NOLOGIN role that owns the maintained tables; every session runs SET ROLE to it (README, "Database roles"). */
  databaseRole?: string;
}

const JOBS: Record<JobName, { schema: z.ZodType; defaultTimeout: Duration; retryAttempts: number }> = {
  partition: { schema: partitionEventSchema, defaultTimeout: Duration.minutes(5), retryAttempts: 1 },
  archive: { schema: archiveEventSchema, defaultTimeout: Duration.minutes(15), retryAttempts: 1 },
  // Every few minutes: the next tick is the retry.
  rollup: { schema: rollupEventSchema, defaultTimeout: Duration.minutes(15), retryAttempts: 0 },
};

/** pg-housekeeper's scheduled jobs against one database, with their alarms, dashboard and saved queries. */
export class PgHousekeeping extends Construct {
  readonly jobs: Partial<Record<JobName, JobFunction>> = {};
  readonly schedules: Partial<Record<JobName, Schedule>> = {};
  /** The S3 prefixes the archive function may write (one entry per archive target with an S3 destination). */
  archiveS3: Array<{ bucket: string; objects: string; pending: string }> = [];
  readonly alarmTopic?: ITopic;
  readonly observability: Observability;

  constructor(scope: Construct, id: string, props: PgHousekeepingProps) {
    super(scope, id);
    if (props.databaseRole !== undefined) {
      const problem = identifierProblem(props.databaseRole);
      if (problem) throw new Error(`${id}.databaseRole: ${problem}`);
    }
    const missedRuns = props.missedRunsBeforeAlarm ?? 2;
    if (!Number.isInteger(missedRuns) || missedRuns < 1) throw new Error(`${id}.missedRunsBeforeAlarm: a whole number ≥ 1`);
    if (props.reservedConcurrency !== undefined && (!Number.isInteger(props.reservedConcurrency) || props.reservedConcurrency < 1)) {
      throw new Error(`${id}.reservedConcurrency: a whole number ≥ 1, or leave it unset`);
    }
    const vpc = props.vpc ?? props.database?.vpc;
    // One group for every job, so there is one id to allow on the database.
    const securityGroups =
      props.securityGroups ?? (vpc ? [new SecurityGroup(this, 'JobsSecurityGroup', { vpc, description: 'pg-housekeeper jobs', allowAllOutbound: true })] : undefined);
    if (props.database && securityGroups) {
      for (const group of securityGroups) props.database.connections.allowDefaultPortFrom(group, 'pg-housekeeper jobs');
    }

    const watched: Partial<Record<JobName, WatchedJob>> = {};
    for (const job of Object.keys(JOBS) as JobName[]) {
      const scheduled = props[job];
      if (!scheduled) continue;
      const where = `${id}.${job}`;
      // Bad config fails `cdk synth`, naming the field, not the first night in production.
      parseConfig(JOBS[job].schema, scheduled.policy, `${where}.policy`);
      const timeout = scheduled.timeout ?? JOBS[job].defaultTimeout;
      if (timeout.toSeconds() > 900) throw new Error(`${where}.timeout: Lambda allows at most 15 minutes`);
      const retryAttempts = scheduled.retryAttempts ?? JOBS[job].retryAttempts;
      if (![0, 1, 2].includes(retryAttempts)) throw new Error(`${where}.retryAttempts: Lambda allows 0, 1 or 2`);
      const schedule = resolveSchedule(scheduled.schedule, `${where}.schedule`);
      const maxContinuations = scheduled.maxContinuations ?? LAMBDA_RECURSION_LIMIT;
      if (!Number.isInteger(maxContinuations) || maxContinuations < 0 || maxContinuations > MAX_CONTINUATIONS_CAP) {
        throw new Error(`${where}.maxContinuations: a whole number from 0 to ${MAX_CONTINUATIONS_CAP} (got ${maxContinuations})`);
      }
      if (scheduled.window !== undefined) {
        const problems = windowProblems(scheduled.window, `${where}.window`);
        if (problems.length > 0) throw new Error(problems.join('; '));
      }
      if (scheduled.enabled !== undefined && typeof scheduled.enabled !== 'boolean') throw new Error(`${where}.enabled: true or false`);
      const enabled = scheduled.enabled ?? true;
      const period = alarmPeriod(where, scheduled, schedule, missedRuns);
      const fn = new JobFunction(this, capitalize(job), {
        entry: job,
        databaseSecret: props.databaseSecret,
        timeout,
        memorySize: scheduled.memorySize,
        logRetention: props.logRetention ?? RetentionDays.THREE_MONTHS,
        logRemovalPolicy: props.logRemovalPolicy ?? RemovalPolicy.RETAIN,
        vpc,
        vpcSubnets: props.vpcSubnets,
        securityGroups,
        policy: scheduled.policy,
        retryAttempts,
        reservedConcurrency: props.reservedConcurrency,
        databaseRole: props.databaseRole,
        maxContinuations,
        window: scheduled.window,
        // Lambda stops a chain of requests after 16 invocations; a longer chain is ours to bound (maxContinuations).
        recursiveLoop: maxContinuations > LAMBDA_RECURSION_LIMIT ? RecursiveLoop.ALLOW : undefined,
      });
      // A continuation invokes this function and nothing else. A policy of its own, not the role's
      // default policy, which the function depends on: that one naming the function would be a cycle.
      const continueSelf = new Policy(this, `${capitalize(job)}ContinueSelf`, {
        roles: [fn.function.role!],
        statements: [new PolicyStatement({ actions: ['lambda:InvokeFunction'], resources: [fn.function.functionArn] })],
      });
      // --- archive to S3: grants on each target's own prefixes only (infra/archive-s3.ts) ---
      const s3Grants = job === 'archive' ? grantArchiveS3(this, fn.function.role!, scheduled.policy as ArchiveEventInput) : undefined;
      if (s3Grants) this.archiveS3 = archiveS3Targets(scheduled.policy as ArchiveEventInput);
      // --- end archive to S3 ---
      const timer = new Schedule(this, `${capitalize(job)}Schedule`, {
        schedule: ScheduleExpression.expression(schedule.expression, TimeZone.of(schedule.timeZone)),
        description: `pg-housekeeper ${job}`,
        enabled,
        // Runs at the time written, not somewhere in a window after it.
        timeWindow: TimeWindow.off(),
        target: new LambdaInvoke(fn.function, {
          // Empty: the function runs the policy it was deployed with. An event with `targets`
          // overrides it for an ad-hoc run; `{"dryRun": true}` runs the deployed policy dry.
          input: ScheduleTargetInput.fromObject({}),
          retryAttempts: 2,
          maxEventAge: Duration.hours(1),
          deadLetterQueue: fn.failures,
        }),
      });
      // The first scheduled run may already continue.
      timer.node.addDependency(continueSelf);
      if (s3Grants) timer.node.addDependency(s3Grants);
      new CfnOutput(this, `${capitalize(job)}FunctionName`, { value: fn.function.functionName, description: `pg-housekeeper ${job} function ("run now": aws lambda invoke --invocation-type Event)` });
      this.jobs[job] = fn;
      this.schedules[job] = timer;
      watched[job] = {
        fn,
        period,
        staleAfter: scheduled.staleAfter ?? Duration.seconds(period.toSeconds() * missedRuns + timeout.toSeconds()),
        enabled,
      };
    }
    if (securityGroups) {
      new CfnOutput(this, 'JobsSecurityGroupId', {
        value: securityGroups.map((group) => group.securityGroupId).join(','),
        description: "Allow this security group on the database's port",
      });
    }

    const actions: IAlarmAction[] = [];
    if (props.alarmTopic) actions.push(new SnsAction(props.alarmTopic));
    if (props.alarmEmail) {
      // CloudWatch can publish to an encrypted topic only with a customer-managed key that lets it.
      const key = new Key(this, 'AlarmsKey', { enableKeyRotation: true, description: 'pg-housekeeper alarm notifications' });
      key.grant(new ServicePrincipal('cloudwatch.amazonaws.com'), 'kms:Decrypt', 'kms:GenerateDataKey*');
      const topic = new Topic(this, 'Alarms', { masterKey: key, enforceSSL: true, displayName: 'pg-housekeeper alarms' });
      topic.addSubscription(new EmailSubscription(props.alarmEmail));
      actions.push(new SnsAction(topic));
      this.alarmTopic = topic;
    } else {
      this.alarmTopic = props.alarmTopic;
    }
    if (this.alarmTopic) new CfnOutput(this, 'AlarmTopicArn', { value: this.alarmTopic.topicArn });
    this.observability = new Observability(this, 'Observability', {
      jobs: watched,
      rollupLagAlarmSeconds: props.rollupLagAlarmSeconds ?? 7_200,
      missedRuns,
      actions,
    });
  }
}

/**
 * The alarms that treat missing data as breaching need a period holding at least one run, and
 * CloudWatch caps period × evaluation periods at one day below hourly periods, seven days above.
 */
function alarmPeriod(where: string, scheduled: ScheduledJob<unknown>, schedule: ResolvedSchedule, missedRuns: number): Duration {
  const gap = scheduled.runsEvery?.toSeconds() ?? longestGapSeconds(schedule.expression, schedule.timeZone);
  if (gap === undefined) {
    throw new Error(`${where}.runsEvery: cannot tell how often ${schedule.expression} runs; set runsEvery to the longest gap between two runs`);
  }
  const seconds = Math.max(60, Math.ceil(gap / 60) * 60);
  const cap = seconds < 3_600 ? 86_400 : 604_800;
  if (seconds * missedRuns > cap) {
    throw new Error(
      `${where}.schedule: runs every ${seconds} s; CloudWatch cannot watch ${missedRuns} periods of that (at most ${cap} s in all): run it more often or lower missedRunsBeforeAlarm`,
    );
  }
  return Duration.seconds(seconds);
}

const capitalize = (s: string) => s[0]!.toUpperCase() + s.slice(1);
