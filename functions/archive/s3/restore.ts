import type pg from 'pg';
import { inTransaction } from '../../../shared/db';
import { CatalogError, ConfigError } from '../../../shared/errors';
import { displayName, parseQualifiedName, type QualifiedName, quoteIdent, quoteQualified } from '../../../shared/identifiers';
import { type ColumnPlan, digestSql, planColumns } from './columns';
import { crashPoint } from './faults';
import { canonicalRows, describeColumns } from './parquet';
import { type ObjectStore, openObjectStore } from './store';

const DAY = /^\d{4}-\d{2}-\d{2}$/;

/** SQL turning a canonical text (column `c`) back into the column's value: the inverse of `ColumnPlan.select`. */
function fromCanonical(plan: ColumnPlan, c: string): string {
  const type = plan.pgType;
  if (plan.array) return `${c}::${type}`;
  switch (plan.kind) {
    case 'date':
      return `(DATE '1970-01-01' + ${c}::integer)`;
    case 'timestamp':
      return `(TIMESTAMP '1970-01-01 00:00:00' + (${c} || ' microseconds')::interval)`;
    case 'timestamptz':
      return `(TIMESTAMPTZ '1970-01-01 00:00:00+00' + (${c} || ' microseconds')::interval)`;
    case 'bytea':
      return `decode(${c}, 'hex')`;
    default:
      return `${c}::${type}`;
  }
}

export interface RestoreSummary {
  source: string;
  into: string;
  objects: number;
  rowsInserted: number;
  rowsAlreadyPresent: number;
}

/**
 * Puts the rows of every published object of `source` whose day is in [from, to] into `into`,
 * one object per transaction: rows whose key `into` lacks are inserted; rows already there must
 * be identical (a different row under the same key is refused, naming the keys, and nothing of
 * that object is inserted). Each object restored is recorded in housekeeping.archive_restores.
 * Twice is once: a second restore finds every row present and inserts nothing.
 *
 * `into` must not be the archive's source: the next archive run would take the rows again into
 * new objects beside the ones they came from.
 */
