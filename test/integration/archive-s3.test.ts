import { spawn } from 'node:child_process';
import type pg from 'pg';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { s3DestinationSchema } from '../../functions/archive/policy';
import { readS3Catalog } from '../../functions/archive/s3/catalog';
import { CopyReader, copyRows, copyStatement } from '../../functions/archive/s3/copy';
import { renderS3Sql } from '../../functions/archive/s3/sql';
import { sdkObjectStore, setObjectStoreFactory } from '../../functions/archive/s3/store';
import { JOBS } from '../../functions/registry';
import { restoreFromCli } from '../../scripts/cli';
import { openSession } from '../../shared/db';
import { parseJobEvent, runJob } from '../../shared/run-job';
import { TimeBudget } from '../../shared/time-budget';
import { runArchive } from '../support/archive';
import { captureS3Invariant, hookUploads, objectRows, postgresRows } from '../support/archive-s3';
import { createTestDatabase, type TestDatabase } from '../support/db';
import { quietLogger } from '../support/jobs';
import { duckdb, startTestS3, type TestS3 } from '../support/s3';

let db: TestDatabase;
let sql: pg.Client;
let s3: TestS3;

const FOLDER = 'archive/v1/table=app.typed';

/** Every supported type, with the values that break naive writers. */
const TYPED_DDL = `
  DROP SCHEMA IF EXISTS app CASCADE; CREATE SCHEMA app;
  CREATE TABLE app.typed (
    id bigint PRIMARY KEY,
    created_at timestamptz NOT NULL,
    i2 smallint, i4 integer, i8 bigint,
    n numeric(20, 6), n38 numeric(38, 10), n5 numeric(5, 2), n18 numeric(18, 0),
    t text, v varchar(20), c char(5),
    b boolean, d date, ts timestamp, tstz timestamptz,
    u uuid, j jsonb, js json, bin bytea,
    ai integer[], al bigint[], at text[], an numeric(10, 2)[], ab boolean[], au uuid[]
  );
  CREATE INDEX ON app.typed (created_at);
  INSERT INTO app.typed VALUES
    (1, '2025-10-31 23:59:59.999999+00', -32768, -2147483648, -9223372036854775808,
     -99999999999999.999999, 1234567890123456789012345678.0123456789, -999.99, 999999999999999999,
     'quotes " and \\ backslash, newline
and tab	, unicode é 漢字 🚀', '', 'ab',
     true, '1969-12-31', '1900-01-01 00:00:00.000001', '1970-01-01 00:00:00+00',
     'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{"big": 12345678901234567890.123456789, "s": "x\\"y", "n": null, "a": [1, 2.50]}', '{ "kept":   "as typed" }',
     '\\x00ff10'::bytea,
     '{1,NULL,-3}', '{9223372036854775807}', '{"a b","NULL",NULL,"",",","\\"q\\"","back\\\\slash"}', '{1.50,NULL,-0.01}', '{t,f,NULL}', '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'),
    (2, '2025-10-31 00:00:00+00', 32767, 2147483647, 9223372036854775807,
     0.000001, -0.0000000001, 0, 0,
     'x', 'twenty characters...', 'abcde',
     false, '2400-02-29', '2262-04-11 23:47:16.854775', '2038-01-19 03:14:08.123456+00',
     '00000000-0000-0000-0000-000000000000', '[]', 'null', '\\x'::bytea,
     '{}', '{}', '{}', '{}', '{}', '{}'),
    (3, '2025-11-01 12:00:00+00', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
     NULL, NULL, NULL, NULL, NULL, NULL);
  INSERT INTO app.typed (id, created_at, n, t)
  SELECT 100 + i, '2025-11-02 00:00:00+00'::timestamptz + i * interval '1 minute', i * 1.5, md5(i::text) FROM generate_series(1, 250) AS i;
  INSERT INTO app.typed (id, created_at, t) VALUES (1000, now(), 'fresh, stays');
  ANALYZE app.typed;
`;

const target = (s3Options: Record<string, unknown> = {}) => ({
  source: 'app.typed',
  destination: { s3: { bucket: 'hk-archive', prefix: 'archive/v1', rowsPerObject: 100, rowGroupRows: 100, ...s3Options } },
  ageColumn: 'created_at',
  retention: '30 days',
});

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
  s3 = await startTestS3();
});

