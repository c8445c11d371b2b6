import { createHash } from 'node:crypto';
import { GetObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3';
import type pg from 'pg';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { planColumns } from '../../functions/archive/s3/columns';
import { setObjectStoreFactory } from '../../functions/archive/s3/store';
import { restoreFromCli } from '../../scripts/cli';
import { runArchive } from '../support/archive';
import { openS3ArchiveTest, postgresRows, resetS3ArchiveTest } from '../support/archive-s3';
import type { TestDatabase } from '../support/db';
import type { TestS3 } from '../support/s3';

/**
 * `housekeeper restore` against what a review found (written by a review helper; each test failed
 * before its fix): an object S3 holds that is not what was archived (changed, damaged), an object
 * the manifest does not list, a `--into` table that is the source by storage (a partition or an
 * INHERITS child of it, a view on it) or narrower than the archived columns, two restores at once
 * (into one table, or into a partitioned table and its partition), an impossible day.
 */

let db: TestDatabase;
let sql: pg.Client;
let s3: TestS3;

const DDL = `
  DROP SCHEMA IF EXISTS rr CASCADE; CREATE SCHEMA rr;
  CREATE TABLE rr.events (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, body text);
  INSERT INTO rr.events SELECT i, '2025-06-01 00:00:00+00'::timestamptz + i * interval '1 hour', md5(i::text) FROM generate_series(1, 40) AS i;
  INSERT INTO rr.events VALUES (1000, now(), 'fresh');
`;

const target = (s3Options: Record<string, unknown> = {}, extra: Record<string, unknown> = {}) => ({
  source: 'rr.events',
  destination: {
    s3: {
      bucket: 'hk-archive',
      prefix: 'rr',
      rowsPerObject: 100,
      rowGroupRows: 100,
      compression: 'none' as 'none' | 'gzip' | 'snappy',
      ...s3Options,
    },
  },
  ageColumn: 'created_at',
  retention: '30 days',
  ...extra,
});

beforeAll(async () => {
  ({ db, sql, s3 } = await openS3ArchiveTest());
});

beforeEach(() => resetS3ArchiveTest(sql, s3, DDL));

afterEach(() => setObjectStoreFactory(undefined));

async function getObject(key: string): Promise<Uint8Array> {
  const out = await s3.client.send(new GetObjectCommand({ Bucket: s3.bucket, Key: key }));
  return out.Body!.transformToByteArray();
}

async function putObject(key: string, body: Uint8Array, metadata: Record<string, string> = {}) {
  await s3.client.send(new PutObjectCommand({ Bucket: s3.bucket, Key: key, Body: body, Metadata: metadata }));
}

describe('restore reads objects S3 holds: what if they are not what was archived?', () => {
  it('refuses an object whose bytes were changed in S3 after it was published (same size, same row count), inserting nothing of it', async () => {
    const config = { targets: [target()] };
    const before = await postgresRows(sql, 'rr.events');
    expect((await runArchive(db.url, config)).targets[0]!.detail).toBeUndefined();
    const { rows: objects } = await sql.query<{ object_key: string; checksum: string; size_bytes: string }>(
      `SELECT object_key, checksum, size_bytes::text FROM housekeeping.archive_objects WHERE dt = '2025-06-01'`,
    );
    expect(objects).toHaveLength(1);
    const key = objects[0]!.object_key;

    // Change one character of row 5's body (an uncompressed PLAIN page: the value's bytes are in the file as they are).
    const bytes = Buffer.from(await getObject(key));
    const value = createHash('md5').update('5').digest('hex');
    const at = bytes.indexOf(value);
    expect(at).toBeGreaterThan(0);
    bytes[at] = bytes[at] === 0x30 ? 0x31 : 0x30;
    expect(bytes.length).toBe(Number(objects[0]!.size_bytes));
    // Metadata as it was (a careless overwrite, a bit flip, a bad replication: whatever the cause, the bytes are not the archive's).
    await putObject(key, bytes, { rows: '23', checksum: objects[0]!.checksum });

    await sql.query(`CREATE TABLE rr.events_back (LIKE rr.events INCLUDING ALL)`);
    let outcome: unknown;
    try {
      outcome = await restoreFromCli(config, db.url, { from: '2025-06-01', to: '2025-06-01', into: 'rr.events_back' });
    } catch (error) {
      outcome = error;
    }
    const restored = await postgresRows(sql, 'rr.events_back');
    const expected = before.filter((row) => restored.includes(row));
    // What the archive held for that day, value for value, or nothing at all (refused, naming the object).
    expect(
      restored.filter((row) => !before.includes(row)),
      `restore put rows into the table that were never archived (outcome: ${outcome instanceof Error ? outcome.message : JSON.stringify(outcome)})`,
    ).toEqual([]);
    expect(restored).toEqual(expected);
    expect(outcome).toBeInstanceOf(Error);
    expect((outcome as Error).message).toContain(key);
    expect((outcome as Error).message).toMatch(/is not the object archived \(its values' checksum is [0-9a-f]{64}, the manifest's [0-9a-f]{64}\)/);
  });

  it('does not report success for a day whose published object the manifest does not list (a restore against a snapshot taken before the run)', async () => {
    const config = { targets: [target()] };
    const before = await postgresRows(sql, 'rr.events');
    expect((await runArchive(db.url, config)).targets[0]!.detail).toBeUndefined();
    const { rows: objects } = await sql.query<{ id: string; object_key: string; dt: string }>(
      `SELECT id::text, object_key, dt::text FROM housekeeping.archive_objects ORDER BY dt`,
    );
    expect(objects.map((o) => o.dt)).toEqual(['2025-06-01', '2025-06-02']);
    // The database restore reads is a snapshot from before the object of 2025-06-02 was committed.
    await sql.query(`DELETE FROM housekeeping.archive_objects WHERE dt = '2025-06-02'`);
    expect(await s3.keys('rr/table=rr.events/dt=2025-06-02/')).toHaveLength(1);

    await sql.query(`CREATE TABLE rr.events_back (LIKE rr.events INCLUDING ALL)`);
    let outcome: unknown;
    try {
      outcome = await restoreFromCli(config, db.url, { from: '2025-06-01', to: '2025-06-02', into: 'rr.events_back' });
    } catch (error) {
      outcome = error;
    }
    const restored = await postgresRows(sql, 'rr.events_back');
    expect(before.length).toBe(41);
    // Refused before anything is restored, naming the object the manifest does not vouch for.
    expect(outcome, `restore reported success (${JSON.stringify(outcome)}) with ${restored.length} of 40 rows back`).toBeInstanceOf(Error);
    expect((outcome as Error).message).toContain(objects[1]!.object_key);
    expect((outcome as Error).message).toMatch(
      /1 object\(s\) in the dt= folders of 2025-06-01 to 2025-06-02 are not in this database's manifest.*Nothing was restored/,
    );
    expect(restored).toEqual([]);
  });
});

describe('restore into a table that is the source by storage, not by name', () => {
  it('refuses --into naming a partition of the (partitioned) archived table: the rows would be back in the source', async () => {
    await sql.query(`
      CREATE TABLE rr.pevents (id bigint NOT NULL, created_at timestamptz NOT NULL, body text, PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at);
      CREATE TABLE rr.pevents_2025 PARTITION OF rr.pevents FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
      CREATE TABLE rr.pevents_rest PARTITION OF rr.pevents DEFAULT;
      INSERT INTO rr.pevents SELECT i, '2025-06-01 00:00:00+00'::timestamptz + i * interval '1 hour', md5(i::text) FROM generate_series(1, 40) AS i;
      INSERT INTO rr.pevents VALUES (1000, now(), 'fresh');`);
    const config = { targets: [{ ...target(), source: 'rr.pevents', key: ['id', 'created_at'] }] };
    const summary = await runArchive(db.url, config);
    expect(summary.targets[0]!.detail).toBeUndefined();
    expect((await sql.query(`SELECT count(*)::int AS n FROM rr.pevents`)).rows[0].n).toBe(1);

    let outcome: unknown;
    try {
      outcome = await restoreFromCli(config, db.url, { from: '2025-06-01', to: '2025-06-02', into: 'rr.pevents_2025' });
    } catch (error) {
      outcome = error;
    }
    const inSource = (await sql.query(`SELECT count(*)::int AS n FROM rr.pevents`)).rows[0].n;
    // What the next archive run then does with the rows restore put back into its source.
    const next = inSource > 1 ? (await runArchive(db.url, config)).targets[0]!.detail : undefined;
    expect(
      inSource,
      `restore into a partition of the source put rows back into the source (outcome: ${JSON.stringify(outcome)}; the next archive run: ${next ?? 'ok'})`,
    ).toBe(1);
    expect(outcome).toBeInstanceOf(Error);
    expect((outcome as Error).message).toMatch(
      /rr\.pevents_2025 shares its storage with the archive's source rr\.pevents \(one is a partition or an inheriting child of the other\)/,
    );
  });

  it('refuses --into naming a view over the archived table: the rows would be back in the source', async () => {
    await sql.query(`CREATE VIEW rr.events_view AS SELECT * FROM rr.events`);
    const config = { targets: [target()] };
    expect((await runArchive(db.url, config)).targets[0]!.detail).toBeUndefined();
    let outcome: unknown;
    try {
      outcome = await restoreFromCli(config, db.url, { from: '2025-06-01', to: '2025-06-02', into: 'rr.events_view' });
    } catch (error) {
      outcome = error;
    }
    const inSource = (await sql.query(`SELECT count(*)::int AS n FROM rr.events`)).rows[0].n;
    expect(inSource, `restore into a view on the source put rows back into the source (outcome: ${JSON.stringify(outcome)})`).toBe(1);
    expect(outcome).toBeInstanceOf(Error);
    expect((outcome as Error).message).toMatch(/rr\.events_view is a view, not a table/);
  });
});

describe('restore into a table whose column is narrower than the archived one', () => {
  it('refuses naming the column (as it does for another numeric scale), not claiming the empty table already holds other rows', async () => {
    const config = { targets: [target()] };
    expect((await runArchive(db.url, config)).targets[0]!.detail).toBeUndefined();
    // The same columns, body as varchar(10): every archived body (32 characters) is cut to 10 by the insert's cast.
    await sql.query(`CREATE TABLE rr.events_narrow (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, body varchar(10))`);
    const error = await restoreFromCli(config, db.url, { from: '2025-06-01', to: '2025-06-01', into: 'rr.events_narrow' }).then(
      (summary) => new Error(`restored: ${JSON.stringify(summary)}`),
      (e: Error) => e,
    );
    expect(await postgresRows(sql, 'rr.events_narrow')).toEqual([]);
    expect(error.message, 'the table was empty: it held no row of the object').not.toMatch(/already holds/);
    expect(error.message).toMatch(/body \(text in the object, character varying\(10\) in rr\.events_narrow\).*Nothing was restored/);
  });
});

describe('restore run twice at once (a rerun while the first is still running) into a table without a unique key', () => {
  it('puts each row in once', async () => {
    const config = { targets: [target()] };
    expect((await runArchive(db.url, config)).targets[0]!.detail).toBeUndefined();
    // LIKE without INCLUDING ALL: the same columns, no primary key. A statement trigger that takes a
    // second stands for a large table's slow insert, so the two restores overlap.
    await sql.query(`
      CREATE TABLE rr.events_plain (LIKE rr.events);
      CREATE FUNCTION rr.slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$;
      CREATE TRIGGER slow AFTER INSERT ON rr.events_plain FOR EACH STATEMENT EXECUTE FUNCTION rr.slow();`);
    const range = { from: '2025-06-01', to: '2025-06-02', into: 'rr.events_plain' };
    const outcomes = await Promise.allSettled([restoreFromCli(config, db.url, range), restoreFromCli(config, db.url, range)]);
    const { rows } = await sql.query<{ id: string; n: number }>(
      `SELECT id::text, count(*)::int AS n FROM rr.events_plain GROUP BY id HAVING count(*) > 1 ORDER BY id::bigint`,
    );
    expect(
      rows.map((r) => r.id),
      `keys restored twice (outcomes: ${outcomes.map((o) => (o.status === 'fulfilled' ? JSON.stringify(o.value) : String(o.reason))).join(' | ')})`,
    ).toEqual([]);
    expect((await sql.query(`SELECT count(*)::int AS n FROM rr.events_plain`)).rows[0].n).toBe(40);
    // The one that found the other running says so; a rerun afterwards is then a no-op.
    const refused = outcomes.filter((o) => o.status === 'rejected').map((o) => String((o as PromiseRejectedResult).reason));
    for (const reason of refused) expect(reason).toMatch(/another restore into rr\.events_plain or a table of its tree is running/);
    expect(await restoreFromCli(config, db.url, range)).toMatchObject({ rowsInserted: 0, rowsAlreadyPresent: 40 });
  });
});

describe('restore of an object S3 returns damaged (gzip, the default compression)', () => {
  it('refuses naming the object', async () => {
    const config = { targets: [target({ compression: 'gzip' })] };
    expect((await runArchive(db.url, config)).targets[0]!.detail).toBeUndefined();
    const { rows: objects } = await sql.query<{ object_key: string }>(`SELECT object_key FROM housekeeping.archive_objects WHERE dt = '2025-06-02'`);
    const key = objects[0]!.object_key;
    const bytes = Buffer.from(await getObject(key));
    // Damage a few bytes in the middle of the first page's compressed data.
    for (let i = 40; i < 48; i++) bytes[i] = bytes[i]! ^ 0xff;
    await putObject(key, bytes);
    await sql.query(`CREATE TABLE rr.events_back (LIKE rr.events INCLUDING ALL)`);
    const error = await restoreFromCli(config, db.url, { from: '2025-06-01', to: '2025-06-02', into: 'rr.events_back' }).then(
      (summary) => new Error(`restored: ${JSON.stringify(summary)}`),
      (e: Error) => e,
    );
    expect(
      (await sql.query(`SELECT count(*)::int AS n FROM rr.events_back WHERE id >= 24`)).rows[0].n,
      'rows of the damaged object were inserted',
    ).toBe(0);
    expect(error.message, 'the error should say which object could not be read').toContain(key);
  });
});

describe('restore --from/--to', () => {
  it('refuses a day that does not exist naming the option, like a malformed one', async () => {
    const config = { targets: [target()] };
    await sql.query(`CREATE TABLE rr.events_back (LIKE rr.events INCLUDING ALL)`);
    await expect(restoreFromCli(config, db.url, { from: '2025-02-30', to: '2025-03-01', into: 'rr.events_back' })).rejects.toThrow(
      /--from: expected a day of the calendar as YYYY-MM-DD, got "2025-02-30"/,
    );
    await expect(restoreFromCli(config, db.url, { from: '2025-02-01', to: '2025-13-01', into: 'rr.events_back' })).rejects.toThrow(/--to: /);
  });
});

describe("restore checks an object's checksum as the manifest's checksum_kind says it was computed", () => {
  /** The first writer's checksum of a day's rows, computed by Postgres: md5 over each row's canonical texts, `N` or `V<bytes>:<text>`, a newline after each row. */
  async function firstWritersChecksum(day: string): Promise<string> {
    const plans = await planColumns(sql, { schema: 'rr', name: 'events' });
    const framed = plans
      .map((p) => `CASE WHEN ${p.select} IS NULL THEN 'N' ELSE 'V' || octet_length(${p.select}) || ':' || ${p.select} END`)
      .join(', ');
    const { rows } = await sql.query<{ checksum: string }>(
      `SELECT md5(string_agg(concat(${framed}) || E'\\n', '' ORDER BY t.id)) AS checksum FROM rr.events AS t WHERE (t.created_at AT TIME ZONE 'UTC')::date = $1::date`,
      [day],
    );
    return rows[0]!.checksum;
  }

  it('records the kind of every object it writes', async () => {
    expect((await runArchive(db.url, { targets: [target()] })).targets[0]!.detail).toBeUndefined();
    const { rows } = await sql.query<{ kind: string }>(`SELECT DISTINCT checksum_kind AS kind FROM housekeeping.archive_objects`);
    expect(rows).toEqual([{ kind: 'source-fields-sha256' }]);
  });

  it("recomputes the first writer's md5 of an object written before the kind was recorded: intact, restored; changed, refused", async () => {
    const config = { targets: [target()] };
    const before = await postgresRows(sql, 'rr.events');
    const md5 = await firstWritersChecksum('2025-06-01');
    expect((await runArchive(db.url, config)).targets[0]!.detail).toBeUndefined();
    await sql.query(`UPDATE housekeeping.archive_objects SET checksum = $1, checksum_kind = NULL WHERE dt = '2025-06-01'`, [md5]);
    await sql.query(`CREATE TABLE rr.events_back (LIKE rr.events INCLUDING ALL)`);
    expect(await restoreFromCli(config, db.url, { from: '2025-06-01', to: '2025-06-01', into: 'rr.events_back' })).toMatchObject({
      rowsInserted: 23,
    });
    expect(await postgresRows(sql, 'rr.events_back')).toEqual(before.filter((row) => JSON.parse(row)[0] <= 23));

    const key = (await sql.query<{ k: string }>(`SELECT object_key AS k FROM housekeeping.archive_objects WHERE dt = '2025-06-01'`)).rows[0]!.k;
    const bytes = Buffer.from(await getObject(key));
    const at = bytes.indexOf(createHash('md5').update('5').digest('hex'));
    bytes[at] = bytes[at] === 0x30 ? 0x31 : 0x30;
    await putObject(key, bytes);
    await sql.query(`DROP TABLE rr.events_back; CREATE TABLE rr.events_back (LIKE rr.events INCLUDING ALL)`);
    await expect(restoreFromCli(config, db.url, { from: '2025-06-01', to: '2025-06-01', into: 'rr.events_back' })).rejects.toThrow(
      new RegExp(`${key.replace(/[.]/g, '\\.')} is not the object archived \\(its values' checksum is [0-9a-f]{32}, the manifest's ${md5}\\)`),
    );
    expect(await postgresRows(sql, 'rr.events_back')).toEqual([]);
  });

  it('checks size and row count alone where the checksum cannot be recomputed, and refuses a kind it does not know', async () => {
    const config = { targets: [target()] };
    expect((await runArchive(db.url, config)).targets[0]!.detail).toBeUndefined();
    // An earlier writer's sha256 over its PLAIN values: nothing computes it any more.
    await sql.query(`UPDATE housekeeping.archive_objects SET checksum = repeat('ab', 32), checksum_kind = NULL WHERE dt = '2025-06-01'`);
    await sql.query(`UPDATE housekeeping.archive_objects SET checksum_kind = 'from-the-future' WHERE dt = '2025-06-02'`);
    await sql.query(`CREATE TABLE rr.events_back (LIKE rr.events INCLUDING ALL)`);
    expect(await restoreFromCli(config, db.url, { from: '2025-06-01', to: '2025-06-01', into: 'rr.events_back' })).toMatchObject({
      rowsInserted: 23,
    });
    await expect(restoreFromCli(config, db.url, { from: '2025-06-02', to: '2025-06-02', into: 'rr.events_back' })).rejects.toThrow(
      /has a checksum of kind from-the-future, which this version does not know: restore with the version that archived it/,
    );
  });
});

// Tables of an inheritance tree (a second review; both failed before their fix).
const outcomeOf = <T>(p: Promise<T>) =>
  p.then(
    (v) => ({ ok: true as const, value: v }),
    (e: Error) => ({ ok: false as const, error: e }),
  );

describe('restore --into a table that inherits from the source (INHERITS, not a partition)', () => {
  it('is refused like a partition of the source: its rows would be read as the source again', async () => {
    const config = { targets: [target()] };
    const before = await postgresRows(sql, 'rr.events');
    expect((await runArchive(db.url, config)).targets[0]!.detail).toBeUndefined();
    expect((await sql.query(`SELECT count(*)::int AS n FROM rr.events`)).rows[0].n).toBe(1);
    await sql.query(`CREATE TABLE rr.events_child () INHERITS (rr.events)`);
    const outcome = await outcomeOf(restoreFromCli(config, db.url, { from: '2025-06-01', to: '2025-06-02', into: 'rr.events_child' }));
    const inSource = await postgresRows(sql, 'rr.events');
    const next = inSource.length > 1 ? (await runArchive(db.url, config)).targets[0]!.detail : undefined;
    expect(
      inSource.length,
      `restore into a child of the source put ${inSource.length - 1} archived rows back into what reads of rr.events return ` +
        `(restore: ${outcome.ok ? JSON.stringify(outcome.value) : outcome.error.message}; the next archive run: ${next ?? 'ok'})`,
    ).toBe(1);
    expect(before.length).toBe(41);
    expect(outcome.ok).toBe(false);
    expect(!outcome.ok && outcome.error.message).toMatch(
      /rr\.events_child shares its storage with the archive's source rr\.events \(one is a partition or an inheriting child of the other\)/,
    );
  });
});

describe('two restores at once: one into a partitioned table, one into its partition', () => {
  it('puts each row in once (the lock is per table name; the partition is the same storage)', async () => {
    const config = { targets: [target()] };
    const before = await postgresRows(sql, 'rr.events');
    expect((await runArchive(db.url, config)).targets[0]!.detail).toBeUndefined();
    // No unique key (as in the existing test of two restores into one table), partitioned by day.
    await sql.query(`
      CREATE TABLE rr.back (id bigint, created_at timestamptz NOT NULL, body text) PARTITION BY RANGE (created_at);
      CREATE TABLE rr.back_2025 PARTITION OF rr.back FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
      CREATE FUNCTION rr.slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$;
      CREATE TRIGGER slow AFTER INSERT ON rr.back FOR EACH STATEMENT EXECUTE FUNCTION rr.slow();
      CREATE TRIGGER slow AFTER INSERT ON rr.back_2025 FOR EACH STATEMENT EXECUTE FUNCTION rr.slow();`);
    const outcomes = await Promise.all([
      outcomeOf(restoreFromCli(config, db.url, { from: '2025-06-01', to: '2025-06-02', into: 'rr.back' })),
      outcomeOf(restoreFromCli(config, db.url, { from: '2025-06-01', to: '2025-06-02', into: 'rr.back_2025' })),
    ]);
    const restored = await postgresRows(sql, 'rr.back');
    const archived = before.filter((row) => !row.includes('fresh'));
    expect(restored, `outcomes: ${outcomes.map((o) => (o.ok ? JSON.stringify(o.value) : o.error.message)).join(' | ')}`).toEqual(archived);
    // The one that found the other running says so.
    for (const outcome of outcomes)
      if (!outcome.ok) expect(outcome.error.message).toMatch(/another restore into rr\.back or a table of its tree is running/);
  });
});
