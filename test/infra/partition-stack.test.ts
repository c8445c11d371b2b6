import { App, Duration, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { Schedule } from 'aws-cdk-lib/aws-events';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { beforeAll, describe, expect, it } from 'vitest';
import { PgHousekeeping } from '../../infra/pg-housekeeping';

const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod-db-AbCdEf';
const policy = { targets: [{ table: 'public.events', interval: 'day' as const, premake: 7, retention: { keep: 30 } }] };

function stackWith(partitionPolicy: unknown) {
  const app = new App();
  const stack = new Stack(app, 'Test', { env: { account: '123456789012', region: 'eu-west-1' } });
  new PgHousekeeping(stack, 'Housekeeping', {
    databaseSecret: Secret.fromSecretCompleteArn(stack, 'Secret', SECRET_ARN),
    partition: { schedule: Schedule.cron({ minute: '5' }), policy: partitionPolicy as typeof policy, timeout: Duration.minutes(4) },
  });
  return stack;
}

describe('partition infrastructure', () => {
  let template: Template;
  beforeAll(() => {
    template = Template.fromStack(stackWith(policy));
  });

  it('deploys the partition Lambda on Node 22 arm64 with concurrency 1 and the secret ARN', () => {
    template.hasResourceProperties('AWS::Lambda::Function', {
      Runtime: 'nodejs22.x',
      Architectures: ['arm64'],
      Handler: 'index.handler',
      Timeout: 240,
      ReservedConcurrentExecutions: 1,
      Environment: { Variables: Match.objectLike({ PGHK_DB_SECRET_ARN: SECRET_ARN }) },
    });
  });

  it('fires it from an EventBridge cron rule whose input is the policy, with bounded retries', () => {
    template.hasResourceProperties('AWS::Events::Rule', {
      ScheduleExpression: 'cron(5 * * * ? *)',
      Targets: [
        Match.objectLike({
          Input: JSON.stringify(policy),
          RetryPolicy: { MaximumRetryAttempts: 2, MaximumEventAgeInSeconds: 3600 },
        }),
      ],
    });
  });

  it('lets the function read this one secret and nothing else', () => {
    const policies = template.findResources('AWS::IAM::Policy');
    const statements = Object.values(policies).flatMap((p) => (p as { Properties: { PolicyDocument: { Statement: unknown[] } } }).Properties.PolicyDocument.Statement);
    expect(statements).toEqual([
      expect.objectContaining({ Action: ['secretsmanager:GetSecretValue', 'secretsmanager:DescribeSecret'], Effect: 'Allow', Resource: SECRET_ARN }),
    ]);
  });

  it('keeps its logs in an explicit log group with retention', () => {
    template.hasResourceProperties('AWS::Logs::LogGroup', { RetentionInDays: 90 });
  });

  it('fails synth with the field named when a policy is bad', () => {
    expect(() => stackWith({ targets: [{ table: 'public.events', interval: 'day', premake: 0 }] })).toThrowError(
      /Housekeeping\.partition\.policy\.targets\[0\]\.premake: Too small/,
    );
  });
});
