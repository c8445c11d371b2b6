import type pg from 'pg';

/** Partitions of a parent as `name: bound`, sorted by name; DEFAULT included. */
export async function partitionsOf(client: pg.ClientBase, parent: string): Promise<Record<string, string>> {
  const { rows } = await client.query<{ name: string; bound: string }>(
    `SELECT c.relname AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
     FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = $1::regclass ORDER BY c.relname`,
    [parent],
  );
  return Object.fromEntries(rows.map((r) => [r.name, r.bound]));
}

/** Every relation in a schema with its kind: detects any catalog change at all. */
export async function relationsIn(client: pg.ClientBase, schema: string): Promise<string[]> {
  const { rows } = await client.query<{ r: string }>(
    `SELECT c.relname || ':' || c.relkind::text || ':' || coalesce(pg_get_expr(c.relpartbound, c.oid), '') AS r
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 ORDER BY 1`,
    [schema],
  );
  return rows.map((row) => row.r);
}
