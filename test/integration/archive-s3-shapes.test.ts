import type pg from 'pg';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { restoreFromCli } from '../../scripts/cli';
import { runArchive } from '../support/archive';
import { captureS3Invariant, objectRows, openS3ArchiveTest, postgresRows, resetS3ArchiveTest } from '../support/archive-s3';
import type { TestDatabase } from '../support/db';
import type { TestS3 } from '../support/s3';

/**
 * Source shapes and values users have (written by an adversarial review helper), run to the end over several capped runs; every row
 * must end in exactly one object whose dt= is its age's day in the policy zone (as Postgres
 * computes it under SET TIME ZONE), whole contents compared, and no object written twice.
 */
let db: TestDatabase;
let sql: pg.Client;
let s3: TestS3;

beforeAll(async () => {
  ({ db, sql, s3 } = await openS3ArchiveTest());
});

beforeEach(() => resetS3ArchiveTest(sql, s3));

/** Postgres's own day of `dayExpr` for each row (by `keyExpr`), in `zone`. */
async function postgresDays(table: string, keyExpr: string, dayExpr: string, zone: string, where = 'true'): Promise<Record<string, string>> {
  await sql.query('BEGIN');
  try {
    await sql.query(`SELECT set_config('TimeZone', $1, true)`, [zone]);
    const { rows } = await sql.query<{ k: string; day: string }>(
      `SELECT (${keyExpr})::text AS k, to_char((${dayExpr})::date, 'YYYY-MM-DD') AS day FROM ${table} AS t WHERE ${where}`,
    );
    return Object.fromEntries(rows.map((r) => [r.k, r.day]));
  } finally {
    await sql.query('ROLLBACK');
  }
}

async function runUntilDone(target: Record<string, unknown>, maxRuns = 30) {
  const summaries = [];
  for (let run = 0; run < maxRuns; run++) {
    const summary = await runArchive(db.url, { targets: [target as never] });
    const t = summary.targets[0]!;
    expect(t.detail, `run ${run}`).toBeUndefined();
    expect(t.state, `run ${run}`).toBe('succeeded');
    summaries.push(t);
    if (t.stopReason === 'done') return summaries;
  }
  throw new Error('never done');
}

describe('partitioned source, DEFAULT partition, composite key with odd texts, capped runs, Asia/Kolkata', () => {
  it('files every row once, under its Kolkata day, across capped runs that end mid-day', async () => {
    await sql.query(`DROP SCHEMA IF EXISTS ps CASCADE; CREATE SCHEMA ps;
      CREATE TABLE ps.ev (name text NOT NULL, at timestamptz NOT NULL, body text, n numeric(10,4), PRIMARY KEY (name, at)) PARTITION BY RANGE (at);
      CREATE TABLE ps.ev_2024 PARTITION OF ps.ev FOR VALUES FROM ('2024-01-01 00:00+00') TO ('2025-01-01 00:00+00');
      CREATE TABLE ps.ev_default PARTITION OF ps.ev DEFAULT;
      INSERT INTO ps.ev
      SELECT (ARRAY[E'it''s', E'back\\\\slash', E'"q", {b}', 'e\u0301 combining', '🚀', E'\\uffff', '', 'a_b', '-1', '00'])[1 + i % 10] || (i % 7)::text,
             -- around Kolkata midnights (18:30 UTC), some exactly on it, in 2023 (DEFAULT) and 2024
             (CASE WHEN i % 2 = 0 THEN '2023-03-01 18:30:00+00' ELSE '2024-03-01 18:30:00+00' END)::timestamptz
               + (i / 4) * interval '1 day' + ((i % 4) - 1) * interval '1 microsecond' + (i % 3) * interval '29 minutes 59 seconds',
             md5(i::text), CASE WHEN i % 5 = 0 THEN -0.0 ELSE 0.0001 * i END
      FROM generate_series(1, 400) AS i;
      INSERT INTO ps.ev VALUES ('fresh', now(), 'stays', 1);`);
    const folder = 'ps/table=ps.ev';
    const invariant = await captureS3Invariant(sql, s3, { source: 'ps.ev', folder, key: ['name', 'at'] });
    const expected = await postgresDays(
      'ps.ev',
      `json_build_array(t.name, to_char(t.at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'))`,
      't.at',
      'Asia/Kolkata',
      `name <> 'fresh'`,
    );
    const target = {
      source: 'ps.ev',
      key: ['name', 'at'],
      ageColumn: 'at',
      retention: '30 days',
      timeZone: 'Asia/Kolkata',
      maxRowsPerRun: 37,
      destination: { s3: { bucket: 'hk-archive', prefix: 'ps', rowsPerObject: 11, rowGroupRows: 100 } },
    };
    const runs = await runUntilDone(target);
    expect(runs.length).toBeGreaterThan(5);
    // Whole rows: source ∪ published objects is the rows before, no row or key twice, nothing pending.
    expect(await invariant.verify()).toMatchObject({ left: 1 });
    const rows = await objectRows(s3, folder, invariant.columns);
    // Every object written is one manifest row, published; none overwritten by a later run.
    const { rows: manifest } = await sql.query<{ object_key: string; row_count: string }>(
      `SELECT object_key, row_count::text FROM housekeeping.archive_objects WHERE state = 'published'`,
    );
    const keys = await s3.keys(`${folder}/`);
    expect(keys.sort()).toEqual(manifest.map((m) => m.object_key).sort());
    expect(manifest.reduce((n, m) => n + Number(m.row_count), 0)).toBe(400);
    // dt= of each row: Postgres's Kolkata day, keyed by the row's name and its UTC text (both sides to the microsecond).
    const got = rows.map((r) => {
      const [name, at] = JSON.parse(r.text) as [string, string];
      return `${name}|${at}|${r.dt}`;
    });
    const want = Object.entries(expected).map(([k, day]) => {
      const [name, at] = JSON.parse(k) as [string, string];
      return `${name}|${at}|${day}`;
    });
    expect(got.sort()).toEqual(want.sort());
  });
});

