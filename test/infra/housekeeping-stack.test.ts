import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { App, Duration, Stack, Validations } from 'aws-cdk-lib';
import { Annotations, Match, Template } from 'aws-cdk-lib/assertions';
import { SubnetType, Vpc } from 'aws-cdk-lib/aws-ec2';
import { DatabaseInstance, DatabaseInstanceEngine, PostgresEngineVersion } from 'aws-cdk-lib/aws-rds';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { CURRENTLY_RECOMMENDED_FLAGS } from 'aws-cdk-lib/cx-api';
import { AwsSolutionsChecks } from 'cdk-nag';
import { beforeAll, describe, expect, it } from 'vitest';
import { readContext, USAGE } from '../../infra/context';
import { housekeeping } from '../../infra/housekeeping.config';
import { BUNDLING } from '../../infra/job-function';
import { PgHousekeeping, type PgHousekeepingProps } from '../../infra/pg-housekeeping';
import { longestGapSeconds } from '../../infra/schedule-gap';
import { HousekeepingStack } from '../../infra/stack';
import { deployedPolicy } from '../../scripts/deployed';
import { CDK_CONTEXT, ENV, jobFunctions, type Synthesized, synthStack } from './synth';

const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod-db-AbCdEf';
const TOPIC_ARN = 'arn:aws:sns:eu-west-1:123456789012:oncall';
const partitionPolicy = { targets: [{ table: 'public.events', interval: 'day' as const, premake: 7, retention: { keep: 30 } }] };
const archivePolicy = { targets: [{ source: 'public.orders', destination: 'archive.orders', ageColumn: 'completed_at', retention: '13 months' }] };
const rollupPolicy = {
  targets: [
    {
      name: 'usage_hourly',
      source: 'public.usage',
      timeColumn: 'occurred_at',
      target: 'public.usage_hourly',
      spec: { measures: [{ name: 'events', fn: 'count' as const }] },
    },
  ],
};
const config = {
  partition: { schedule: { cron: '5 * * * ? *', timeZone: 'UTC' }, policy: partitionPolicy },
  // 03:15 in Seoul (no daylight saving there): daily, so the alarm periods are a day.
  archive: { schedule: { cron: '15 3 * * ? *', timeZone: 'Asia/Seoul' }, policy: archivePolicy },
  rollup: { schedule: { rate: Duration.minutes(15) }, policy: rollupPolicy, timeout: Duration.minutes(10) },
};
const existingVpc = {
  kind: 'existing' as const,
  secretArn: SECRET_ARN,
  vpcId: 'vpc-0abc1234def567890',
  subnetIds: ['subnet-0aaa1111bbbb22223', 'subnet-0ccc3333dddd44445'],
};

type Resource = Synthesized['json']['Resources'][string];
const ofType = (json: Synthesized['json'], type: string) =>
  Object.entries(json.Resources).filter(([, r]) => r.Type === type) as Array<[string, Resource]>;
const props = (r: Resource) => r.Properties as Record<string, any>;

// Each stack shape is synthesized once (with cdk-nag, so a finding fails the file), then asserted on.
let existing: Synthesized;
let sandbox: Synthesized;
let withTopic: Synthesized;
beforeAll(() => {
  existing = synthStack('Existing', { target: existingVpc, config, deployment: { alarmEmail: 'oncall@example.com' } });
  sandbox = synthStack('Sandbox', { target: { kind: 'demo' } });
  withTopic = synthStack(
    'WithTopic',
    { target: { kind: 'existing', secretArn: SECRET_ARN }, config, deployment: { alarmTopicArn: TOPIC_ARN, reservedConcurrency: 1 } },
    { nag: false },
  );
}, 120_000);

