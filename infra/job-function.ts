import { createHash } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import type { ISecurityGroup, IVpc, SubnetSelection } from 'aws-cdk-lib/aws-ec2';
import { Architecture, Runtime, type RecursiveLoop } from 'aws-cdk-lib/aws-lambda';
import { SqsDestination } from 'aws-cdk-lib/aws-lambda-destinations';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { METRICS_NAMESPACE } from '../shared/metrics';
import { formatWindow, type MaintenanceWindow } from '../shared/window';

export interface JobFunctionProps {
  /** Folder under functions/ holding handler.ts. */
  entry: 'partition' | 'archive' | 'rollup' | 'demo-seed';
  databaseSecret: ISecret;
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
export const RUNTIME = Runtime.NODEJS_24_X;

/**
 * Node 20+ Lambda runtimes no longer trust Amazon's CA certificates unless this variable points
 * at them; the file holds the RDS and Aurora CAs. It adds to Node's public roots (which RDS
 * Proxy's certificates chain to), where a `ca` option would replace them.
 */
export const LAMBDA_CA_CERTS = '/var/runtime/ca-cert.pem';

/** Name of the deployed policy inside each job's bundle (read by shared/lambda.ts). */
export const POLICY_FILE = 'policy.json';

/** The bundling every function shares: local esbuild (no Docker), minified, source maps, Node 24. */
export const BUNDLING = {
  minify: true,
  sourceMap: true,
  target: 'node24',
  format: OutputFormat.CJS,
  // pg optionally requires its native binding; we never use it.
  // The S3 client comes from the Lambda runtime (every Node.js runtime ships AWS SDK v3): only an
  // archive target with an S3 destination loads it, and bundling it put the archive function
  // over 1 MB (1,200 KB).
  externalModules: ['pg-native', '@aws-sdk/client-s3'],
  forceDockerBundling: false,
};

/**
 * The policy reaches the function inside its code asset, not the rule's input (capped at 8,192
 * characters) nor environment variables (4 KB). The file is content-addressed so the bundling
 * command, and with it CDK's bundling cache key and the asset hash, changes with the policy.
 */
function policyFile(policy: unknown): string {
  const text = JSON.stringify(policy);
  const dir = join(tmpdir(), 'pg-housekeeper-policies');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `${createHash('sha256').update(text).digest('hex')}.json`);
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
    this.function = new NodejsFunction(this, 'Function', {
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
        PGHK_DB_SECRET_ARN: props.databaseSecret.secretArn,
        NODE_EXTRA_CA_CERTS: LAMBDA_CA_CERTS,
        POWERTOOLS_SERVICE_NAME: 'pg-housekeeper',
        POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
        NODE_OPTIONS: '--enable-source-maps',
        ...(props.databaseRole ? { PGHK_DB_ROLE: props.databaseRole } : {}),
        ...(props.maxContinuations !== undefined ? { PGHK_MAX_CONTINUATIONS: String(props.maxContinuations) } : {}),
        ...(props.window ? { PGHK_MAINTENANCE_WINDOW: formatWindow(props.window) } : {}),
      },
      bundling: {
        ...BUNDLING,
        ...(policy
          ? {
              commandHooks: {
                beforeBundling: () => [],
                beforeInstall: () => [],
                afterBundling: (_inputDir: string, outputDir: string) => [`cp "${policy}" "${outputDir}/${POLICY_FILE}"`],
              },
            }
          : {}),
      },
    });
    props.databaseSecret.grantRead(this.function);
  }
}
