import type pg from 'pg';
import { postgresZoneName } from '../../../shared/calendar';
import { CatalogError, errorMessage } from '../../../shared/errors';
import { displayName, type QualifiedName, quoteQualified } from '../../../shared/identifiers';
import { queryOne, SQLSTATE, sqlState } from '../../../shared/postgres';
import { ident, param, type Sql, sql } from '../../../shared/sql';
import type { ArchiveCatalog } from '../catalog';
import type { ArchiveTargetPolicy, S3Destination } from '../policy';
import { type ColumnPlan, planColumns } from './columns';

/** Everything about a target's S3 archive that is fixed before the first batch. */
export interface S3Catalog {
  source: QualifiedName;
  s3: S3Destination;
  columns: ColumnPlan[];
  keyColumns: string[];
  /** format_type of each key column with its typmod, for the casts that find rows by key (`character` alone is char(1)). */
  keyTypes: string[];
  /** Over alias `t`: the date of the row's age in the policy's zone (the fallback's where the age is NULL). */
  ageDate: Sql;
  /** The age columns' types: the pick casts its cutoffs to them. */
  ageTypes: ArchiveCatalog['ageTypes'];
  ageColumn: string;
  ageFallbackColumn?: string;
}

/**
 * The policy's zone as Postgres reads the zone Node reads (postgresZoneName): the dt= day of a
 * timestamptz age is Postgres's, its cutoff Luxon's, and they must agree.
 */
async function postgresZone(client: pg.ClientBase, shown: string, timeZone: string): Promise<string> {
  const name = postgresZoneName(timeZone);
  await checkPostgresZone(client, shown, timeZone, name);
  return name;
}

/** Refuses, before anything moves, a zone name Postgres does not know or would read as an abbreviation (a fixed offset). */
export async function checkPostgresZone(client: pg.ClientBase, shown: string, timeZone: string, name: string): Promise<void> {
  const refuse = (why: string) =>
    new CatalogError(
      shown,
      `the policy's timeZone ${JSON.stringify(timeZone)} is the zone ${name} to Node (which computes the cutoffs), but ${why}, so its rows' dt= days would not be that zone's. ` +
        `Name the zone by its region (e.g. "Europe/Berlin"); nothing was moved`,
    );
  let abbreviation: boolean;
  try {
    ({ abbreviation } = await queryOne<{ abbreviation: boolean }>(
      client,
      sql`SELECT (now() AT TIME ZONE ${name}) IS NOT NULL AND EXISTS (SELECT 1 FROM pg_timezone_abbrevs WHERE abbrev = upper(${name})) AS abbreviation`,
    ));
  } catch (error) {
    if (sqlState(error) === SQLSTATE.invalidParameterValue) throw refuse(`Postgres does not know that zone (${errorMessage(error)})`);
    throw error;
  }
  if (abbreviation && !name.includes('/')) throw refuse(`Postgres reads ${JSON.stringify(name)} as a time zone abbreviation (a fixed offset)`);
}

/**
 * The refusals of an S3 destination, before anything moves: the database must be UTF-8 (Parquet
 * strings are), and every column must have an exact Parquet type (columns.ts names those that do not).
 */
export async function readS3Catalog(
  client: pg.ClientBase,
  source: QualifiedName,
  catalog: Pick<ArchiveCatalog, 'keyColumns' | 'ageTypes'>,
  s3: S3Destination,
  policy: Pick<ArchiveTargetPolicy, 'ageColumn' | 'ageFallbackColumn' | 'timeZone'>,
): Promise<S3Catalog> {
  const shown = displayName(source);
  const { encoding } = await queryOne<{ encoding: string }>(client, sql`SELECT current_setting('server_encoding') AS encoding`);
  if (encoding !== 'UTF8') {
    throw new CatalogError(
      shown,
      `the database's encoding is ${encoding}; Parquet strings are UTF-8, so the S3 destination needs a UTF8 database (nothing was moved)`,
    );
  }
  const columns = await planColumns(client, source);
  // Folders named name=value (the layout's table= and dt=, and any in the prefix) are partition
  // columns to Athena, Glue and DuckDB's hive_partitioning, names compared without case: a column
  // of the same name would read as the folder's value, or fail the Glue table as a duplicate.
  const folders = [...s3.prefix.split('/').flatMap((segment) => (segment.includes('=') ? [segment.split('=')[0]!] : [])), 'table', 'dt'];
  const folderNames = new Set(folders.map((name) => name.toLowerCase()));
  const hidden = columns.filter((c) => folderNames.has(c.name.toLowerCase())).map((c) => c.name);
  if (hidden.length > 0) {
    throw new CatalogError(
      shown,
      `${shown} has column(s) ${hidden.join(', ')} named as the object layout's folders (${folders.map((name) => `${name}=`).join(', ')}): ` +
        `Athena, Glue and DuckDB's hive_partitioning read those folders as columns of the same names (without regard to case), so readers would see the folder's value instead. ` +
        `Rename the column(s), or archive to a table. Nothing was moved`,
    );
  }
  const { rows: keyTypes } = await client.query<{ type: string }>(
    sql`SELECT format_type(a.atttypid, a.atttypmod) AS type FROM unnest(${catalog.keyColumns}::text[]) WITH ORDINALITY AS k(name, ord)
     JOIN pg_attribute a ON a.attrelid = to_regclass(${quoteQualified(source)}) AND a.attname = k.name ORDER BY k.ord`,
  );
  const zone = param(await postgresZone(client, shown, policy.timeZone));
  const dayOf = (column: string, type: 'timestamptz' | 'timestamp' | 'date') =>
    type === 'timestamptz' ? sql`(t.${ident(column)} AT TIME ZONE ${zone})::date` : sql`t.${ident(column)}::date`;
  const ageDate = policy.ageFallbackColumn
    ? sql`COALESCE(${dayOf(policy.ageColumn, catalog.ageTypes.primary)}, ${dayOf(policy.ageFallbackColumn, catalog.ageTypes.fallback!)})`
    : dayOf(policy.ageColumn, catalog.ageTypes.primary);
  return {
    source,
    s3,
    columns,
    keyColumns: catalog.keyColumns,
    keyTypes: keyTypes.map((k) => k.type),
    ageDate,
    ageTypes: catalog.ageTypes,
    ageColumn: policy.ageColumn,
    ...(policy.ageFallbackColumn ? { ageFallbackColumn: policy.ageFallbackColumn } : {}),
  };
}
