import { Arn, ArnFormat, CfnOutput, Duration, RemovalPolicy, Stack, TimeZone, Token } from 'aws-cdk-lib';
import type { Dashboard, IAlarmAction } from 'aws-cdk-lib/aws-cloudwatch';
import { SnsAction } from 'aws-cdk-lib/aws-cloudwatch-actions';
import { type IConnectable, type ISecurityGroup, type IVpc, SecurityGroup, type SubnetSelection } from 'aws-cdk-lib/aws-ec2';
import { Policy, PolicyStatement, ServicePrincipal } from 'aws-cdk-lib/aws-iam';
import { Key } from 'aws-cdk-lib/aws-kms';
import { RecursiveLoop } from 'aws-cdk-lib/aws-lambda';
import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Schedule, ScheduleExpression, ScheduleTargetInput, TimeWindow } from 'aws-cdk-lib/aws-scheduler';
import { LambdaInvoke } from 'aws-cdk-lib/aws-scheduler-targets';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import { type ITopic, Topic } from 'aws-cdk-lib/aws-sns';
import { EmailSubscription } from 'aws-cdk-lib/aws-sns-subscriptions';
import { Construct } from 'constructs';
import type { z } from 'zod';
import { JOB_NAMES, JOBS, type JobName } from '../functions/registry';
import { databaseIdProblem } from '../shared/database-id';
import { identifierProblem } from '../shared/identifiers';
import type { Job } from '../shared/job';
import { LAMBDA_RECURSION_LIMIT, MAX_CONTINUATIONS_CAP } from '../shared/lambda-limits';
import { parseJobEvent } from '../shared/run-job';
import { type MaintenanceWindow, windowProblems } from '../shared/window';
import { JobFunction } from './job-function';
import { databaseNames } from './names';
import { Observability, type WatchedJob } from './observability';
import { type JobSchedule, type ResolvedSchedule, resolveSchedule } from './schedule-expression';
import { longestGapSeconds } from './schedule-gap';

/** A job's entry in PgHousekeepingProps (public: CDK apps that reuse the construct write these). @public */
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
  /** Lambda's retries of a failed invocation, 0 to 2. Default: the job's (1 for partition and archive, 0 for rollup). */
  retryAttempts?: number;
}

/** One optional entry per job of the registry, each with its own policy type. @public */
export type ScheduledJobs = { [J in JobName]?: ScheduledJob<z.input<(typeof JOBS)[J]['eventSchema']>> };

export interface PgHousekeepingProps extends ScheduledJobs {
  /**
   * The database's id in its fleet (lowercase letters, digits, hyphens; default `main`): the
   * `database` dimension of every metric, a key of every log line, and part of the name of every
   * function, schedule, alarm and saved query. Unique among the PgHousekeeping of a stack.
   */
  databaseId?: string;
  /** Secret in the RDS JSON shape: host, port, username, password, dbname. The functions may read this secret and no other. */
  databaseSecret: ISecret;
  /**
   * The customer-managed KMS key the secret is encrypted with (a key ARN): the functions may
   * `kms:Decrypt` with it through Secrets Manager, for this secret only. Required for a secret in
   * another account (the AWS-managed key cannot be shared).
   */
  kmsKeyArn?: string;
  /**
   * The RDS instance or cluster (anything with connections): the jobs' security group is allowed
   * to its port, and the functions run in its VPC unless `vpc` is given.
   */
  database?: IConnectable & { vpc?: IVpc };
  vpc?: IVpc;
  vpcSubnets?: SubnetSelection;
  /** The functions' security groups. In a VPC without them, one group is made for all jobs (output `JobsSecurityGroupId`). */
  securityGroups?: ISecurityGroup[];
  logRetention?: RetentionDays;
  /** Default RETAIN: the logs are the record of every DROP and DELETE, and outlive the stack. */
  logRemovalPolicy?: RemovalPolicy;
  /** Alarm when a rollup's lag (database now − watermark) exceeds this. Default 2 hours. */
  rollupLagAlarmSeconds?: number;
  /** Schedule periods without an invocation or a safety metric before alarming. Default 2. */
  missedRunsBeforeAlarm?: number;
  /** Existing topic every alarm notifies (ALARM and OK). */
  alarmTopic?: ITopic;
  /** More topics every alarm notifies besides (a team's own). */
  alarmTopics?: ITopic[];
  /** A dashboard shared by a fleet: this database adds its row. Without it, a dashboard of its own. */
  dashboard?: Dashboard;
  /** Creates an encrypted topic with this address subscribed (confirm the email AWS sends). */
  alarmEmail?: string;
  /** Reserved concurrency per function. Off by default: the advisory locks already serialize runs. */
  reservedConcurrency?: number;
  /** A NOLOGIN role that owns the maintained tables; every session runs SET ROLE to it (README, "Database roles"). */
  databaseRole?: string;
}

