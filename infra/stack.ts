import { Annotations, Duration, Fn, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import {
  FlowLogDestination,
  InstanceClass,
  InstanceSize,
  InstanceType,
  InterfaceVpcEndpointAwsService,
  type ISecurityGroup,
  type IVpc,
  SecurityGroup,
  Subnet,
  type SubnetSelection,
  SubnetType,
  Vpc,
} from 'aws-cdk-lib/aws-ec2';
import { LogGroup, RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Credentials, DatabaseInstance, DatabaseInstanceEngine, PostgresEngineVersion, StorageType } from 'aws-cdk-lib/aws-rds';
import { type ISecret, Secret } from 'aws-cdk-lib/aws-secretsmanager';
import { Topic } from 'aws-cdk-lib/aws-sns';
import { Trigger } from 'aws-cdk-lib/triggers';
import type { Construct } from 'constructs';
import { demoHousekeeping, type HousekeepingConfig, housekeeping } from './housekeeping.config';
import { JobFunction } from './job-function';
import { PgHousekeeping, type PgHousekeepingProps } from './pg-housekeeping';

/** Where the database is: an existing one (secret, VPC, subnets, security group) or a sandbox. */
export type Target = { kind: 'existing'; secretArn: string; vpcId?: string; subnetIds?: string[]; securityGroupId?: string } | { kind: 'demo' };

/** Deployment choices beside the policies: where alarms go, concurrency, the owner role. */
export type DeploymentOptions = Pick<PgHousekeepingProps, 'alarmEmail' | 'reservedConcurrency' | 'databaseRole'> & { alarmTopicArn?: string };

export interface HousekeepingStackProps extends StackProps {
  target: Target;
  config?: HousekeepingConfig;
  deployment?: DeploymentOptions;
}

export class HousekeepingStack extends Stack {
  readonly housekeeping: PgHousekeeping;

  constructor(scope: Construct, id: string, props: HousekeepingStackProps) {
    super(scope, id, props);
    const { alarmTopicArn, ...deployment } = props.deployment ?? {};
    const options: Partial<PgHousekeepingProps> = {
      ...deployment,
      ...(alarmTopicArn ? { alarmTopic: Topic.fromTopicArn(this, 'AlarmTopic', alarmTopicArn) } : {}),
    };
    if (!options.alarmTopic && !options.alarmEmail) {
      Annotations.of(this).addWarningV2(
        'pg-housekeeper:no-alarm-target',
        'no alarmEmail or alarmTopicArn: the alarms change state and notify no one',
      );
    }
    if (props.target.kind === 'demo') {
      this.housekeeping = this.sandbox(props.config ?? demoHousekeeping, options);
      return;
    }
    const target = props.target;
    const secret = Secret.fromSecretCompleteArn(this, 'DatabaseSecret', target.secretArn);
    let network: { vpc?: IVpc; vpcSubnets?: SubnetSelection; securityGroups?: ISecurityGroup[] } = {};
    if (target.vpcId) {
      const subnetIds = target.subnetIds ?? [];
      if (subnetIds.length === 0) throw new Error('context subnetIds is required with vpcId (comma-separated private subnet ids)');
      // The subnets are given by id, so the zones are never consulted; `this.availabilityZones`
      // would be a context lookup that needs AWS credentials whenever CDK_DEFAULT_ACCOUNT is set.
      const vpc = Vpc.fromVpcAttributes(this, 'Vpc', { vpcId: target.vpcId, availabilityZones: Fn.getAzs() });
      Annotations.of(vpc).acknowledgeWarning(
        '@aws-cdk/aws-ec2:vpcAttributeIsListTokenavailabilityZones',
        'Only the explicit subnets are used, never a selection by zone',
      );
      const subnets = subnetIds.map((subnetId, i) => {
        const subnet = Subnet.fromSubnetId(this, `Subnet${i}`, subnetId);
        Annotations.of(subnet).acknowledgeWarning('@aws-cdk/aws-ec2:noSubnetRouteTableId', 'Only the subnet id is used (to place the functions)');
        return subnet;
      });
      network = {
        vpc,
        vpcSubnets: { subnets },
        securityGroups: target.securityGroupId ? [SecurityGroup.fromSecurityGroupId(this, 'SecurityGroup', target.securityGroupId)] : undefined,
      };
    }
    this.housekeeping = new PgHousekeeping(this, 'Housekeeping', {
      databaseSecret: secret,
      ...network,
      ...(props.config ?? housekeeping),
      ...options,
    });
  }

  /** A complete sandbox: isolated VPC, a small RDS PostgreSQL with a generated secret, demo tables, the three jobs. */
  private sandbox(config: HousekeepingConfig, options: Partial<PgHousekeepingProps>): PgHousekeeping {
    // The sandbox leaves nothing behind after `cdk destroy`, its flow logs included.
    const flowLogs = new LogGroup(this, 'SandboxFlowLogs', { retention: RetentionDays.ONE_WEEK, removalPolicy: RemovalPolicy.DESTROY });
    const vpc = new Vpc(this, 'SandboxVpc', {
      maxAzs: 2,
      natGateways: 0,
      subnetConfiguration: [{ name: 'isolated', subnetType: SubnetType.PRIVATE_ISOLATED, cidrMask: 24 }],
      flowLogs: { rejected: { destination: FlowLogDestination.toCloudWatchLogs(flowLogs) } },
    });
    // No NAT: the functions reach Secrets Manager through an endpoint, and the Lambda API (to
    // send a continuation) through another; nothing else leaves the VPC.
    const endpoint = vpc.addInterfaceEndpoint('SecretsManagerEndpoint', { service: InterfaceVpcEndpointAwsService.SECRETS_MANAGER });
    vpc.addInterfaceEndpoint('LambdaEndpoint', { service: InterfaceVpcEndpointAwsService.LAMBDA });
    const database = new DatabaseInstance(this, 'SandboxDatabase', {
      engine: DatabaseInstanceEngine.postgres({ version: PostgresEngineVersion.VER_17 }),
      instanceType: InstanceType.of(InstanceClass.BURSTABLE4_GRAVITON, InstanceSize.MICRO),
      vpc,
      vpcSubnets: { subnetType: SubnetType.PRIVATE_ISOLATED },
      credentials: Credentials.fromGeneratedSecret('housekeeper'),
      allocatedStorage: 20,
      storageType: StorageType.GP3,
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
      logRemovalPolicy: RemovalPolicy.DESTROY,
      vpc,
      vpcSubnets,
    });
    database.connections.allowDefaultPortFrom(seed.function, 'pg-housekeeper demo seed');
    // Once, after the database and the endpoint the seed reaches Secrets Manager through exist;
    // not again when the seed's code changes (it would re-create the demo tables).
    new Trigger(this, 'SeedDemoTables', {
      handler: seed.function,
      executeAfter: [database, endpoint],
      executeOnHandlerChange: false,
      timeout: Duration.minutes(5),
    });
    return new PgHousekeeping(this, 'Housekeeping', {
      databaseSecret: secret,
      database,
      vpc,
      vpcSubnets,
      ...config,
      ...options,
      logRetention: RetentionDays.ONE_WEEK,
      // A sandbox is for trying the jobs: `cdk destroy` removes its logs too.
      logRemovalPolicy: RemovalPolicy.DESTROY,
    });
  }
}
