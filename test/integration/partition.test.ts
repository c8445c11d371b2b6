import type { DateTime } from 'luxon';
import type pg from 'pg';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { PartitionEventInput } from '../../functions/partition/policy';
import { ConfigError } from '../../shared/errors';
import { partitionsOf, relationsIn } from '../support/catalog';
import { createTestDatabase, databaseToday, type TestDatabase } from '../support/db';
import { tableFingerprints } from '../support/fingerprint';
import { runPartition } from '../support/jobs';

let db: TestDatabase;
let sql: pg.Client;
let today: DateTime; // the database's current UTC day

const dayName = (table: string, offsetDays: number) => `${table}_p${today.plus({ days: offsetDays }).toFormat('yyyy_MM_dd')}`;
const dayIso = (offsetDays: number) => today.plus({ days: offsetDays }).toISO();

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
  today = await databaseToday(sql);
});

beforeEach(async () => {
  await sql.query(`DROP SCHEMA IF EXISTS app CASCADE; DROP SCHEMA IF EXISTS housekeeping CASCADE; CREATE SCHEMA app;
    CREATE TABLE app.bystander (id int PRIMARY KEY, v text);
    INSERT INTO app.bystander SELECT i, md5(i::text) FROM generate_series(1, 20) i;`);
});

/** Tables that are (or were, before a retirement) partitions of app.events. */
async function eventsPartitions(): Promise<string[]> {
  const { rows } = await sql.query<{ name: string }>(
    `SELECT 'app.' || c.relname AS name FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass('app.events')`,
  );
  return rows.map((r) => r.name);
}

/** Runs the job and proves that no table outside app.events's own partitions changed, row for row. */
async function runChecked(event: PartitionEventInput) {
  const own = await eventsPartitions();
  const others = await tableFingerprints(sql, own);
  const summary = await runPartition(db.url, event);
  const ownAfter = [...own, ...(await eventsPartitions())];
  const after = await tableFingerprints(sql, ownAfter);
  for (const name of ownAfter) delete others[name];
  expect(after).toEqual(others);
  return summary;
}

/** app.events, daily, with a partition for each offset (days from today). */
async function createEvents(offsets: number[], options: { withDefault?: boolean } = {}) {
  await sql.query(`CREATE TABLE app.events (
    id bigint GENERATED ALWAYS AS IDENTITY,
    created_at timestamptz NOT NULL,
    payload text NOT NULL DEFAULT 'x',
    payload_length int GENERATED ALWAYS AS (length(payload)) STORED,
    CHECK (payload <> '')
  ) PARTITION BY RANGE (created_at)`);
  await sql.query('CREATE INDEX ON app.events (created_at)');
  if (options.withDefault) await sql.query('CREATE TABLE app.events_default PARTITION OF app.events DEFAULT');
  for (const offset of offsets) {
    await sql.query(
      `CREATE TABLE app.${dayName('events', offset)} PARTITION OF app.events FOR VALUES FROM ('${dayIso(offset)}') TO ('${dayIso(offset + 1)}')`,
    );
  }
}