describe('an age fallback of another type than the age, in zones far from UTC', () => {
  for (const zone of ['Pacific/Kiritimati', 'Pacific/Pago_Pago', 'Australia/Adelaide', 'America/Sao_Paulo']) {
    it(`files rows by COALESCE(timestamptz age, date fallback) in ${zone}, rows at local midnight`, async () => {
      const schema = `fb_${zone.toLowerCase().replace(/[^a-z0-9]/g, '_')}`;
      await sql.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE; CREATE SCHEMA ${schema};
        CREATE TABLE ${schema}.ev (id bigint PRIMARY KEY, at timestamptz, made date NOT NULL, wall timestamp, body text);`);
      await sql.query('BEGIN');
      await sql.query(`SELECT set_config('TimeZone', $1, true)`, [zone]);
      await sql.query(`INSERT INTO ${schema}.ev
        SELECT i,
               CASE WHEN i % 3 = 0 THEN NULL ELSE ('2024-01-01'::date + (i / 3))::timestamp::timestamptz + ((i % 3) - 1) * interval '1 microsecond' END,
               '2024-06-01'::date + i, '2024-02-01 00:00'::timestamp + i * interval '7 hours', repeat('x', i % 5)
        FROM generate_series(1, 120) AS i`);
      await sql.query('COMMIT');
      const folder = `${schema}/table=${schema}.ev`;
      const invariant = await captureS3Invariant(sql, s3, { source: `${schema}.ev`, folder });
      const expected = await postgresDays(`${schema}.ev`, 't.id', 'COALESCE(t.at::date, t.made)', zone);
      await runUntilDone({
        source: `${schema}.ev`,
        ageColumn: 'at',
        ageFallbackColumn: 'made',
        retention: '30 days',
        timeZone: zone,
        maxRowsPerRun: 50,
        destination: { s3: { bucket: 'hk-archive', prefix: schema, rowsPerObject: 7, rowGroupRows: 100 } },
      });
      expect(await invariant.verify()).toMatchObject({ left: 0, archived: 120 });
      const rows = await objectRows(s3, folder, invariant.columns);
      expect(Object.fromEntries(rows.map((r) => [String(JSON.parse(r.text)[0]), r.dt]))).toEqual(expected);
    });
  }
});

describe('odd values', () => {
  it('come back from the objects and through restore exactly as Postgres held them', async () => {
    await sql.query(`DROP SCHEMA IF EXISTS ov CASCADE; CREATE SCHEMA ov;
      CREATE TABLE ov.v (id int PRIMARY KEY, at date NOT NULL, t text, ta text[], ia int[], na numeric(10,4)[], n38 numeric(38,0), n4 numeric(10,4),
        j jsonb, js json, b bytea, vc varchar(3), c char(3), u uuid, ua uuid[], ba boolean[]);
      INSERT INTO ov.v VALUES
        (1, '2024-01-01', E'🚀 e\\u0301 \\uffff \\ufffd \\u200b', '{}', '{}', '{}', 99999999999999999999999999999999999999, 0.0001,
          '{"e": "\\u00e9", "s": "\\ud83d\\ude00", "q": "\\"", "z": "\\u0001"}', '{"e": "\\u00e9", "s": "\\ud83d\\ude00"}', '\\x000000'::bytea, '', '', NULL, '{}', '{}'),
        (2, '2024-01-01', '', '{NULL}', '{NULL}', '{NULL}', -99999999999999999999999999999999999999, -0.0,
          '"\\u00e9"', '"\\u00e9"', '\\x'::bytea, NULL, NULL, 'ffffffff-ffff-ffff-ffff-ffffffffffff', '{NULL}', '{NULL,true}'),
        (3, '2024-01-02', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
        (4, '2024-01-02', E'\\u0085 nel', '{"",NULL,"NULL","  ","🚀"}', '{0,-2147483648}', '{-0.0001,0,NULL}', 0, 123456.0000,
          'null', 'null', '\\x00'::bytea, 'a b', 'a', '00000000-0000-0000-0000-000000000000', '{00000000-0000-0000-0000-000000000000,NULL}', '{f}');`);
    const before = await postgresRows(sql, 'ov.v');
    const invariant = await captureS3Invariant(sql, s3, { source: 'ov.v', folder: 'ov/table=ov.v' });
    const target = {
      source: 'ov.v',
      ageColumn: 'at',
      retention: '30 days',
      destination: { s3: { bucket: 'hk-archive', prefix: 'ov', rowsPerObject: 100, rowGroupRows: 100 } },
    };
    await runUntilDone(target);
    expect(await invariant.verify()).toMatchObject({ left: 0, archived: 4 });
    await sql.query(`CREATE TABLE ov.back (LIKE ov.v INCLUDING ALL)`);
    expect(await restoreFromCli({ targets: [target] }, db.url, { from: '2024-01-01', to: '2024-01-02', into: 'ov.back' })).toMatchObject({
      rowsInserted: 4,
    });
    expect(await postgresRows(sql, 'ov.back')).toEqual(before);
  });
});
