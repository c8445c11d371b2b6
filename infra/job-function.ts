import { fileURLToPath } from 'node:url';
import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import type { ISecurityGroup, IVpc, SubnetSelection } from 'aws-cdk-lib/aws-ec2';
import { Architecture, Runtime } from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, type RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import { Queue, QueueEncryption } from 'aws-cdk-lib/aws-sqs';
import { Construct } from 'constructs';
import { METRICS_NAMESPACE } from '../shared/metrics';

export interface JobFunctionProps {
  /** Folder under functions/ holding handler.ts. */
  entry: 'partition' | 'archive' | 'rollup' | 'demo-seed';
  databaseSecret: ISecret;
  timeout: Duration;
  memorySize?: number;
  logRetention: RetentionDays;
  vpc?: IVpc;
  vpcSubnets?: SubnetSelection;
  securityGroups?: ISecurityGroup[];
}

const repoRoot = fileURLToPath(new URL('..', import.meta.url));

/** The bundling every function shares: local esbuild (no Docker), minified, source maps, Node 22. */
export const BUNDLING = {
  minify: true,
  sourceMap: true,
  target: 'node22',
  format: OutputFormat.CJS,
  // pg optionally requires its native binding; we never use it.
  externalModules: ['pg-native'],
  forceDockerBundling: false,
};

/**
 * One Lambda per job with the team's defaults in one place: Node 22 on arm64, reserved
 * concurrency 1, an explicit log group with retention, an SQS dead-letter queue for failed
 * asynchronous invocations, two async retries within an hour, and read access to one secret.
 */
export class JobFunction extends Construct {
  readonly function: NodejsFunction;
  readonly deadLetterQueue: Queue;
  readonly logGroup: LogGroup;

  constructor(scope: Construct, id: string, props: JobFunctionProps) {
    super(scope, id);
    this.logGroup = new LogGroup(this, 'Logs', { retention: props.logRetention, removalPolicy: RemovalPolicy.DESTROY });
    this.deadLetterQueue = new Queue(this, 'DeadLetters', {
      retentionPeriod: Duration.days(14),
      encryption: QueueEncryption.SQS_MANAGED,
      enforceSSL: true,
    });
    this.function = new NodejsFunction(this, 'Function', {
      entry: `${repoRoot}functions/${props.entry}/handler.ts`,
      handler: 'handler',
      projectRoot: repoRoot,
      depsLockFilePath: `${repoRoot}package-lock.json`,
      runtime: Runtime.NODEJS_22_X,
      architecture: Architecture.ARM_64,
      memorySize: props.memorySize ?? 256,
      timeout: props.timeout,
      reservedConcurrentExecutions: 1,
      logGroup: this.logGroup,
      deadLetterQueue: this.deadLetterQueue,
      retryAttempts: 2,
      maxEventAge: Duration.hours(1),
      vpc: props.vpc,
      vpcSubnets: props.vpcSubnets,
      securityGroups: props.securityGroups,
      environment: {
        PGHK_DB_SECRET_ARN: props.databaseSecret.secretArn,
        POWERTOOLS_SERVICE_NAME: 'pg-housekeeper',
        POWERTOOLS_METRICS_NAMESPACE: METRICS_NAMESPACE,
        NODE_OPTIONS: '--enable-source-maps',
      },
      bundling: BUNDLING,
    });
    props.databaseSecret.grantRead(this.function);
  }
}
