import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openSession } from '../../shared/db';
import { createTestDatabase, type TestDatabase } from '../support/db';
import { runRollup } from '../support/rollup';

/**
 * The Lambda runs in UTC; the CLI runs wherever its user is. This file runs under
 * TZ=America/Sao_Paulo (vitest.config.ts) and moves the process zone itself to repeat each case
 * under three zones: Node re-reads process.env.TZ when it is assigned.
 */
const ZONES = [
  { zone: 'America/Sao_Paulo', offsetMinutes: 180 },
  { zone: 'Asia/Seoul', offsetMinutes: -540 },
  { zone: 'UTC', offsetMinutes: 0 },
] as const;

let db: TestDatabase;
let sql: pg.Client;
const startZone = process.env.TZ;

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
  await sql.query(`SET TimeZone = 'UTC'`);
});

afterAll(() => {
  process.env.TZ = startZone;
});

function useZone(zone: string, offsetMinutes: number) {
  process.env.TZ = zone;
  // November: no zone here observes DST then, so the offset is fixed; a wrong one means the switch did not happen.
  expect(new Date(Date.UTC(2026, 10, 19)).getTimezoneOffset()).toBe(offsetMinutes);
}

/** A source whose event time is `timestamp` (no zone): its values are UTC wall-clock times. */
const READINGS_DDL = `
  DROP SCHEMA IF EXISTS app CASCADE; DROP SCHEMA IF EXISTS housekeeping CASCADE; CREATE SCHEMA app;
  CREATE TABLE app.readings (
    id bigserial PRIMARY KEY,
    taken_at timestamp NOT NULL,
    updated_at timestamp NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    tenant text NOT NULL,
    units numeric NOT NULL
  );
  CREATE TABLE app.readings_hourly (bucket timestamptz NOT NULL, tenant text NOT NULL, events bigint NOT NULL, units numeric NOT NULL, peak numeric,
    PRIMARY KEY (bucket, tenant));
`;

const readingsRollup = {
  name: 'readings_hourly',
  source: 'app.readings',
  timeColumn: 'taken_at',
  changedAtColumn: 'updated_at',
  target: 'app.readings_hourly',
  settleDelayMinutes: 0,
  spec: {
    groupBy: ['tenant'],
    measures: [
      { name: 'events', fn: 'count' as const },
      { name: 'units', fn: 'sum' as const, column: 'units' },
      { name: 'peak', fn: 'max' as const, column: 'units' },
    ],
  },
};

/** Target rows that differ from a fresh GROUP BY over the source, both directions; `timestamp` buckets read as UTC. */
async function readingsMismatches() {
  const { rows } = await sql.query(
    `WITH fresh AS (SELECT date_trunc('hour', taken_at) AT TIME ZONE 'UTC' AS bucket, tenant, count(*)::bigint AS events, sum(units) AS units, max(units) AS peak
                    FROM app.readings GROUP BY 1, 2),
          rolled AS (SELECT bucket, tenant, events, units, peak FROM app.readings_hourly)
     (SELECT 'missing' AS kind, * FROM (SELECT * FROM fresh EXCEPT SELECT * FROM rolled) a)
     UNION ALL
     (SELECT 'extra', * FROM (SELECT * FROM rolled EXCEPT SELECT * FROM fresh) b)`,
  );
  return rows;
}

