import type { DateTime } from 'luxon';
import type pg from 'pg';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { tryLockTarget } from '../../shared/advisory-lock';
import { sleep } from '../../shared/postgres';
import { partitionsOf } from '../support/catalog';
import { createTestDatabase, databaseToday, type TestDatabase } from '../support/db';
import { tableFingerprints } from '../support/fingerprint';
import { runPartition } from '../support/jobs';

let db: TestDatabase;
let sql: pg.Client;
let today: DateTime;

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
  today = await databaseToday(sql);
});

beforeEach(async () => {
  await sql.query(`DROP SCHEMA IF EXISTS app CASCADE; DROP SCHEMA IF EXISTS housekeeping CASCADE; CREATE SCHEMA app;
    CREATE TABLE app.events (id bigserial, created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at);
    CREATE TABLE app.events_default PARTITION OF app.events DEFAULT;
    CREATE TABLE app.bystander (id int PRIMARY KEY, v text);
    INSERT INTO app.bystander SELECT i, md5(i::text) FROM generate_series(1, 20) i;`);
});

describe('a session holding a conflicting lock', () => {
  it('makes the job give up after its retries, naming the blocker, while writers stall at most about lock_timeout', async () => {
    const lockTimeoutMs = 300;
    const lockAttempts = 5; // 5 × 300 ms waits plus 0.2 + 0.4 + 0.8 + 1.6 s of backoff: the job is blocked for over 4 s
    // The pg_partman #359 situation: a long report read the DEFAULT partition and keeps its transaction open.
    const blocker = await db.connect('long-report');
    await blocker.query('BEGIN');
    await blocker.query('SELECT count(*) FROM app.events');

    const writer = await db.connect('writer');
    let writing = true;
    let worstInsertMs = 0;
    let inserts = 0;
    const writes = (async () => {
      while (writing) {
        const started = performance.now();
        // Far in the future: routed to DEFAULT, the partition the job must lock.
        await writer.query(`INSERT INTO app.events (created_at) VALUES (now() + interval '1 year')`);
        worstInsertMs = Math.max(worstInsertMs, performance.now() - started);
        inserts++;
        await sleep(20);
      }
    })();

    const started = performance.now();
    const summary = await runPartition(db.url, {
      targets: [{ table: 'app.events', interval: 'day', premake: 1 }],
      lockTimeoutMs,
      lockAttempts,
      maintainLedger: false,
    });
    const jobMs = performance.now() - started;
    writing = false;
    await writes;
    await blocker.query('ROLLBACK');

    expect(summary.failed).toEqual(['app.events']);
    const detail = summary.targets[0]!.detail!;
    expect(detail).toMatch(/create app\.events_p\d{4}_\d\d_\d\d: could not get a lock within 300 ms on 5 attempt\(s\)/);
    expect(detail).toMatch(
      /pid \d+ \(application "long-report", state "idle in transaction", transaction open \d+ s\) holds AccessShareLock on app\.events_default/,
    );
    expect(Object.keys(await partitionsOf(sql, 'app.events'))).toEqual(['events_default']);
    // Without lock_timeout the writer would have queued behind the job for the whole run.
    expect(jobMs).toBeGreaterThan(4_000);
    expect(inserts).toBeGreaterThan(10);
    expect(worstInsertMs).toBeLessThan(lockTimeoutMs + 1_200);
    const rows = await sql.query(`SELECT count(*)::int AS n FROM app.events`);
    expect(rows.rows[0].n).toBe(inserts);
  });

  it('succeeds on a retry once the blocker finishes within the attempts', async () => {
    const blocker = await db.connect('short-report');
    await blocker.query('BEGIN');
    await blocker.query('SELECT count(*) FROM app.events');
    setTimeout(() => void blocker.query('ROLLBACK'), 700);
    const summary = await runPartition(db.url, {
      targets: [{ table: 'app.events', interval: 'day', premake: 1 }],
      lockTimeoutMs: 200,
      lockAttempts: 6,
      maintainLedger: false,
    });
    expect(summary.targets[0]).toMatchObject({ state: 'succeeded', counts: { created: 2 } });
  });
});