export async function restoreArchived(
  client: pg.Client,
  options: { source: string; bucket: string; kmsKeyId?: string; keyColumns: string[]; into: string; from: string; to: string; store?: ObjectStore },
): Promise<RestoreSummary> {
  if (!DAY.test(options.from) || !DAY.test(options.to))
    throw new ConfigError('--from/--to', `expected days as YYYY-MM-DD (got ${options.from} and ${options.to})`);
  if (options.from > options.to) throw new ConfigError('--from', `${options.from} is after --to ${options.to}`);
  const source = parseQualifiedName(options.source, 'source');
  const into: QualifiedName = parseQualifiedName(options.into, '--into');
  const shown = displayName(into);
  if (displayName(source) === shown) {
    throw new ConfigError(
      '--into',
      `${shown} is the archive's source: its next run would archive the restored rows again into new objects beside the ones they came from. ` +
        `Restore into another table with the same columns (CREATE TABLE ... (LIKE ${shown} INCLUDING ALL))`,
    );
  }
  const exists = await client.query(`SELECT to_regclass($1) IS NOT NULL AS ok`, [quoteQualified(into)]);
  if (!exists.rows[0]?.ok)
    throw new CatalogError(
      shown,
      `${shown} does not exist; create it with the source's columns (CREATE TABLE ${shown} (LIKE ${displayName(source)} INCLUDING ALL))`,
    );
  const plans = await planColumns(client, into);

  const { rows: pending } = await client.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM housekeeping.archive_objects WHERE source = $1 AND bucket = $2 AND state = 'committed' AND dt BETWEEN $3::date AND $4::date`,
    [displayName(source), options.bucket, options.from, options.to],
  );
  if (pending[0]!.n > 0) {
    throw new CatalogError(
      displayName(source),
      `${pending[0]!.n} object(s) of ${displayName(source)} in that range are committed but not yet published (a run died); run the archive once to publish them, then restore`,
    );
  }
  const { rows: objects } = await client.query<{
    id: string;
    object_key: string;
    row_count: string;
    columns: Array<{ name: string; postgres: string; parquet: string }>;
  }>(
    `SELECT id::text, object_key, row_count::text, columns FROM housekeeping.archive_objects
     WHERE source = $1 AND bucket = $2 AND state = 'published' AND dt BETWEEN $3::date AND $4::date ORDER BY dt, id`,
    [displayName(source), options.bucket, options.from, options.to],
  );
  const store = options.store ?? (await openObjectStore({ bucket: options.bucket, ...(options.kmsKeyId ? { kmsKeyId: options.kmsKeyId } : {}) }));
  const summary: RestoreSummary = { source: displayName(source), into: shown, objects: 0, rowsInserted: 0, rowsAlreadyPresent: 0 };

  const keyIndexes = options.keyColumns.map((k) => plans.findIndex((p) => p.name === k));
  if (keyIndexes.some((i) => i < 0)) throw new CatalogError(shown, `${shown} lacks a key column (${options.keyColumns.join(', ')})`);
  // A stored generated column is computed by `into` itself (it refuses any other value); what it
  // computes must still equal the archived value, which the digest comparison below checks.
  const inserted = plans.flatMap((p, i) => (p.generated ? [] : [i]));
  const cols = inserted.map((i) => quoteIdent(plans[i]!.name)).join(', ');
  const unnest = `unnest(${plans.map((_, i) => `$${i + 1}::text[]`).join(', ')}) AS v(${plans.map((_, i) => `c${i}`).join(', ')})`;
  // Equal by the key's own operator (what an index finds), and the same canonical text byte for
  // byte: under a non-deterministic collation 'c' = 'C', and a table unique on the bytes holds both.
  // Over alias `t` (`into`), as ColumnPlan.select is.
  const keyMatch = options.keyColumns
    .map((k, i) => {
      const plan = plans[keyIndexes[i]!]!;
      const value = `v.c${keyIndexes[i]}`;
      return `t.${quoteIdent(k)} = ${fromCanonical(plan, value)} AND ${plan.select} = ${value} COLLATE "C"`;
    })
    .join(' AND ');
  const insert =
    `INSERT INTO ${quoteQualified(into)} (${cols}) OVERRIDING SYSTEM VALUE SELECT ${inserted.map((i) => fromCanonical(plans[i]!, `v.c${i}`)).join(', ')} FROM ${unnest} ` +
    `WHERE NOT EXISTS (SELECT 1 FROM ${quoteQualified(into)} AS t WHERE ${keyMatch}) ON CONFLICT DO NOTHING`;
  // Rows of `into` under the object's keys whose canonical digest differs from the object's row.
  const canonical = plans.map((p, i) => `${p.select} AS c${i}`).join(', ');
  const differing =
    `SELECT ${options.keyColumns.map((_, i) => `v.c${keyIndexes[i]}`).join(` || ', ' || `)} AS key FROM ${unnest} JOIN ${quoteQualified(into)} AS t ON ${keyMatch} ` +
    `WHERE ${digestSql(plans.map((_, i) => `v.c${i}`))} <> (SELECT ${digestSql(plans.map((_, i) => `w.c${i}`))} FROM (SELECT ${canonical}) AS w) ORDER BY 1 LIMIT 11`;
  // Rows of the object whose key `into` still lacks after the insert: another unique constraint of
  // `into` (or a concurrent writer) kept them out. Counting them present would lose them silently.
  const missing =
    `SELECT ${options.keyColumns.map((_, i) => `v.c${keyIndexes[i]}`).join(` || ', ' || `)} AS key FROM ${unnest} ` +
    `WHERE NOT EXISTS (SELECT 1 FROM ${quoteQualified(into)} AS t WHERE ${keyMatch}) ORDER BY 1 LIMIT 11`;

  const wanted = describeColumns(plans);
  for (const object of objects) {
    const names = object.columns.map((c) => c.name);
    if (names.join(',') !== plans.map((p) => p.name).join(',')) {
      throw new CatalogError(
        shown,
        `${object.object_key} holds columns ${names.join(', ')}; ${shown} has ${plans.map((p) => p.name).join(', ')} (nothing of it was restored)`,
      );
    }
    // Values are decoded by `into`'s column types: an object written with another type (another
    // numeric scale, timestamp vs timestamptz) would be read as other values. Refused, naming them.
    const changed = object.columns.filter((c, i) => c.parquet !== wanted[i]!.parquet);
    if (changed.length > 0) {
      throw new CatalogError(
        shown,
        `${object.object_key} was written with column types ${shown} no longer has: ${changed
          .map((c) => `${c.name} (${c.postgres} in the object, ${wanted[object.columns.indexOf(c)]!.postgres} in ${shown})`)
          .join('; ')}. Restore into a table with the archived types, then convert. Nothing of it was restored`,
      );
    }
    const bytes = await store.get(object.object_key);
    if (!bytes) throw new CatalogError(object.object_key, `s3://${options.bucket}/${object.object_key} is listed as published but missing`);
    const rows = await canonicalRows(bytes, plans);
    if (rows.length !== Number(object.row_count))
      throw new CatalogError(object.object_key, `${object.object_key} holds ${rows.length} rows, the manifest says ${object.row_count}`);
    const columns = plans.map((_, i) => rows.map((r) => r[i]!));
    const inserted = await inTransaction(client, async () => {
      const count = (await client.query(insert, columns)).rowCount ?? 0;
      crashPoint('restore-after-insert');
      const { rows: different } = await client.query<{ key: string }>(differing, columns);
      if (different.length > 0) {
        throw new CatalogError(
          shown,
          `${shown} already holds ${different.length > 10 ? 'more than 10' : different.length} row(s) of ${object.object_key} with different contents under the same key (${options.keyColumns.join(', ')} = ${different
            .slice(0, 10)
            .map((d) => d.key)
            .join('; ')}); nothing of that object was restored`,
        );
      }
      const { rows: absent } = await client.query<{ key: string }>(missing, columns);
      if (absent.length > 0) {
        throw new CatalogError(
          shown,
          `${shown} refused ${absent.length > 10 ? 'more than 10' : absent.length} row(s) of ${object.object_key} (${options.keyColumns.join(', ')} = ${absent
            .slice(0, 10)
            .map((d) => d.key)
            .join('; ')}): another unique constraint holds a row with the same values under another key; nothing of that object was restored`,
        );
      }
      await client.query(
        `INSERT INTO housekeeping.archive_restores (object_id, into_table, rows_inserted, rows_present) VALUES ($1, $2, $3, $4) ON CONFLICT (object_id, into_table) DO NOTHING`,
        [object.id, shown, count, rows.length - count],
      );
      return count;
    });
    summary.objects++;
    summary.rowsInserted += inserted;
    summary.rowsAlreadyPresent += rows.length - inserted;
  }
  return summary;
}