beforeEach(async () => {
  await sql.query(TYPED_DDL);
  await sql.query(`DROP SCHEMA IF EXISTS other CASCADE; CREATE SCHEMA other`);
  await sql.query(`TRUNCATE housekeeping.archive_restores, housekeeping.archive_objects`).catch(() => {});
  await s3.empty();
});

describe('archive to S3 as Parquet', () => {
  it('moves every expired row into objects an independent reader sees value for value, by day, and leaves the rest', async () => {
    const invariant = await captureS3Invariant(sql, s3, { source: 'app.typed', folder: FOLDER });
    const summary = await runArchive(db.url, { targets: [target()] });
    expect(summary.targets[0]!.detail).toBeUndefined();
    expect(summary.targets[0]!.state).toBe('succeeded');
    const counts = summary.targets[0]!.counts;
    expect(counts).toMatchObject({ rowsMoved: 253 });
    // Where the run's time went, stage by stage: each measured and within the run's duration
    // (stages of consecutive batches overlap, so together they may exceed it).
    const stages = ['pickWaitMs', 'encodeMs', 'uploadMs', 'verifyMs', 'commitMs', 'publishMs'] as const;
    for (const stage of stages) expect(counts[stage], stage).toBeLessThanOrEqual(counts.durationMs! + 1);
    expect(stages.filter((stage) => counts[stage]! > 0).length).toBeGreaterThanOrEqual(4);

    const result = await invariant.verify();
    expect(result).toMatchObject({ left: 1, archived: 253 });
    expect(await postgresRows(sql, 'app.typed')).toHaveLength(1);

    // Hive layout by the age column's day (UTC): 2025-10-31 holds rows 1 and 2, 2025-11-01 row 3, then the 250 by 100.
    const keys = await s3.keys('archive/');
    expect(keys.filter((k) => k.includes('_pending'))).toEqual([]);
    expect(keys).toContain(`${FOLDER}/dt=2025-10-31/part-1-2.parquet`);
    expect(keys).toContain(`${FOLDER}/dt=2025-11-01/part-3-3.parquet`);
    const rows = await objectRows(s3, FOLDER, invariant.columns);
    for (const row of rows) expect(row.file).toContain(`/dt=${row.dt}/`);
    // No row in two objects.
    expect(new Set(rows.map((r) => r.key)).size).toBe(rows.length);

    // The Parquet types an Athena or DuckDB user sees.
    const dir = await s3.download(`${FOLDER}/dt=2025-10-31/`);
    const schema = await duckdb(
      `SELECT name, type, logical_type::VARCHAR AS logical FROM parquet_schema('${dir}/${FOLDER}/dt=2025-10-31/part-1-2.parquet')`,
    );
    const typeOf = (name: string) => schema.find((s) => s.name === name);
    expect(typeOf('n18')).toMatchObject({ type: 'INT64', logical: expect.stringContaining('precision=18') });
    expect(typeOf('n')).toMatchObject({ type: 'FIXED_LEN_BYTE_ARRAY', logical: expect.stringContaining('precision=20') });
    expect(typeOf('n38')).toMatchObject({ type: 'FIXED_LEN_BYTE_ARRAY', logical: expect.stringContaining('scale=10') });
    expect(typeOf('tstz')).toMatchObject({ type: 'INT64', logical: expect.stringMatching(/isAdjustedToUTC=1.*MICROS=MicroSeconds/) });
    expect(typeOf('ts')).toMatchObject({ logical: expect.stringMatching(/isAdjustedToUTC=0/) });
    expect(typeOf('u')).toMatchObject({ type: 'FIXED_LEN_BYTE_ARRAY', logical: 'UUIDType()' });

    // The manifest: one published row per object, with key range, count, checksum, size and schema.
    const { rows: manifest } = await sql.query(
      `SELECT object_key, state, first_key, last_key, row_count::int, length(checksum) AS checksum_length, size_bytes::int > 0 AS sized, columns->0->>'parquet' AS id_type
       FROM housekeeping.archive_objects ORDER BY id`,
    );
    expect(manifest.length).toBe(new Set(rows.map((r) => r.file)).size);
    expect(manifest.reduce((n, m) => n + m.row_count, 0)).toBe(253);
    expect(manifest[0]).toMatchObject({
      object_key: `${FOLDER}/dt=2025-10-31/part-1-2.parquet`,
      state: 'published',
      first_key: ['1'],
      last_key: ['2'],
      row_count: 2,
      checksum_length: 64,
      sized: true,
      id_type: 'INT64',
    });
    expect(manifest.every((m) => m.state === 'published')).toBe(true);

    // A second run finds nothing to move and changes nothing.
    const again = await runArchive(db.url, { targets: [target()] });
    expect(again.targets[0]!.counts).toMatchObject({ rowsMoved: 0 });
    expect(await s3.keys('archive/')).toEqual(keys);
  });

  it('refuses before anything moves a column Parquet cannot hold exactly, naming it', async () => {
    await sql.query(`ALTER TABLE app.typed ADD COLUMN loose numeric, ADD COLUMN span interval, ADD COLUMN stamps timestamptz[]`);
    const before = await postgresRows(sql, 'app.typed');
    const summary = await runArchive(db.url, { targets: [target()] });
    expect(summary.targets[0]!.state).toBe('failed');
    expect(summary.targets[0]!.detail).toMatch(/loose \(numeric\): numeric without precision and scale/);
    expect(summary.targets[0]!.detail).toMatch(/span \(interval\): no exact Parquet type/);
    expect(summary.targets[0]!.detail).toMatch(/stamps \(timestamp with time zone\[\]\): no exact Parquet type/);
    expect(summary.targets[0]!.detail).toMatch(/Nothing was moved/);
    expect(await postgresRows(sql, 'app.typed')).toEqual(before);
    expect(await s3.keys()).toEqual([]);
  });

  it('refuses a batch holding a value Parquet cannot represent (NaN, infinity), naming column and row; nothing of it moves', async () => {
    await sql.query(`UPDATE app.typed SET n5 = 'NaN' WHERE id = 2`);
    const before = await postgresRows(sql, 'app.typed');
    const summary = await runArchive(db.url, { targets: [target()] });
    expect(summary.targets[0]!.state).toBe('failed');
    expect(summary.targets[0]!.detail).toMatch(/column n5 \(numeric\(5,2\)\) of row id = 2 .*NaN/);
    expect(await postgresRows(sql, 'app.typed')).toEqual(before);
    expect(await s3.keys()).toEqual([]);

    await sql.query(`UPDATE app.typed SET n5 = 1, d = 'infinity' WHERE id = 2`);
    const infinite = await runArchive(db.url, { targets: [target()] });
    expect(infinite.targets[0]!.detail).toMatch(/column d \(date\) of row id = 2 .*infinity is not a finite date/);

    // An age with no dt= day: infinite, or before year 1.
    for (const age of ['-infinity', '0044-03-15 12:00:00+00 BC']) {
      await sql.query(`UPDATE app.typed SET d = NULL, created_at = $1 WHERE id = 2`, [age]);
      const dayless = await runArchive(db.url, { targets: [target()] });
      expect(dayless.targets[0]!.detail, age).toMatch(/row id = 2 of app\.typed has an age before year 1 or infinite; it has no dt= folder/);
      expect(await postgresRows(sql, 'app.typed')).toHaveLength(before.length);
    }
    expect(await s3.keys()).toEqual([]);
  });

  it('writes gzip and uncompressed objects the reader reads alike', async () => {
    for (const compression of ['gzip', 'none'] as const) {
      await sql.query(TYPED_DDL);
      const invariant = await captureS3Invariant(sql, s3, { source: 'app.typed', folder: `c-${compression}/table=app.typed` });
      const summary = await runArchive(db.url, { targets: [{ ...target({ compression, prefix: `c-${compression}`, rowsPerObject: 1000 }) }] });
      expect(summary.targets[0]!.state).toBe('succeeded');
      expect(await invariant.verify()).toMatchObject({ left: 1, archived: 253 });
    }
  });
});

