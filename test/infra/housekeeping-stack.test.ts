import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App, Duration, Stack, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { CURRENTLY_RECOMMENDED_FLAGS } from 'aws-cdk-lib/cx-api';
import { Schedule } from 'aws-cdk-lib/aws-events';
import { SubnetType, Vpc } from 'aws-cdk-lib/aws-ec2';
import { DatabaseInstance, DatabaseInstanceEngine, PostgresEngineVersion } from 'aws-cdk-lib/aws-rds';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { beforeAll, describe, expect, it } from 'vitest';
import { readContext, USAGE } from '../../infra/context';
import { BUNDLING } from '../../infra/job-function';
import { PgHousekeeping, type PgHousekeepingProps } from '../../infra/pg-housekeeping';
import { longestGapSeconds } from '../../infra/schedule-gap';
import { HousekeepingStack } from '../../infra/stack';
import { CDK_CONTEXT, ENV, jobFunctions, synthStack, type Synthesized } from './synth';

const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod-db-AbCdEf';
const TOPIC_ARN = 'arn:aws:sns:eu-west-1:123456789012:oncall';
const partitionPolicy = { targets: [{ table: 'public.events', interval: 'day' as const, premake: 7, retention: { keep: 30 } }] };
const archivePolicy = { targets: [{ source: 'public.orders', destination: 'archive.orders', ageColumn: 'completed_at', retention: '13 months' }] };
const rollupPolicy = {
  targets: [{ name: 'usage_hourly', source: 'public.usage', timeColumn: 'occurred_at', target: 'public.usage_hourly', spec: { measures: [{ name: 'events', fn: 'count' as const }] } }],
};
const config = {
  partition: { schedule: Schedule.cron({ minute: '5' }), policy: partitionPolicy },
  archive: { schedule: Schedule.cron({ hour: '3', minute: '15' }), policy: archivePolicy },
  rollup: { schedule: Schedule.rate(Duration.minutes(15)), policy: rollupPolicy, timeout: Duration.minutes(10) },
};
const existingVpc = { kind: 'existing' as const, secretArn: SECRET_ARN, vpcId: 'vpc-0abc1234def567890', subnetIds: ['subnet-0aaa1111bbbb22223', 'subnet-0ccc3333dddd44445'] };

type Resource = Synthesized['json']['Resources'][string];
const ofType = (json: Synthesized['json'], type: string) => Object.entries(json.Resources).filter(([, r]) => r.Type === type) as Array<[string, Resource]>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
const props = (r: Resource) => r.Properties as Record<string, any>;

// Each stack shape is synthesized once (with cdk-nag, so a finding fails the file), then asserted on.
let existing: Synthesized;
let sandbox: Synthesized;
let withTopic: Synthesized;
beforeAll(() => {
  existing = synthStack('Existing', { target: existingVpc, config, deployment: { alarmEmail: 'oncall@example.com' } });
  sandbox = synthStack('Sandbox', { target: { kind: 'demo' } });
  withTopic = synthStack('WithTopic', { target: { kind: 'existing', secretArn: SECRET_ARN }, config, deployment: { alarmTopicArn: TOPIC_ARN, reservedConcurrency: 1 } }, { nag: false });
}, 120_000);

