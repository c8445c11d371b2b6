import type pg from 'pg';
import { queryOne } from '../../shared/postgres';

/**
 * Whole-row evidence for safety invariants. A row's digest is md5 of its jsonb form: independent
 * of column order (source and archive may order columns differently), and exact about values
 * (numeric keeps its scale, so 12.35 and 12.345678 differ; timestamps keep microseconds).
 */
const ROW_DIGEST = `md5(to_jsonb(t)::text)`;

/** Digests of every row of `table` (a trusted test identifier), sorted: a multiset to compare with toEqual. */
export async function rowDigests(client: pg.ClientBase, table: string): Promise<string[]> {
  const { rows } = await client.query<{ d: string }>(`SELECT ${ROW_DIGEST} AS d FROM ${table} AS t ORDER BY 1`);
  return rows.map((r) => r.d);
}

/** Rows of several tables as one sorted multiset: "source ∪ archive" before and after a move. */
export async function unionDigests(client: pg.ClientBase, tables: string[]): Promise<string[]> {
  // One query at a time: a client runs them in turn anyway, and queueing them is deprecated (pg 9 refuses it).
  const all: string[] = [];
  for (const table of tables) all.push(...(await rowDigests(client, table)));
  return all.sort();
}

/**
 * One digest per ordinary table (leaf partitions included) outside `housekeeping` and the system
 * schemas: compare before and after a run to prove that no table outside its policy changed,
 * foreign-key actions and triggers included. `exclude` takes `schema.table` names, or
 * `schema.prefix*` for a parent's partitions.
 */
export async function tableFingerprints(client: pg.ClientBase, exclude: string[] = []): Promise<Record<string, string>> {
  const { rows: tables } = await client.query<{ name: string; quoted: string }>(
    `SELECT n.nspname || '.' || c.relname AS name, format('%I.%I', n.nspname, c.relname) AS quoted
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind = 'r' AND n.nspname NOT IN ('housekeeping', 'pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
     ORDER BY 1`,
  );
  const skipped = (name: string) => exclude.some((pattern) => (pattern.endsWith('*') ? name.startsWith(pattern.slice(0, -1)) : name === pattern));
  const out: Record<string, string> = {};
  for (const table of tables) {
    if (skipped(table.name)) continue;
    const { n, d } = await queryOne<{ n: string; d: string | null }>(
      client,
      `SELECT count(*)::text AS n, md5(string_agg(${ROW_DIGEST}, ',' ORDER BY ${ROW_DIGEST})) AS d FROM ${table.quoted} AS t`,
    );
    out[table.name] = `${n}:${d ?? ''}`;
  }
  return out;
}

/** Digests of `table`'s rows split by a SQL predicate over alias `t`: which rows a purge may retire, which it must keep. */
export async function digestsSplitBy(client: pg.ClientBase, table: string, predicate: string): Promise<{ matching: string[]; other: string[] }> {
  const { rows } = await client.query<{ d: string; m: boolean }>(
    `SELECT ${ROW_DIGEST} AS d, coalesce(${predicate}, false) AS m FROM ${table} AS t ORDER BY 1`,
  );
  return { matching: rows.filter((r) => r.m).map((r) => r.d), other: rows.filter((r) => !r.m).map((r) => r.d) };
}

/** `schema.table` names of a table and all its partitions (for tableFingerprints' exclude); empty if it does not exist. */
export async function relationTree(client: pg.ClientBase, table: string): Promise<string[]> {
  const { rows } = await client.query<{ name: string }>(
    `SELECT n.nspname || '.' || c.relname AS name
     FROM (SELECT to_regclass($1) AS relid UNION SELECT relid FROM pg_partition_tree(to_regclass($1))) AS p
     JOIN pg_class c ON c.oid = p.relid JOIN pg_namespace n ON n.oid = c.relnamespace`,
    [table],
  );
  return rows.map((r) => r.name);
}
