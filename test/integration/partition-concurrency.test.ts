import type { DateTime } from 'luxon';
import type pg from 'pg';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { tryLockTarget } from '../../shared/advisory-lock';
import { secondsSinceLastSuccess } from '../../shared/ledger';
import { partitionsOf } from '../support/catalog';
import { createTestDatabase, databaseToday, type TestDatabase } from '../support/db';
import { runPartition } from '../support/jobs';

/**
 * Several sessions work different targets at once (`concurrency`); each target is still worked
 * under its own advisory lock, by the session that holds it, and its steps stay in order.
 */

let db: TestDatabase;
let sql: pg.Client;
let today: DateTime;

const TABLES = ['app.a', 'app.b', 'app.c'];
const day = (offset: number) => today.plus({ days: offset });
const dayName = (table: string, offset: number) => `${table.split('.')[1]}_p${day(offset).toFormat('yyyy_MM_dd')}`;

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
  today = await databaseToday(sql);
});

beforeEach(async () => {
  await sql.query(`DROP SCHEMA IF EXISTS app CASCADE; DROP SCHEMA IF EXISTS housekeeping CASCADE; CREATE SCHEMA app;`);
  for (const table of TABLES) {
    await sql.query(`CREATE TABLE ${table} (id bigserial, created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at);
      CREATE TABLE ${table}_default PARTITION OF ${table} DEFAULT;`);
  }
});

/** Sessions of the job waiting for a relation lock, each with the relation it waits for and the targets whose advisory locks it holds. */
async function waitingSessions(): Promise<Array<{ pid: number; waitsFor: string; holds: string[] }>> {
  const { rows } = await sql.query(
    `SELECT w.pid, w.relation::regclass::text AS waits_for,
            ARRAY(SELECT t FROM unnest($1::text[]) AS t
                  WHERE EXISTS (SELECT 1 FROM pg_locks a
                                WHERE a.pid = w.pid AND a.locktype = 'advisory' AND a.granted AND a.objsubid = 2
                                  AND a.classid::bigint = (hashtext('pg-housekeeper:partition')::bigint & 4294967295)
                                  AND a.objid::bigint = (hashtext(t)::bigint & 4294967295))) AS holds
     FROM pg_locks w JOIN pg_stat_activity s ON s.pid = w.pid
     WHERE s.datname = current_database() AND s.application_name = 'pg-housekeeper/partition'
       AND w.locktype = 'relation' AND NOT w.granted
     ORDER BY 2`,
    [TABLES],
  );
  return rows.map((r) => ({ pid: r.pid, waitsFor: r.waits_for, holds: r.holds }));
}