describe('the functions', () => {
  it('one per job: the newest Node runtime, arm64, timeouts that fit the job, the secret ARN, no reserved concurrency by default', () => {
    for (const [job, timeout] of [['partition', 300], ['archive', 900], ['rollup', 600]] as const) {
      existing.template.hasResourceProperties('AWS::Lambda::Function', {
        Runtime: 'nodejs24.x',
        Architectures: ['arm64'],
        Timeout: timeout,
        ReservedConcurrentExecutions: Match.absent(),
        DeadLetterConfig: Match.absent(),
        Environment: { Variables: Match.objectLike({ PGHK_DB_SECRET_ARN: SECRET_ARN, POWERTOOLS_METRICS_NAMESPACE: 'PgHousekeeper' }) },
        LoggingConfig: { LogGroup: { Ref: Match.stringLikeRegexp(`Housekeeping${job[0]!.toUpperCase()}${job.slice(1)}Logs`) } },
      });
    }
    expect(Object.keys(jobFunctions(existing.json)).sort()).toEqual(['archive', 'partition', 'rollup']);
    expect(BUNDLING.target).toBe('node24');
  });

  it('reserves concurrency only when asked to (new accounts cannot reserve any)', () => {
    withTopic.template.resourcePropertiesCountIs('AWS::Lambda::Function', { ReservedConcurrentExecutions: 1 }, 3);
    expect(ofType(existing.json, 'AWS::Lambda::Function').filter(([, r]) => props(r).ReservedConcurrentExecutions !== undefined)).toEqual([]);
  });

  it('trust the RDS and Aurora CAs of the Lambda runtime: NODE_EXTRA_CA_CERTS on every function, the sandbox seed included', () => {
    for (const shape of [existing, sandbox]) {
      const functions = ofType(shape.json, 'AWS::Lambda::Function').filter(([id]) => /Housekeeping|DemoSeed/.test(id));
      expect(functions.length).toBeGreaterThanOrEqual(3);
      for (const [, fn] of functions) expect(props(fn).Environment.Variables.NODE_EXTRA_CA_CERTS).toBe('/var/runtime/ca-cert.pem');
    }
    expect(ofType(sandbox.json, 'AWS::Lambda::Function').some(([id]) => id.startsWith('DemoSeed'))).toBe(true);
  });

  it('retry a failed invocation at most once, and send it with its error to an on-failure destination', () => {
    const invokeConfigs = ofType(existing.json, 'AWS::Lambda::EventInvokeConfig').map(([, r]) => props(r));
    const retries = Object.fromEntries(
      invokeConfigs.map((c) => [String(c.FunctionName.Ref).replace(/^Housekeeping(\w+?)Function.*/, '$1').toLowerCase(), c.MaximumRetryAttempts]),
    );
    expect(retries).toEqual({ partition: 1, archive: 1, rollup: 0 });
    for (const c of invokeConfigs) {
      expect(c.MaximumEventAgeInSeconds).toBe(3600);
      expect(c.DestinationConfig.OnFailure.Destination).toEqual({ 'Fn::GetAtt': [expect.stringMatching(/Failures/), 'Arn'] });
    }
    existing.template.resourcePropertiesCountIs('AWS::SQS::Queue', { SqsManagedSseEnabled: true, MessageRetentionPeriod: 1_209_600 }, 3);
  });

  it('let each function read this one secret and nothing else', () => {
    const statements = ofType(existing.json, 'AWS::IAM::Policy').flatMap(([, p]) => props(p).PolicyDocument.Statement as Array<{ Action: unknown; Resource: unknown }>);
    const secretStatements = statements.filter((s) => JSON.stringify(s.Action).includes('secretsmanager'));
    expect(secretStatements).toHaveLength(3);
    for (const s of secretStatements) {
      expect([s.Action].flat().sort()).toEqual(['secretsmanager:DescribeSecret', 'secretsmanager:GetSecretValue']);
      expect(s.Resource).toBe(SECRET_ARN);
    }
    expect(statements.filter((s) => s.Resource === '*')).toEqual([]);
  });

  it('keep their logs after `cdk destroy` (the record of every DROP), with retention', () => {
    const logGroups = ofType(existing.json, 'AWS::Logs::LogGroup');
    expect(logGroups).toHaveLength(3);
    for (const [, group] of logGroups) {
      expect(props(group).RetentionInDays).toBe(90);
      expect(group.DeletionPolicy).toBe('Retain');
    }
  });
});

