import { App, Duration, Stack, Validations } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { Schedule } from 'aws-cdk-lib/aws-events';
import { SubnetType, Vpc } from 'aws-cdk-lib/aws-ec2';
import { DatabaseInstance, DatabaseInstanceEngine, PostgresEngineVersion } from 'aws-cdk-lib/aws-rds';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { AwsSolutionsChecks } from 'cdk-nag';
import { beforeAll, describe, expect, it } from 'vitest';
import { acknowledgeReviewedFindings } from '../../infra/nag';
import { PgHousekeeping, type PgHousekeepingProps } from '../../infra/pg-housekeeping';
import { HousekeepingStack } from '../../infra/stack';

const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod-db-AbCdEf';
const partitionPolicy = { targets: [{ table: 'public.events', interval: 'day' as const, premake: 7, retention: { keep: 30 } }] };
const archivePolicy = { targets: [{ source: 'public.orders', destination: 'archive.orders', ageColumn: 'completed_at', retention: '13 months' }] };
const rollupPolicy = {
  targets: [{ name: 'usage_hourly', source: 'public.usage', timeColumn: 'occurred_at', target: 'public.usage_hourly', spec: { measures: [{ name: 'events', fn: 'count' as const }] } }],
};

function stackWith(jobs: Partial<Pick<PgHousekeepingProps, 'partition' | 'archive' | 'rollup'>>) {
  const app = new App();
  const stack = new Stack(app, 'Test', { env: { account: '123456789012', region: 'eu-west-1' } });
  new PgHousekeeping(stack, 'Housekeeping', { databaseSecret: Secret.fromSecretCompleteArn(stack, 'Secret', SECRET_ARN), ...jobs });
  return stack;
}

describe('PgHousekeeping template', () => {
  let template: Template;
  beforeAll(() => {
    template = Template.fromStack(
      stackWith({
        partition: { schedule: Schedule.cron({ minute: '5' }), policy: partitionPolicy },
        archive: { schedule: Schedule.cron({ hour: '3', minute: '15' }), policy: archivePolicy },
        rollup: { schedule: Schedule.rate(Duration.minutes(15)), policy: rollupPolicy, timeout: Duration.minutes(10) },
      }),
    );
  });

  it('one Lambda per job: Node 22, arm64, concurrency 1, timeouts that fit the job, the secret ARN, a DLQ', () => {
    for (const [job, timeout] of [['partition', 300], ['archive', 900], ['rollup', 600]] as const) {
      template.hasResourceProperties('AWS::Lambda::Function', {
        Runtime: 'nodejs22.x',
        Architectures: ['arm64'],
        Timeout: timeout,
        ReservedConcurrentExecutions: 1,
        DeadLetterConfig: { TargetArn: Match.anyValue() },
        Environment: { Variables: Match.objectLike({ PGHK_DB_SECRET_ARN: SECRET_ARN, POWERTOOLS_METRICS_NAMESPACE: 'PgHousekeeper' }) },
        LoggingConfig: { LogGroup: { Ref: Match.stringLikeRegexp(`Housekeeping${job[0]!.toUpperCase()}${job.slice(1)}Logs`) } },
      });
    }
    template.resourceCountIs('AWS::Lambda::Function', 3);
    template.resourcePropertiesCountIs('AWS::Lambda::EventInvokeConfig', { MaximumRetryAttempts: 2, MaximumEventAgeInSeconds: 3600 }, 3);
    template.resourcePropertiesCountIs('AWS::SQS::Queue', { SqsManagedSseEnabled: true, MessageRetentionPeriod: 1_209_600 }, 3);
  });

  it('fires each from an EventBridge rule whose input is the policy, with bounded retries and a DLQ', () => {
    for (const [expression, policy] of [
      ['cron(5 * * * ? *)', partitionPolicy],
      ['cron(15 3 * * ? *)', archivePolicy],
      ['rate(15 minutes)', rollupPolicy],
    ] as const) {
      template.hasResourceProperties('AWS::Events::Rule', {
        ScheduleExpression: expression,
        Targets: [
          Match.objectLike({
            Input: JSON.stringify(policy),
            RetryPolicy: { MaximumRetryAttempts: 2, MaximumEventAgeInSeconds: 3600 },
            DeadLetterConfig: { Arn: Match.anyValue() },
          }),
        ],
      });
    }
  });

  it('lets each function read this one secret and nothing else', () => {
    const statements = Object.values(template.findResources('AWS::IAM::Policy')).flatMap(
      (p) => (p as { Properties: { PolicyDocument: { Statement: Array<{ Action: unknown; Resource: unknown }> } } }).Properties.PolicyDocument.Statement,
    );
    const secretStatements = statements.filter((s) => JSON.stringify(s.Action).includes('secretsmanager'));
    expect(secretStatements).toHaveLength(3);
    for (const s of secretStatements) expect(s).toMatchObject({ Action: ['secretsmanager:GetSecretValue', 'secretsmanager:DescribeSecret'], Resource: SECRET_ARN });
    expect(statements.filter((s) => s.Resource === '*')).toEqual([]);
  });

  it('keeps logs in explicit log groups with retention', () => {
    template.resourcePropertiesCountIs('AWS::Logs::LogGroup', { RetentionInDays: 90 }, 3);
  });

  it('alarms on errors, dead letters, rollup lag and partitions ahead < 1', () => {
    template.resourcePropertiesCountIs('AWS::CloudWatch::Alarm', { MetricName: 'Errors', Namespace: 'AWS/Lambda', Threshold: 1 }, 3);
    template.resourcePropertiesCountIs('AWS::CloudWatch::Alarm', { MetricName: 'ApproximateNumberOfMessagesVisible', Threshold: 1 }, 3);
    const dimensions = (job: string) => Match.arrayWith([{ Name: 'job', Value: job }, { Name: 'service', Value: 'pg-housekeeper' }]);
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'PartitionsAhead',
      Namespace: 'PgHousekeeper',
      Statistic: 'Minimum',
      ComparisonOperator: 'LessThanThreshold',
      Threshold: 1,
      Dimensions: dimensions('partition'),
    });
    template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'RollupLagSeconds',
      Statistic: 'Maximum',
      ComparisonOperator: 'GreaterThanThreshold',
      Threshold: 7200,
      Dimensions: dimensions('rollup'),
    });
  });

  it('has one dashboard and the saved Logs Insights queries', () => {
    template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    const queries = Object.values(template.findResources('AWS::Logs::QueryDefinition')).map(
      (q) => (q as { Properties: { Name: string; LogGroupNames: unknown[]; QueryString: string } }).Properties,
    );
    expect(queries.map((q) => q.Name).sort()).toEqual(['pg-housekeeper/failed-runs', 'pg-housekeeper/run-summaries', 'pg-housekeeper/slowest-targets']);
    for (const query of queries) expect(query.LogGroupNames).toHaveLength(3); // every job's log group
    expect(queries.find((q) => q.Name === 'pg-housekeeper/failed-runs')!.QueryString).toContain('filter level = "ERROR"');
  });
});