describe('partition job against Postgres', () => {
  it('creates, fills gaps and drops as planned; a second run changes nothing', async () => {
    await createEvents([-10, -9, -8, -3, 0]);
    const summary = await runChecked({
      targets: [{ table: 'app.events', interval: 'day', premake: 3, retention: { keep: 5 } }],
      maintainLedger: false,
    });
    expect(summary.failed).toEqual([]);
    expect(summary.targets[0]).toMatchObject({ state: 'succeeded', counts: { created: 7, dropped: 3, partitionsAhead: 3 } });
    const expected = [-5, -4, -3, -2, -1, 0, 1, 2, 3].map((d) => dayName('events', d)).sort();
    expect(Object.keys(await partitionsOf(sql, 'app.events'))).toEqual(expected);
    expect((await partitionsOf(sql, 'app.events'))[dayName('events', 1)]).toBe(
      `FOR VALUES FROM ('${today.plus({ days: 1 }).toFormat('yyyy-MM-dd')} 00:00:00+00') TO ('${today.plus({ days: 2 }).toFormat('yyyy-MM-dd')} 00:00:00+00')`,
    );

    const before = await relationsIn(sql, 'app');
    const again = await runChecked({
      targets: [{ table: 'app.events', interval: 'day', premake: 3, retention: { keep: 5 } }],
      maintainLedger: false,
    });
    expect(again.targets[0]).toMatchObject({ state: 'succeeded', counts: { created: 0, dropped: 0, detached: 0 } });
    expect(await relationsIn(sql, 'app')).toEqual(before);
  });

  it('new partitions keep identity, generated columns, checks and indexes working', async () => {
    await createEvents([]);
    await runChecked({ targets: [{ table: 'app.events', interval: 'day', premake: 1 }], maintainLedger: false });
    const { rows } = await sql.query(
      `INSERT INTO app.events (created_at, payload) VALUES (now(), 'hello'), (now() + interval '1 day', 'hi') RETURNING id, payload_length, tableoid::regclass::text AS part`,
    );
    expect(rows.map((r) => [Number(r.id), r.payload_length, r.part])).toEqual([
      [1, 5, `app.${dayName('events', 0)}`],
      [2, 2, `app.${dayName('events', 1)}`],
    ]);
    await expect(sql.query(`INSERT INTO app.events (created_at, payload) VALUES (now(), '')`)).rejects.toThrow(/check constraint/);
    const indexes = await sql.query(`SELECT count(*)::int AS n FROM pg_indexes WHERE schemaname = 'app' AND tablename = $1`, [dayName('events', 0)]);
    expect(indexes.rows[0].n).toBe(1);
  });

  it('detaches instead of dropping in detach mode, leaving the data in a standalone table', async () => {
    await createEvents([-4, -3, 0]);
    await sql.query(`INSERT INTO app.events (created_at) SELECT $1::timestamptz + i * interval '1 minute' FROM generate_series(1, 7) i`, [
      dayIso(-4),
    ]);
    const summary = await runChecked({
      targets: [{ table: 'app.events', interval: 'day', premake: 1, retention: { keep: 2, mode: 'detach' } }],
      maintainLedger: false,
    });
    expect(summary.targets[0]!.counts).toMatchObject({ detached: 2, dropped: 0 });
    const parts = Object.keys(await partitionsOf(sql, 'app.events'));
    expect(parts).not.toContain(dayName('events', -4));
    const detached = await sql.query(`SELECT count(*)::int AS n FROM app.${dayName('events', -4)}`);
    expect(detached.rows[0].n).toBe(7);
  });

  it('adopts partitions made by hand, whatever their names', async () => {
    await createEvents([]);
    await sql.query(`CREATE TABLE app.handmade_today PARTITION OF app.events FOR VALUES FROM ('${dayIso(0)}') TO ('${dayIso(1)}')`);
    await sql.query(`CREATE TABLE app.legacy_two_days PARTITION OF app.events FOR VALUES FROM ('${dayIso(1)}') TO ('${dayIso(3)}')`);
    const summary = await runChecked({ targets: [{ table: 'app.events', interval: 'day', premake: 3 }], maintainLedger: false });
    expect(summary.targets[0]!.counts.created).toBe(1);
    expect(Object.keys(await partitionsOf(sql, 'app.events')).sort()).toEqual(
      [`events_p${today.plus({ days: 3 }).toFormat('yyyy_MM_dd')}`, 'handmade_today', 'legacy_two_days'].sort(),
    );
  });

  it('moves rows parked in DEFAULT into the new partitions and loses none', async () => {
    await createEvents([-1], { withDefault: true });
    await sql.query(
      `INSERT INTO app.events (created_at, payload)
       SELECT $1::timestamptz + (i * interval '37 minutes'), 'row' || i FROM generate_series(0, 299) AS i`,
      [dayIso(-1)],
    ); // spans about 7.7 days from yesterday: some rows beyond premake stay in DEFAULT
    const before = await sql.query(`SELECT id, created_at, payload FROM app.events ORDER BY id`);
    const summary = await runChecked({ targets: [{ table: 'app.events', interval: 'day', premake: 3 }], maintainLedger: false });
    const horizon = today.plus({ days: 4 });
    const expectedLeft = before.rows.filter((r) => r.created_at >= horizon.toJSDate()).length;
    const inYesterday = before.rows.filter((r) => r.created_at < today.toJSDate()).length;
    expect(summary.targets[0]!.detail).toBeUndefined();
    expect(summary.targets[0]).toMatchObject({
      state: 'succeeded',
      counts: { created: 4, rowsMovedFromDefault: 300 - expectedLeft - inYesterday, rowsLeftInDefault: expectedLeft },
    });
    const after = await sql.query(`SELECT id, created_at, payload FROM app.events ORDER BY id`);
    expect(after.rows).toEqual(before.rows);
    const misplaced = await sql.query(`SELECT count(*)::int AS n FROM app.events_default WHERE created_at >= $1 AND created_at < $2`, [
      dayIso(-1),
      horizon.toISO(),
    ]);
    expect(misplaced.rows[0].n).toBe(0);
  });

  it('dry run prints the exact SQL and changes nothing, not even the ledger schema', async () => {
    await createEvents([-6, 0], { withDefault: true });
    await sql.query(`INSERT INTO app.events (created_at) VALUES ($1)`, [dayIso(2)]);
    const before = await relationsIn(sql, 'app');
    const summary = await runChecked({
      targets: [{ table: 'app.events', interval: 'day', premake: 2, retention: { keep: 3 } }],
      dryRun: true,
    });
    expect(summary.targets[0]).toMatchObject({ state: 'succeeded', counts: { wouldCreate: 5, wouldDrop: 1, wouldMoveFromDefault: 1 } });
    const sqlText = summary.targets[0]!.notes.join('\n');
    expect(sqlText).toContain(`CREATE TABLE "app"."${dayName('events', 1)}" (LIKE "app"."events"`);
    expect(sqlText).toContain(
      `ALTER TABLE "app"."events" ATTACH PARTITION "app"."${dayName('events', 2)}" FOR VALUES FROM ('${today.plus({ days: 2 }).toFormat('yyyy-MM-dd')} 00:00:00+00:00')`,
    );
    expect(sqlText).toContain(`DROP TABLE "app"."${dayName('events', -6)}"`);
    expect(await relationsIn(sql, 'app')).toEqual(before);
    const ledger = await sql.query(`SELECT to_regnamespace('housekeeping') AS ns`);
    expect(ledger.rows[0].ns).toBeNull();
  });

  it('records started and succeeded in the ledger, and keeps the ledger itself partitioned', async () => {
    await createEvents([0]);
    const summary = await runChecked({ targets: [{ table: 'app.events', interval: 'day', premake: 1 }] });
    expect(summary.targets.map((t) => t.target)).toEqual(['app.events', 'housekeeping.job_runs']);
    const runs = await sql.query(`SELECT state, counts FROM housekeeping.job_runs WHERE target = 'app.events' ORDER BY recorded_at`);
    expect(runs.rows.map((r) => r.state)).toEqual(['started', 'succeeded']);
    expect(runs.rows[1].counts).toMatchObject({ created: 1 });
    const ledgerParts = Object.keys(await partitionsOf(sql, 'housekeeping.job_runs'));
    expect(ledgerParts).toContain(`job_runs_p${today.toFormat('yyyy_MM')}`);
    const stuck = await sql.query(`SELECT count(*)::int AS n FROM housekeeping.job_runs_default`);
    expect(stuck.rows[0].n).toBe(0);
    const latest = await sql.query(`SELECT job, target, state FROM housekeeping.latest_runs ORDER BY target`);
    expect(latest.rows).toEqual([
      { job: 'partition', target: 'app.events', state: 'succeeded' },
      { job: 'partition', target: 'housekeeping.job_runs', state: 'succeeded' },
    ]);
  });

  it('applies hot overrides from housekeeping.settings and rejects bad ones before changing anything', async () => {
    await createEvents([-5, -4, 0]);
    await runChecked({ targets: [{ table: 'app.events', interval: 'day', premake: 1 }], maintainLedger: false });
    await sql.query(`INSERT INTO housekeeping.settings (job, target, key, value) VALUES ('partition', 'app.events', 'retention', '{"keep": 2}')`);
    await sql.query(`INSERT INTO housekeeping.settings (job, target, key, value) VALUES ('partition', '*', 'premake', '4')`);
    const summary = await runChecked({ targets: [{ table: 'app.events', interval: 'day', premake: 1 }], maintainLedger: false });
    expect(summary.targets[0]!.counts).toMatchObject({ created: 3, dropped: 3, partitionsAhead: 4 });
    const recorded = await sql.query(`SELECT policy FROM housekeeping.job_runs WHERE state = 'started' ORDER BY recorded_at DESC LIMIT 1`);
    expect(recorded.rows[0].policy).toMatchObject({ premake: 4, retention: { keep: 2, mode: 'drop' } });

    await sql.query(`UPDATE housekeeping.settings SET value = '0' WHERE key = 'premake'`);
    const before = await relationsIn(sql, 'app');
    const bad = await runChecked({ targets: [{ table: 'app.events', interval: 'day', premake: 1 }], maintainLedger: false });
    expect(bad.targets[0]!.state).toBe('failed');
    expect(bad.targets[0]!.detail).toMatch(/housekeeping\.settings overrides .*premake.*premake: Too small.*got 0/);
    expect(await relationsIn(sql, 'app')).toEqual(before);
  });
});