describe('the schedules', () => {
  it('give the functions an empty event: the policy ships inside the function, not in the 8,192-character input', () => {
    for (const expression of ['cron(5 * * * ? *)', 'cron(15 3 * * ? *)', 'rate(15 minutes)']) {
      existing.template.hasResourceProperties('AWS::Events::Rule', {
        ScheduleExpression: expression,
        Targets: [Match.objectLike({ Input: '{}', RetryPolicy: { MaximumRetryAttempts: 2, MaximumEventAgeInSeconds: 3600 }, DeadLetterConfig: { Arn: Match.anyValue() } })],
      });
    }
    const functions = jobFunctions(existing.json);
    expect(JSON.parse(readFileSync(join(existing.assetDir(functions.partition!), 'policy.json'), 'utf8'))).toEqual(partitionPolicy);
    expect(JSON.parse(readFileSync(join(existing.assetDir(functions.rollup!), 'policy.json'), 'utf8'))).toEqual(rollupPolicy);
  });

  it('deploy any number of targets: 75 archive targets synthesize, the input stays "{}", the asset carries them all', () => {
    const targets = Array.from({ length: 75 }, (_, i) => ({
      source: `public.events_${i}`,
      destination: `archive.events_${i}`,
      ageColumn: 'completed_at',
      ageFallbackColumn: 'created_at',
      retention: '13 months',
      batchSize: 5000,
      maxRowsPerRun: 2_000_000,
    }));
    expect(JSON.stringify({ targets }).length).toBeGreaterThan(8_192);
    const many = synthStack('Many', { target: { kind: 'existing', secretArn: SECRET_ARN }, config: { archive: { schedule: Schedule.cron({ hour: '3', minute: '15' }), policy: { targets } } } }, { nag: false });
    const [[, rule]] = ofType(many.json, 'AWS::Events::Rule') as [[string, Resource]];
    expect(props(rule).Targets[0].Input).toBe('{}');
    const shipped = JSON.parse(readFileSync(join(many.assetDir(jobFunctions(many.json).archive!), 'policy.json'), 'utf8')) as { targets: unknown[] };
    expect(shipped.targets).toHaveLength(75);
  });

  it('derive how often each job runs, which sizes the alarms that treat missing data as breaching', () => {
    expect(longestGapSeconds('cron(5 * * * ? *)')).toBe(3600);
    expect(longestGapSeconds('cron(15 3 * * ? *)')).toBe(86_400);
    expect(longestGapSeconds('rate(15 minutes)')).toBe(900);
    expect(longestGapSeconds('cron(0 8,20 ? * MON-FRI *)')).toBe((12 + 48) * 3600); // Friday 20:00 to Monday 08:00
    expect(longestGapSeconds('cron(0 0 1 * ? *)')).toBeUndefined();
    expect(() =>
      synthStack('Monthly', { target: { kind: 'existing', secretArn: SECRET_ARN }, config: { partition: { schedule: Schedule.cron({ day: '1', hour: '0', minute: '0' }), policy: partitionPolicy } } }, { nag: false }),
    ).toThrowError(/Housekeeping\.partition\.runsEvery: cannot tell how often cron\(0 0 1 \* \? \*\) runs/);
  });
});

