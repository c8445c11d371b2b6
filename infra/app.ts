import { App } from 'aws-cdk-lib';
import { HousekeepingStack } from './stack';

const app = new App();
new HousekeepingStack(app, 'PgHousekeeping', {
  secretArn: app.node.tryGetContext('secretArn'),
  env: { account: process.env.CDK_DEFAULT_ACCOUNT, region: process.env.CDK_DEFAULT_REGION },
});
app.synth();
