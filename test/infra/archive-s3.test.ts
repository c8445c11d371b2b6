import { Match } from 'aws-cdk-lib/assertions';
import { beforeAll, describe, expect, it } from 'vitest';
import { sandboxArchiveBucket } from '../../infra/housekeeping.config';
import { ARCHIVE_S3_MEMORY_MB } from '../../infra/pg-housekeeping';
import { SANDBOX_ARCHIVE_COLUMNS, SANDBOX_GLUE_DATABASE } from '../../infra/sandbox-archive';
import { type Synthesized, synthStack } from './synth';

const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod-db-AbCdEf';
const KEY_ARN = 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const policy = {
  targets: [
    {
      source: 'public.orders',
      ageColumn: 'completed_at',
      retention: '13 months',
      destination: { s3: { bucket: 'acme-archive', prefix: 'pg/prod', kmsKeyId: KEY_ARN } },
    },
    { source: 'public.sessions', mode: 'purge' as const, ageColumn: 'last_seen_at', retention: '30 days' },
  ],
};

let synthesized: Synthesized;
let tableOnly: Synthesized;
let fleet: Synthesized;

const schedule = { cron: '15 3 * * ? *', timeZone: 'UTC' };
const s3Target = (prefix: string) => ({
  source: 'public.orders',
  ageColumn: 'completed_at',
  retention: '13 months',
  destination: { s3: { bucket: 'acme-archive', prefix } },
});
const fleetEntry = (id: string, prefix: string) => ({
  id,
  secretArn: `arn:aws:secretsmanager:eu-west-1:123456789012:secret:${id}-db-AbCdEf`,
  jobs: { archive: { schedule, policy: { targets: [s3Target(prefix)] } } },
});
beforeAll(() => {
  const config = (archivePolicy: unknown) => ({
    archive: { schedule: { cron: '15 3 * * ? *', timeZone: 'UTC' }, policy: archivePolicy as typeof policy },
  });
  // cdk-nag runs: any finding not acknowledged in infra/nag.ts fails the synth.
  synthesized = synthStack('ArchiveS3', {
    target: { kind: 'existing', secretArn: SECRET_ARN },
    config: config(policy),
    deployment: { alarmEmail: 'oncall@example.com' },
  });
  tableOnly = synthStack('ArchiveTable', {
    target: { kind: 'existing', secretArn: SECRET_ARN },
    config: config({ targets: [{ source: 'public.orders', destination: 'archive.orders', ageColumn: 'completed_at', retention: '13 months' }] }),
    deployment: { alarmEmail: 'oncall@example.com' },
  });
  fleet = synthStack('ArchiveFleet', {
    databases: [fleetEntry('orders', 'pg/orders'), fleetEntry('billing', 'pg/billing')],
    deployment: { alarmEmail: 'oncall@example.com' },
  });
}, 180_000);

