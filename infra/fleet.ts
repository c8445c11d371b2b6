import { JOB_NAMES, type JobName } from '../functions/registry';
import { databaseIdProblem } from '../shared/database-id';
import { ConfigError } from '../shared/errors';
import type { PgHousekeepingProps } from './pg-housekeeping';

/** One database's jobs: each with its schedule and policy side by side (README, "Deploying with CDK"). */
export type DatabaseJobs = Pick<PgHousekeepingProps, JobName | 'rollupLagAlarmSeconds'>;

/** Where a database's functions run: its VPC and private subnets, and optionally their security group. */
export interface DatabaseNetwork {
  vpcId: string;
  /** Private subnets with a route to Secrets Manager (and, for continuations, the Lambda API). */
  subnetIds: string[];
  /** The functions' group; without it one group is made for this database's jobs (output `<id>JobsSecurityGroupId…`). */
  securityGroupId?: string;
}

/** One entry of `databases` in infra/housekeeping.config.ts: one database of the fleet. */
export interface DatabaseConfig {
  /**
   * Lowercase letters, digits and hyphens, at most 63. Carried by every metric (dimension
   * `database`), log line, alarm, saved query and function name of this database; unique in the file.
   */
  id: string;
  /** Complete ARN of the database's secret (RDS JSON shape, ending -AbCdEf); in another account it needs `kmsKeyArn`. */
  secretArn?: string;
  /** Instead of `secretArn`: the sandbox (`cdk deploy -c demo=true`) makes this database, a small RDS PostgreSQL with its own secret and demo tables. */
  sandbox?: true;
  /** The customer-managed KMS key the secret is encrypted with: the functions may decrypt with it, through Secrets Manager, for this secret only. */
  kmsKeyArn?: string;
  network?: DatabaseNetwork;
  /** A NOLOGIN role owning the maintained tables; every session runs SET ROLE to it (README, "Database roles"). */
  databaseRole?: string;
  /** An SNS topic (a team's) this database's alarms notify besides the deployment's alarmEmail or alarmTopicArn. */
  alarmTopicArn?: string;
  /**
   * The CloudFormation stack holding this database (default `PgHousekeeping`). A stack holds about
   * nine databases of three jobs (CloudFormation's 500 resources); name another stack for the rest
   * and deploy with `cdk deploy --all` (README, "How many databases fit in a stack").
   */
  stack?: string;
  jobs: DatabaseJobs;
}

/** The stack the fleet's databases go to unless their entry names another. */
export const DEFAULT_STACK = 'PgHousekeeping';
/** The sandbox's stack (`-c demo=true`): the entries with `sandbox: true`. */
const SANDBOX_STACK = 'PgHousekeepingSandbox';

// Secrets Manager appends a hyphen and six characters to the name; fromSecretCompleteArn needs them.
export const COMPLETE_SECRET_ARN = /^arn:aws[a-z-]*:secretsmanager:([a-z0-9-]+):(\d{12}):secret:[\w/+=.@-]+-[A-Za-z0-9]{6}$/;
// A key's ARN, not an alias: an IAM statement on an alias ARN does not cover the key it points to.
const KMS_KEY_ARN = /^arn:aws[a-z-]*:kms:([a-z0-9-]+):(\d{12}):key\/[A-Za-z0-9-]+$/;
export const TOPIC_ARN = /^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[\w-]+$/;
// No hyphen: a physical name is `<stack>-<database>-<job>`, so the first hyphen always ends the stack's part.
const STACK_NAME = /^[A-Za-z][A-Za-z0-9]{0,39}$/;

/** Region and account of a complete secret or key ARN (validated by the patterns above). */
function arnParts(arn: string, pattern: RegExp): { region: string; account: string } | undefined {
  const match = pattern.exec(arn);
  return match ? { region: match[1]!, account: match[2]! } : undefined;
}

export interface FleetStack {
  stackName: string;
  databases: DatabaseConfig[];
}

/**
 * Checks the whole list before anything is built, naming the entry and field of the first
 * problem (`databases[2].id: "orders" is also databases[0].id ...`), and groups the databases by
 * stack: those with a secret ARN (`cdk deploy`), or, for the sandbox, those with `sandbox: true`.
 */
export function planFleet(databases: readonly DatabaseConfig[], options: { sandbox: boolean }, where = 'databases'): FleetStack[] {
  checkDatabases(databases, where);
  const chosen = databases.filter((entry) => Boolean(entry.sandbox) === options.sandbox);
  const stacks = new Map<string, DatabaseConfig[]>();
  for (const entry of chosen) {
    const stackName = options.sandbox ? SANDBOX_STACK : (entry.stack ?? DEFAULT_STACK);
    stacks.set(stackName, [...(stacks.get(stackName) ?? []), entry]);
  }
  return [...stacks].map(([stackName, entries]) => ({ stackName, databases: entries }));
}

