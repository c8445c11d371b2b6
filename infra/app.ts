import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { ConfigError } from '../shared/errors';
import { readContext, USAGE, UsageError } from './context';
import { databases } from './housekeeping.config';
import { acknowledgeReviewedFindings } from './nag';
import { HousekeepingStack } from './stack';

/**
 * The fleet:          cdk deploy [--all]      (the databases listed in infra/housekeeping.config.ts; --all when they span stacks)
 * One database:       cdk deploy -c secretArn=arn:... [-c vpcId=vpc-... -c subnetIds=subnet-a,subnet-b -c securityGroupId=sg-...]
 * Sandbox:            cdk deploy -c demo=true
 * Any of them:        [-c alarmEmail=... | -c alarmTopicArn=...] [-c reservedConcurrency=N]
 */
const app = new App();
let choice: ReturnType<typeof readContext>;
try {
  choice = readContext((key) => app.node.tryGetContext(key), databases);
} catch (error) {
  // What to deploy is a question for the user, not a crash: no stack trace.
  if (error instanceof UsageError) process.stderr.write(`${error.message}\n${USAGE}\n`);
  else if (error instanceof ConfigError) process.stderr.write(`infra/housekeeping.config.ts: ${error.message}\n`);
  else throw error;
  process.exit(2);
}
for (const { stackId, target, databases: entries } of choice.stacks) {
  const stack = new HousekeepingStack(app, stackId, {
    target,
    databases: entries,
    deployment: choice.deployment,
    env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
  });
  acknowledgeReviewedFindings(stack, { sandbox: choice.sandbox });
}
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
app.synth();
