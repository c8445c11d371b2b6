import type pg from 'pg';
import { expect } from 'vitest';
import { duckdb, type TestS3 } from './s3';

/**
 * Whole-row evidence across Postgres and S3, read with an independent reader (DuckDB): each
 * column as text, rendered the same way on both sides (timestamps to the microsecond in UTC,
 * numerics with their scale, bytea as hex, arrays element by element).
 */
interface Column {
  name: string;
  pg: string;
  duck: string;
}

async function columnsOf(client: pg.ClientBase, table: string): Promise<Column[]> {
  const { rows } = await client.query<{ name: string; base: string; is_array: boolean }>(
    `SELECT a.attname AS name, format_type(a.atttypid, NULL) AS base, t.typcategory = 'A' AS is_array
     FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
     WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
    [table],
  );
  return rows.map(({ name, base, is_array }) => {
    const q = `"${name}"`;
    if (is_array) return { name, pg: `${q}::text[]`, duck: `CAST(${q} AS VARCHAR[])` };
    switch (base) {
      case 'timestamp with time zone':
        return { name, pg: `to_char(${q} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')`, duck: `strftime(${q}::TIMESTAMP, '%Y-%m-%d %H:%M:%S.%f')` };
      case 'timestamp without time zone':
        return { name, pg: `to_char(${q}, 'YYYY-MM-DD HH24:MI:SS.US')`, duck: `strftime(${q}, '%Y-%m-%d %H:%M:%S.%f')` };
      case 'bytea':
        return { name, pg: `encode(${q}, 'hex')`, duck: `lower(hex(${q}))` };
      default:
        return { name, pg: `${q}::text`, duck: `CAST(${q} AS VARCHAR)` };
    }
  });
}

const rowText = (row: Record<string, unknown>, columns: Column[]) => JSON.stringify(columns.map((c) => row[c.name] ?? null));

/** Rows of a Postgres table as texts (sorted). */
export async function postgresRows(client: pg.ClientBase, table: string, columns?: Column[]): Promise<string[]> {
  const cols = columns ?? (await columnsOf(client, table));
  const { rows } = await client.query(`SELECT ${cols.map((c) => `${c.pg} AS "${c.name}"`).join(', ')} FROM ${table}`);
  return rows.map((r) => rowText(r, cols)).sort();
}

/** Rows of every published object of `folder` (…/table=schema.table), read by DuckDB with Hive partitioning, with the file each came from. */
export async function objectRows(s3: TestS3, folder: string, columns: Column[]): Promise<Array<{ text: string; file: string; dt: string; key: string }>> {
  const keys = await s3.keys(`${folder}/`);
  if (keys.length === 0) return [];
  const dir = await s3.download(`${folder}/`);
  const rows = await duckdb(
    `SELECT ${columns.map((c) => `${c.duck} AS "${c.name}"`).join(', ')}, CAST(dt AS VARCHAR) AS "__dt", filename AS "__file"
     FROM read_parquet('${dir}/${folder}/*/*.parquet', hive_partitioning = 1, filename = true)`,
  );
  return rows.map((r) => ({ text: rowText(r, columns), file: String(r.__file), dt: String(r.__dt), key: String(r[columns[0]!.name]) }));
}

/**
 * The invariant of an S3 archive run, captured before and checked after (also after a SIGKILL,
 * once a run has reconciled): the rows left in the source plus the rows of every published
 * object are exactly the rows before, whole contents compared; no row is in two objects or in
 * both places; and nothing is published that is still pending.
 */
export async function captureS3Invariant(client: pg.ClientBase, s3: TestS3, target: { source: string; folder: string }) {
  const columns = await columnsOf(client, target.source);
  const before = await postgresRows(client, target.source, columns);
  return {
    before,
    columns,
    async verify(): Promise<{ left: number; archived: number; objects: number }> {
      const left = await postgresRows(client, target.source, columns);
      const archived = await objectRows(s3, target.folder, columns);
      const union = [...left, ...archived.map((r) => r.text)].sort();
      expect(union.length, 'rows lost or doubled between source and S3').toBe(before.length);
      expect(union, 'source ∪ published objects is not the rows before').toEqual(before);
      return { left: left.length, archived: archived.length, objects: new Set(archived.map((r) => r.file)).size };
    },
  };
}