describe('deriving the network from an RDS instance', () => {
  it('runs the functions in the database VPC and opens its port to them', () => {
    const app = new App();
    const stack = new Stack(app, 'Derived', { env: { account: '123456789012', region: 'eu-west-1' } });
    const vpc = new Vpc(stack, 'Vpc', { maxAzs: 2, natGateways: 0, subnetConfiguration: [{ name: 'db', subnetType: SubnetType.PRIVATE_ISOLATED }] });
    const database = new DatabaseInstance(stack, 'Db', {
      engine: DatabaseInstanceEngine.postgres({ version: PostgresEngineVersion.VER_17 }),
      vpc,
      vpcSubnets: { subnetType: SubnetType.PRIVATE_ISOLATED },
    });
    new PgHousekeeping(stack, 'Housekeeping', {
      databaseSecret: database.secret!,
      database,
      vpcSubnets: { subnetType: SubnetType.PRIVATE_ISOLATED },
      partition: { schedule: Schedule.rate(Duration.hours(1)), policy: partitionPolicy },
    });
    const template = Template.fromStack(stack);
    template.hasResourceProperties('AWS::Lambda::Function', { VpcConfig: { SubnetIds: Match.anyValue(), SecurityGroupIds: Match.anyValue() } });
    template.hasResourceProperties('AWS::EC2::SecurityGroupIngress', {
      IpProtocol: 'tcp',
      Description: 'pg-housekeeper partition',
      FromPort: { 'Fn::GetAtt': [Match.stringLikeRegexp('^Db'), 'Endpoint.Port'] },
    });
  });
});

describe('synth refuses bad policies, naming the field', () => {
  it.each([
    ['partition', { targets: [{ table: 'public.events', interval: 'day', premake: 0 }] }, /Housekeeping\.partition\.policy\.targets\[0\]\.premake: Too small/],
    ['archive', { targets: [{ source: 'public.orders', ageColumn: 'completed_at', retention: '13 months' }] }, /Housekeeping\.archive\.policy\.targets\[0\]\.destination: is required in move mode/],
    ['rollup', { targets: [{ name: 'x', source: 'a', timeColumn: 't', target: 'b' }] }, /Housekeeping\.rollup\.policy\.targets\[0\]: set exactly one of spec .* or function/],
  ])('%s', (job, policy, message) => {
    expect(() => stackWith({ [job]: { schedule: Schedule.rate(Duration.hours(1)), policy } })).toThrowError(message);
  });
});

describe('cdk-nag AwsSolutions', () => {
  it.each([
    ['an existing database in an existing VPC', { kind: 'existing' as const, secretArn: SECRET_ARN, vpcId: 'vpc-0abc', subnetIds: ['subnet-1', 'subnet-2'], securityGroupId: 'sg-1' }],
    ['the sandbox (-c demo=true)', { kind: 'demo' as const }],
  ])('%s has no unacknowledged finding', (_label, target) => {
    const app = new App();
    const stack = new HousekeepingStack(app, 'Nag', { target, env: { account: '123456789012', region: 'eu-west-1' } });
    acknowledgeReviewedFindings(stack, { sandbox: target.kind === 'demo' });
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
    expect(() => app.synth()).not.toThrow();
  });

  it('does report a finding nobody acknowledged', () => {
    const app = new App();
    new HousekeepingStack(app, 'Nag', { target: { kind: 'demo' }, env: { account: '123456789012', region: 'eu-west-1' } });
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
    expect(() => app.synth()).toThrowError(/AwsSolutions-RDS10/);
  });
});
