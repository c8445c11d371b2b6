import type pg from 'pg';
import type { Sql } from './sql';

/**
 * The Postgres vocabulary every job shares: error codes, the database clock, and the column types
 * that carry time. One definition each, so a job never re-learns them.
 */

/** SQLSTATE codes we act on (https://www.postgresql.org/docs/current/errcodes-appendix.html). */
export const SQLSTATE = {
  uniqueViolation: '23505',
  checkViolation: '23514',
  lockNotAvailable: '55P03',
  deadlockDetected: '40P01',
  invalidPassword: '28P01',
  invalidParameterValue: '22023',
} as const;

/** SQLSTATE of a node-postgres error, if it is one. */
export function sqlState(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The one row a query must return (aggregates, `SELECT now()`, RETURNING of one row); throws naming the query otherwise. */
export async function queryOne<R extends pg.QueryResultRow>(client: pg.ClientBase, query: string | Sql, params: unknown[] = []): Promise<R> {
  const { rows } = typeof query === 'string' ? await client.query<R>(query, params) : await client.query<R>(query);
  const row = rows[0];
  if (!row) throw new Error(`expected one row from: ${(typeof query === 'string' ? query : query.text).replace(/\s+/g, ' ').slice(0, 120)}`);
  return row;
}

/** The database clock: every boundary, cutoff and watermark is computed from it, never from the host's. */
export async function databaseNow(client: pg.ClientBase): Promise<Date> {
  return (await queryOne<{ now: Date }>(client, 'SELECT now() AS now')).now;
}

export type TimeColumnType = 'timestamptz' | 'timestamp' | 'date';

/** `format_type(atttypid, NULL)` of the column types a job can measure time by. */
export const TIME_COLUMN_TYPES: Readonly<Record<string, TimeColumnType>> = {
  'timestamp with time zone': 'timestamptz',
  'timestamp without time zone': 'timestamp',
  date: 'date',
};
