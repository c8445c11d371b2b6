import { Stack } from 'aws-cdk-lib';
import { Policy, PolicyStatement, type IRole } from 'aws-cdk-lib/aws-iam';
import type { Construct } from 'constructs';
import { archiveEventSchema, s3Destination, type ArchiveEventInput } from '../functions/archive/policy';
import { displayName, parseQualifiedName } from '../shared/identifiers';

/** The S3 prefixes one archive target writes: its table folder and its pending folder. */
export function archivePrefixes(target: { source: string; destination: { s3: { bucket: string; prefix: string } } }) {
  const table = displayName(parseQualifiedName(target.source, 'source'));
  const { bucket, prefix } = target.destination.s3;
  return { bucket, objects: `${prefix}/table=${table}/`, pending: `${prefix}/_pending/table=${table}/` };
}

/** Every archive target with an S3 destination, as its prefixes. */
export function archiveS3Targets(policy: ArchiveEventInput) {
  return archiveEventSchema.parse(policy).targets.flatMap((t) => {
    const s3 = s3Destination(t);
    return s3 ? [archivePrefixes({ source: t.source, destination: { s3 } })] : [];
  });
}

/**
 * What the archive function may do on S3, per target with an S3 destination, and nothing more:
 * PutObject and GetObject on its table folder and its pending folder (the copy that publishes
 * reads the pending copy and writes the final key), DeleteObject on its pending folder only (a
 * published object is never deleted by the job), ListBucket only under its pending folder (what
 * reconciling lists), and, with `kmsKeyId`, that key to encrypt and read back.
 */
export function grantArchiveS3(scope: Construct, role: IRole, policy: ArchiveEventInput): Policy | undefined {
  const targets = archiveEventSchema.parse(policy).targets.flatMap((t) => {
    const s3 = s3Destination(t);
    return s3 ? [{ source: t.source, s3 }] : [];
  });
  if (targets.length === 0) return undefined;
  const stack = Stack.of(scope);
  const statements: PolicyStatement[] = [];
  for (const { source, s3 } of targets) {
    const { bucket, objects, pending } = archivePrefixes({ source, destination: { s3 } });
    const arn = (key: string) => `arn:${stack.partition}:s3:::${bucket}/${key}*`;
    statements.push(
      new PolicyStatement({ actions: ['s3:PutObject', 's3:GetObject'], resources: [arn(objects), arn(pending)] }),
      new PolicyStatement({ actions: ['s3:DeleteObject'], resources: [arn(pending)] }),
      new PolicyStatement({
        actions: ['s3:ListBucket'],
        resources: [`arn:${stack.partition}:s3:::${bucket}`],
        conditions: { StringLike: { 's3:prefix': [`${pending}*`] } },
      }),
    );
    if (s3.kmsKeyId) {
      const key = s3.kmsKeyId.startsWith('arn:') ? s3.kmsKeyId : stack.formatArn({ service: 'kms', resource: 'key', resourceName: s3.kmsKeyId });
      statements.push(new PolicyStatement({ actions: ['kms:GenerateDataKey', 'kms:Decrypt'], resources: [key] }));
    }
  }
  return new Policy(scope, 'ArchiveS3', { roles: [role], statements });
}
