import { Annotations, Stack, type StackProps } from 'aws-cdk-lib';
import { Secret } from 'aws-cdk-lib/aws-secretsmanager';
import type { Construct } from 'constructs';
import { housekeeping } from './housekeeping.config';
import { PgHousekeeping } from './pg-housekeeping';

const PLACEHOLDER_SECRET = 'arn:aws:secretsmanager:us-east-1:123456789012:secret:replace-me-AbCdEf';

/** Deploys the jobs in housekeeping.config.ts against the database whose secret is given as context. */
export class HousekeepingStack extends Stack {
  readonly housekeeping: PgHousekeeping;

  constructor(scope: Construct, id: string, props: StackProps & { secretArn?: string } = {}) {
    super(scope, id, props);
    const secretArn = props.secretArn ?? PLACEHOLDER_SECRET;
    if (!props.secretArn) Annotations.of(this).addWarningV2('pghk:no-secret', 'no -c secretArn=... given: synthesized against a placeholder secret');
    this.housekeeping = new PgHousekeeping(this, 'Housekeeping', {
      databaseSecret: Secret.fromSecretCompleteArn(this, 'DatabaseSecret', secretArn),
      ...housekeeping,
    });
  }
}
