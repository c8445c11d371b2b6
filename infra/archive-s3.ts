import { Stack } from 'aws-cdk-lib';
import { type IRole, Policy, PolicyStatement } from 'aws-cdk-lib/aws-iam';
import type { Construct } from 'constructs';
import { type ArchiveEventInput, archiveEventSchema, s3Destination } from '../functions/archive/policy';
import { pendingFolder, tableFolder } from '../functions/archive/s3/plan';
import { parseQualifiedName } from '../shared/identifiers';

/** The S3 folders one archive target writes: its table folder and its pending folder (each ending in `/`). */
export interface ArchivePrefixes {
  bucket: string;
  objects: string;
  pending: string;
}

/** Every archive target of a policy with an S3 destination: its folders and its KMS key. */
function s3Targets(policy: ArchiveEventInput) {
  return archiveEventSchema.parse(policy).targets.flatMap((target) => {
    const s3 = s3Destination(target);
    if (!s3) return [];
    const source = parseQualifiedName(target.source, 'source');
    const prefixes: ArchivePrefixes = { bucket: s3.bucket, objects: `${tableFolder(s3, source)}/`, pending: pendingFolder(s3, source) };
    return [{ prefixes, kmsKeyId: s3.kmsKeyId }];
  });
}

/** Whether any target of an archive policy writes to S3. */
export function archiveWritesToS3(policy: ArchiveEventInput): boolean {
  return s3Targets(policy).length > 0;
}

/**
 * What one database's archive function may do on S3, per target with an S3 destination, and
 * nothing more: PutObject and GetObject on its table folder and its pending folder (the copy that
 * publishes reads the pending copy and writes the final key), DeleteObject on its pending folder
 * only (a published object is never deleted by the job), ListBucket only under its two folders
 * (reconciling lists the pending one; publishing lists an object's final key first, so it never
 * overwrites another's), and, with `kmsKeyId`, that key to encrypt and read back.
 *
 * In a fleet each database's function gets its own targets' folders only; two databases of one
 * stack writing the same folder (same bucket, prefix and table) are refused: their objects and
 * manifests would collide. Give each database its own prefix.
 */
export function grantArchiveS3(
  scope: Construct,
  role: IRole,
  policy: ArchiveEventInput,
  where: string,
  taken: ReadonlyArray<{ owner: string; prefixes: ArchivePrefixes }>,
): { policy: Policy; prefixes: ArchivePrefixes[] } | undefined {
  const targets = s3Targets(policy);
  if (targets.length === 0) return undefined;
  const stack = Stack.of(scope);
  for (const { prefixes } of targets) {
    const other = taken.find(
      ({ prefixes: p }) => p.bucket === prefixes.bucket && (p.objects.startsWith(prefixes.objects) || prefixes.objects.startsWith(p.objects)),
    );
    if (other) {
      throw new Error(
        `${where}: s3://${prefixes.bucket}/${prefixes.objects} is also where ${other.owner} archives; ` +
          "two databases writing one folder would overwrite each other's objects: give each database its own prefix",
      );
    }
  }
  const statements: PolicyStatement[] = [];
  for (const { prefixes, kmsKeyId } of targets) {
    const { bucket, objects, pending } = prefixes;
    const arn = (key: string) => `arn:${stack.partition}:s3:::${bucket}/${key}*`;
    statements.push(
      new PolicyStatement({ actions: ['s3:PutObject', 's3:GetObject'], resources: [arn(objects), arn(pending)] }),
      new PolicyStatement({ actions: ['s3:DeleteObject'], resources: [arn(pending)] }),
      new PolicyStatement({
        actions: ['s3:ListBucket'],
        resources: [`arn:${stack.partition}:s3:::${bucket}`],
        conditions: { StringLike: { 's3:prefix': [`${pending}*`, `${objects}*`] } },
      }),
    );
    if (kmsKeyId) {
      const key = kmsKeyId.startsWith('arn:') ? kmsKeyId : stack.formatArn({ service: 'kms', resource: 'key', resourceName: kmsKeyId });
      statements.push(new PolicyStatement({ actions: ['kms:GenerateDataKey', 'kms:Decrypt'], resources: [key] }));
    }
  }
  return { policy: new Policy(scope, 'ArchiveS3', { roles: [role], statements }), prefixes: targets.map((t) => t.prefixes) };
}
