import { Duration } from 'aws-cdk-lib';
import { Architecture, Runtime } from 'aws-cdk-lib/aws-lambda';
import { NodejsFunction, OutputFormat } from 'aws-cdk-lib/aws-lambda-nodejs';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import type { ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import type { ISecurityGroup, IVpc, SubnetSelection } from 'aws-cdk-lib/aws-ec2';
import { Construct } from 'constructs';
import { fileURLToPath } from 'node:url';

export interface JobFunctionProps {
  job: 'partition' | 'archive' | 'rollup';
  databaseSecret: ISecret;
  timeout: Duration;
  memorySize?: number;
  logRetention: RetentionDays;
  vpc?: IVpc;
  vpcSubnets?: SubnetSelection;
  securityGroups?: ISecurityGroup[];
}

const repoRoot = fileURLToPath(new URL('..', import.meta.url));

/** One Lambda per job, with the team's defaults in one place. */
export class JobFunction extends NodejsFunction {
  constructor(scope: Construct, id: string, props: JobFunctionProps) {
    const logGroup = new LogGroup(scope, `${id}Logs`, { retention: props.logRetention });
    super(scope, id, {
      entry: `${repoRoot}functions/${props.job}/handler.ts`,
      handler: 'handler',
      projectRoot: repoRoot,
      depsLockFilePath: `${repoRoot}package-lock.json`,
      runtime: Runtime.NODEJS_22_X,
      architecture: Architecture.ARM_64,
      memorySize: props.memorySize ?? 256,
      timeout: props.timeout,
      // One run at a time per job; the advisory locks make overlaps harmless, this makes them rare.
      reservedConcurrentExecutions: 1,
      logGroup,
      vpc: props.vpc,
      vpcSubnets: props.vpcSubnets,
      securityGroups: props.securityGroups,
      environment: {
        PGHK_DB_SECRET_ARN: props.databaseSecret.secretArn,
        POWERTOOLS_SERVICE_NAME: 'pg-housekeeper',
        NODE_OPTIONS: '--enable-source-maps',
      },
      bundling: {
        minify: true,
        sourceMap: true,
        target: 'node22',
        format: OutputFormat.CJS,
        // pg optionally requires its native binding; we never use it.
        externalModules: ['pg-native'],
        forceDockerBundling: false,
      },
    });
    props.databaseSecret.grantRead(this);
  }
}