/** pg-housekeeper's scheduled jobs against one database, with their alarms, dashboard and saved queries. */
export class PgHousekeeping extends Construct {
  readonly jobs: Partial<Record<JobName, JobFunction>> = {};
  readonly schedules: Partial<Record<JobName, Schedule>> = {};
  readonly alarmTopic?: ITopic;
  readonly observability: Observability;

  /** The database's id in its fleet (`main` unless given). */
  readonly databaseId: string;

  constructor(scope: Construct, id: string, props: PgHousekeepingProps) {
    super(scope, id);
    const databaseId = props.databaseId ?? DEFAULT_DATABASE_ID;
    const idProblem = databaseIdProblem(databaseId);
    if (idProblem) throw new Error(`${id}.databaseId: ${idProblem}`);
    // Two instances with one id would publish the same metrics: each one's alarms would watch the other's runs.
    const twin = Stack.of(this)
      .node.findAll()
      .find((c): c is PgHousekeeping => c instanceof PgHousekeeping && c !== this && c.databaseId === databaseId);
    if (twin) throw new Error(`${id}.databaseId: "${databaseId}" is also the databaseId of ${twin.node.path}; give each database its own id`);
    this.databaseId = databaseId;
    checkSecretPlacement(this, id, props);
    const names = databaseNames(Stack.of(this).stackName, databaseId);
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
      props.securityGroups ??
      (vpc ? [new SecurityGroup(this, 'JobsSecurityGroup', { vpc, description: 'pg-housekeeper jobs', allowAllOutbound: true })] : undefined);
    if (props.database && securityGroups) {
      for (const group of securityGroups) props.database.connections.allowDefaultPortFrom(group, 'pg-housekeeper jobs');
    }

    const watched: Partial<Record<JobName, WatchedJob>> = {};
    for (const job of JOB_NAMES) {
      const scheduled: ScheduledJob<unknown> | undefined = props[job];
      if (!scheduled) continue;
      const where = `${id}.${job}`;
      const definition: Job = JOBS[job];
      // Bad config fails `cdk synth`, naming the field, not the first night in production.
      parseJobEvent(definition, scheduled.policy, `${where}.policy`);
      const timeout = scheduled.timeout ?? Duration.seconds(definition.lambda.timeoutSeconds);
      if (timeout.toSeconds() > 900) throw new Error(`${where}.timeout: Lambda allows at most 15 minutes`);
      const retryAttempts = scheduled.retryAttempts ?? definition.lambda.retryAttempts;
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
        databaseId,
        functionName: names.function(job),
        databaseSecret: props.databaseSecret,
        kmsKeyArn: props.kmsKeyArn,
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
      const timer = new Schedule(this, `${capitalize(job)}Schedule`, {
        schedule: ScheduleExpression.expression(schedule.expression, TimeZone.of(schedule.timeZone)),
        scheduleName: names.schedule(job),
        description: `pg-housekeeper ${job} of database ${databaseId}`,
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
      new CfnOutput(this, `${capitalize(job)}FunctionName`, {
        value: fn.function.functionName,
        description: `pg-housekeeper ${job} function of database ${databaseId} ("run now": aws lambda invoke --invocation-type Event)`,
      });
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
        description: `Allow this security group on the port of database ${databaseId}`,
      });
    }
    // What another account names in its secret's resource policy and key policy (README, "A secret in another account").
    const roles = Object.values(this.jobs).map((fn) => fn.function.role!.roleArn);
    if (roles.length > 0) {
      new CfnOutput(this, 'FunctionRoleArns', { value: roles.join(','), description: `The roles that read the secret of database ${databaseId}` });
    }

    const actions: IAlarmAction[] = [];
    for (const topic of [props.alarmTopic, ...(props.alarmTopics ?? [])]) {
      if (!topic) continue;
      checkTopicRegion(this, `${id}.alarmTopicArn`, topic);
      actions.push(new SnsAction(topic));
    }
    if (props.alarmEmail) {
      const topic = emailAlarmTopic(this, props.alarmEmail);
      actions.push(new SnsAction(topic));
      this.alarmTopic = topic;
      new CfnOutput(this, 'AlarmTopicArn', { value: topic.topicArn });
    } else {
      this.alarmTopic = props.alarmTopic;
    }
    this.observability = new Observability(this, 'Observability', {
      databaseId,
      names,
      dashboard: props.dashboard,
      jobs: watched,
      rollupLagAlarmSeconds: props.rollupLagAlarmSeconds ?? 7_200,
      missedRuns,
      actions,
    });
  }
}

