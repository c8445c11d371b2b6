import { Annotations, CfnOutput, CfnResource, Duration, Fn, RemovalPolicy, Stack, type StackProps } from 'aws-cdk-lib';
import { Dashboard } from 'aws-cdk-lib/aws-cloudwatch';
import {
  FlowLogDestination,
  type IInterfaceVpcEndpoint,
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
import { type ITopic, Topic } from 'aws-cdk-lib/aws-sns';
import { Trigger } from 'aws-cdk-lib/triggers';
import { Construct } from 'constructs';
import { checkDatabases, type DatabaseConfig, type DatabaseNetwork } from './fleet';
import { demoHousekeeping, type HousekeepingConfig, housekeeping } from './housekeeping.config';
import { JobFunction } from './job-function';
import { checkTopicRegion, DEFAULT_DATABASE_ID, emailAlarmTopic, PgHousekeeping, type PgHousekeepingProps } from './pg-housekeeping';

/** One database as the app context gives it (`-c secretArn=…`, a fleet of one), or the sandbox. */
export type Target = { kind: 'existing'; secretArn: string; vpcId?: string; subnetIds?: string[]; securityGroupId?: string } | { kind: 'demo' };

/** Deployment choices beside the policies: where alarms go, concurrency, the owner role (`-c databaseRole`, one-database deploys). */
export type DeploymentOptions = Pick<PgHousekeepingProps, 'alarmEmail' | 'reservedConcurrency' | 'databaseRole'> & { alarmTopicArn?: string };

export interface HousekeepingStackProps extends StackProps {
  /** The databases this stack maintains: entries of `databases` in infra/housekeeping.config.ts, all with a secret or all sandbox. */
  databases?: DatabaseConfig[];
  /** Instead of `databases`: one existing database (id `main`), or the sandbox (id `demo`). */
  target?: Target;
  /** With `target`: its jobs (default `housekeeping`, or `demoHousekeeping` for the sandbox). */
  config?: HousekeepingConfig;
  deployment?: DeploymentOptions;
}

/** CloudFormation's limit on the resources of one stack. */
export const STACK_RESOURCE_LIMIT = 500;

/** The sandbox's network: made once, shared by its databases. */
interface SandboxNetwork {
  vpc: IVpc;
  secretsEndpoint: IInterfaceVpcEndpoint;
}

export class HousekeepingStack extends Stack {
  /** Each database's housekeeping, by database id. */
  readonly databases: Record<string, PgHousekeeping> = {};
  /** One row per database. */
  readonly dashboard: Dashboard;

  constructor(scope: Construct, id: string, props: HousekeepingStackProps) {
    super(scope, id, props);
    const { alarmTopicArn, alarmEmail, databaseRole, reservedConcurrency } = props.deployment ?? {};
    const entries = props.target ? [targetDatabase(props.target, props.config, databaseRole)] : (props.databases ?? []);
    if (entries.length === 0) throw new Error(`${id}: no database to maintain`);
    checkDatabases(entries);
    if (new Set(entries.map((entry) => Boolean(entry.sandbox))).size > 1)
      throw new Error(`${id}: sandbox databases go to a sandbox stack of their own`);
    // `-c secretArn=…` keeps the construct ids it always had, so upgrading an existing deploy keeps its log groups, queues and topic.
    const oneDatabaseDeploy = props.target?.kind === 'existing';

    const sharedTopic = alarmTopicArn ? Topic.fromTopicArn(this, 'AlarmTopic', alarmTopicArn) : undefined;
    if (sharedTopic) checkTopicRegion(this, 'alarmTopicArn', sharedTopic);
    let emailTopic: ITopic | undefined;
    if (alarmEmail && !oneDatabaseDeploy) {
      emailTopic = emailAlarmTopic(this, alarmEmail);
      new CfnOutput(this, 'AlarmTopicArn', { value: emailTopic.topicArn });
    }
    const unnotified = entries.filter((entry) => !entry.alarmTopicArn).map((entry) => entry.id);
    if (!alarmTopicArn && !alarmEmail && unnotified.length > 0) {
      Annotations.of(this).addWarningV2(
        'pg-housekeeper:no-alarm-target',
        `no alarmEmail or alarmTopicArn: the alarms of ${unnotified.join(', ')} change state and notify no one`,
      );
    }
    this.dashboard = new Dashboard(this, 'Dashboard');
    const sandbox = entries[0]!.sandbox ? this.sandboxNetwork() : undefined;

    for (const entry of entries) {
      const teamTopic = entry.alarmTopicArn ? Topic.fromTopicArn(this, `AlarmTopic-${entry.id}`, entry.alarmTopicArn) : undefined;
      const common: Omit<PgHousekeepingProps, 'databaseSecret'> = {
        ...entry.jobs,
        databaseId: entry.id,
        kmsKeyArn: entry.kmsKeyArn,
        databaseRole: entry.databaseRole,
        reservedConcurrency,
        dashboard: this.dashboard,
        alarmTopic: sharedTopic,
        alarmTopics: [emailTopic, teamTopic].filter((topic): topic is ITopic => topic !== undefined),
        ...(oneDatabaseDeploy && alarmEmail ? { alarmEmail } : {}),
      };
      const constructId = oneDatabaseDeploy ? 'Housekeeping' : entry.id;
      this.databases[entry.id] = sandbox
        ? this.sandboxDatabase(sandbox, entry, constructId, common)
        : this.existingDatabase(entry, constructId, common);
    }

    // CloudFormation refuses a stack over 500 resources at deploy; say so at synth, in databases.
    this.node.addValidation({
      validate: () => {
        const resources = this.node.findAll().filter((c) => CfnResource.isCfnResource(c)).length;
        if (resources <= STACK_RESOURCE_LIMIT) return [];
        return [
          `${this.stackName} holds ${entries.length} databases, ${resources} resources; CloudFormation allows ${STACK_RESOURCE_LIMIT} in one stack. ` +
            `Move some databases to another stack: stack: '${this.stackName}B' on their entries in infra/housekeeping.config.ts, then cdk deploy --all (README, "How many databases fit in a stack")`,
        ];
      },
    });
  }

  /**
   * The sandbox VPC's two zones, as the region's first two at deploy time (`Fn::GetAZs`): the
   * default would be a context lookup, which needs AWS credentials whenever the stack has an
   * account (`CDK_DEFAULT_ACCOUNT`), so `cdk synth` would fail offline. Nothing else reads them.
   */
  override get availabilityZones(): string[] {
    return [Fn.select(0, Fn.getAzs()), Fn.select(1, Fn.getAzs())];
  }

  /** The first database's housekeeping (a one-database stack's only one). */
  get housekeeping(): PgHousekeeping {
    return Object.values(this.databases)[0]!;
  }

  /** A database that exists: its secret (complete ARN), and the VPC, subnets and security group its functions run in. */
  private existingDatabase(entry: DatabaseConfig, constructId: string, common: Omit<PgHousekeepingProps, 'databaseSecret'>): PgHousekeeping {
    // Imports make no resources; a scope per database keeps their ids apart.
    const imports = new Construct(this, `Imports-${entry.id}`);
    const secret = Secret.fromSecretCompleteArn(imports, 'DatabaseSecret', entry.secretArn!);
    return new PgHousekeeping(this, constructId, { ...common, databaseSecret: secret, ...importNetwork(imports, entry.network) });
  }

  /** The sandbox's VPC: isolated subnets, flow logs, and endpoints for Secrets Manager and the Lambda API (continuations). */
  private sandboxNetwork(): SandboxNetwork {
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
    const secretsEndpoint = vpc.addInterfaceEndpoint('SecretsManagerEndpoint', { service: InterfaceVpcEndpointAwsService.SECRETS_MANAGER });
    vpc.addInterfaceEndpoint('LambdaEndpoint', { service: InterfaceVpcEndpointAwsService.LAMBDA });
    return { vpc, secretsEndpoint };
  }

  /** A sandbox database: a small RDS PostgreSQL with a generated secret, demo tables seeded once, and its jobs. */
  private sandboxDatabase(
    network: SandboxNetwork,
    entry: DatabaseConfig,
    constructId: string,
    common: Omit<PgHousekeepingProps, 'databaseSecret'>,
  ): PgHousekeeping {
    const { vpc, secretsEndpoint } = network;
    const scope = new Construct(this, `Sandbox-${entry.id}`);
    const database = new DatabaseInstance(scope, 'Database', {
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
    const seed = new JobFunction(scope, 'DemoSeed', {
      entry: 'demo-seed',
      databaseId: entry.id,
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
    new Trigger(scope, 'SeedDemoTables', {
      handler: seed.function,
      executeAfter: [database, secretsEndpoint],
      executeOnHandlerChange: false,
      timeout: Duration.minutes(5),
    });
    return new PgHousekeeping(this, constructId, {
      ...common,
      databaseSecret: secret,
      database,
      vpc,
      vpcSubnets,
      logRetention: RetentionDays.ONE_WEEK,
      // A sandbox is for trying the jobs: `cdk destroy` removes its logs too.
      logRemovalPolicy: RemovalPolicy.DESTROY,
    });
  }
}

/** `-c secretArn=…` (today's one-database shape) as a fleet of one, id `main`; the sandbox as one database, id `demo`. */
function targetDatabase(target: Target, config: HousekeepingConfig | undefined, databaseRole: string | undefined): DatabaseConfig {
  if (target.kind === 'demo') return { id: 'demo', sandbox: true, jobs: config ?? demoHousekeeping };
  return {
    id: DEFAULT_DATABASE_ID,
    secretArn: target.secretArn,
    ...(target.vpcId ? { network: { vpcId: target.vpcId, subnetIds: target.subnetIds ?? [], securityGroupId: target.securityGroupId } } : {}),
    ...(databaseRole ? { databaseRole } : {}),
    jobs: config ?? housekeeping,
  };
}

/** A database's network as its functions use it; nothing to look up (no AWS credentials needed at synth). */
function importNetwork(
  scope: Construct,
  network: DatabaseNetwork | undefined,
): { vpc?: IVpc; vpcSubnets?: SubnetSelection; securityGroups?: ISecurityGroup[] } {
  if (!network) return {};
  // The subnets are given by id, so the zones are never consulted; `this.availabilityZones`
  // would be a context lookup that needs AWS credentials whenever CDK_DEFAULT_ACCOUNT is set.
  const vpc = Vpc.fromVpcAttributes(scope, 'Vpc', { vpcId: network.vpcId, availabilityZones: Fn.getAzs() });
  Annotations.of(vpc).acknowledgeWarning(
    '@aws-cdk/aws-ec2:vpcAttributeIsListTokenavailabilityZones',
    'Only the explicit subnets are used, never a selection by zone',
  );
  const subnets = network.subnetIds.map((subnetId, i) => {
    const subnet = Subnet.fromSubnetId(scope, `Subnet${i}`, subnetId);
    Annotations.of(subnet).acknowledgeWarning('@aws-cdk/aws-ec2:noSubnetRouteTableId', 'Only the subnet id is used (to place the functions)');
    return subnet;
  });
  return {
    vpc,
    vpcSubnets: { subnets },
    securityGroups: network.securityGroupId ? [SecurityGroup.fromSecurityGroupId(scope, 'SecurityGroup', network.securityGroupId)] : undefined,
  };
}