const s3Statements = (s: Synthesized) =>
  Object.values(s.json.Resources)
    .filter((r) => r.Type === 'AWS::IAM::Policy')
    .flatMap((r) => (r.Properties as { PolicyDocument: { Statement: Array<Record<string, unknown>> } }).PolicyDocument.Statement)
    .filter((st) => /"(s3|kms):/.test(JSON.stringify(st.Action)));

const arn = (key: string) => `arn:aws:s3:::acme-archive${key}`;

describe('archive to S3 in the template', () => {
  it("grants the archive function its target's prefixes only: put/get on its folders, delete on pending, list under its folders, the KMS key", () => {
    expect(s3Statements(synthesized)).toEqual([
      {
        Action: ['s3:GetObject', 's3:PutObject'],
        Effect: 'Allow',
        Resource: [arn('/pg/prod/_pending/table=public.orders/*'), arn('/pg/prod/table=public.orders/*')],
      },
      { Action: 's3:DeleteObject', Effect: 'Allow', Resource: arn('/pg/prod/_pending/table=public.orders/*') },
      {
        Action: 's3:ListBucket',
        Effect: 'Allow',
        Resource: arn(''),
        Condition: { StringLike: { 's3:prefix': ['pg/prod/_pending/table=public.orders/*', 'pg/prod/table=public.orders/*'] } },
      },
      { Action: ['kms:Decrypt', 'kms:GenerateDataKey'], Effect: 'Allow', Resource: KEY_ARN },
    ]);
    const policies = Object.values(synthesized.json.Resources).filter(
      (r) => r.Type === 'AWS::IAM::Policy' && JSON.stringify(r.Properties).includes('s3:PutObject'),
    );
    expect(policies).toHaveLength(1);
    expect(JSON.stringify(policies[0]!.Properties.Roles)).toContain('HousekeepingArchive');
  });

  it('grants nothing on S3 to a deployment whose archive writes to tables', () => {
    expect(s3Statements(tableOnly)).toEqual([]);
  });

  it('gives an archive function that writes to S3 the memory its default batch needs, unless the entry sets one', () => {
    const memory = (s: Synthesized) =>
      Object.values(s.json.Resources).find((r) => r.Type === 'AWS::Lambda::Function' && String(r.Properties.FunctionName).endsWith('-archive'))!
        .Properties.MemorySize;
    expect(memory(synthesized)).toBe(ARCHIVE_S3_MEMORY_MB);
    expect(memory(tableOnly)).toBe(256);
  });

  it("in a fleet, each database's archive function gets its own folders only", () => {
    const byRole = new Map<string, string[]>();
    for (const resource of Object.values(fleet.json.Resources)) {
      if (resource.Type !== 'AWS::IAM::Policy' || !JSON.stringify(resource.Properties).includes('s3:PutObject')) continue;
      const role = JSON.stringify(resource.Properties.Roles);
      const resources = (
        resource.Properties as { PolicyDocument: { Statement: Array<{ Action: unknown; Resource: unknown }> } }
      ).PolicyDocument.Statement.filter((st) => JSON.stringify(st.Action).includes('s3:PutObject')).flatMap((st) => st.Resource as string[]);
      byRole.set(role, resources);
    }
    expect([...byRole.values()].sort()).toEqual([
      [arn('/pg/billing/_pending/table=public.orders/*'), arn('/pg/billing/table=public.orders/*')],
      [arn('/pg/orders/_pending/table=public.orders/*'), arn('/pg/orders/table=public.orders/*')],
    ]);
    const roles = [...byRole.keys()];
    expect(roles.some((r) => r.includes('orders')) && roles.some((r) => r.includes('billing'))).toBe(true);
  });

  it('refuses two databases of one stack archiving into the same folder', () => {
    expect(() =>
      synthStack('ArchiveClash', { databases: [fleetEntry('orders', 'pg/shared'), fleetEntry('billing', 'pg/shared')] }, { nag: false }),
    ).toThrow(/s3:\/\/acme-archive\/pg\/shared\/table=public\.orders\/ is also where database orders archives/);
  });
});

describe('the sandbox (-c demo=true) archives to S3 and Athena reads it after cdk deploy', () => {
  let sandbox: Synthesized;
  beforeAll(() => {
    // cdk-nag runs: a finding on the bucket or the Glue table not acknowledged in infra/nag.ts fails the synth.
    sandbox = synthStack('SandboxS3', { target: { kind: 'demo' } });
  }, 180_000);

  it('makes the bucket its archive target names: versioned, encrypted, TLS only, private, with a lifecycle to cheaper storage classes', () => {
    sandbox.template.hasResourceProperties('AWS::S3::Bucket', {
      BucketName: sandboxArchiveBucket,
      VersioningConfiguration: { Status: 'Enabled' },
      BucketEncryption: { ServerSideEncryptionConfiguration: [{ ServerSideEncryptionByDefault: { SSEAlgorithm: 'AES256' } }] },
      PublicAccessBlockConfiguration: { BlockPublicAcls: true, BlockPublicPolicy: true, IgnorePublicAcls: true, RestrictPublicBuckets: true },
      LifecycleConfiguration: {
        Rules: [
          Match.objectLike({
            Status: 'Enabled',
            Transitions: [
              { StorageClass: 'STANDARD_IA', TransitionInDays: 30 },
              { StorageClass: 'GLACIER_IR', TransitionInDays: 90 },
            ],
            NoncurrentVersionExpiration: { NoncurrentDays: 30 },
          }),
        ],
      },
    });
    sandbox.template.hasResourceProperties('AWS::S3::BucketPolicy', {
      PolicyDocument: { Statement: Match.arrayWith([Match.objectLike({ Effect: 'Deny', Condition: { Bool: { 'aws:SecureTransport': 'false' } } })]) },
    });
  });

  it('makes a Glue table over the target’s folder with partition projection on dt, in the columns the destination writes', () => {
    sandbox.template.hasResourceProperties('AWS::Glue::Database', { DatabaseInput: { Name: SANDBOX_GLUE_DATABASE } });
    const location = `s3://${sandboxArchiveBucket}/demo/table=demo.page_views/`;
    sandbox.template.hasResourceProperties('AWS::Glue::Table', {
      DatabaseName: SANDBOX_GLUE_DATABASE,
      TableInput: {
        Name: 'demo_page_views',
        TableType: 'EXTERNAL_TABLE',
        Parameters: Match.objectLike({
          'projection.enabled': 'true',
          'projection.dt.type': 'date',
          'projection.dt.format': 'yyyy-MM-dd',
          'storage.location.template': `${location}dt=\${dt}/`,
        }),
        PartitionKeys: [{ Name: 'dt', Type: 'string' }],
        StorageDescriptor: Match.objectLike({
          Location: location,
          Columns: SANDBOX_ARCHIVE_COLUMNS['demo.page_views']!.map(({ name, type }) => ({ Name: name, Type: type })),
          SerdeInfo: { SerializationLibrary: 'org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe' },
        }),
      },
    });
  });

  it('reaches S3 from its isolated VPC through a gateway endpoint, and grants the archive function that target’s folders', () => {
    const endpoints = Object.values(sandbox.json.Resources).filter((r) => r.Type === 'AWS::EC2::VPCEndpoint');
    expect(endpoints.some((r) => r.Properties.VpcEndpointType === 'Gateway' && JSON.stringify(r.Properties.ServiceName).includes('.s3'))).toBe(true);
    const granted = s3Statements(sandbox).flatMap((st) => [st.Resource].flat());
    expect(granted).toEqual(expect.arrayContaining([`arn:aws:s3:::${sandboxArchiveBucket}/demo/table=demo.page_views/*`]));
  });
});