/**
 * An encrypted topic with `email` subscribed, in `scope` as `AlarmsKey` and `Alarms`. CloudWatch
 * can publish to an encrypted topic only with a customer-managed key that lets it.
 */
export function emailAlarmTopic(scope: Construct, email: string): Topic {
  const key = new Key(scope, 'AlarmsKey', { enableKeyRotation: true, description: 'pg-housekeeper alarm notifications' });
  key.grant(new ServicePrincipal('cloudwatch.amazonaws.com'), 'kms:Decrypt', 'kms:GenerateDataKey*');
  const topic = new Topic(scope, 'Alarms', { masterKey: key, enforceSSL: true, displayName: 'pg-housekeeper alarms' });
  topic.addSubscription(new EmailSubscription(email));
  return topic;
}

/** The id of a database given none: a one-database deploy (`-c secretArn=…`) is a fleet of one `main`. */
export const DEFAULT_DATABASE_ID = 'main';

/**
 * A secret the functions read through their own region's Secrets Manager: another region's is
 * refused, and another account's needs its customer-managed key (the AWS-managed
 * aws/secretsmanager key cannot be used from another account). Checked when both ARNs are known.
 */
function checkSecretPlacement(scope: Construct, id: string, props: PgHousekeepingProps): void {
  const arn = props.databaseSecret.secretFullArn ?? props.databaseSecret.secretArn;
  if (Token.isUnresolved(arn)) return;
  const secret = Arn.split(arn, ArnFormat.COLON_RESOURCE_NAME);
  const stack = Stack.of(scope);
  if (!Token.isUnresolved(stack.region) && secret.region !== stack.region) {
    throw new Error(
      `${id}.secretArn: the secret is in ${secret.region}, this stack deploys to ${stack.region}; the functions read secrets through their own region's Secrets Manager (replicate the secret to ${stack.region})`,
    );
  }
  if (!Token.isUnresolved(stack.account) && secret.account !== stack.account && !props.kmsKeyArn) {
    throw new Error(
      `${id}.kmsKeyArn: the secret is in account ${secret.account}, this stack in ${stack.account}; a secret read from another account must be encrypted with a customer-managed KMS key: ` +
        'give its ARN (README, "A secret in another account")',
    );
  }
}

/**
 * CloudWatch alarms notify SNS topics of their own region only (PutMetricAlarm refuses another
 * region's: the deploy would fail); another account's topic of the region is fine. Checked when
 * both regions are known.
 */
export function checkTopicRegion(scope: Construct, where: string, topic: ITopic): void {
  const stack = Stack.of(scope);
  const region = topic.env.region;
  if (Token.isUnresolved(region) || Token.isUnresolved(stack.region) || region === stack.region) return;
  throw new Error(
    `${where}: the topic is in ${region}, this stack deploys to ${stack.region}; CloudWatch alarms notify only topics of their own region (make a topic in ${stack.region}, subscribing the other one if need be)`,
  );
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
