import { Duration, RemovalPolicy, Stack } from 'aws-cdk-lib';
import { CfnDatabase, CfnTable } from 'aws-cdk-lib/aws-glue';
import { BlockPublicAccess, Bucket, BucketEncryption, StorageClass } from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';
import { type ArchiveEventInput, archiveEventSchema, s3Destination } from '../functions/archive/policy';
import { tableFolder } from '../functions/archive/s3/plan';
import { displayName, parseQualifiedName } from '../shared/identifiers';

/**
 * The Athena (Hive) columns of the sandbox's S3-archived demo tables, as the S3 destination
 * writes them (README, "Archive to S3", Types); test/integration/demo.test.ts reads an archived
 * object and checks these names and types against it.
 */
export const SANDBOX_ARCHIVE_COLUMNS: Record<string, Array<{ name: string; type: string }>> = {
  'demo.page_views': [
    { name: 'id', type: 'bigint' },
    { name: 'viewed_at', type: 'timestamp' },
    { name: 'path', type: 'string' },
    { name: 'duration_ms', type: 'int' },
  ],
};

/** The Glue database the sandbox's Athena tables are in. */
export const SANDBOX_GLUE_DATABASE = 'pg_housekeeper_demo';

/** The day partitions Athena projects (no crawler, no MSCK REPAIR): from this day to today. */
const PROJECTION_START = '2020-01-01';

/**
 * What the sandbox makes for the S3 destinations of its archive policy, so Athena works right
 * after `cdk deploy`: each bucket they name (versioned, SSE-S3, TLS only, no public access,
 * objects to Standard-IA after 30 days and Glacier Instant Retrieval after 90, old versions gone
 * after 30 days; emptied and removed by `cdk destroy`, as everything of the sandbox), and per
 * target a Glue table over its folder with partition projection on `dt`.
 */
export function sandboxArchive(scope: Construct, policy: ArchiveEventInput | undefined): Bucket[] {
  if (!policy) return [];
  const targets = archiveEventSchema.parse(policy).targets.flatMap((target) => {
    const s3 = s3Destination(target);
    return s3 ? [{ source: parseQualifiedName(target.source, 'source'), s3 }] : [];
  });
  if (targets.length === 0) return [];
  const stack = Stack.of(scope);
  const buckets = new Map<string, Bucket>();
  for (const { s3 } of targets) {
    if (buckets.has(s3.bucket)) continue;
    buckets.set(
      s3.bucket,
      new Bucket(scope, `ArchiveBucket${buckets.size}`, {
        bucketName: s3.bucket,
        versioned: true,
        encryption: BucketEncryption.S3_MANAGED,
        enforceSSL: true,
        blockPublicAccess: BlockPublicAccess.BLOCK_ALL,
        lifecycleRules: [
          {
            transitions: [
              { storageClass: StorageClass.INFREQUENT_ACCESS, transitionAfter: Duration.days(30) },
              { storageClass: StorageClass.GLACIER_INSTANT_RETRIEVAL, transitionAfter: Duration.days(90) },
            ],
            noncurrentVersionExpiration: Duration.days(30),
            abortIncompleteMultipartUploadAfter: Duration.days(1),
          },
        ],
        removalPolicy: RemovalPolicy.DESTROY,
        autoDeleteObjects: true,
      }),
    );
  }
  const database = new CfnDatabase(scope, 'ArchiveGlueDatabase', {
    catalogId: stack.account,
    databaseInput: { name: SANDBOX_GLUE_DATABASE, description: 'pg-housekeeper sandbox: rows the archive job moved to S3' },
  });
  for (const { source, s3 } of targets) {
    const shown = displayName(source);
    const columns = SANDBOX_ARCHIVE_COLUMNS[shown];
    if (!columns) throw new Error(`sandbox: no Athena columns for ${shown}: add them to SANDBOX_ARCHIVE_COLUMNS in infra/sandbox-archive.ts`);
    const location = `s3://${s3.bucket}/${tableFolder(s3, source)}/`;
    const table = new CfnTable(scope, `ArchiveGlueTable-${source.schema}-${source.name}`, {
      catalogId: stack.account,
      databaseName: SANDBOX_GLUE_DATABASE,
      tableInput: {
        name: `${source.schema}_${source.name}`,
        description: `${shown} rows archived by pg-housekeeper (Parquet, one folder per day)`,
        tableType: 'EXTERNAL_TABLE',
        parameters: {
          classification: 'parquet',
          'projection.enabled': 'true',
          'projection.dt.type': 'date',
          'projection.dt.format': 'yyyy-MM-dd',
          'projection.dt.range': `${PROJECTION_START},NOW`,
          'projection.dt.interval': '1',
          'projection.dt.interval.unit': 'DAYS',
          'storage.location.template': `${location}dt=\${dt}/`,
        },
        partitionKeys: [{ name: 'dt', type: 'string' }],
        storageDescriptor: {
          location,
          columns,
          inputFormat: 'org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat',
          outputFormat: 'org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat',
          serdeInfo: { serializationLibrary: 'org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe' },
        },
      },
    });
    table.addDependency(database);
  }
  return [...buckets.values()];
}
