import type pg from 'pg';
import { relationExists } from '../../shared/db';
import { sql } from '../../shared/sql';
import { type Bucket, instant } from './buckets';
import type { StoredState } from './plan';

/**
 * housekeeping.rollup_state: one row per rollup, its watermark and its changed-at horizon. Every
 * write is a compare-and-set from the value this run last saw, so a value another session (an
 * operator's reset) set during the run is never overwritten.
 */

/** The rollup's state, or undefined before its first run (or before any migration, in a dry run). */
export async function readState(client: pg.ClientBase, name: string, bucket: Bucket): Promise<StoredState | undefined> {
  if (!(await relationExists(client, 'housekeeping.rollup_state'))) return undefined;
  const { rows } = await client.query<{ watermark: Date; watermark_text: string; aligned: boolean; changes_text: string | null }>(
    sql`SELECT watermark, watermark::text AS watermark_text, watermark = date_trunc(${bucket}::text, watermark) AS aligned,
               changes_seen_until::text AS changes_text
        FROM housekeeping.rollup_state WHERE name = ${name}`,
  );
  const row = rows[0];
  return row && { watermarkText: row.watermark_text, watermark: row.watermark.getTime(), aligned: row.aligned, changesText: row.changes_text };
}

/** A first run's row; a row another first run made in the meantime wins. */
export async function createState(client: pg.ClientBase, name: string, watermark: number, changesSeenUntil: number): Promise<void> {
  await client.query(
    sql`INSERT INTO housekeeping.rollup_state (name, watermark, changes_seen_until) VALUES (${name}, ${instant(watermark)}, ${instant(changesSeenUntil)})
        ON CONFLICT (name) DO NOTHING`,
  );
}

/**
 * Moves the watermark to `to` if it still is `expected` (exactly, microseconds included), taking
 * the row's lock: call it first in the slice's transaction, so an operator's UPDATE waits for the
 * slice rather than being overwritten by it. Returns the watermark as now stored, or null if
 * another session had moved it.
 */
export async function advanceWatermark(client: pg.ClientBase, name: string, to: number, expected: string): Promise<string | null> {
  const { rows } = await client.query<{ stored: string }>(
    sql`UPDATE housekeeping.rollup_state SET watermark = ${instant(to)}, updated_at = now()
        WHERE name = ${name} AND watermark = ${expected}::timestamptz RETURNING watermark::text AS stored`,
  );
  return rows[0]?.stored ?? null;
}

/** Moves the changed-at horizon to `to` if it still is `expected`; false if another session moved it (it asked for a wider rescan). */
export async function advanceChangesSeenUntil(client: pg.ClientBase, name: string, to: number, expected: string | null): Promise<boolean> {
  const { rowCount } = await client.query(
    sql`UPDATE housekeeping.rollup_state SET changes_seen_until = ${instant(to)}
        WHERE name = ${name} AND changes_seen_until IS NOT DISTINCT FROM ${expected}::timestamptz`,
  );
  return (rowCount ?? 0) > 0;
}