/** Every entry well formed and every id unique; throws a ConfigError naming the first problem's entry and field. */
export function checkDatabases(databases: readonly DatabaseConfig[], where = 'databases'): void {
  if (!Array.isArray(databases)) throw new ConfigError(where, 'must be a list of databases');
  const seen = new Map<string, number>();
  for (const [index, entry] of databases.entries()) {
    const at = `${where}[${index}]`;
    if (!entry || typeof entry !== 'object') throw new ConfigError(at, 'must be an object: { id, secretArn, jobs }');
    const idProblem = databaseIdProblem(entry.id);
    if (idProblem) throw new ConfigError(`${at}.id`, idProblem);
    const first = seen.get(entry.id);
    if (first !== undefined) {
      throw new ConfigError(
        `${at}.id`,
        `"${entry.id}" is also ${where}[${first}].id; each database needs its own id (it names its metrics, alarms and functions)`,
      );
    }
    seen.set(entry.id, index);
    checkEntry(entry, at);
  }
}

function checkEntry(entry: DatabaseConfig, at: string): void {
  const known = new Set(['id', 'secretArn', 'sandbox', 'kmsKeyArn', 'network', 'databaseRole', 'alarmTopicArn', 'stack', 'jobs']);
  const unknown = Object.keys(entry).filter((key) => !known.has(key));
  if (unknown.length > 0) throw new ConfigError(`${at}.${unknown[0]}`, `is not a database setting (expected ${[...known].join(', ')})`);
  if (entry.sandbox !== undefined && entry.sandbox !== true) throw new ConfigError(`${at}.sandbox`, 'true, or leave it out');
  if (entry.sandbox && entry.secretArn !== undefined)
    throw new ConfigError(`${at}.secretArn`, 'a sandbox database makes its own secret; set secretArn or sandbox: true, not both');
  if (!entry.sandbox && entry.secretArn === undefined) {
    throw new ConfigError(
      `${at}.secretArn`,
      "is required: the complete ARN of the database's secret (or sandbox: true for a database the sandbox makes)",
    );
  }
  let secret: { region: string; account: string } | undefined;
  if (entry.secretArn !== undefined) {
    secret = arnParts(entry.secretArn, COMPLETE_SECRET_ARN);
    if (!secret) {
      throw new ConfigError(
        `${at}.secretArn`,
        `${entry.secretArn} is not a complete secret ARN (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-AbCdEf, as the console shows it)`,
      );
    }
  }
  if (entry.kmsKeyArn !== undefined) {
    if (entry.sandbox) throw new ConfigError(`${at}.kmsKeyArn`, "a sandbox database's secret uses Secrets Manager's own key");
    const key = arnParts(entry.kmsKeyArn, KMS_KEY_ARN);
    if (!key)
      throw new ConfigError(
        `${at}.kmsKeyArn`,
        `${entry.kmsKeyArn} is not a KMS key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID; an alias ARN is not enough for IAM)`,
      );
    if (secret && key.region !== secret.region) {
      throw new ConfigError(
        `${at}.kmsKeyArn`,
        `the key is in ${key.region}, the secret in ${secret.region}: Secrets Manager encrypts with a key of the secret's own region`,
      );
    }
  }
  if (entry.network !== undefined) {
    if (entry.sandbox) throw new ConfigError(`${at}.network`, "a sandbox database runs in the sandbox's own VPC");
    const { vpcId, subnetIds, securityGroupId } = entry.network;
    if (typeof vpcId !== 'string' || !/^vpc-[0-9a-f]+$/.test(vpcId))
      throw new ConfigError(`${at}.network.vpcId`, `expected a VPC id like vpc-0abc (got ${JSON.stringify(vpcId)})`);
    if (!Array.isArray(subnetIds) || subnetIds.length === 0) throw new ConfigError(`${at}.network.subnetIds`, 'at least one private subnet id');
    for (const [i, subnet] of subnetIds.entries()) {
      if (typeof subnet !== 'string' || !/^subnet-[0-9a-f]+$/.test(subnet))
        throw new ConfigError(`${at}.network.subnetIds[${i}]`, `expected a subnet id like subnet-0abc (got ${JSON.stringify(subnet)})`);
    }
    if (securityGroupId !== undefined && !/^sg-[0-9a-f]+$/.test(securityGroupId)) {
      throw new ConfigError(`${at}.network.securityGroupId`, `expected a security group id like sg-0abc (got ${JSON.stringify(securityGroupId)})`);
    }
  }
  if (entry.alarmTopicArn !== undefined && !TOPIC_ARN.test(entry.alarmTopicArn))
    throw new ConfigError(`${at}.alarmTopicArn`, `${entry.alarmTopicArn} is not an SNS topic ARN`);
  if (entry.stack !== undefined) {
    if (entry.sandbox) throw new ConfigError(`${at}.stack`, `sandbox databases all go to ${SANDBOX_STACK}`);
    if (!STACK_NAME.test(entry.stack) || entry.stack === SANDBOX_STACK) {
      throw new ConfigError(
        `${at}.stack`,
        `${JSON.stringify(entry.stack)} must be letters and digits, at most 40, starting with a letter (e.g. "PgHousekeepingEu"), and not ${SANDBOX_STACK}`,
      );
    }
  }
  if (!entry.jobs || typeof entry.jobs !== 'object' || !JOB_NAMES.some((job) => entry.jobs[job])) {
    throw new ConfigError(`${at}.jobs`, `deploys no job: give it ${JOB_NAMES.join(', ')} (each { schedule, policy })`);
  }
}