describe.each(ZONES)('process zone $zone', ({ zone, offsetMinutes }) => {
  it('a timestamp (without time zone) source: 30 hourly rows give exactly 30 buckets with their sums, and the watermark is the UTC hour', async () => {
    useZone(zone, offsetMinutes);
    await sql.query(READINGS_DDL);
    // 30 rows, one in each of the 30 finished UTC hours before the current one; units 1..30.
    await sql.query(`INSERT INTO app.readings (taken_at, tenant, units)
      SELECT date_trunc('hour', now() AT TIME ZONE 'UTC') - i * interval '1 hour' + interval '10 minutes', 'acme', i FROM generate_series(1, 30) AS i`);
    const summary = await runRollup(db.url, { targets: [readingsRollup] });
    expect(summary.targets[0]).toMatchObject({ state: 'succeeded' });
    const { rows } = await sql.query(
      `SELECT count(*)::int AS buckets, sum(units)::int AS units, sum(events)::int AS events FROM app.readings_hourly`,
    );
    expect(rows[0]).toEqual({ buckets: 30, units: 465, events: 30 });
    expect(await readingsMismatches()).toEqual([]);
    const state = await sql.query(`SELECT (watermark = date_trunc('hour', now())) AS at_hour FROM housekeeping.rollup_state`);
    expect(state.rows).toEqual([{ at_hour: true }]);

    // An edit of an old row (updated_at in UTC wall-clock time, as the README asks) is found through the changed-at column.
    await sql.query(`UPDATE app.readings SET units = 100, updated_at = now() AT TIME ZONE 'UTC' WHERE units = 25`);
    expect((await runRollup(db.url, { targets: [readingsRollup] })).targets[0]).toMatchObject({ state: 'succeeded' });
    const after = await sql.query(`SELECT count(*)::int AS buckets, sum(units)::int AS units FROM app.readings_hourly`);
    expect(after.rows[0]).toEqual({ buckets: 30, units: 465 - 25 + 100 });
    expect(await readingsMismatches()).toEqual([]);
  });

  it('every value crossing the driver on a job session: timestamp and date results read as UTC, Dates bound as UTC', async () => {
    useZone(zone, offsetMinutes);
    const session = await openSession({ kind: 'url', url: db.url }, { job: 'rollup', statementTimeoutMs: 10_000, lockTimeoutMs: 1_000 });
    try {
      const read = await session.query(
        `SELECT '2026-11-19 00:00:00'::timestamp AS ts, '2026-11-19 23:59:59.123456'::timestamp AS late, '2026-11-19'::date AS d,
                ARRAY['2026-11-19 01:00'::timestamp] AS tsa, ARRAY['2026-11-19'::date] AS da, '2026-11-19 00:00:00+00'::timestamptz AS tz,
                'infinity'::timestamp AS inf`,
      );
      expect(read.rows[0].ts.getTime()).toBe(Date.UTC(2026, 10, 19));
      expect(read.rows[0].late.getTime()).toBe(Date.UTC(2026, 10, 19, 23, 59, 59, 123));
      expect(read.rows[0].d.getTime()).toBe(Date.UTC(2026, 10, 19));
      expect(read.rows[0].tsa[0].getTime()).toBe(Date.UTC(2026, 10, 19, 1));
      expect(read.rows[0].da[0].getTime()).toBe(Date.UTC(2026, 10, 19));
      expect(read.rows[0].tz.getTime()).toBe(Date.UTC(2026, 10, 19));
      expect(read.rows[0].inf).toBe(Number.POSITIVE_INFINITY);

      const midnight = new Date(Date.UTC(2026, 10, 19));
      const bound = await session.query(
        `SELECT $1::timestamp::text AS ts, $1::date::text AS d, $1::timestamptz = '2026-11-19 00:00:00+00' AS same, $2::timestamp[]::text AS tsa`,
        [midnight, [midnight]],
      );
      expect(bound.rows[0]).toEqual({ ts: '2026-11-19 00:00:00', d: '2026-11-19', same: true, tsa: '{"2026-11-19 00:00:00"}' });
      const viaConfig = await session.query({ text: `SELECT $1::timestamp::text AS ts`, values: [midnight] });
      expect(viaConfig.rows[0].ts).toBe('2026-11-19 00:00:00');
      // A date read back and bound again is the same date (a local-midnight Date would shift a day east of UTC).
      const roundTrip = await session.query(`SELECT $1::date::text AS d`, [read.rows[0].d]);
      expect(roundTrip.rows[0].d).toBe('2026-11-19');
    } finally {
      await session.end();
    }
  });
});