describe('two runs for the same target', () => {
  it('records skipped: locked while another session holds the target, and succeeds', async () => {
    const other = await db.connect('other-run');
    expect(await tryLockTarget(other, 'partition', 'app.events')).toBe(true);
    const summary = await runPartition(db.url, { targets: [{ table: 'app.events', interval: 'day', premake: 1 }] }).finally(() =>
      other.query('SELECT pg_advisory_unlock_all()'),
    );
    expect(summary.failed).toEqual([]);
    expect(summary.targets[0]).toMatchObject({ state: 'skipped', detail: 'locked: another run holds this target' });
    expect(Object.keys(await partitionsOf(sql, 'app.events'))).toEqual(['events_default']);
    const ledger = await sql.query(`SELECT state, detail FROM housekeeping.job_runs WHERE target = 'app.events'`);
    expect(ledger.rows).toEqual([{ state: 'skipped', detail: 'locked: another run holds this target' }]);
  });

  it('run concurrently: one works, one is skipped, and the end state equals a single run', async () => {
    // Hold DEFAULT briefly so the first run is still retrying when the second arrives.
    const blocker = await db.connect('brief-report');
    await blocker.query('BEGIN');
    await blocker.query('SELECT count(*) FROM app.events');
    const event = {
      targets: [{ table: 'app.events', interval: 'day' as const, premake: 3 }],
      lockTimeoutMs: 200,
      lockAttempts: 8,
      maintainLedger: false,
    };
    const first = runPartition(db.url, event);
    // The second starts once the first holds the target's advisory lock (a fixed delay lost that
    // race on a loaded machine, where connecting and migrating can take longer).
    await expect
      .poll(
        async () =>
          // The target's own lock, (job, target): the migrations' advisory lock, taken first, is not it.
          (
            await sql.query(`SELECT count(*)::int AS n FROM pg_locks l JOIN pg_stat_activity a USING (pid)
                             WHERE l.locktype = 'advisory' AND l.granted AND a.application_name = 'pg-housekeeper/partition'
                               AND l.objsubid = 2 AND l.classid = hashtext('pg-housekeeper:partition')::oid AND l.objid = hashtext('app.events')::oid`)
          ).rows[0].n,
        { timeout: 30_000, interval: 20 },
      )
      .toBeGreaterThan(0);
    const second = runPartition(db.url, event);
    const secondSummary = await second;
    await blocker.query('ROLLBACK');
    const firstSummary = await first;

    expect([firstSummary.targets[0]!.state, secondSummary.targets[0]!.state]).toEqual(['succeeded', 'skipped']);
    expect(firstSummary.targets[0]!.counts.created).toBe(4);
    const expected = [0, 1, 2, 3].map((d) => `events_p${today.plus({ days: d }).toFormat('yyyy_MM_dd')}`);
    expect(Object.keys(await partitionsOf(sql, 'app.events'))).toEqual(['events_default', ...expected]);
  });
});

describe('retention blocked by a reader', () => {
  it('never undoes the partitions created in the same run, and the next run finishes the interrupted detach', async () => {
    await sql.query(`DROP TABLE app.events_default`);
    const old = `events_p${today.minus({ days: 10 }).toFormat('yyyy_MM_dd')}`;
    const older = `events_p${today.minus({ days: 11 }).toFormat('yyyy_MM_dd')}`;
    for (const [name, offset] of [
      [older, -11],
      [old, -10],
    ] as const) {
      await sql.query(
        `CREATE TABLE app.${name} PARTITION OF app.events FOR VALUES FROM ('${today.plus({ days: offset }).toISO()}') TO ('${today.plus({ days: offset + 1 }).toISO()}')`,
      );
    }
    const others = await tableFingerprints(sql, ['app.events_*']);
    const reader = await db.connect('slow-reader');
    await reader.query('BEGIN');
    await reader.query(`SELECT count(*) FROM app.${old}`);
    const event = {
      targets: [{ table: 'app.events', interval: 'day' as const, premake: 2, retention: { keep: 3 } }],
      lockTimeoutMs: 200,
      lockAttempts: 2,
      maintainLedger: false,
    };
    const blocked = await runPartition(db.url, event);
    await reader.query('ROLLBACK');

    // keep 3: days -3 .. +2 are created (the gap back to the cutoff included); day -11 dropped; day -10 blocked
    expect(blocked.targets[0]).toMatchObject({ state: 'failed', counts: { created: 6, dropped: 1 } });
    expect(blocked.targets[0]!.detail).toMatch(new RegExp(`drop app\\.${old}: could not get a lock within 200 ms on 2 attempt`));
    const created = [-3, -2, -1, 0, 1, 2].map((d) => `events_p${today.plus({ days: d }).toFormat('yyyy_MM_dd')}`);
    expect(Object.keys(await partitionsOf(sql, 'app.events'))).toEqual([old, ...created]);
    const pending = await sql.query(`SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = 'app.${old}'::regclass`);
    expect(pending.rows[0].inhdetachpending).toBe(true);

    const next = await runPartition(db.url, event);
    expect(next.targets[0]).toMatchObject({ state: 'succeeded', counts: { created: 0, dropped: 1 } });
    expect(Object.keys(await partitionsOf(sql, 'app.events'))).toEqual(created);
    const gone = await sql.query(`SELECT to_regclass('app.${old}') AS r`);
    expect(gone.rows[0].r).toBeNull();
    expect(await tableFingerprints(sql, ['app.events_*'])).toEqual(others);
  });

  it('with a DEFAULT partition, drops and detaches expired partitions without CONCURRENTLY', async () => {
    for (const offset of [-9, -8, 0]) {
      const name = `events_p${today.plus({ days: offset }).toFormat('yyyy_MM_dd')}`;
      await sql.query(
        `CREATE TABLE app.${name} PARTITION OF app.events FOR VALUES FROM ('${today.plus({ days: offset }).toISO()}') TO ('${today.plus({ days: offset + 1 }).toISO()}')`,
      );
    }
    const others = await tableFingerprints(sql, ['app.events_*']);
    const summary = await runPartition(db.url, {
      targets: [{ table: 'app.events', interval: 'day', premake: 1, retention: { keep: 3, mode: 'detach' } }],
      maintainLedger: false,
    });
    expect(await tableFingerprints(sql, ['app.events_*'])).toEqual(others);
    expect(summary.targets[0]).toMatchObject({ state: 'succeeded', counts: { detached: 2, created: 4 } });
    const parts = Object.keys(await partitionsOf(sql, 'app.events'));
    expect(parts).toContain('events_default');
    expect(parts).toHaveLength(6); // default + days -3..1
  });
});
