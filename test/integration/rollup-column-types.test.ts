import type pg from 'pg';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { databaseNow } from '../../shared/postgres';
import { createTestDatabase, type TestDatabase } from '../support/db';
import { rollupMismatches, runRollup, runRollupLater, USAGE_DDL, usageRollup } from '../support/rollup';

/**
 * Column types users really give a rollup: time columns with a precision (timestamptz(3),
 * timestamptz(0)), and bucket columns of a type that cannot hold a bucket start, where the
 * window's DELETE would miss the rows its INSERT wrote and every recompute would add them again.
 */

let db: TestDatabase;
let sql: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
});
beforeEach(async () => {
  await sql.query(USAGE_DDL);
});

const SIXTY_ROWS = `INSERT INTO app.usage (occurred_at, tenant, units)
  SELECT date_trunc('hour', now()) - interval '10 hours' + i * interval '10 minutes', 'acme', 1 FROM generate_series(0, 59) i`;

describe('rollup: bucket column types', () => {
  it.each([
    ['date', 'hour'],
    ['text', 'hour'],
    ['text', 'day'],
    ['bigint', 'hour'],
  ] as const)(
    'refuses a %s bucket column for %s buckets before writing (recomputes added the rows again: 96 events counted for 60)',
    async (type, bucket) => {
      await sql.query(`DROP TABLE app.usage_hourly;
      CREATE TABLE app.usage_hourly (bucket ${type} NOT NULL, tenant text NOT NULL, events bigint NOT NULL, units numeric NOT NULL, peak numeric)`);
      await sql.query(SIXTY_ROWS);
      for (let run = 0; run < 3; run++) {
        const summary = await runRollup(db.url, { targets: [{ ...usageRollup, bucket, lookbackBuckets: 3 }] });
        expect(summary.targets[0]!.state).toBe('failed');
        expect(summary.targets[0]!.detail).toMatch(
          new RegExp(`spec\\.bucketColumn: app\\.usage_hourly\\.bucket is ${type}; .*timestamptz or timestamp`),
        );
      }
      expect((await sql.query('SELECT count(*)::int AS n FROM app.usage_hourly')).rows[0].n).toBe(0);
    },
  );

  it.each(['timestamptz(0)', 'timestamp(3)', 'date'])('accepts a %s bucket column for day buckets, exactly', async (type) => {
    await sql.query(`DROP TABLE app.usage_hourly;
      CREATE TABLE app.usage_hourly (bucket ${type} NOT NULL, tenant text NOT NULL, events bigint NOT NULL, units numeric NOT NULL, peak numeric,
        PRIMARY KEY (bucket, tenant))`);
    await sql.query(SIXTY_ROWS);
    await sql.query(
      `INSERT INTO app.usage (occurred_at, tenant, units) SELECT now() - interval '3 days' - i * interval '5 hours', 'acme', 2 FROM generate_series(0, 20) i`,
    );
    for (let run = 0; run < 3; run++) {
      const summary = await runRollup(db.url, { targets: [{ ...usageRollup, bucket: 'day', lookbackBuckets: 2 }] });
      expect(summary.targets[0]!.state).toBe('succeeded');
    }
    const { rows } = await sql.query(`SELECT
        (SELECT sum(events)::int FROM app.usage_hourly) AS rolled,
        (SELECT count(*)::int FROM app.usage WHERE occurred_at < (SELECT watermark FROM housekeeping.rollup_state)) AS source`);
    expect(rows[0].rolled).toBe(rows[0].source);
  });
});

describe('rollup: time columns with a precision', () => {
  it('accepts a timestamptz(3) event-time column (it was refused as not a timestamp)', async () => {
    await sql.query(`ALTER TABLE app.usage ALTER COLUMN occurred_at TYPE timestamptz(3)`);
    await sql.query(SIXTY_ROWS);
    const summary = await runRollup(db.url, { targets: [{ ...usageRollup, lookbackBuckets: 3 }] });
    expect(summary.targets[0]!.state).toBe('succeeded');
    expect(await rollupMismatches(sql)).toEqual([]);
  });

  it('a timestamptz(0) changed-at column: an edit stamped after the run, rounded down below its clock, is still caught', async () => {
    await sql.query(`ALTER TABLE app.usage ALTER COLUMN updated_at TYPE timestamptz(0)`);
    await sql.query(SIXTY_ROWS);
    const policy = { ...usageRollup, lookbackBuckets: 1 };
    // The run's clock: 300 ms into the next whole second.
    const real = (await databaseNow(sql)).getTime();
    const runAt = Math.floor(real / 1000) * 1000 + 1300;
    const first = await runRollupLater(db.url, { targets: [policy] }, runAt - real);
    expect(first.targets[0]!.state).toBe('succeeded');
    // A transaction that began 100 ms after the run's clock stamps now(), which the column rounds
    // to the whole second before it: an edit of a row nine hours old.
    await sql.query(
      `UPDATE app.usage SET units = 100, updated_at = $1::timestamptz
       WHERE id = (SELECT min(id) FROM app.usage WHERE occurred_at < now() - interval '9 hours')`,
      [new Date(runAt + 100).toISOString()],
    );
    expect((await sql.query(`SELECT max(updated_at) < $1::timestamptz AS below FROM app.usage`, [new Date(runAt).toISOString()])).rows[0].below).toBe(
      true,
    );
    await runRollupLater(db.url, { targets: [policy] }, runAt + 1000 - real);
    expect(await rollupMismatches(sql)).toEqual([]);
  });
});

describe('rollup: infinite event times', () => {
  it("starts at the first finite event when the source holds a '-infinity' row (the first run failed with 'first?.getTime is not a function')", async () => {
    await sql.query(SIXTY_ROWS);
    await sql.query(`INSERT INTO app.usage (occurred_at, tenant, units) VALUES ('-infinity', 'acme', 5), ('infinity', 'acme', 7)`);
    const summary = await runRollup(db.url, { targets: [usageRollup] });
    expect(summary.targets[0]).toMatchObject({ state: 'succeeded', counts: { sourceRowsRead: 60 } });
    const { rows } = await sql.query(`SELECT sum(events)::int AS n FROM app.usage_hourly`);
    expect(rows[0].n).toBe(60);
  });
});