describe('bad catalog state fails the target clearly and changes nothing', () => {
  it.each([
    ['a missing table', '', 'app.nope', /table app\.nope does not exist/],
    ['a plain table', 'CREATE TABLE app.plain (created_at timestamptz)', 'app.plain', /app\.plain is not a partitioned table/],
    [
      'LIST partitioning',
      'CREATE TABLE app.listed (region text) PARTITION BY LIST (region)',
      'app.listed',
      /app\.listed is LIST-partitioned; only RANGE/,
    ],
    [
      'an integer key',
      'CREATE TABLE app.numbered (id int) PARTITION BY RANGE (id)',
      'app.numbered',
      /partitioned on id of type integer; the key must be timestamptz, timestamp or date/,
    ],
    ['two key columns', 'CREATE TABLE app.twokeys (a date, b date) PARTITION BY RANGE (a, b)', 'app.twokeys', /partitioned on 2 columns/],
  ])('%s', async (_label, ddl, table, message) => {
    if (ddl) await sql.query(ddl);
    const before = await relationsIn(sql, 'app');
    const summary = await runChecked({ targets: [{ table, interval: 'day' }], maintainLedger: false });
    expect(summary.failed).toEqual([table]);
    expect(summary.targets[0]!.detail).toMatch(message);
    expect(await relationsIn(sql, 'app')).toEqual(before);
    const ledger = await sql.query(`SELECT state, detail FROM housekeeping.job_runs WHERE target = $1 ORDER BY recorded_at`, [table]);
    expect(ledger.rows.map((r) => r.state)).toEqual(['started', 'failed']);
  });

  it('one failing target does not stop the others', async () => {
    await createEvents([0]);
    const summary = await runChecked({
      targets: [
        { table: 'app.missing', interval: 'day' },
        { table: 'app.events', interval: 'day', premake: 2 },
      ],
      maintainLedger: false,
    });
    expect(summary.failed).toEqual(['app.missing']);
    expect(summary.targets[1]).toMatchObject({ state: 'succeeded', counts: { created: 2 } });
  });
});

