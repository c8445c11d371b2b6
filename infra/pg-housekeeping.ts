import { Duration } from 'aws-cdk-lib';
import type { IConnectable, ISecurityGroup, IVpc, SubnetSelection } from 'aws-cdk-lib/aws-ec2';
import { Rule, RuleTargetInput, type Schedule } from 'aws-cdk-lib/aws-events';
import { LambdaFunction } from 'aws-cdk-lib/aws-events-targets';
import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import type { ITopic } from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import type { z } from 'zod';
import { archiveEventSchema, type ArchiveEventInput } from '../functions/archive/policy';
import { partitionEventSchema, type PartitionEventInput } from '../functions/partition/policy';
import { rollupEventSchema, type RollupEventInput } from '../functions/rollup/policy';
import { parseConfig } from '../shared/config';
import { JobFunction } from './job-function';
import { Observability } from './observability';

export type JobName = 'partition' | 'archive' | 'rollup';

export interface ScheduledJob<Policy> {
  /** EventBridge schedule, in UTC: Schedule.cron({ minute: '5' }) or Schedule.rate(Duration.hours(1)). */
  schedule: Schedule;
  /** Exactly the event the Lambda receives (README); validated at synth. */
  policy: Policy;
  /** Lambda timeout; the job's time budget is what remains of it minus a margin. */
  timeout?: Duration;
  memorySize?: number;
}

export interface PgHousekeepingProps {
  /** Secret in the RDS JSON shape: host, port, username, password, dbname. */
  databaseSecret: ISecret;
  /**
   * The RDS instance or cluster (anything with connections): each job is allowed to reach its
   * port, and the functions run in its VPC unless `vpc` is given.
   */
  database?: IConnectable & { vpc?: IVpc };
  vpc?: IVpc;
  vpcSubnets?: SubnetSelection;
  securityGroups?: ISecurityGroup[];
  partition?: ScheduledJob<PartitionEventInput>;
  archive?: ScheduledJob<ArchiveEventInput>;
  rollup?: ScheduledJob<RollupEventInput>;
  logRetention?: RetentionDays;
  /** Alarm when a rollup's lag (database now − watermark) exceeds this. Default 2 hours. */
  rollupLagAlarmSeconds?: number;
  /** Where alarms notify; without it they only change state. */
  alarmTopic?: ITopic;
}

const JOBS: Record<JobName, { schema: z.ZodType; defaultTimeout: Duration }> = {
  partition: { schema: partitionEventSchema, defaultTimeout: Duration.minutes(5) },
  archive: { schema: archiveEventSchema, defaultTimeout: Duration.minutes(15) },
  rollup: { schema: rollupEventSchema, defaultTimeout: Duration.minutes(15) },
};

/** pg-housekeeper's scheduled jobs against one database, with their alarms, dashboard and saved queries. */
export class PgHousekeeping extends Construct {
  readonly jobs: Partial<Record<JobName, JobFunction>> = {};

  constructor(scope: Construct, id: string, props: PgHousekeepingProps) {
    super(scope, id);
    for (const job of Object.keys(JOBS) as JobName[]) {
      const scheduled = props[job];
      if (!scheduled) continue;
      // Bad config fails `cdk synth`, naming the field, not the first night in production.
      parseConfig(JOBS[job].schema, scheduled.policy, `${id}.${job}.policy`);
      const timeout = scheduled.timeout ?? JOBS[job].defaultTimeout;
      if (timeout.toSeconds() > 900) throw new Error(`${id}.${job}.timeout: Lambda allows at most 15 minutes`);
      const fn = new JobFunction(this, capitalize(job), {
        entry: job,
        databaseSecret: props.databaseSecret,
        timeout,
        memorySize: scheduled.memorySize,
        logRetention: props.logRetention ?? RetentionDays.THREE_MONTHS,
        vpc: props.vpc ?? props.database?.vpc,
        vpcSubnets: props.vpcSubnets,
        securityGroups: props.securityGroups,
      });
      props.database?.connections.allowDefaultPortFrom(fn.function, `pg-housekeeper ${job}`);
      new Rule(this, `${capitalize(job)}Schedule`, {
        schedule: scheduled.schedule,
        description: `pg-housekeeper ${job}`,
        targets: [
          new LambdaFunction(fn.function, {
            event: RuleTargetInput.fromObject(scheduled.policy),
            retryAttempts: 2,
            maxEventAge: Duration.hours(1),
            deadLetterQueue: fn.deadLetterQueue,
          }),
        ],
      });
      this.jobs[job] = fn;
    }
    new Observability(this, 'Observability', {
      jobs: this.jobs,
      rollupLagAlarmSeconds: props.rollupLagAlarmSeconds ?? 7_200,
      alarmTopic: props.alarmTopic,
    });
  }
}

const capitalize = (s: string) => s[0]!.toUpperCase() + s.slice(1);