describe('alarms', () => {
  const alarms = (shape: Synthesized) => ofType(shape.json, 'AWS::CloudWatch::Alarm').map(([id, r]) => ({ ...props(r), id }) as Record<string, any>);

  it('every alarm notifies the topic made for alarmEmail, on ALARM and on OK', () => {
    existing.template.hasResourceProperties('AWS::SNS::Subscription', { Protocol: 'email', Endpoint: 'oncall@example.com' });
    existing.template.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: Match.anyValue() });
    const [topicId] = ofType(existing.json, 'AWS::SNS::Topic')[0]!;
    const all = alarms(existing);
    expect(all.length).toBeGreaterThanOrEqual(14);
    for (const alarm of all) {
      expect(alarm.AlarmActions, alarm.id).toEqual([{ Ref: topicId }]);
      expect(alarm.OKActions, alarm.id).toEqual([{ Ref: topicId }]);
    }
    expect(existing.json.Outputs?.[Object.keys(existing.json.Outputs).find((k) => k.includes('AlarmTopicArn'))!]).toBeDefined();
  });

  it('every alarm notifies an existing topic given as alarmTopicArn', () => {
    for (const alarm of alarms(withTopic)) expect(alarm.AlarmActions, alarm.id).toEqual([TOPIC_ARN]);
  });

  it('warns at synth when no one would be notified', () => {
    Annotations.fromStack(sandbox.stack).hasWarning('*', Match.stringLikeRegexp('notify no one'));
  });

  it('errors, and failures arriving in the queue (not messages visible, which stays red for 14 days)', () => {
    existing.template.resourcePropertiesCountIs('AWS::CloudWatch::Alarm', { MetricName: 'Errors', Namespace: 'AWS/Lambda', Threshold: 1, TreatMissingData: 'notBreaching' }, 3);
    existing.template.resourcePropertiesCountIs(
      'AWS::CloudWatch::Alarm',
      { MetricName: 'NumberOfMessagesSent', Namespace: 'AWS/SQS', Statistic: 'Sum', Period: 300, Threshold: 1, ComparisonOperator: 'GreaterThanOrEqualToThreshold' },
      3,
    );
    existing.template.resourcePropertiesCountIs('AWS::CloudWatch::Alarm', { MetricName: 'ApproximateNumberOfMessagesVisible' }, 0);
  });

  it('a job not invoked for two of its schedule periods, and a target whose last success is too old, alarm; missing data is breaching', () => {
    const dimensions = (job: string) => Match.arrayWith([{ Name: 'job', Value: job }, { Name: 'service', Value: 'pg-housekeeper' }]);
    for (const [job, period, staleAfter] of [['partition', 3600, 2 * 3600 + 300], ['archive', 86_400, 2 * 86_400 + 900], ['rollup', 900, 2 * 900 + 600]] as const) {
      existing.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        MetricName: 'Invocations',
        Namespace: 'AWS/Lambda',
        Dimensions: [{ Name: 'FunctionName', Value: { Ref: Match.stringLikeRegexp(`Housekeeping${job[0]!.toUpperCase()}`) } }],
        Statistic: 'Sum',
        Period: period,
        EvaluationPeriods: 2,
        DatapointsToAlarm: 2,
        ComparisonOperator: 'LessThanThreshold',
        Threshold: 1,
        TreatMissingData: 'breaching',
      });
      existing.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        MetricName: 'SecondsSinceLastSuccess',
        Namespace: 'PgHousekeeper',
        Dimensions: dimensions(job),
        Statistic: 'Maximum',
        Period: period,
        EvaluationPeriods: 2,
        ComparisonOperator: 'GreaterThanThreshold',
        Threshold: staleAfter,
        TreatMissingData: 'breaching',
      });
    }
    existing.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'PartitionsAhead',
      Statistic: 'Minimum',
      ComparisonOperator: 'LessThanThreshold',
      Threshold: 1,
      Period: 3600,
      Dimensions: dimensions('partition'),
      TreatMissingData: 'breaching',
    });
    existing.template.hasResourceProperties('AWS::CloudWatch::Alarm', {
      MetricName: 'RollupLagSeconds',
      Statistic: 'Maximum',
      ComparisonOperator: 'GreaterThanThreshold',
      Threshold: 7200,
      Period: 900,
      Dimensions: dimensions('rollup'),
      TreatMissingData: 'breaching',
    });
    expect(alarms(existing).filter((a) => a.TreatMissingData === 'notBreaching').map((a) => a.MetricName).sort()).toEqual([
      'Errors', 'Errors', 'Errors', 'NumberOfMessagesSent', 'NumberOfMessagesSent', 'NumberOfMessagesSent',
    ]);
  });

  it('one dashboard and the saved Logs Insights queries over every job', () => {
    existing.template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    const queries = ofType(existing.json, 'AWS::Logs::QueryDefinition').map(([, q]) => props(q));
    expect(queries.map((q) => q.Name).sort()).toEqual(['pg-housekeeper/failed-runs', 'pg-housekeeper/run-summaries', 'pg-housekeeper/slowest-targets']);
    for (const query of queries) expect(query.LogGroupNames).toHaveLength(3);
    expect(queries.find((q) => q.Name === 'pg-housekeeper/failed-runs')!.QueryString).toContain('filter level = "ERROR"');
  });
});

