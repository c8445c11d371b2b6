import type pg from 'pg';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/db';
import { tableFingerprints } from '../support/fingerprint';
import { runPartition } from '../support/jobs';

/**
 * Runs under TZ=America/Sao_Paulo (see vitest.config.ts), a process zone that is neither UTC nor
 * the policies' zones. A JS Date bound to a timestamp/date comparison, or a timestamp read back
 * as local time, would shift ranges by the process's offset; rows placed half an hour either side
 * of every boundary would then land in, or be counted for, the wrong partition. Expected values
 * are computed by Postgres, never by parsing timestamps in this process.
 */

let db: TestDatabase;
let sql: pg.Client;

beforeAll(async () => {
  expect(Intl.DateTimeFormat().resolvedOptions().timeZone).toBe('America/Sao_Paulo');
  db = await createTestDatabase();
  sql = await db.connect();
});

beforeEach(async () => {
  await sql.query(`DROP SCHEMA IF EXISTS app CASCADE; DROP SCHEMA IF EXISTS housekeeping CASCADE; CREATE SCHEMA app;
    CREATE TABLE app.bystander (id int PRIMARY KEY, v text);
    INSERT INTO app.bystander SELECT i, md5(i::text) FROM generate_series(1, 20) i;`);
});

/** Rows outside DEFAULT whose partition is not the one named after their own date. */
async function misplaced(table: string, column: string, format: string): Promise<unknown[]> {
  const { rows } = await sql.query(
    `SELECT ${column}::text AS at, tableoid::regclass::text AS part FROM app.${table}
     WHERE tableoid <> 'app.${table}_default'::regclass AND tableoid::regclass::text <> 'app.${table}_p' || to_char(${column}, '${format}')`,
  );
  return rows;
}

