import { App, Validations } from 'aws-cdk-lib';
import { AwsSolutionsChecks } from 'cdk-nag';
import { HousekeepingStack, type Target } from './stack';
import { acknowledgeReviewedFindings } from './nag';

/**
 * Existing database:  cdk deploy -c secretArn=arn:... [-c vpcId=vpc-... -c subnetIds=subnet-a,subnet-b -c securityGroupId=sg-...]
 * Sandbox:            cdk deploy -c demo=true
 */
const app = new App();
const context = (key: string): string | undefined => app.node.tryGetContext(key);
const demo = context('demo') === 'true' || (context('demo') as unknown) === true;
const secretArn = context('secretArn');
if (!demo && !secretArn) {
  throw new Error('pass -c secretArn=arn:aws:secretsmanager:... for an existing database, or -c demo=true for a sandbox (README, "Deploying")');
}
const target: Target = demo
  ? { kind: 'demo' }
  : {
      kind: 'existing',
      secretArn: secretArn!,
      vpcId: context('vpcId'),
      subnetIds: context('subnetIds')?.split(',').map((s) => s.trim()).filter(Boolean),
      securityGroupId: context('securityGroupId'),
    };
const stack = new HousekeepingStack(app, demo ? 'PgHousekeepingSandbox' : 'PgHousekeeping', {
  target,
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
});
acknowledgeReviewedFindings(stack, { sandbox: demo });
Validations.of(app).addPlugins(new AwsSolutionsChecks(app));
app.synth();