describe('network', () => {
  it('makes one security group for the jobs in an existing VPC and outputs it with the function names', () => {
    existing.template.resourceCountIs('AWS::EC2::SecurityGroup', 1);
    const outputs = existing.json.Outputs ?? {};
    const names = Object.keys(outputs);
    for (const job of ['Partition', 'Archive', 'Rollup']) {
      const key = names.find((n) => n.includes(`${job}FunctionName`));
      expect(key, job).toBeDefined();
      expect(outputs[key!]!.Value).toEqual({ Ref: jobFunctions(existing.json)[job.toLowerCase()] });
    }
    const groupOutput = names.find((n) => n.includes('JobsSecurityGroupId'));
    expect(outputs[groupOutput!]!.Value).toEqual({ 'Fn::GetAtt': [expect.stringMatching(/JobsSecurityGroup/), 'GroupId'] });
    for (const [, fn] of ofType(existing.json, 'AWS::Lambda::Function')) {
      expect(props(fn).VpcConfig).toEqual({ SubnetIds: ['subnet-0aaa1111bbbb22223', 'subnet-0ccc3333dddd44445'], SecurityGroupIds: [{ 'Fn::GetAtt': [expect.stringMatching(/JobsSecurityGroup/), 'GroupId'] }] });
    }
  });

  it('needs no context lookup (no AWS credentials) with an account set', () => {
    expect(existing.assembly.manifest.missing ?? []).toEqual([]);
  });

  it('derives the VPC from an RDS instance and opens its port to the jobs security group', () => {
    const app = new App({ context: CDK_CONTEXT });
    const stack = new Stack(app, 'Derived', { env: ENV });
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
      Description: 'pg-housekeeper jobs',
      FromPort: { 'Fn::GetAtt': [Match.stringLikeRegexp('^Db'), 'Endpoint.Port'] },
    });
  });
});

describe('the sandbox (-c demo=true)', () => {
  it('seeds once, after the database and the Secrets Manager endpoint, not again on a code change', () => {
    const [[triggerId, trigger]] = ofType(sandbox.json, 'Custom::Trigger') as [[string, Resource]];
    expect(props(trigger).ExecuteOnHandlerChange).toBe(false);
    const endpoint = ofType(sandbox.json, 'AWS::EC2::VPCEndpoint').map(([id]) => id);
    const database = ofType(sandbox.json, 'AWS::RDS::DBInstance').map(([id]) => id);
    expect(sandbox.json.Resources[triggerId]!.DependsOn).toEqual(expect.arrayContaining([...endpoint, ...database]));
  });

  it('uses gp3 storage and leaves no log group behind after `cdk destroy`, flow logs included', () => {
    sandbox.template.hasResourceProperties('AWS::RDS::DBInstance', { StorageType: 'gp3' });
    const groups = ofType(sandbox.json, 'AWS::Logs::LogGroup');
    expect(groups.length).toBe(5); // three jobs, the seed, the flow logs
    for (const [id, group] of groups) expect(group.DeletionPolicy, id).toBe('Delete');
    sandbox.template.hasResourceProperties('AWS::EC2::FlowLog', { LogGroupName: { Ref: Match.stringLikeRegexp('SandboxFlowLogs') } });
  });
});

describe('cdk-nag AwsSolutions', () => {
  it('finds nothing unacknowledged in the shapes above (their synth ran it), and does report a finding nobody acknowledged', () => {
    const app = new App({ context: CDK_CONTEXT });
    new HousekeepingStack(app, 'Nag', { target: { kind: 'demo' }, env: ENV });
    Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
    expect(() => app.synth()).toThrowError(/AwsSolutions-RDS10/);
  });
});

