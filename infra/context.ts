import { COMPLETE_SECRET_ARN, type DatabaseConfig, DEFAULT_STACK, planFleet, TOPIC_ARN } from './fleet';
import type { DeploymentOptions, Target } from './stack';

/** The one line `cdk synth` prints when the context does not say what to deploy. */
export const USAGE =
  'usage: cdk deploy [--all]   (the databases listed in infra/housekeeping.config.ts)   or   cdk deploy -c secretArn=<complete secret ARN, ending -XXXXXX> [-c vpcId=vpc-… -c subnetIds=subnet-a,subnet-b -c securityGroupId=sg-…] [-c databaseRole=housekeeper_owner]   or   cdk deploy -c demo=true;   ' +
  'with any: [-c alarmEmail=you@example.com | -c alarmTopicArn=arn:aws:sns:…] [-c reservedConcurrency=1]   (README, "Deploying with CDK")';

/** A context problem: the app prints it with the usage line, never a stack trace. */
export class UsageError extends Error {}

/** One stack the app synthesizes: a fleet's databases, or one database given by context (or the sandbox's). */
interface StackChoice {
  stackId: string;
  target?: Target;
  databases?: DatabaseConfig[];
}

export interface AppChoice {
  stacks: StackChoice[];
  sandbox: boolean;
  deployment: DeploymentOptions;
}

/** Context that describes one database: with a fleet, each entry says it instead. */
const ONE_DATABASE_KEYS = ['vpcId', 'subnetIds', 'securityGroupId', 'databaseRole'] as const;

/**
 * Reads `-c key=value` context and the config file's databases into what the app deploys, or
 * throws a UsageError naming the key (a ConfigError naming the entry, for a bad database entry).
 */
export function readContext(context: (key: string) => unknown, databases: readonly DatabaseConfig[] = []): AppChoice {
  const text = (key: string): string | undefined => {
    const value = context(key);
    if (value === undefined || value === null || value === '') return undefined;
    return String(value).trim();
  };
  const demo = text('demo') === 'true';
  const secretArn = text('secretArn');
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
  if (demo) {
    const stacks = planFleet(databases, { sandbox: true });
    if (stacks.length === 0)
      throw new UsageError("demo: infra/housekeeping.config.ts lists no sandbox database ({ id: 'demo', sandbox: true, jobs: demoHousekeeping })");
    return { stacks: stacks.map(({ stackName, databases: entries }) => ({ stackId: stackName, databases: entries })), sandbox: true, deployment };
  }
  const fleet = planFleet(databases, { sandbox: false });
  if (!secretArn) {
    if (fleet.length === 0) {
      throw new UsageError(
        'nothing to deploy: list your databases in infra/housekeeping.config.ts, or pass -c secretArn=… for one existing database, or -c demo=true for a sandbox',
      );
    }
    const oneDatabaseKey = ONE_DATABASE_KEYS.find((key) => text(key) !== undefined);
    if (oneDatabaseKey) {
      throw new UsageError(
        `${oneDatabaseKey}: goes with -c secretArn; each database listed in infra/housekeeping.config.ts sets its own (network, databaseRole)`,
      );
    }
    return { stacks: fleet.map(({ stackName, databases: entries }) => ({ stackId: stackName, databases: entries })), sandbox: false, deployment };
  }
  if (fleet.length > 0) {
    const ids = fleet.flatMap((stack) => stack.databases.map((entry) => entry.id));
    throw new UsageError(
      `secretArn: deploys one database, but infra/housekeeping.config.ts lists ${ids.join(', ')}: deploy those with cdk deploy (no secretArn), or add this one to the list`,
    );
  }
  const subnetIds = text('subnetIds')
    ?.split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  const vpcId = text('vpcId');
  if (vpcId && !subnetIds?.length) throw new UsageError('subnetIds: required with vpcId (comma-separated private subnet ids)');
  return {
    stacks: [{ stackId: DEFAULT_STACK, target: { kind: 'existing', secretArn, vpcId, subnetIds, securityGroupId: text('securityGroupId') } }],
    sandbox: false,
    deployment,
  };
}
