import { createHash } from 'node:crypto';
import { displayName, type QualifiedName } from '../../../shared/identifiers';
import type { S3Destination } from '../policy';

/**
 * Pure: where an S3 archive target's objects go.
 *
 *   <prefix>/table=<schema.table>/dt=<day>/part-<first key>-<last key>.parquet     what readers see
 *   <prefix>/_pending/table=<schema.table>/<run id>/dt=<day>/part-....parquet      not yet committed
 *
 * The pending copies sit outside the table's folder: readers of the table never list them, and
 * Hive-style readers skip `_` paths anyway.
 */

export function tableFolder(s3: Pick<S3Destination, 'prefix'>, source: QualifiedName): string {
  return `${s3.prefix}/table=${displayName(source)}`;
}

export function pendingFolder(s3: Pick<S3Destination, 'prefix'>, source: QualifiedName): string {
  return `${s3.prefix}/_pending/table=${displayName(source)}/`;
}

/** A key value as it appears in an object's name: integers as they are, anything else as a short hash (names must be safe, short and unique). */
function keyPart(key: string[]): string {
  return key.map((value) => (/^-?\d{1,20}$/.test(value) ? value : `k${createHash('sha256').update(value).digest('hex').slice(0, 16)}`)).join('_');
}

export function objectName(day: string, first: string[], last: string[]): string {
  return `dt=${day}/part-${keyPart(first)}-${keyPart(last)}.parquet`;
}

/** The final and pending keys of the object of one batch and day. */
export function objectKeys(s3: Pick<S3Destination, 'prefix'>, source: QualifiedName, runId: string, day: string, first: string[], last: string[]) {
  const name = objectName(day, first, last);
  return { key: `${tableFolder(s3, source)}/${name}`, pendingKey: `${pendingFolder(s3, source)}${runId}/${name}` };
}
