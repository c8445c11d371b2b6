import { Duration, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import {
  InstanceClass,
  InstanceSize,
  InstanceType,
  InterfaceVpcEndpointAwsService,
  SecurityGroup,
  Subnet,
  SubnetType,
  Vpc,
  FlowLogDestination,
  type ISecurityGroup,
  type IVpc,
  type SubnetSelection,
} from 'aws-cdk-lib/aws-ec2';
import { Credentials, DatabaseInstance, DatabaseInstanceEngine, PostgresEngineVersion } from 'aws-cdk-lib/aws-rds';
import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Secret, type ISecret } from 'aws-cdk-lib/aws-secretsmanager';
import { Trigger } from 'aws-cdk-lib/triggers';
import type { Construct } from 'constructs';
import { demoHousekeeping, housekeeping, type HousekeepingConfig } from './housekeeping.config';
import { JobFunction } from './job-function';
import { PgHousekeeping } from './pg-housekeeping';

/** Where the database is: an existing one (secret, VPC, subnets, security group) or a sandbox. */
export type Target =
  | { kind: 'existing'; secretArn: string; vpcId?: string; subnetIds?: string[]; securityGroupId?: string }
  | { kind: 'demo' };

export interface HousekeepingStackProps extends StackProps {
  target: Target;
  config?: HousekeepingConfig;
}

export class HousekeepingStack extends Stack {
  readonly housekeeping: PgHousekeeping;

  constructor(scope: Construct, id: string, props: HousekeepingStackProps) {
    super(scope, id, props);
    if (props.target.kind === 'demo') {
      this.housekeeping = this.sandbox(props.config ?? demoHousekeeping);
      return;
    }
    const target = props.target;
    const secret = Secret.fromSecretCompleteArn(this, 'DatabaseSecret', target.secretArn);
    let network: { vpc?: IVpc; vpcSubnets?: SubnetSelection; securityGroups?: ISecurityGroup[] } = {};
    if (target.vpcId) {
      const subnetIds = target.subnetIds ?? [];
      if (subnetIds.length === 0) throw new Error('context subnetIds is required with vpcId (comma-separated private subnet ids)');
      network = {
        vpc: Vpc.fromVpcAttributes(this, 'Vpc', { vpcId: target.vpcId, availabilityZones: this.availabilityZones.slice(0, subnetIds.length) }),
        vpcSubnets: { subnets: subnetIds.map((subnetId, i) => Subnet.fromSubnetId(this, `Subnet${i}`, subnetId)) },
        securityGroups: target.securityGroupId ? [SecurityGroup.fromSecurityGroupId(this, 'SecurityGroup', target.securityGroupId)] : undefined,
      };
    }
    this.housekeeping = new PgHousekeeping(this, 'Housekeeping', { databaseSecret: secret, ...network, ...(props.config ?? housekeeping) });
  }

  /** A complete sandbox: isolated VPC, a small RDS PostgreSQL with a generated secret, demo tables, the three jobs. */
  private sandbox(config: HousekeepingConfig): PgHousekeeping {
    const vpc = new Vpc(this, 'SandboxVpc', {
      maxAzs: 2,
      natGateways: 0,
      subnetConfiguration: [{ name: 'isolated', subnetType: SubnetType.PRIVATE_ISOLATED, cidrMask: 24 }],
      flowLogs: { rejected: { destination: FlowLogDestination.toCloudWatchLogs() } },
    });
    // No NAT: the functions reach Secrets Manager through an endpoint, nothing else leaves the VPC.
    vpc.addInterfaceEndpoint('SecretsManagerEndpoint', { service: InterfaceVpcEndpointAwsService.SECRETS_MANAGER });
    const database = new DatabaseInstance(this, 'SandboxDatabase', {
      engine: DatabaseInstanceEngine.postgres({ version: PostgresEngineVersion.VER_17 }),
      instanceType: InstanceType.of(InstanceClass.BURSTABLE4_GRAVITON, InstanceSize.MICRO),
      vpc,
      vpcSubnets: { subnetType: SubnetType.PRIVATE_ISOLATED },
      credentials: Credentials.fromGeneratedSecret('housekeeper'),
      allocatedStorage: 20,
      storageEncrypted: true,
      backupRetention: Duration.days(1),
      deletionProtection: false,
      removalPolicy: RemovalPolicy.DESTROY,
      iamAuthentication: true,
    });
    const secret = database.secret as ISecret;
    const vpcSubnets = { subnetType: SubnetType.PRIVATE_ISOLATED };
    const seed = new JobFunction(this, 'DemoSeed', {
      entry: 'demo-seed',
      databaseSecret: secret,
      timeout: Duration.minutes(2),
      logRetention: RetentionDays.ONE_WEEK,
      vpc,
      vpcSubnets,
    });
    database.connections.allowDefaultPortFrom(seed.function, 'pg-housekeeper demo seed');
    // Runs once after the database exists: the jobs then find their demo tables.
    new Trigger(this, 'SeedDemoTables', { handler: seed.function, executeAfter: [database], timeout: Duration.minutes(5) });
    return new PgHousekeeping(this, 'Housekeeping', { databaseSecret: secret, database, vpc, vpcSubnets, ...config, logRetention: RetentionDays.ONE_WEEK });
  }
}