describe('partition job in a process zone that is neither UTC nor the policy zone', () => {
  it('timestamp key: Tokyo wall-clock days, rows in DEFAULT moved exactly, old days dropped', async () => {
    await sql.query(`CREATE TABLE app.readings (id int NOT NULL, taken_at timestamp NOT NULL, v text) PARTITION BY RANGE (taken_at);
      CREATE TABLE app.readings_default PARTITION OF app.readings DEFAULT;
      CREATE TABLE app.readings_old PARTITION OF app.readings
        FOR VALUES FROM (date_trunc('day', now() AT TIME ZONE 'Asia/Tokyo') - interval '5 days') TO (date_trunc('day', now() AT TIME ZONE 'Asia/Tokyo') - interval '4 days');
      -- Half an hour after and before every Tokyo midnight from yesterday to four days ahead.
      INSERT INTO app.readings
      SELECT k * 10 + j, date_trunc('day', now() AT TIME ZONE 'Asia/Tokyo') + k * interval '1 day' + CASE j WHEN 0 THEN interval '30 minutes' ELSE interval '-30 minutes' END, 'x'
      FROM generate_series(-1, 4) k, generate_series(0, 1) j;`);
    const event = {
      targets: [{ table: 'app.readings', interval: 'day' as const, premake: 2, timeZone: 'Asia/Tokyo', retention: { keep: 2 } }],
      maintainLedger: false,
    };

    // Planned: Tokyo days -2 .. +2. In DEFAULT for those: the 00:30 rows of days -1..2 and the 23:30 rows of days -2..2.
    const dry = await runPartition(db.url, { ...event, dryRun: true });
    expect(dry.targets[0]!.counts).toMatchObject({ wouldCreate: 5, wouldDrop: 1, wouldMoveFromDefault: 9, partitionsAhead: 2 });

    const before = await tableFingerprints(sql, ['app.readings*']);
    const summary = await runPartition(db.url, event);
    expect(summary.targets[0]).toMatchObject({
      state: 'succeeded',
      counts: { created: 5, dropped: 1, rowsMovedFromDefault: 9, rowsLeftInDefault: 3, partitionsAhead: 2 },
    });
    expect(await misplaced('readings', 'taken_at', 'YYYY_MM_DD')).toEqual([]);
    const bounds = await sql.query(
      `SELECT pg_get_expr(relpartbound, oid) AS bound FROM pg_class
       WHERE oid = ('app.readings_p' || to_char(now() AT TIME ZONE 'Asia/Tokyo', 'YYYY_MM_DD'))::regclass`,
    );
    const { rows: expected } = await sql.query(
      `SELECT format('FOR VALUES FROM (%L) TO (%L)', date_trunc('day', now() AT TIME ZONE 'Asia/Tokyo'), date_trunc('day', now() AT TIME ZONE 'Asia/Tokyo') + interval '1 day') AS bound`,
    );
    expect(bounds.rows[0].bound).toBe(expected[0].bound);
    expect(await tableFingerprints(sql, ['app.readings*'])).toEqual(before);
  });

  it('date key: Auckland months, rows either side of each month boundary moved exactly', async () => {
    await sql.query(`CREATE TABLE app.bills (id int NOT NULL, due_on date NOT NULL) PARTITION BY RANGE (due_on);
      CREATE TABLE app.bills_default PARTITION OF app.bills DEFAULT;
      -- The last day of the month before and the first day of each month, from last month to three ahead.
      INSERT INTO app.bills
      SELECT k * 10 + j, (date_trunc('month', now() AT TIME ZONE 'Pacific/Auckland') + k * interval '1 month')::date - j
      FROM generate_series(-1, 3) k, generate_series(0, 1) j;`);
    const before = await tableFingerprints(sql, ['app.bills*']);
    const summary = await runPartition(db.url, {
      targets: [{ table: 'app.bills', interval: 'month', premake: 1, timeZone: 'Pacific/Auckland' }],
      maintainLedger: false,
    });
    // This month and next: the first of this month, its last day, the first of next month and its last day.
    expect(summary.targets[0]).toMatchObject({
      state: 'succeeded',
      counts: { created: 2, rowsMovedFromDefault: 4, rowsLeftInDefault: 6, partitionsAhead: 1 },
    });
    expect(await misplaced('bills', 'due_on', 'YYYY_MM')).toEqual([]);
    const { rows } =
      await sql.query(`SELECT count(*)::int AS n FROM app.bills_default WHERE due_on >= date_trunc('month', now() AT TIME ZONE 'Pacific/Auckland')
      AND due_on < date_trunc('month', now() AT TIME ZONE 'Pacific/Auckland') + interval '2 months'`);
    expect(rows[0].n).toBe(0);
    expect(await tableFingerprints(sql, ['app.bills*'])).toEqual(before);
  });

  it('timestamptz key: UTC daily partitions adopted by a Berlin policy leave no hole an insert could fall into', async () => {
    await sql.query(
      `CREATE TABLE app.events (id bigint GENERATED ALWAYS AS IDENTITY, created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at)`,
    );
    for (let offset = -1; offset <= 3; offset++) {
      await sql.query(`DO $$ DECLARE d timestamptz := date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' + ${offset} * interval '1 day';
        BEGIN EXECUTE format('CREATE TABLE app.%I PARTITION OF app.events FOR VALUES FROM (%L) TO (%L)', 'events_utc_' || ${offset + 1}, d, d + interval '1 day'); END $$`);
    }
    const before = await tableFingerprints(sql, ['app.events*']);
    const event = { targets: [{ table: 'app.events', interval: 'day' as const, premake: 5, timeZone: 'Europe/Berlin' }], maintainLedger: false };
    const summary = await runPartition(db.url, event);
    expect(summary.targets[0]).toMatchObject({ state: 'succeeded', counts: { partitionsAhead: 5 } });
    expect(await tableFingerprints(sql, ['app.events*'])).toEqual(before);
    // No DEFAULT: an insert into a hole would fail. Every 10 minutes from now to the end of the sixth Berlin day ahead.
    await sql.query(`INSERT INTO app.events (created_at)
      SELECT generate_series(now(), (date_trunc('day', now() AT TIME ZONE 'Europe/Berlin') + interval '6 days') AT TIME ZONE 'Europe/Berlin' - interval '1 microsecond', interval '10 minutes')`);
    const fills = await sql.query(`SELECT relname FROM pg_class WHERE relname ~ '^events_p[0-9]{8}_[0-9]{6}$' AND relispartition`);
    expect(fills.rows.length).toBeGreaterThan(0);
    const again = await runPartition(db.url, event);
    expect(again.targets[0]).toMatchObject({ state: 'succeeded', counts: { created: 0, partitionsAhead: 5 } });
  });
});
