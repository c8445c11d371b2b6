import { Duration } from 'aws-cdk-lib';
import type { ISecurityGroup, IVpc, SubnetSelection } from 'aws-cdk-lib/aws-ec2';
import { Rule, RuleTargetInput, type Schedule } from 'aws-cdk-lib/aws-events';
import { LambdaFunction } from 'aws-cdk-lib/aws-events-targets';
import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import { Construct } from 'constructs';
import { partitionEventSchema, type PartitionEventInput } from '../functions/partition/policy';
import { parseConfig } from '../shared/config';
import { JobFunction } from './job-function';

export interface ScheduledJob<Policy> {
  /** EventBridge schedule (UTC): Schedule.cron({ minute: '5' }) or Schedule.rate(Duration.hours(1)). */
  schedule: Schedule;
  /** Exactly the event the Lambda receives; validated at synth. */
  policy: Policy;
  timeout?: Duration;
  memorySize?: number;
}

export interface PgHousekeepingProps {
  /** Secret in the RDS JSON shape: host, port, username, password, dbname. */
  databaseSecret: ISecret;
  vpc?: IVpc;
  vpcSubnets?: SubnetSelection;
  securityGroups?: ISecurityGroup[];
  partition?: ScheduledJob<PartitionEventInput>;
  logRetention?: RetentionDays;
}

/** pg-housekeeper's scheduled jobs against one database. */
export class PgHousekeeping extends Construct {
  readonly functions: Partial<Record<'partition', JobFunction>> = {};

  constructor(scope: Construct, id: string, props: PgHousekeepingProps) {
    super(scope, id);
    if (props.partition) {
      // Bad config fails `cdk synth`, not the first night in production.
      const policy = parseConfig(partitionEventSchema, props.partition.policy, `${id}.partition.policy`);
      const fn = new JobFunction(this, 'Partition', {
        job: 'partition',
        databaseSecret: props.databaseSecret,
        timeout: props.partition.timeout ?? Duration.minutes(5),
        memorySize: props.partition.memorySize,
        logRetention: props.logRetention ?? RetentionDays.THREE_MONTHS,
        vpc: props.vpc,
        vpcSubnets: props.vpcSubnets,
        securityGroups: props.securityGroups,
      });
      new Rule(this, 'PartitionSchedule', {
        schedule: props.partition.schedule,
        description: `pg-housekeeper partition: ${policy.targets.map((t) => t.table).join(', ')}`,
        targets: [
          new LambdaFunction(fn, {
            event: RuleTargetInput.fromObject(props.partition.policy),
            retryAttempts: 2,
            maxEventAge: Duration.hours(1),
          }),
        ],
      });
      this.functions.partition = fn;
    }
  }
}
