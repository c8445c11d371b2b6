import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, databaseToday, type TestDatabase } from '../support/db';
import { runPartition } from '../support/jobs';

/**
 * Mixed-case names (the policy's identifiers are case-sensitive, as in the catalog): a lookup by
 * the display name `app.Events_p...` folds it to lower case and finds nothing.
 */

let db: TestDatabase;
let sql: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
});

describe('a mixed-case table whose concurrent detach is interrupted', () => {
  it('retries with FINALIZE (it repeated DETACH CONCURRENTLY, which fails at once on a pending detach)', async () => {
    const today = await databaseToday(sql);
    const day = today.minus({ days: 10 });
    const old = `Events_p${day.toFormat('yyyy_MM_dd')}`;
    await sql.query(`DROP SCHEMA IF EXISTS app CASCADE; DROP SCHEMA IF EXISTS housekeeping CASCADE; CREATE SCHEMA app;
      CREATE TABLE app."Events" (id bigserial, created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at);
      CREATE TABLE app."${old}" PARTITION OF app."Events" FOR VALUES FROM ('${day.toISO()}') TO ('${day.plus({ days: 1 }).toISO()}')`);
    // A reader keeps the expired partition open: the detach's second phase waits for it, times out, and leaves it pending.
    const reader = await db.connect('slow-reader');
    await reader.query('BEGIN');
    await reader.query(`SELECT count(*) FROM app."${old}"`);
    const summary = await runPartition(db.url, {
      targets: [{ table: 'app.Events', interval: 'day', premake: 1, retention: { keep: 3 } }],
      lockTimeoutMs: 200,
      lockAttempts: 2,
      maintainLedger: false,
    });
    await reader.query('ROLLBACK');
    expect(summary.targets[0]!.state).toBe('failed');
    // The second attempt finalizes, and waits for the reader like the first.
    expect(summary.targets[0]!.detail).toMatch(new RegExp(`drop app\\.${old}: could not get a lock within 200 ms on 2 attempt`));
    const next = await runPartition(db.url, {
      targets: [{ table: 'app.Events', interval: 'day', premake: 1, retention: { keep: 3 } }],
      maintainLedger: false,
    });
    expect(next.targets[0]).toMatchObject({ state: 'succeeded', counts: { dropped: 1 } });
  });
});
