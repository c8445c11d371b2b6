import type pg from 'pg';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { sleep } from '../../shared/postgres';
import type { JobSummary } from '../../shared/run-job';
import { createTestDatabase, type TestDatabase } from '../support/db';
import type { TestRunOptions } from '../support/jobs';
import { capturedLogger, rollupMismatches, runRollup, USAGE_DDL, usageRollup } from '../support/rollup';

/** housekeeping.rollup_state as operators really touch it: resets from other sessions and zones, during runs, and bucket changes. */
let db: TestDatabase;
let sql: pg.Client;
const HOUR = 3_600_000;

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
});

beforeEach(async () => {
  await sql.query(USAGE_DDL);
  await sql.query(`INSERT INTO app.usage (occurred_at, tenant, units)
    SELECT now() - interval '10 days' + i * interval '37 minutes', (ARRAY['acme','globex'])[1 + i % 2], i % 23 FROM generate_series(0, 389) AS i`);
});

afterEach(() => {
  vi.restoreAllMocks();
});

const state = async (name = 'usage_hourly') =>
  (
    await sql.query(
      `SELECT watermark, watermark::text AS watermark_text, changes_seen_until::text AS changes_text FROM housekeeping.rollup_state WHERE name = $1`,
      [name],
    )
  ).rows[0] as { watermark: Date; watermark_text: string; changes_text: string | null };

const duplicates = async (target: string) =>
  (await sql.query(`SELECT bucket, tenant, count(*)::int AS n FROM ${target} GROUP BY 1, 2 HAVING count(*) > 1`)).rows;

/**
 * Runs the rollup while another session holds its target table locked, so the run waits inside
 * its first slice; `meanwhile` runs then (an operator's UPDATE), the lock is released and the run
 * finishes. The run is recognised waiting in pg_stat_activity: no sleeps decide the outcome.
 */
async function runWhileBlocked(
  event: Parameters<typeof runRollup>[1],
  meanwhile: () => Promise<void>,
  options: TestRunOptions = {},
): Promise<JobSummary> {
  const locker = await db.connect('locker');
  await locker.query('BEGIN');
  await locker.query('LOCK TABLE app.usage_hourly IN ACCESS EXCLUSIVE MODE');
  const running = runRollup(db.url, { lockTimeoutMs: 60_000, ...event }, options);
  for (;;) {
    const { rows } = await sql.query(
      `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pg-housekeeper/rollup' AND wait_event_type = 'Lock'`,
    );
    if (rows[0].n === 1) break;
    await sleep(20);
  }
  await meanwhile();
  await locker.query('COMMIT');
  await locker.end();
  return running;
}

describe('watermark alignment', () => {
  it('a reset typed as a date from a session in Asia/Seoul (15:00Z the day before) is floored to the UTC day and logged: no primary-key failure, no duplicate partial buckets', async () => {
    await sql.query(`CREATE TABLE app.usage_daily (LIKE app.usage_hourly INCLUDING ALL);
      CREATE TABLE app.usage_daily_nopk (LIKE app.usage_hourly INCLUDING DEFAULTS)`);
    const daily = { ...usageRollup, name: 'usage_daily', bucket: 'day' as const, target: 'app.usage_daily' };
    const nopk = { ...daily, name: 'usage_daily_nopk', target: 'app.usage_daily_nopk' };
    expect((await runRollup(db.url, { targets: [daily, nopk] })).failed).toEqual([]);

    // The README's reset, from a psql whose TimeZone is Asia/Seoul.
    const operator = await db.connect('operator');
    await operator.query(`SET TimeZone = 'Asia/Seoul'`);
    const day = (await operator.query(`SELECT to_char(now() AT TIME ZONE 'UTC' - interval '4 days', 'YYYY-MM-DD') AS d`)).rows[0].d as string;
    await operator.query(`UPDATE housekeeping.rollup_state SET watermark = $1`, [day]);
    const stored = await state('usage_daily');
    expect(stored.watermark.getTime()).toBe(Date.parse(`${day}T00:00:00Z`) - 9 * HOUR);

    const { logger, lines } = capturedLogger();
    const summary = await runRollup(db.url, { targets: [daily, nopk] }, { logger });
    expect(summary.failed).toEqual([]);
    expect(await rollupMismatches(sql, 'usage_daily', 'day', 'app.usage_daily')).toEqual([]);
    expect(await rollupMismatches(sql, 'usage_daily_nopk', 'day', 'app.usage_daily_nopk')).toEqual([]);
    expect(await duplicates('app.usage_daily_nopk')).toEqual([]);
    const floored = lines().filter((line) => line.message === 'watermark not on a bucket boundary: recomputing from the start of its bucket');
    expect(floored).toHaveLength(2);
    expect(floored[0]).toMatchObject({ level: 'WARN', bucket: 'day', flooredTo: new Date(Date.parse(`${day}T00:00:00Z`) - 24 * HOUR).toISOString() });
    await operator.end();
  });

  it('a bucket change from hour to day with the watermark mid-day writes whole days, never a partial duplicate', async () => {
    await sql.query(`CREATE TABLE app.usage_mixed (LIKE app.usage_hourly INCLUDING DEFAULTS)`);
    const hourly = { ...usageRollup, target: 'app.usage_mixed' };
    await runRollup(db.url, { targets: [hourly] });
    // An hourly watermark at 15:00 two days ago (a boundary for hours, not for days).
    await sql.query(`UPDATE housekeeping.rollup_state SET watermark = date_trunc('day', now()) - interval '2 days' + interval '15 hours'`);
    const summary = await runRollup(db.url, { targets: [{ ...hourly, bucket: 'day' }] });
    expect(summary.failed).toEqual([]);
    const { rows } = await sql.query(
      `WITH wm AS (SELECT watermark FROM housekeeping.rollup_state), lo AS (SELECT date_trunc('day', now()) - interval '4 days' AS t),
       fresh AS (SELECT date_trunc('day', occurred_at) AS bucket, tenant, count(*)::bigint AS events, sum(units) AS units, max(units) AS peak FROM app.usage
                 WHERE occurred_at >= (SELECT t FROM lo) AND occurred_at < (SELECT watermark FROM wm) GROUP BY 1, 2),
       rolled AS (SELECT bucket, tenant, events, units, peak FROM app.usage_mixed WHERE bucket >= (SELECT t FROM lo) AND bucket < (SELECT watermark FROM wm))
       (SELECT 'missing' AS kind, * FROM (SELECT * FROM fresh EXCEPT ALL SELECT * FROM rolled) a)
       UNION ALL (SELECT 'extra', * FROM (SELECT * FROM rolled EXCEPT ALL SELECT * FROM fresh) b)`,
    );
    // Days from the floored watermark's day minus the 2-day lookback up to the new watermark: whole days, once each.
    expect(rows).toEqual([]);
    expect((await state()).watermark_text).toMatch(/ 00:00:00\+00$/);
  });
});

