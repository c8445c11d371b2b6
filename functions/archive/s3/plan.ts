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

/**
 * A day given as days since 1970-01-01 as its dt= text, YYYY-MM-DD (the proleptic Gregorian
 * calendar, as Postgres's to_char: four-digit years zero-padded, later ones in full).
 */
export function dayText(daysSince1970: number): string {
  // Days since 0000-03-01, in 400-year eras of 146,097 days (H. Hinnant's civil_from_days).
  const z = daysSince1970 + 719_468;
  const era = Math.floor(z / 146_097);
  const dayOfEra = z - era * 146_097;
  const yearOfEra = Math.floor((dayOfEra - Math.floor(dayOfEra / 1460) + Math.floor(dayOfEra / 36_524) - Math.floor(dayOfEra / 146_096)) / 365);
  const dayOfYear = dayOfEra - (365 * yearOfEra + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100));
  const monthFromMarch = Math.floor((5 * dayOfYear + 2) / 153);
  const day = dayOfYear - Math.floor((153 * monthFromMarch + 2) / 5) + 1;
  const month = monthFromMarch < 10 ? monthFromMarch + 3 : monthFromMarch - 9;
  const year = yearOfEra + era * 400 + (month <= 2 ? 1 : 0);
  return `${String(year).padStart(4, '0')}-${String(month).padStart(2, '0')}-${String(day).padStart(2, '0')}`;
}

export function objectName(day: string, first: string[], last: string[]): string {
  return `dt=${day}/part-${keyPart(first)}-${keyPart(last)}.parquet`;
}

/** The final and pending keys of the object of one batch and day. */
export function objectKeys(s3: Pick<S3Destination, 'prefix'>, source: QualifiedName, runId: string, day: string, first: string[], last: string[]) {
  const name = objectName(day, first, last);
  return { key: `${tableFolder(s3, source)}/${name}`, pendingKey: `${pendingFolder(s3, source)}${runId}/${name}` };
}