describe('the functions', () => {
  it('one per job: the newest Node runtime, arm64, timeouts that fit the job, the secret ARN, no reserved concurrency by default', () => {
    for (const [job, timeout] of [
      ['partition', 300],
      ['archive', 900],
      ['rollup', 600],
    ] as const) {
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
      // Ours read a database secret; CDK's own providers (the sandbox's trigger) do not.
      const functions = ofType(shape.json, 'AWS::Lambda::Function').filter(([, fn]) => props(fn).Environment?.Variables?.PGHK_DB_SECRET_ARN);
      expect(functions.length).toBeGreaterThanOrEqual(3);
      for (const [, fn] of functions) expect(props(fn).Environment.Variables.NODE_EXTRA_CA_CERTS).toBe('/var/runtime/ca-cert.pem');
    }
    expect(ofType(sandbox.json, 'AWS::Lambda::Function').some(([id]) => /^Sandboxdemo.*DemoSeed/.test(id))).toBe(true);
  });

  it('retry a failed invocation at most once, and send it with its error to an on-failure destination', () => {
    const invokeConfigs = ofType(existing.json, 'AWS::Lambda::EventInvokeConfig').map(([, r]) => props(r));
    const retries = Object.fromEntries(
      invokeConfigs.map((c) => [
        String(c.FunctionName.Ref)
          .replace(/^Housekeeping(\w+?)Function.*/, '$1')
          .toLowerCase(),
        c.MaximumRetryAttempts,
      ]),
    );
    expect(retries).toEqual({ partition: 1, archive: 1, rollup: 0 });
    for (const c of invokeConfigs) {
      expect(c.MaximumEventAgeInSeconds).toBe(3600);
      expect(c.DestinationConfig.OnFailure.Destination).toEqual({ 'Fn::GetAtt': [expect.stringMatching(/Failures/), 'Arn'] });
    }
    existing.template.resourcePropertiesCountIs('AWS::SQS::Queue', { SqsManagedSseEnabled: true, MessageRetentionPeriod: 1_209_600 }, 3);
  });

  it('let each function read this one secret and nothing else', () => {
    const statements = ofType(existing.json, 'AWS::IAM::Policy').flatMap(
      ([, p]) => props(p).PolicyDocument.Statement as Array<{ Action: unknown; Resource: unknown }>,
    );
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
  it('are EventBridge Scheduler schedules in their own zone, run at the time written, send {}, retry twice within an hour, then the failures queue', () => {
    existing.template.resourceCountIs('AWS::Events::Rule', 0);
    existing.template.resourceCountIs('AWS::Scheduler::Schedule', 3);
    const functions = jobFunctions(existing.json);
    for (const [job, expression, zone] of [
      ['partition', 'cron(5 * * * ? *)', 'UTC'],
      ['archive', 'cron(15 3 * * ? *)', 'Asia/Seoul'],
      ['rollup', 'rate(15 minutes)', 'UTC'],
    ] as const) {
      existing.template.hasResourceProperties('AWS::Scheduler::Schedule', {
        ScheduleExpression: expression,
        ScheduleExpressionTimezone: zone,
        State: 'ENABLED',
        FlexibleTimeWindow: { Mode: 'OFF' },
        Target: {
          Arn: { 'Fn::GetAtt': [functions[job], 'Arn'] },
          Input: '{}',
          RetryPolicy: { MaximumRetryAttempts: 2, MaximumEventAgeInSeconds: 3600 },
          DeadLetterConfig: { Arn: { 'Fn::GetAtt': [Match.stringLikeRegexp(`Housekeeping${job[0]!.toUpperCase()}${job.slice(1)}Failures`), 'Arn'] } },
          RoleArn: Match.anyValue(),
        },
      });
    }
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
    const many = synthStack(
      'Many',
      {
        target: { kind: 'existing', secretArn: SECRET_ARN },
        config: { archive: { schedule: { cron: '15 3 * * ? *', timeZone: 'UTC' }, policy: { targets } } },
      },
      { nag: false },
    );
    const [[, schedule]] = ofType(many.json, 'AWS::Scheduler::Schedule') as [[string, Resource]];
    expect(props(schedule).Target.Input).toBe('{}');
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
      synthStack(
        'Monthly',
        {
          target: { kind: 'existing', secretArn: SECRET_ARN },
          config: { partition: { schedule: { cron: '0 0 1 * ? *', timeZone: 'UTC' }, policy: partitionPolicy } },
        },
        { nag: false },
      ),
    ).toThrowError(/Housekeeping\.partition\.runsEvery: cannot tell how often cron\(0 0 1 \* \? \*\) runs/);
  });
});

describe('pause, run now and continuations in the template', () => {
  let paused: Synthesized;
  beforeAll(() => {
    paused = synthStack(
      'Paused',
      {
        target: { kind: 'existing', secretArn: SECRET_ARN },
        config: {
          partition: { ...config.partition, schedule: { cron: '0 3 * * ? *', timeZone: 'Asia/Seoul' }, enabled: false },
          archive: { ...config.archive, window: { start: '01:00', end: '05:00', timeZone: 'Asia/Seoul' }, maxContinuations: 40 },
          rollup: { ...config.rollup, maxContinuations: 0 },
        },
        deployment: { alarmEmail: 'oncall@example.com' },
      },
      // cdk-nag runs here too: the self-invoke policy and the schedules' roles raise nothing unacknowledged.
    );
  }, 120_000);
  const alarmsOf = (shape: Synthesized) =>
    ofType(shape.json, 'AWS::CloudWatch::Alarm').map(([id, r]) => ({ ...props(r), id }) as Record<string, any>);

  it('enabled: false deploys the schedule disabled (a deploy keeps it so) and the function still there for "run now"', () => {
    paused.template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'cron(0 3 * * ? *)',
      ScheduleExpressionTimezone: 'Asia/Seoul',
      State: 'DISABLED',
    });
    paused.template.resourcePropertiesCountIs('AWS::Scheduler::Schedule', { State: 'ENABLED' }, 2);
    expect(Object.keys(jobFunctions(paused.json)).sort()).toEqual(['archive', 'partition', 'rollup']);
    const outputs = Object.keys(paused.json.Outputs ?? {});
    expect(outputs.some((o) => o.startsWith('HousekeepingPartitionFunctionName'))).toBe(true);
  });

  it("a paused job's silence pages no one: its alarms on missing data keep their state but not their actions; its errors still page", () => {
    const alarms = alarmsOf(paused);
    const silent = alarms
      .filter((a) => a.ActionsEnabled === false)
      .map((a) => a.id.replace(/^HousekeepingObservability/, '').replace(/[0-9A-F]{8}$/, ''));
    expect(silent.sort()).toEqual(['PartitionsAheadLow', 'partitionNotInvoked', 'partitionStale']);
    for (const alarm of alarms.filter((a) => a.ActionsEnabled !== false)) expect(alarm.AlarmActions, alarm.id).toHaveLength(1);
  });

  it('each function may invoke itself and nothing else (a continuation); only its schedule role invokes it besides', () => {
    const functions = jobFunctions(paused.json);
    const policies = ofType(paused.json, 'AWS::IAM::Policy').map(([, p]) => props(p));
    const invoking = policies.flatMap((p) =>
      (p.PolicyDocument.Statement as Array<{ Action: unknown; Resource: unknown }>)
        .filter((st) => [st.Action].flat().includes('lambda:InvokeFunction'))
        .map((st) => ({ role: p.Roles[0].Ref as string, resources: [st.Resource].flat() })),
    );
    for (const [job, logicalId] of Object.entries(functions)) {
      const role = props(paused.json.Resources[logicalId]!).Role['Fn::GetAtt'][0];
      const own = invoking.filter((i) => i.role === role);
      expect(own, job).toEqual([{ role, resources: [{ 'Fn::GetAtt': [logicalId, 'Arn'] }] }]);
      // The schedule's role: the function (and, as LambdaInvoke grants, its versions), no other.
      const scheduleRole = props(
        ofType(paused.json, 'AWS::Scheduler::Schedule').find(([, r]) => props(r).Target.Arn['Fn::GetAtt'][0] === logicalId)![1],
      ).Target.RoleArn['Fn::GetAtt'][0];
      expect(invoking.filter((i) => i.role === scheduleRole).flatMap((i) => i.resources)).toEqual([
        { 'Fn::GetAtt': [logicalId, 'Arn'] },
        { 'Fn::Join': ['', [{ 'Fn::GetAtt': [logicalId, 'Arn'] }, ':*']] },
      ]);
    }
    expect(invoking).toHaveLength(6);
  });

  it('tells each function its cap and window; allows recursive loops only where the cap is above what Lambda allows (15)', () => {
    const variables = (job: string) => props(paused.json.Resources[jobFunctions(paused.json)[job]!]!).Environment.Variables;
    expect(variables('partition').PGHK_MAX_CONTINUATIONS).toBe('15');
    expect(variables('archive')).toMatchObject({ PGHK_MAX_CONTINUATIONS: '40', PGHK_MAINTENANCE_WINDOW: '01:00-05:00 Asia/Seoul' });
    expect(variables('rollup').PGHK_MAX_CONTINUATIONS).toBe('0');
    expect(variables('partition').PGHK_MAINTENANCE_WINDOW).toBeUndefined();
    const loops = Object.fromEntries(
      Object.entries(jobFunctions(paused.json)).map(([job, id]) => [job, props(paused.json.Resources[id]!).RecursiveLoop]),
    );
    expect(loops).toEqual({ partition: undefined, archive: 'Allow', rollup: undefined });
  });

  it('size the alarm period from the schedule in its zone: a daily 02:30 in Berlin is skipped once a year, 47 hours', () => {
    const berlin = synthStack(
      'Berlin',
      {
        target: { kind: 'existing', secretArn: SECRET_ARN },
        config: { partition: { schedule: { cron: '30 2 * * ? *', timeZone: 'Europe/Berlin' }, policy: partitionPolicy } },
      },
      { nag: false },
    );
    berlin.template.hasResourceProperties('AWS::CloudWatch::Alarm', { MetricName: 'Invocations', Period: 47 * 3600 });
  });

  it('refuses a bad schedule, zone, window or cap at synth, naming the field', () => {
    const stackWith = (jobs: Partial<Pick<PgHousekeepingProps, 'partition' | 'archive' | 'rollup'>>) => {
      const stack = new Stack(new App({ context: CDK_CONTEXT }), 'Test', { env: ENV });
      new PgHousekeeping(stack, 'Housekeeping', { databaseSecret: Secret.fromSecretCompleteArn(stack, 'Secret', SECRET_ARN), ...jobs });
    };
    const archive = { schedule: { cron: '0 1 * * ? *', timeZone: 'Asia/Seoul' }, policy: archivePolicy };
    expect(() => stackWith({ archive: { ...archive, schedule: { cron: '0 1 * * ? *', timeZone: 'Asia/Seol' } } })).toThrowError(
      'Housekeeping.archive.schedule.timeZone: "Asia/Seol" is not an IANA time zone',
    );
    expect(() => stackWith({ archive: { ...archive, schedule: { cron: '0 1 * * *', timeZone: 'Asia/Seoul' } } })).toThrowError(
      /^Housekeeping\.archive\.schedule\.cron: "0 1 \* \* \*": has 5 field/,
    );
    expect(() => stackWith({ archive: { ...archive, window: { start: '01:00', end: '5:00', timeZone: 'Asia/Seoul' } } })).toThrowError(
      'Housekeeping.archive.window.end: "5:00" is not a time of day',
    );
    expect(() => stackWith({ archive: { ...archive, maxContinuations: 101 } })).toThrowError(
      'Housekeeping.archive.maxContinuations: a whole number from 0 to 100 (got 101)',
    );
    expect(() => stackWith({ archive: { ...archive, schedule: { expressionString: 'cron(0 1 * * ? *)' } as never } })).toThrowError(
      /^Housekeeping\.archive\.schedule: write \{ cron/,
    );
  });

  it('gives the sandbox a Lambda API endpoint, so its isolated functions can send a continuation', () => {
    const services = ofType(sandbox.json, 'AWS::EC2::VPCEndpoint').map(([, r]) => JSON.stringify(props(r).ServiceName));
    expect(services.some((s) => s.includes('.lambda'))).toBe(true);
    expect(services.some((s) => s.includes('.secretsmanager'))).toBe(true);
  });
});