describe('concurrency', () => {
  it('works different targets in different sessions at once, each under its own advisory lock', async () => {
    // A report on every DEFAULT: each target's first create waits for it (lock_timeout is long here).
    const blockers: pg.Client[] = [];
    for (const table of TABLES) {
      const blocker = await db.connect('report');
      await blocker.query('BEGIN');
      await blocker.query(`SELECT count(*) FROM ${table}_default`);
      blockers.push(blocker);
    }
    const run = runPartition(db.url, {
      targets: TABLES.map((table) => ({ table, interval: 'day' as const, premake: 1 })),
      concurrency: 3,
      lockTimeoutMs: 60_000,
      lockAttempts: 1,
      maintainLedger: false,
    });
    // All three wait at the same time, each in its own session, each holding the lock of the target it works.
    await expect
      .poll(async () => (await waitingSessions()).map(({ waitsFor, holds }) => ({ waitsFor, holds })), { timeout: 60_000, interval: 100 })
      .toEqual(TABLES.map((table) => ({ waitsFor: `${table}_default`, holds: [table] })));
    expect(new Set((await waitingSessions()).map((s) => s.pid)).size).toBe(3);
    for (const blocker of blockers) await blocker.query('ROLLBACK');
    const summary = await run;
    expect(summary.failed).toEqual([]);
    expect(summary.targets.map((t) => [t.target, t.state, t.counts.created])).toEqual(TABLES.map((table) => [table, 'succeeded', 2]));
  }, 90_000);

  it('a lock give-up in one target stops that target’s later steps and not the other targets', async () => {
    for (const table of TABLES) {
      await sql.query(`CREATE TABLE ${table}_old PARTITION OF ${table} FOR VALUES FROM ('${day(-10).toISO()}') TO ('${day(-9).toISO()}')`);
    }
    const blocker = await db.connect('long-report');
    await blocker.query('BEGIN');
    await blocker.query(`SELECT count(*) FROM app.b_default`);
    const summary = await runPartition(db.url, {
      targets: TABLES.map((table) => ({ table, interval: 'day' as const, premake: 1, retention: { keep: 3 } })),
      concurrency: 3,
      lockTimeoutMs: 200,
      lockAttempts: 2,
      maintainLedger: false,
    }).finally(() => blocker.query('ROLLBACK'));

    expect(summary.failed).toEqual(['app.b']);
    const b = summary.targets[1]!;
    expect(b.detail).toMatch(/create app\.b_p\d{4}_\d\d_\d\d: could not get a lock within 200 ms on 2 attempt\(s\)/);
    expect(b.detail).toContain('later step(s) not tried: they need the same locks');
    expect(b.detail).toContain('retention not attempted');
    expect(b.counts).toMatchObject({ created: 0, dropped: 0 });
    // Its expired partition is still there: retention did not run behind a blocked create.
    expect(Object.keys(await partitionsOf(sql, 'app.b'))).toEqual(['b_default', 'b_old']);
    for (const [i, table] of [
      [0, 'app.a'],
      [2, 'app.c'],
    ] as const) {
      expect(summary.targets[i]).toMatchObject({ target: table, state: 'succeeded', counts: { created: 5, dropped: 1 } });
      const short = table.split('.')[1]!;
      expect(Object.keys(await partitionsOf(sql, table))).toEqual([`${short}_default`, ...[-3, -2, -1, 0, 1].map((d) => dayName(table, d))]);
    }
  });

  it('with one session, works the targets one after the other and ends the same', async () => {
    const summary = await runPartition(db.url, {
      targets: TABLES.map((table) => ({ table, interval: 'day' as const, premake: 2 })),
      concurrency: 1,
      maintainLedger: false,
    });
    expect(summary.targets.map((t) => [t.target, t.state, t.counts.created])).toEqual(TABLES.map((table) => [table, 'succeeded', 3]));
  });
});

describe('a create sent as one round trip', () => {
  it('is still one transaction: an ATTACH that gives up on its lock leaves no table behind', async () => {
    await sql.query(`DROP TABLE app.a_default`);
    // SHARE UPDATE EXCLUSIVE on the parent: CREATE TABLE (LIKE) goes through, ATTACH waits for it.
    const blocker = await db.connect('maintenance-elsewhere');
    await blocker.query('BEGIN');
    await blocker.query('LOCK TABLE app.a IN SHARE UPDATE EXCLUSIVE MODE');
    const summary = await runPartition(db.url, {
      targets: [{ table: 'app.a', interval: 'day', premake: 1 }],
      lockTimeoutMs: 100,
      lockAttempts: 2,
      maintainLedger: false,
    }).finally(() => blocker.query('ROLLBACK'));
    expect(summary.failed).toEqual(['app.a']);
    expect(summary.targets[0]!.detail).toMatch(/create app\.a_p\d{4}_\d\d_\d\d: could not get a lock within 100 ms on 2 attempt\(s\)/);
    const { rows } = await sql.query(
      `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'app' AND c.relname LIKE 'a\\_p%'`,
    );
    expect(rows).toEqual([]);
  });
});

