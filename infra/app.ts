import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { readContext, USAGE, UsageError } from './context';
import { acknowledgeReviewedFindings } from './nag';
import { HousekeepingStack } from './stack';

/**
 * Existing database:  cdk deploy -c secretArn=arn:... [-c vpcId=vpc-... -c subnetIds=subnet-a,subnet-b -c securityGroupId=sg-...] [-c alarmEmail=...]
 * Sandbox:            cdk deploy -c demo=true
 */
const app = new App();
let choice: ReturnType<typeof readContext>;
try {
  choice = readContext((key) => app.node.tryGetContext(key));
} catch (error) {
  if (!(error instanceof UsageError)) throw error;
  // What to deploy is a question for the user, not a crash: no stack trace.
  process.stderr.write(`${error.message}\n${USAGE}\n`);
  process.exit(2);
}
const stack = new HousekeepingStack(app, choice.stackId, {
  target: choice.target,
  deployment: choice.deployment,
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
});
acknowledgeReviewedFindings(stack, { sandbox: choice.target.kind === 'demo' });
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
app.synth();