describe('synth refuses bad policies, naming the field', () => {
  const stackWith = (jobs: Partial<Pick<PgHousekeepingProps, 'partition' | 'archive' | 'rollup'>>) => {
    const stack = new Stack(new App({ context: CDK_CONTEXT }), 'Test', { env: ENV });
    new PgHousekeeping(stack, 'Housekeeping', { databaseSecret: Secret.fromSecretCompleteArn(stack, 'Secret', SECRET_ARN), ...jobs });
  };
  it.each([
    ['partition', { targets: [{ table: 'public.events', interval: 'day', premake: 0 }] }, /Housekeeping\.partition\.policy\.targets\[0\]\.premake: Too small/],
    ['archive', { targets: [{ source: 'public.orders', ageColumn: 'completed_at', retention: '13 months' }] }, /Housekeeping\.archive\.policy\.targets\[0\]\.destination: is required in move mode/],
    ['rollup', { targets: [{ name: 'x', source: 'a', timeColumn: 't', target: 'b' }] }, /Housekeeping\.rollup\.policy\.targets\[0\]: set exactly one of spec .* or function/],
  ])('%s', (job, policy, message) => {
    expect(() => stackWith({ [job]: { schedule: Schedule.rate(Duration.hours(1)), policy } })).toThrowError(message);
  });
});

describe('the app context', () => {
  it('reads alarmEmail, alarmTopicArn, reservedConcurrency and databaseRole', () => {
    const context: Record<string, string> = { secretArn: SECRET_ARN, alarmEmail: 'oncall@example.com', alarmTopicArn: TOPIC_ARN, reservedConcurrency: '1', databaseRole: 'housekeeper_owner' };
    expect(readContext((key) => context[key]).deployment).toEqual({ alarmEmail: 'oncall@example.com', alarmTopicArn: TOPIC_ARN, reservedConcurrency: 1, databaseRole: 'housekeeper_owner' });
  });

  it('accepts the README example and refuses a partial secret ARN, which fromSecretCompleteArn cannot use', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const example = /-c secretArn=(\S+)/.exec(readme)![1]!.replace('REGION', 'eu-west-1').replace('ACCOUNT', '123456789012');
    expect(readContext((key) => ({ secretArn: example })[key]).target).toMatchObject({ kind: 'existing', secretArn: example });
    expect(() => readContext((key) => ({ secretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod-db' })[key])).toThrowError(/not a complete secret ARN/);
    expect(USAGE).not.toContain('\n');
  });
});

describe('the README', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const section = readme.slice(readme.indexOf('## Running in Lambda'), readme.indexOf('## Benchmarks'));

  it('lists exactly the alarms the template has', () => {
    const documented = [...section.matchAll(/^\s*\| `([<>\w]+)` \| .* \| (OK|breaching) \|$/gm)].map((m) => m[1]!);
    const expanded = documented.flatMap((name) => (name.startsWith('<job>') ? ['partition', 'archive', 'rollup'].map((job) => name.replace('<job>', job)) : [name]));
    const inTemplate = ofType(existing.json, 'AWS::CloudWatch::Alarm').map(([id]) => id.replace(/^HousekeepingObservability/, '').replace(/[0-9A-F]{8}$/, ''));
    expect(expanded.sort()).toEqual(inTemplate.sort());
  });

  it('documents every environment variable the template sets, and every output', () => {
    const variables = new Set(ofType(existing.json, 'AWS::Lambda::Function').flatMap(([, fn]) => Object.keys(props(fn).Environment.Variables)));
    for (const variable of variables) expect(section, variable).toContain(`\`${variable}\``);
    for (const output of Object.keys(existing.json.Outputs ?? {})) expect(section, output).toContain(`\`${output.replace(/[0-9A-F]{8}$/, '')}…\``);
  });
});

describe('cdk.json', () => {
  it('turns on every feature flag aws-cdk-lib recommends', () => {
    for (const [flag, value] of Object.entries(CURRENTLY_RECOMMENDED_FLAGS)) expect(CDK_CONTEXT[flag], flag).toEqual(value);
    expect(existsSync(new URL('../../cdk.json', import.meta.url))).toBe(true);
  });
});