describe('bad config is refused before connecting', () => {
  it.each([
    [{ table: 'events; drop table x', interval: 'day' }, /targets\[0\]\.table: "events; drop table x" is not a plain identifier/],
    [{ table: 'app."events"', interval: 'day' }, /targets\[0\]\.table: .*is not a plain identifier/],
    [{ table: "app.ev'ents", interval: 'day' }, /targets\[0\]\.table: .*is not a plain identifier/],
    [{ table: 'app.ev.ents', interval: 'day' }, /targets\[0\]\.table: "app\.ev\.ents" must be "table" or "schema\.table"/],
    [{ table: `app.${'e'.repeat(55)}`, interval: 'day' }, /targets\[0\]\.table: partition names for "e{55}" would be 67 bytes/],
    [{ table: `app.${'e'.repeat(64)}`, interval: 'day' }, /is 64 bytes; Postgres truncates/],
    [{ table: 'app.events', interval: 'day', premake: 0 }, /targets\[0\]\.premake: Too small.*got 0/],
    [{ table: 'app.events', interval: 'day', retention: { keep: -1 } }, /targets\[0\]\.retention\.keep: Too small.*got -1/],
    [{ table: 'app.events', interval: 'day', retention: { duration: '-3 days' } }, /targets\[0\]\.retention\.duration: "-3 days" is not a duration/],
    [{ table: 'app.events', interval: 'day', retention: { keep: 3, duration: '3 days' } }, /set exactly one of keep .* or duration/],
    [{ table: 'app.events', interval: 'fortnight' }, /targets\[0\]\.interval: Invalid option: expected one of "hour"\|"day".*got "fortnight"/],
    [{ table: 'app.events', interval: 'day', timeZone: 'Mars/Olympus' }, /targets\[0\]\.timeZone: "Mars\/Olympus" is not an IANA time zone/],
    [{ table: 'app.events', interval: 'day', premake: 2, extra: 1 }, /targets\[0\]: Unrecognized key: "extra"/],
  ])('%j', async (target, message) => {
    const before = await relationsIn(sql, 'app');
    const run = runPartition('postgres://nobody:secret@127.0.0.1:1/none', { targets: [target as never] });
    await expect(run).rejects.toThrowError(ConfigError);
    await expect(run).rejects.toThrowError(message);
    expect(await relationsIn(sql, 'app')).toEqual(before);
  });
});