describe('the session that reads batches', () => {
  /** A run whose sessions are recorded: what each one ran, and whether it was closed. */
  async function recordedRun(connectReader: () => Promise<pg.Client>, more: Partial<Parameters<typeof runJob>[2]> = {}) {
    const sessions: Array<{ statements: string[]; ended: boolean }> = [];
    const connect = async () => {
      const client = sessions.length === 0 ? await openSession({ kind: 'url', url: db.url }, SESSION) : await connectReader();
      const record = { statements: [] as string[], ended: false };
      sessions.push(record);
      const query = client.query.bind(client) as (...args: unknown[]) => unknown;
      (client as { query: unknown }).query = (...args: unknown[]) => {
        const first = args[0] as string | { text?: string };
        record.statements.push(typeof first === 'string' ? first : (first.text ?? ''));
        return query(...args);
      };
      const end = client.end.bind(client);
      client.end = (async () => {
        record.ended = true;
        return end();
      }) as typeof client.end;
      return client;
    };
    const event = parseJobEvent(JOBS.archive, { targets: [target()] }, 'event');
    const summary = await runJob(JOBS.archive, event, { jobs: JOBS, connect, logger: quietLogger(), budget: TimeBudget.unlimited(), ...more });
    return { summary, sessions };
  }
  const SESSION = { job: 'archive', lockTimeoutMs: 3000, statementTimeoutMs: 60_000 };

  it('picks every batch on a session of its own (the next batch is read while this one commits), closed at the end', async () => {
    const invariant = await captureS3Invariant(sql, s3, { source: 'app.typed', folder: FOLDER });
    const { summary, sessions } = await recordedRun(() => openSession({ kind: 'url', url: db.url }, SESSION));
    expect(summary.targets[0]!.state).toBe('succeeded');
    expect(summary.targets[0]!.counts.rowsMoved).toBe(253);
    await invariant.verify();
    expect(sessions).toHaveLength(2);
    const [own, reader] = sessions as [(typeof sessions)[0], (typeof sessions)[0]];
    // The job's session deletes and records; every COPY of a pick ran on the reader, which deletes nothing.
    expect(own.statements.some((text) => /DELETE FROM/.test(text))).toBe(true);
    const copies = (statements: string[]) => statements.filter((text) => text.startsWith('COPY ('));
    expect(copies(own.statements)).toEqual([]);
    expect(copies(reader.statements).length).toBeGreaterThanOrEqual(3);
    expect(reader.statements.filter((text) => !text.startsWith('COPY (') && /DELETE|INSERT|UPDATE/.test(text))).toEqual([]);
    // It waits for locks as briefly as the batches do.
    expect(reader.statements[0]).toContain("set_config('lock_timeout'");
    expect(sessions.map((session) => session.ended)).toEqual([true, true]);
  });

  it('closes the reading session when the batch loop itself throws (a progress callback that fails)', async () => {
    const { summary, sessions } = await recordedRun(() => openSession({ kind: 'url', url: db.url }, SESSION), {
      onProgress: () => {
        throw new Error('progress display broke');
      },
    });
    expect(summary.targets[0]!.state).toBe('failed');
    expect(summary.targets[0]!.detail).toContain('progress display broke');
    expect(sessions.map((session) => session.ended)).toEqual([true, true]);
  });

  it('a reader that cannot connect fails the target with its error; nothing moves, nothing is left on S3', async () => {
    const before = await postgresRows(sql, 'app.typed');
    const { summary, sessions } = await recordedRun(async () => {
      throw new Error('too many connections for role "archiver"');
    });
    expect(summary.targets[0]!.state).toBe('failed');
    expect(summary.targets[0]!.detail).toContain('too many connections for role "archiver"');
    expect(summary.targets[0]!.counts.rowsMoved ?? 0).toBe(0);
    expect(await postgresRows(sql, 'app.typed')).toEqual(before);
    expect(await s3.keys('archive/')).toEqual([]);
    expect(sessions).toHaveLength(1);
  });
});