describe('infra/housekeeping.config.ts as shipped', () => {
  it("synthesizes clean (cdk-nag included): partition daily at 03:00 Seoul, archive from 01:00 Seoul inside its window; the CLI's --deployed runs exactly the policy each asset ships", async () => {
    const shipped = synthStack('Shipped', {
      target: { kind: 'existing', secretArn: SECRET_ARN },
      config: housekeeping,
      deployment: { alarmEmail: 'oncall@example.com' },
    });
    shipped.template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'cron(0 3 * * ? *)',
      ScheduleExpressionTimezone: 'Asia/Seoul',
      State: 'ENABLED',
    });
    shipped.template.hasResourceProperties('AWS::Scheduler::Schedule', {
      ScheduleExpression: 'cron(0 1 * * ? *)',
      ScheduleExpressionTimezone: 'Asia/Seoul',
    });
    shipped.template.hasResourceProperties('AWS::Lambda::Function', {
      Environment: { Variables: Match.objectLike({ PGHK_MAINTENANCE_WINDOW: '01:00-05:00 Asia/Seoul', PGHK_MAX_CONTINUATIONS: '15' }) },
    });
    for (const [job, logicalId] of Object.entries(jobFunctions(shipped.json))) {
      const asset = JSON.parse(readFileSync(join(shipped.assetDir(logicalId), 'policy.json'), 'utf8'));
      expect(await deployedPolicy(job as 'partition' | 'archive' | 'rollup'), job).toEqual(asset);
    }
  }, 120_000);

  it("the CLI's --database demo runs exactly the policy each of the sandbox's functions ships", async () => {
    const functions = ofType(sandbox.json, 'AWS::Lambda::Function').filter(
      ([, fn]) => props(fn).Environment?.Variables?.PGHK_DATABASE_ID === 'demo' && props(fn).FunctionName,
    );
    expect(functions).toHaveLength(3);
    for (const [logicalId, fn] of functions) {
      const job = /-(partition|archive|rollup)$/.exec(props(fn).FunctionName)![1] as 'partition' | 'archive' | 'rollup';
      const asset = JSON.parse(readFileSync(join(sandbox.assetDir(logicalId), 'policy.json'), 'utf8'));
      expect(await deployedPolicy(job, 'demo'), job).toEqual(asset);
    }
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
    existing.template.resourcePropertiesCountIs(
      'AWS::CloudWatch::Alarm',
      { MetricName: 'Errors', Namespace: 'AWS/Lambda', Threshold: 1, TreatMissingData: 'notBreaching' },
      3,
    );
    existing.template.resourcePropertiesCountIs(
      'AWS::CloudWatch::Alarm',
      {
        MetricName: 'NumberOfMessagesSent',
        Namespace: 'AWS/SQS',
        Statistic: 'Sum',
        Period: 300,
        Threshold: 1,
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
      },
      3,
    );
    existing.template.resourcePropertiesCountIs('AWS::CloudWatch::Alarm', { MetricName: 'ApproximateNumberOfMessagesVisible' }, 0);
  });

  it('a job not invoked for two of its schedule periods, and a target whose last success is too old, alarm; missing data is breaching', () => {
    // A one-database deploy is database `main`: its metrics carry that dimension too.
    const dimensions = (job: string) => [
      { Name: 'database', Value: 'main' },
      { Name: 'job', Value: job },
      { Name: 'service', Value: 'pg-housekeeper' },
    ];
    for (const [job, period, staleAfter] of [
      ['partition', 3600, 2 * 3600 + 300],
      ['archive', 86_400, 2 * 86_400 + 900],
      ['rollup', 900, 2 * 900 + 600],
    ] as const) {
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
    expect(
      alarms(existing)
        .filter((a) => a.TreatMissingData === 'notBreaching')
        .map((a) => a.MetricName)
        .sort(),
    ).toEqual(['Errors', 'Errors', 'Errors', 'NumberOfMessagesSent', 'NumberOfMessagesSent', 'NumberOfMessagesSent']);
  });

  it('one dashboard and the saved Logs Insights queries over every job', () => {
    existing.template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
    const queries = ofType(existing.json, 'AWS::Logs::QueryDefinition').map(([, q]) => props(q));
    // `-c secretArn=…` deploys a fleet of one, database `main`.
    expect(queries.map((q) => q.Name).sort()).toEqual([
      'pg-housekeeper/Existing/main/failed-runs',
      'pg-housekeeper/Existing/main/run-summaries',
      'pg-housekeeper/Existing/main/slowest-targets',
    ]);
    for (const query of queries) expect(query.LogGroupNames).toHaveLength(3);
    expect(queries.find((q) => q.Name === 'pg-housekeeper/Existing/main/failed-runs')!.QueryString).toContain('filter level = "ERROR"');
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
      expect(props(fn).VpcConfig).toEqual({
        SubnetIds: ['subnet-0aaa1111bbbb22223', 'subnet-0ccc3333dddd44445'],
        SecurityGroupIds: [{ 'Fn::GetAtt': [expect.stringMatching(/JobsSecurityGroup/), 'GroupId'] }],
      });
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
      partition: { schedule: { rate: Duration.hours(1) }, policy: partitionPolicy },
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
  it('synthesizes offline with an account in the environment: no context lookup (no credentials needed)', () => {
    // The CLI fails a synth that needs a lookup when it has no credentials ("Need to perform AWS
    // calls for account ..."); the synthesized assembly lists such lookups as missing context.
    for (const shape of [sandbox, existing, withTopic]) {
      expect(shape.stack.account).toBe(ENV.account);
      expect(shape.assembly.manifest.missing ?? [], shape.stack.stackName).toEqual([]);
    }
  });

  it('seeds once, after the database and the Secrets Manager endpoint, not again on a code change', () => {
    const [[triggerId, trigger]] = ofType(sandbox.json, 'Custom::Trigger') as [[string, Resource]];
    expect(props(trigger).ExecuteOnHandlerChange).toBe(false);
    const endpoint = ofType(sandbox.json, 'AWS::EC2::VPCEndpoint')
      .map(([id]) => id)
      .filter((id) => id.includes('SecretsManager'));
    expect(endpoint).toHaveLength(1);
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
    [
      'partition',
      { targets: [{ table: 'public.events', interval: 'day', premake: 0 }] },
      /Housekeeping\.partition\.policy\.targets\[0\]\.premake: Too small/,
    ],
    [
      'archive',
      { targets: [{ source: 'public.orders', ageColumn: 'completed_at', retention: '13 months' }] },
      /Housekeeping\.archive\.policy\.targets\[0\]\.destination: is required in move mode/,
    ],
    [
      'rollup',
      { targets: [{ name: 'x', source: 'a', timeColumn: 't', target: 'b' }] },
      /Housekeeping\.rollup\.policy\.targets\[0\]: set exactly one of spec .* or function/,
    ],
  ])('%s', (job, policy, message) => {
    expect(() => stackWith({ [job]: { schedule: { rate: Duration.hours(1) }, policy } })).toThrowError(message);
  });
});

describe('the app context', () => {
  it('reads alarmEmail, alarmTopicArn, reservedConcurrency and databaseRole', () => {
    const context: Record<string, string> = {
      secretArn: SECRET_ARN,
      alarmEmail: 'oncall@example.com',
      alarmTopicArn: TOPIC_ARN,
      reservedConcurrency: '1',
      databaseRole: 'housekeeper_owner',
    };
    expect(readContext((key) => context[key]).deployment).toEqual({
      alarmEmail: 'oncall@example.com',
      alarmTopicArn: TOPIC_ARN,
      reservedConcurrency: 1,
      databaseRole: 'housekeeper_owner',
    });
  });

  it('accepts the README example and refuses a partial secret ARN, which fromSecretCompleteArn cannot use', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    const example = /-c secretArn=(\S+)/.exec(readme)![1]!.replace('REGION', 'eu-west-1').replace('ACCOUNT', '123456789012');
    expect(readContext((key) => ({ secretArn: example })[key]).stacks).toMatchObject([
      { stackId: 'PgHousekeeping', target: { kind: 'existing', secretArn: example } },
    ]);
    expect(() => readContext((key) => ({ secretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod-db' })[key])).toThrowError(
      /not a complete secret ARN/,
    );
    expect(USAGE).not.toContain('\n');
  });
});

describe('the README', () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const section = readme.slice(readme.indexOf('## Running in Lambda'), readme.indexOf('## Benchmarks'));

  it('lists exactly the alarms the template has', () => {
    const documented = [...section.matchAll(/^\s*\| `([<>\w]+)` \| .* \| (OK|breaching) \|$/gm)].map((m) => m[1]!);
    const expanded = documented.flatMap((name) =>
      name.startsWith('<job>') ? ['partition', 'archive', 'rollup'].map((job) => name.replace('<job>', job)) : [name],
    );
    const inTemplate = ofType(existing.json, 'AWS::CloudWatch::Alarm').map(([id]) =>
      id.replace(/^HousekeepingObservability/, '').replace(/[0-9A-F]{8}$/, ''),
    );
    expect(expanded.sort()).toEqual(inTemplate.sort());
  });

  it("documents 'run now' as one asynchronous invoke of a function the stack outputs, with the empty event", () => {
    // The one-database form, which finds the function through the stack output (a fleet names its functions: "A fleet of databases").
    const command = /```sh\n(aws lambda invoke[^`]*describe-stacks[^`]*)```/.exec(section)![1]!;
    expect(command).toContain('--invocation-type Event');
    expect(command).toContain("--cli-binary-format raw-in-base64-out --payload '{}'");
    const prefix = /starts_with\(OutputKey, '(\w+)'\)/.exec(command)![1]!;
    expect(Object.keys(existing.json.Outputs ?? {}).filter((key) => key.startsWith(prefix))).toHaveLength(1);
    expect(command).toContain('--stack-name PgHousekeeping ');
    expect(readContext((key) => ({ secretArn: SECRET_ARN })[key]).stacks.map((stack) => stack.stackId)).toEqual(['PgHousekeeping']);
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
