import type { DeploymentOptions, Target } from './stack';

/** The one line `cdk synth` prints when the context does not say what to deploy. */
export const USAGE =
  'usage: cdk deploy -c secretArn=<complete secret ARN, ending -XXXXXX> [-c vpcId=vpc-… -c subnetIds=subnet-a,subnet-b -c securityGroupId=sg-…] ' +
  '[-c alarmEmail=you@example.com | -c alarmTopicArn=arn:aws:sns:…] [-c databaseRole=housekeeper_owner] [-c reservedConcurrency=1]   or   cdk deploy -c demo=true   (README, "Deploying with CDK")';

/** A context problem: the app prints it with the usage line, never a stack trace. */
export class UsageError extends Error {}

// Secrets Manager appends a hyphen and six characters to the name; fromSecretCompleteArn needs them.
const COMPLETE_SECRET_ARN = /^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[\w/+=.@-]+-[A-Za-z0-9]{6}$/;
const TOPIC_ARN = /^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[\w-]+$/;

export interface AppChoice {
  stackId: string;
  target: Target;
  deployment: DeploymentOptions;
}

/** Reads `-c key=value` context into what the app deploys, or throws a UsageError naming the key. */
export function readContext(context: (key: string) => unknown): AppChoice {
  const text = (key: string): string | undefined => {
    const value = context(key);
    if (value === undefined || value === null || value === '') return undefined;
    return String(value).trim();
  };
  const demo = text('demo') === 'true';
  const secretArn = text('secretArn');
  if (!demo && !secretArn) throw new UsageError('nothing to deploy: pass -c secretArn=… for an existing database, or -c demo=true for a sandbox');
  if (secretArn && !COMPLETE_SECRET_ARN.test(secretArn)) {
    throw new UsageError(
      `secretArn: ${secretArn} is not a complete secret ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-AbCdEf, as the console shows it)`,
    );
  }
  const alarmTopicArn = text('alarmTopicArn');
  if (alarmTopicArn && !TOPIC_ARN.test(alarmTopicArn)) throw new UsageError(`alarmTopicArn: ${alarmTopicArn} is not an SNS topic ARN`);
  const alarmEmail = text('alarmEmail');
  if (alarmEmail && !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(alarmEmail)) throw new UsageError(`alarmEmail: ${alarmEmail} is not an email address`);
  const concurrency = text('reservedConcurrency');
  const reservedConcurrency = concurrency === undefined ? undefined : Number(concurrency);
  if (reservedConcurrency !== undefined && !(Number.isInteger(reservedConcurrency) && reservedConcurrency >= 1)) {
    throw new UsageError(`reservedConcurrency: expected a whole number ≥ 1 (got ${concurrency})`);
  }
  const deployment: DeploymentOptions = {
    ...(alarmEmail ? { alarmEmail } : {}),
    ...(alarmTopicArn ? { alarmTopicArn } : {}),
    ...(text('databaseRole') ? { databaseRole: text('databaseRole') } : {}),
    ...(reservedConcurrency ? { reservedConcurrency } : {}),
  };
  if (demo) return { stackId: 'PgHousekeepingSandbox', target: { kind: 'demo' }, deployment };
  const subnetIds = text('subnetIds')
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const vpcId = text('vpcId');
  if (vpcId && !subnetIds?.length) throw new UsageError('subnetIds: required with vpcId (comma-separated private subnet ids)');
  return {
    stackId: 'PgHousekeeping',
    target: { kind: 'existing', secretArn: secretArn!, vpcId, subnetIds, securityGroupId: text('securityGroupId') },
    deployment,
  };
}