describe('the ledger with targets that change nothing', () => {
  it('records one succeeded row for a target with nothing to do, started and succeeded for one that changes things', async () => {
    const event = {
      targets: TABLES.map((table) => ({ table, interval: 'day' as const, premake: 1 })),
      maintainLedger: false,
    };
    await runPartition(db.url, event);
    // Only app.b has work in the second run: its partition for tomorrow is gone.
    await sql.query(`DROP TABLE app.${dayName('app.b', 1)}`);
    const second = await runPartition(db.url, event);
    expect(second.failed).toEqual([]);
    expect(second.targets.map((t) => [t.target, t.counts.created, t.counts.partitionsAhead])).toEqual([
      ['app.a', 0, 1],
      ['app.b', 1, 1],
      ['app.c', 0, 1],
    ]);
    const runIds = second.targets.map((t) => t.runId);
    const { rows } = await sql.query(
      `SELECT target, state, counts, policy IS NOT NULL AS has_policy, duration_ms IS NOT NULL AS timed
       FROM housekeeping.job_runs WHERE run_id = ANY ($1::uuid[]) ORDER BY target, recorded_at`,
      [runIds],
    );
    expect(rows.map((r) => [r.target, r.state, r.has_policy, r.timed])).toEqual([
      ['app.a', 'succeeded', true, true],
      ['app.b', 'started', true, false],
      ['app.b', 'succeeded', true, true],
      ['app.c', 'succeeded', true, true],
    ]);
    expect(rows.find((r) => r.target === 'app.a')!.counts).toEqual({
      created: 0,
      dropped: 0,
      detached: 0,
      rowsMovedFromDefault: 0,
      rowsLeftInDefault: 0,
      rescuesRefused: 0,
      partitionsAhead: 1,
    });
    const latest = await sql.query(`SELECT target, state, run_id FROM housekeeping.latest_runs WHERE job = 'partition' ORDER BY target`);
    expect(latest.rows.map((r) => [r.target, r.state, r.run_id])).toEqual(TABLES.map((table, i) => [table, 'succeeded', runIds[i]]));
    const since = await secondsSinceLastSuccess(sql, 'partition', TABLES);
    expect([...since.keys()].sort()).toEqual(TABLES);
    for (const seconds of since.values()) expect(seconds).toBeLessThan(60);
  });

  it('counts rows left in DEFAULT for a target with nothing else to do', async () => {
    const event = { targets: TABLES.map((table) => ({ table, interval: 'day' as const, premake: 1 })), maintainLedger: false };
    await runPartition(db.url, event);
    await sql.query(`INSERT INTO app.c (created_at) VALUES ($1), ($1)`, [day(40).toISO()]);
    const second = await runPartition(db.url, event);
    expect(second.targets.map((t) => [t.target, t.counts.created, t.counts.rowsLeftInDefault])).toEqual([
      ['app.a', 0, 0],
      ['app.b', 0, 0],
      ['app.c', 0, 2],
    ]);
  });

  it('a target locked by another run is recorded skipped, the others succeed, and every lock is released', async () => {
    const event = { targets: TABLES.map((table) => ({ table, interval: 'day' as const, premake: 1 })), maintainLedger: false, concurrency: 1 };
    await runPartition(db.url, event);
    const other = await db.connect('other-run');
    expect(await tryLockTarget(other, 'partition', 'app.b')).toBe(true);
    const summary = await runPartition(db.url, event).finally(() => other.query('SELECT pg_advisory_unlock_all()'));
    expect(summary.targets.map((t) => [t.target, t.state, t.detail])).toEqual([
      ['app.a', 'succeeded', undefined],
      ['app.b', 'skipped', 'locked: another run holds this target'],
      ['app.c', 'succeeded', undefined],
    ]);
    const ledger = await sql.query(`SELECT target, state FROM housekeeping.job_runs WHERE run_id = ANY ($1::uuid[]) ORDER BY target`, [
      summary.targets.map((t) => t.runId),
    ]);
    expect(ledger.rows).toEqual([
      { target: 'app.a', state: 'succeeded' },
      { target: 'app.b', state: 'skipped' },
      { target: 'app.c', state: 'succeeded' },
    ]);
    // Every lock this run took is released: another session can take each target now.
    for (const table of TABLES) expect(await tryLockTarget(other, 'partition', table)).toBe(true);
  });
});