describe('archive to S3 beside failures and other sessions', () => {
  afterEach(() => setObjectStoreFactory(undefined));

  it('reads each object back before deleting its rows: an object stored differently moves nothing and is removed', async () => {
    const before = await postgresRows(sql, 'app.typed');
    // A value changed in storage, same size, still valid Parquet: 'backslash' becomes 'Backslash' in row 1's text.
    let changed = false;
    hookUploads(async (_key, body) => {
      const at = Buffer.from(body).indexOf('backslash');
      if (at < 0) return;
      const copy = new Uint8Array(body);
      copy[at] = 'B'.charCodeAt(0);
      changed = true;
      return copy;
    });
    const summary = await runArchive(db.url, { targets: [target({ compression: 'none' })] });
    expect(changed).toBe(true);
    expect(summary.targets[0]!.state).toBe('failed');
    expect(summary.targets[0]!.detail).toMatch(/did not read back as written/);
    expect(await postgresRows(sql, 'app.typed')).toEqual(before);
    expect(await s3.keys()).toEqual([]);
    setObjectStoreFactory(undefined);
    const retry = await runArchive(db.url, { targets: [target()] });
    expect(retry.targets[0]!.counts).toMatchObject({ rowsMoved: 253 });
  });

  it('checks the encoding against the source: a value the writer encodes wrongly fails the read-back, and nothing moves', async () => {
    const before = await postgresRows(sql, 'app.typed');
    // An encoder bug planted: row 1's integer -2147483648 goes into its page as -2147483647, a
    // valid value in a well-formed object that reads back without complaint.
    const writeInt32LE = Buffer.prototype.writeInt32LE;
    const planted = vi.spyOn(Buffer.prototype, 'writeInt32LE').mockImplementation(function (this: Buffer, ...args: unknown[]) {
      const [value, offset] = args as [number, number | undefined];
      return writeInt32LE.call(this, value === -2147483648 ? -2147483647 : value, offset);
    });
    let summary: Awaited<ReturnType<typeof runArchive>>;
    try {
      summary = await runArchive(db.url, { targets: [target()] });
    } finally {
      planted.mockRestore();
    }
    expect(summary.targets[0]!.state).toBe('failed');
    expect(summary.targets[0]!.detail).toMatch(/did not read back as written \(its values differ from the source's/);
    expect(await postgresRows(sql, 'app.typed')).toEqual(before);
    expect(await s3.keys()).toEqual([]);
    const retry = await runArchive(db.url, { targets: [target()] });
    expect(retry.targets[0]!.counts).toMatchObject({ rowsMoved: 253 });
  });

  it('deletes a row only if it is unchanged since it was written: a row edited in flight is archived as edited, never as it was', async () => {
    const writer = await db.connect('writer');
    hookUploads(async (_key, _body, count) => {
      if (count === 1) await writer.query(`UPDATE app.typed SET t = 'edited in flight' WHERE id = 1`);
      return undefined;
    });
    const summary = await runArchive(db.url, { targets: [target()] });
    expect(summary.targets[0]!.state).toBe('succeeded');
    expect(summary.targets[0]!.counts).toMatchObject({ rowsMoved: 253, batchesRedone: 1 });
    const dir = await s3.download(`${FOLDER}/dt=2025-10-31/`);
    const archived = await duckdb(`SELECT id, t FROM read_parquet('${dir}/${FOLDER}/*/*.parquet') ORDER BY id`);
    expect(archived).toEqual([
      { id: '1', t: 'edited in flight' },
      { id: '2', t: 'x' },
    ]);
    expect((await s3.keys()).filter((k) => k.includes('_pending'))).toEqual([]);
  });

  it('a batch written ahead (while the one before uploads) whose row is edited before its turn archives the row as edited, never as it was', async () => {
    const writer = await db.connect('writer');
    const invariantBefore = await captureS3Invariant(sql, s3, { source: 'app.typed', folder: FOLDER });
    // Batch 1 is ids 1-3 and 101-197; batch 2 (ids 198-297) is picked and encoded during batch 1's uploads.
    hookUploads(async (_key, _body, count) => {
      if (count === 1) await writer.query(`UPDATE app.typed SET t = 'edited ahead' WHERE id = 250`);
      return undefined;
    });
    const summary = await runArchive(db.url, { targets: [target()] });
    expect(summary.targets[0]!.detail).toBeUndefined();
    expect(summary.targets[0]!.counts).toMatchObject({ rowsMoved: 253 });
    const dir = await s3.download(`${FOLDER}/`);
    expect(await duckdb(`SELECT id, t FROM read_parquet('${dir}/${FOLDER}/*/*.parquet') WHERE id = 250`)).toEqual([{ id: '250', t: 'edited ahead' }]);
    // Every row in exactly one place, whole contents: as before, row 250 as edited.
    const tAt = invariantBefore.columns.findIndex((c) => c.name === 't');
    const expected = invariantBefore.before
      .map((text) => {
        const row = JSON.parse(text) as unknown[];
        if (row[0] === '250') row[tAt] = 'edited ahead';
        return JSON.stringify(row);
      })
      .sort();
    const published = (await objectRows(s3, FOLDER, invariantBefore.columns)).map((r) => r.text);
    expect([...(await postgresRows(sql, 'app.typed', invariantBefore.columns)), ...published].sort()).toEqual(expected);
    expect(new Set(published).size).toBe(253);
  });

  it('keeps a row made young while its batch was written, and archives the rest', async () => {
    const writer = await db.connect('writer');
    hookUploads(async (_key, _body, count) => {
      if (count === 1) await writer.query(`UPDATE app.typed SET created_at = now() WHERE id = 2`);
      return undefined;
    });
    const summary = await runArchive(db.url, { targets: [target()] });
    expect(summary.targets[0]!.counts).toMatchObject({ rowsMoved: 252, batchesRedone: 1 });
    const { rows: left } = await sql.query(`SELECT id::int FROM app.typed ORDER BY id`);
    expect(left.map((r) => r.id)).toEqual([2, 1000]);
    const dir = await s3.download(`${FOLDER}/`);
    expect(await duckdb(`SELECT count(*)::int AS n FROM read_parquet('${dir}/${FOLDER}/*/*.parquet') WHERE id = 2`)).toEqual([{ n: 0 }]);
  });

  it('leaves a row another session holds for a later run and moves the rest of its batch; a later run moves it', async () => {
    const holder = await db.connect('holder');
    await holder.query('BEGIN');
    await holder.query('SELECT * FROM app.typed WHERE id = 3 FOR UPDATE');
    const invariant = await captureS3Invariant(sql, s3, { source: 'app.typed', folder: FOLDER });
    let summary: Awaited<ReturnType<typeof runArchive>>;
    try {
      summary = await runArchive(db.url, { targets: [target({ rowsPerObject: 1000 })] });
      // Tried as it was (the lock patience ran out), then without row 3 once the skip-locked delete named it.
      expect(summary.targets[0]!.state).toBe('succeeded');
      expect(summary.targets[0]!.counts).toMatchObject({ rowsMoved: 252, lockedRowBatches: 1, batchesRedone: 2 });
      expect((await sql.query(`SELECT id::int FROM app.typed ORDER BY id`)).rows.map((r) => r.id)).toEqual([3, 1000]);
      expect(await invariant.verify()).toMatchObject({ left: 2, archived: 252 });
      const dir = await s3.download(`${FOLDER}/`);
      expect(await duckdb(`SELECT count(*)::int AS n FROM read_parquet('${dir}/${FOLDER}/*/*.parquet') WHERE id = 3`)).toEqual([{ n: 0 }]);
    } finally {
      await holder.query('ROLLBACK');
    }
    const later = await runArchive(db.url, { targets: [target({ rowsPerObject: 1000 })] });
    expect(later.targets[0]!.counts).toMatchObject({ rowsMoved: 1 });
    expect(await invariant.verify()).toMatchObject({ left: 1, archived: 253 });
  });
});

describe('restore from S3', () => {
  const config = { targets: [target()] };
  const restore = (options: { from: string; to: string; into: string }) => restoreFromCli(config, db.url, options);

  it('puts a range of days back into a table, value for value; twice is once; a process killed mid-restore leaves nothing half done', async () => {
    const original = await postgresRows(sql, 'app.typed');
    await sql.query(`CREATE TABLE app.typed_back (LIKE app.typed INCLUDING ALL)`);
    const columns = (
      await sql.query(
        `SELECT string_agg(quote_ident(attname), ', ' ORDER BY attnum) AS c FROM pg_attribute WHERE attrelid = 'app.typed'::regclass AND attnum > 0`,
      )
    ).rows[0].c;
    await sql.query(`CREATE TABLE other.expected AS SELECT ${columns} FROM app.typed WHERE created_at >= '2025-10-31' AND created_at < '2025-11-02'`);
    expect(await runArchive(db.url, config)).toMatchObject({ failed: [] });

    // Killed between the insert and its commit: nothing of that object is in the table.
    const cli = spawn(
      process.execPath,
      [
        '--import',
        'tsx',
        'scripts/housekeeper.ts',
        'restore',
        '--config',
        await configFile(config),
        '--from',
        '2025-10-31',
        '--to',
        '2025-11-01',
        '--into',
        'app.typed_back',
        '--database-url',
        db.url,
      ],
      {
        env: { ...process.env, ...s3.env, PGHK_CRASH_AT: 'restore-after-insert:2' },
        stdio: 'ignore',
      },
    );
    expect(await new Promise((resolve) => cli.on('exit', (_code, signal) => resolve(signal)))).toBe('SIGKILL');
    const { rows: partial } = await sql.query(`SELECT count(*)::int AS n FROM app.typed_back`);
    expect(partial[0].n).toBe(2); // the first object (2025-10-31: rows 1 and 2) committed, the second did not

    const first = await restore({ from: '2025-10-31', to: '2025-11-01', into: 'app.typed_back' });
    expect(first).toMatchObject({ objects: 2, rowsInserted: 1, rowsAlreadyPresent: 2 });
    expect(await postgresRows(sql, 'app.typed_back')).toEqual(await postgresRows(sql, 'other.expected'));
    expect((await postgresRows(sql, 'other.expected')).every((row) => original.includes(row))).toBe(true);

    const second = await restore({ from: '2025-10-31', to: '2025-11-01', into: 'app.typed_back' });
    expect(second).toMatchObject({ objects: 2, rowsInserted: 0, rowsAlreadyPresent: 3 });
    expect(await postgresRows(sql, 'app.typed_back')).toEqual(await postgresRows(sql, 'other.expected'));
    const { rows: ledger } = await sql.query(`SELECT count(*)::int AS n, sum(rows_inserted)::int AS inserted FROM housekeeping.archive_restores`);
    expect(ledger[0]).toEqual({ n: 2, inserted: 3 });
  });

  it('refuses a different row under a restored key, naming it, and restoring into the archived table itself', async () => {
    await runArchive(db.url, config);
    await sql.query(`CREATE TABLE app.typed_back (LIKE app.typed INCLUDING ALL)`);
    await sql.query(`INSERT INTO app.typed_back (id, created_at, t) VALUES (2, now(), 'another row 2')`);
    await expect(restore({ from: '2025-10-31', to: '2025-10-31', into: 'app.typed_back' })).rejects.toThrow(
      /already holds 1 row\(s\) of .*dt=2025-10-31.* with different contents under the same key \(id = 2\)/,
    );
    expect((await sql.query(`SELECT id::int FROM app.typed_back`)).rows).toEqual([{ id: 2 }]);
    await expect(restore({ from: '2025-10-31', to: '2025-10-31', into: 'app.typed' })).rejects.toThrow(/is the archive's source/);
  });
});

describe('the object store', () => {
  it('deletes any number of keys (past the thousand one request takes), a missing key being no error, and nothing else', async () => {
    const store = await sdkObjectStore({ bucket: s3.bucket });
    const keys = Array.from({ length: 1003 }, (_, i) => `many/${String(i).padStart(4, '0')}`);
    for (let i = 0; i < keys.length; i += 50) await Promise.all(keys.slice(i, i + 50).map((key) => store.put(key, new Uint8Array([i % 256]), {})));
    await store.put('many-kept', new Uint8Array([1]), {});
    await store.deleteMany([...keys, 'many/never-there']);
    expect(await s3.keys('many')).toEqual(['many-kept']);
  });
});

describe('the delete of a batch', () => {
  it('picks through the key index, each value it is given read once per statement, not once per row (COPY takes them as settings)', async () => {
    await sql.query(`CREATE TABLE app.picked (tenant int, id bigint, created_at timestamptz NOT NULL, done_at timestamptz, PRIMARY KEY (tenant, id));
      INSERT INTO app.picked SELECT i % 7, i, '2025-01-01'::timestamptz + i * interval '1 second', NULL FROM generate_series(1, 40000) AS i;
      ANALYZE app.picked`);
    const catalog = await readS3Catalog(
      sql,
      { schema: 'app', name: 'picked' },
      { keyColumns: ['tenant', 'id'], ageTypes: { primary: 'timestamptz', fallback: 'timestamptz' } },
      s3DestinationSchema.parse({ bucket: 'hk-archive', prefix: 'p' }),
      { ageColumn: 'done_at', ageFallbackColumn: 'created_at', timeZone: 'Europe/Paris' },
    );
    const pick = renderS3Sql(catalog, { primary: '2026-01-01 00:00:00+00' }).pick(2000, ['3', '100']);
    const { text, settings } = copyStatement(pick);
    await sql.query(`SELECT ${settings.map((_, i) => `set_config('pg_housekeeper.copy_${i + 1}', $${i + 1}, false)`).join(', ')}`, settings);
    const { rows: plan } = await sql.query(`EXPLAIN (VERBOSE, FORMAT JSON) ${text}`);
    const scans: string[] = [];
    const perRow: string[] = [];
    const walk = (node: Record<string, unknown>) => {
      if (node['Relation Name'] === 'picked') scans.push(String(node['Node Type']));
      for (const field of ['Filter', 'Index Cond', 'Output']) {
        const value = JSON.stringify(node[field] ?? '');
        if (node['Parent Relationship'] !== 'InitPlan' && value.includes('current_setting')) perRow.push(`${node['Node Type']} ${field}: ${value}`);
      }
      for (const child of (node.Plans as Array<Record<string, unknown>> | undefined) ?? []) walk(child);
    };
    walk((plan[0]!['QUERY PLAN'] as Array<{ Plan: Record<string, unknown> }>)[0]!.Plan);
    expect(scans).toEqual(['Index Scan']);
    expect(perRow).toEqual([]);
    const rows = new CopyReader(await copyRows(sql, pick), 4 + catalog.columns.length);
    expect(rows.rows).toBe(2000);
    rows.row(0);
    expect([rows.text(0), rows.text(1)]).toEqual(['3', '101']);
  });

  it('finds its rows through the key index within the batch key range (composite key), never by reading the whole table', async () => {
    await sql.query(`CREATE TABLE app.wide (tenant int, id bigint, created_at timestamptz NOT NULL, note text, PRIMARY KEY (tenant, id));
      INSERT INTO app.wide SELECT i % 7, i, '2025-01-01'::timestamptz + i * interval '1 second', md5(i::text) FROM generate_series(1, 40000) AS i;
      ANALYZE app.wide`);
    const source = { schema: 'app', name: 'wide' };
    const s3Options = s3DestinationSchema.parse({ bucket: 'hk-archive', prefix: 'p' });
    const catalog = await readS3Catalog(sql, source, { keyColumns: ['tenant', 'id'], ageTypes: { primary: 'timestamptz' } }, s3Options, {
      ageColumn: 'created_at',
      timeZone: 'UTC',
    });
    const statements = renderS3Sql(catalog, { primary: '2026-01-01 00:00:00+00' });
    const { rows: batch } = await sql.query<{ tenant: string; id: string; x: string }>(
      `SELECT tenant::text, id::text, xmin::text AS x FROM app.wide WHERE (tenant, id) > (3, 0) ORDER BY tenant, id LIMIT 2000`,
    );
    const first = [batch[0]!.tenant, batch[0]!.id];
    const last = [batch.at(-1)!.tenant, batch.at(-1)!.id];
    const remove = statements.remove(
      [batch.map((r) => r.tenant), batch.map((r) => r.id)],
      batch.map((r) => Number(r.x)),
      first,
      last,
    );
    const { rows: plan } = await sql.query({ text: `EXPLAIN (FORMAT JSON) ${remove.text}`, values: remove.values });
    const scans: string[] = [];
    const walk = (node: Record<string, unknown>) => {
      if (node['Relation Name'] === 'wide') scans.push(String(node['Node Type']));
      for (const child of (node.Plans as Array<Record<string, unknown>> | undefined) ?? []) walk(child);
    };
    walk((plan[0]!['QUERY PLAN'] as Array<{ Plan: Record<string, unknown> }>)[0]!.Plan);
    expect(scans.length).toBeGreaterThan(0);
    expect(scans.filter((type) => type === 'Seq Scan')).toEqual([]);
    await sql.query('BEGIN');
    try {
      const { rows } = await sql.query(remove.text, remove.values);
      expect(rows).toEqual([{ n: 2000 }]);
      const { rows: left } = await sql.query(`SELECT count(*)::int AS n FROM app.wide`);
      expect(left).toEqual([{ n: 38000 }]);
    } finally {
      await sql.query('ROLLBACK');
    }
  });
});

async function configFile(config: unknown): Promise<string> {
  const { mkdtempSync, writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { tmpdir } = await import('node:os');
  const path = join(mkdtempSync(join(tmpdir(), 'hk-restore-')), 'archive.json');
  writeFileSync(path, JSON.stringify(config));
  return path;
}