describe('watermark compare-and-set', () => {
  it('an operator’s reset made while a run is working is honoured in that run, never overwritten', async () => {
    await runRollup(db.url, { targets: [usageRollup] });
    const upper = (await state()).watermark.getTime();
    const reset = new Date(upper - 30 * HOUR);
    // Target rows the rebuild must repair, and three hours of work left for the run to advance through.
    await sql.query(`UPDATE app.usage_hourly SET units = units + 1000 WHERE bucket >= $1 AND bucket < $2`, [reset, new Date(upper - 10 * HOUR)]);
    await sql.query(`UPDATE housekeeping.rollup_state SET watermark = watermark - interval '3 hours'`);

    const { logger, lines } = capturedLogger();
    const summary = await runWhileBlocked(
      { targets: [{ ...usageRollup, sliceBuckets: 1 }] },
      async () => {
        await sql.query(`UPDATE housekeeping.rollup_state SET watermark = $1 WHERE name = 'usage_hourly'`, [reset]);
      },
      { logger },
    );
    expect(summary.targets[0]).toMatchObject({ state: 'succeeded' });
    expect(await rollupMismatches(sql)).toEqual([]);
    expect((await state()).watermark.getTime()).toBe(upper);
    expect(lines().find((line) => line.message === 'watermark moved by another session during this run; continuing from it')).toMatchObject({
      level: 'WARN',
      expected: new Date(upper - 3 * HOUR).toISOString(),
      found: reset.toISOString(),
    });
  });

  it('an operator’s reset of changes_seen_until made during a run is left for the next run, not overwritten', async () => {
    await runRollup(db.url, { targets: [usageRollup] });
    let requested = '';
    await runWhileBlocked({ targets: [usageRollup] }, async () => {
      const { rows } = await sql.query(
        `UPDATE housekeeping.rollup_state SET changes_seen_until = now() - interval '9 days' WHERE name = 'usage_hourly' RETURNING changes_seen_until::text AS t`,
      );
      requested = rows[0].t;
    });
    expect((await state()).changes_text).toBe(requested);
  });

  it('a watermark that keeps moving under the run stops the target after three foreign moves, without overwriting it', async () => {
    await runRollup(db.url, { targets: [usageRollup] });
    // Something else writing the state: after each of the run's moves it puts the watermark an hour back.
    await sql.query(`
      CREATE FUNCTION app.fight() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        UPDATE housekeeping.rollup_state SET watermark = NEW.watermark - interval '1 hour' WHERE name = NEW.name;
        RETURN NULL;
      END $$;
      CREATE TRIGGER fight AFTER UPDATE OF watermark ON housekeeping.rollup_state FOR EACH ROW WHEN (pg_trigger_depth() = 0) EXECUTE FUNCTION app.fight();
      UPDATE housekeeping.rollup_state SET watermark = watermark - interval '12 hours';`);
    const summary = await runRollup(db.url, { targets: [{ ...usageRollup, sliceBuckets: 1, lookbackBuckets: 0 }] });
    expect(summary.targets[0]!.state).toBe('failed');
    expect(summary.targets[0]!.detail).toMatch(
      /housekeeping\.rollup_state\(usage_hourly\): the watermark was moved by another session 4 times during this run; stopped without overwriting it/,
    );
    expect(await rollupMismatches(sql)).toEqual([]);
    await sql.query(`DROP TRIGGER fight ON housekeeping.rollup_state`);
  });
});
