import type pg from 'pg';
import { expect } from 'vitest';
import { type ObjectStore, sdkObjectStore, setObjectStoreFactory } from '../../functions/archive/s3/store';
import { createTestDatabase, type TestDatabase } from './db';
import { duckdb, startTestS3, type TestS3 } from './s3';

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
        return {
          name,
          pg: `to_char(${q} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')`,
          duck: `strftime(${q}::TIMESTAMP, '%Y-%m-%d %H:%M:%S.%f')`,
        };
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
export async function objectRows(
  s3: TestS3,
  folder: string,
  columns: Column[],
  /** The source's key columns (its first column unless given). */
  key: string[] = [columns[0]!.name],
): Promise<Array<{ text: string; file: string; dt: string; key: string }>> {
  const keys = await s3.keys(`${folder}/`);
  if (keys.length === 0) return [];
  const dir = await s3.download(`${folder}/`);
  const rows = await duckdb(
    `SELECT ${columns.map((c) => `${c.duck} AS "${c.name}"`).join(', ')}, CAST(dt AS VARCHAR) AS "__dt", filename AS "__file"
     FROM read_parquet('${dir}/${folder}/*/*.parquet', hive_partitioning = 1, filename = true)`,
  );
  return rows.map((r) => ({ text: rowText(r, columns), file: String(r.__file), dt: String(r.__dt), key: JSON.stringify(key.map((k) => r[k])) }));
}

/**
 * The invariant of an S3 archive run, captured before and checked after. Readers of the final
 * prefix never see a row that is still in the source, nor one row in two objects, at any moment
 * (`verifyNow`, also right after a SIGKILL). Every row is in the source, in a published object,
 * or in the pending copy of an object whose manifest row committed (which the next run
 * publishes). After a run that finished (`verify`): source ∪ published objects is exactly the
 * rows before, whole contents compared, with nothing committed left unpublished and no pending
 * object left.
 */
export async function captureS3Invariant(client: pg.ClientBase, s3: TestS3, target: { source: string; folder: string; key?: string[] }) {
  const columns = await columnsOf(client, target.source);
  const before = await postgresRows(client, target.source, columns);
  const pendingFolder = target.folder.replace(/\/(table=[^/]+)$/, '/_pending/$1/');
  const check = async () => {
    const left = await postgresRows(client, target.source, columns);
    const archived = await objectRows(s3, target.folder, columns, target.key);
    const published = archived.map((r) => r.text);
    const leftSet = new Set(left);
    expect(
      published.filter((r) => leftSet.has(r)),
      'a row is both in the source and in a published object',
    ).toEqual([]);
    expect(new Set(published).size, 'a row is in two published objects').toBe(published.length);
    expect(new Set(archived.map((r) => r.key)).size, 'a key is in two published objects').toBe(archived.length);
    return { left, archived, published };
  };
  return {
    before,
    columns,
    async verifyNow(): Promise<{ left: number; archived: number; committedPending: number }> {
      // One listing for everything: a copy the killed process had sent may still complete on the
      // server meanwhile, and an object listed once but not the other time would be counted nowhere.
      const finalKeys = (await s3.keys(`${target.folder}/`)).filter((key) => key.endsWith('.parquet'));
      const finals = new Set(finalKeys);
      const left = await postgresRows(client, target.source, columns);
      const published = await rowsOfObjects(s3, finalKeys, columns);
      const leftSet = new Set(left);
      expect(
        published.filter((r) => leftSet.has(r)),
        'a row is both in the source and in a published object',
      ).toEqual([]);
      expect(new Set(published).size, 'a row is in two published objects').toBe(published.length);
      const { rows: committed } = await client.query<{ pending_key: string; object_key: string }>(
        `SELECT pending_key, object_key FROM housekeeping.archive_objects WHERE state = 'committed' ORDER BY id`,
      );
      const pending = await rowsOfObjects(
        s3,
        committed.filter((c) => !finals.has(c.object_key)).map((c) => c.pending_key),
        columns,
      );
      const union = [...left, ...published, ...pending].sort();
      expect(union.length, 'rows lost or doubled between source, published and committed pending objects').toBe(before.length);
      expect(union, 'source ∪ published ∪ committed-pending is not the rows before').toEqual(before);
      return { left: left.length, archived: published.length, committedPending: pending.length };
    },
    async verify(): Promise<{ left: number; archived: number; objects: number }> {
      const { left, archived, published } = await check();
      const union = [...left, ...published].sort();
      expect(union.length, 'rows lost or doubled between source and S3').toBe(before.length);
      expect(union, 'source ∪ published objects is not the rows before').toEqual(before);
      const { rows: committed } = await client.query(`SELECT object_key FROM housekeeping.archive_objects WHERE state = 'committed'`);
      expect(committed, 'a committed object was left unpublished').toEqual([]);
      expect(await s3.keys(pendingFolder), 'pending objects were left behind').toEqual([]);
      return { left: left.length, archived: archived.length, objects: new Set(archived.map((r) => r.file)).size };
    },
  };
}

/** Rows of the given objects (any keys, pending copies included), read by DuckDB. */
async function rowsOfObjects(s3: TestS3, keys: string[], columns: Array<{ name: string; duck: string }>): Promise<string[]> {
  if (keys.length === 0) return [];
  const dir = await s3.downloadKeys(keys);
  const files = keys.map((k) => `'${dir}/${k}'`).join(', ');
  const rows = await duckdb(`SELECT ${columns.map((c) => `${c.duck} AS "${c.name}"`).join(', ')} FROM read_parquet([${files}])`);
  return rows.map((r) => JSON.stringify(columns.map((c) => r[c.name] ?? null)));
}

/** The real store, with a hook on each upload (to corrupt it, or to change the source while the batch is in flight). */
export function hookUploads(onPut: (key: string, body: Uint8Array, count: number) => Promise<Uint8Array | undefined>) {
  let count = 0;
  setObjectStoreFactory(async (options) => {
    const store: ObjectStore = await sdkObjectStore(options);
    return { ...store, put: async (key, body, metadata) => store.put(key, (await onPut(key, body, ++count)) ?? body, metadata) };
  });
}

/** What an S3 archive test file works with: a database of its own, a session on it, the loopback S3 server. */
export async function openS3ArchiveTest(): Promise<{ db: TestDatabase; sql: pg.Client; s3: TestS3 }> {
  const db = await createTestDatabase();
  return { db, sql: await db.connect(), s3: await startTestS3() };
}

/** Before each test: the file's tables made afresh (`ddl`, when given), the manifest and the bucket emptied. */
export async function resetS3ArchiveTest(sql: pg.ClientBase, s3: TestS3, ddl?: string): Promise<void> {
  if (ddl) await sql.query(ddl);
  await sql.query(`TRUNCATE housekeeping.archive_restores, housekeeping.archive_objects`).catch(() => {});
  await s3.empty();
}
