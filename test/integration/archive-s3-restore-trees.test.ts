import type pg from 'pg';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { setObjectStoreFactory } from '../../functions/archive/s3/store';
import { restoreFromCli } from '../../scripts/cli';
import { runArchive } from '../support/archive';
import { openS3ArchiveTest, postgresRows, resetS3ArchiveTest } from '../support/archive-s3';
import type { TestDatabase } from '../support/db';
import type { TestS3 } from '../support/s3';

/**
 * Restore into tables of an inheritance tree (written by an adversarial review; both failed before
 * their fix): a child of the source by INHERITS, and two restores at once into a partitioned table
 * and its partition.
 */

let db: TestDatabase;
let sql: pg.Client;
let s3: TestS3;

const DDL = `
  DROP SCHEMA IF EXISTS r2 CASCADE; CREATE SCHEMA r2;
  CREATE TABLE r2.events (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, body text);
  INSERT INTO r2.events SELECT i, '2025-06-01 00:00:00+00'::timestamptz + i * interval '1 hour', md5(i::text) FROM generate_series(1, 40) AS i;
  INSERT INTO r2.events VALUES (1000, now(), 'fresh');
`;

const target = (extra: Record<string, unknown> = {}) => ({
  source: 'r2.events',
  destination: { s3: { bucket: 'hk-archive', prefix: 'r2', rowsPerObject: 100, rowGroupRows: 100, compression: 'none' as const } },
  ageColumn: 'created_at',
  retention: '30 days',
  ...extra,
});

beforeAll(async () => {
  ({ db, sql, s3 } = await openS3ArchiveTest());
});
beforeEach(() => resetS3ArchiveTest(sql, s3, DDL));
afterEach(() => setObjectStoreFactory(undefined));

const outcomeOf = <T>(p: Promise<T>) =>
  p.then(
    (v) => ({ ok: true as const, value: v }),
    (e: Error) => ({ ok: false as const, error: e }),
  );

describe('restore --into a table that inherits from the source (INHERITS, not a partition)', () => {
  it('is refused like a partition of the source: its rows would be read as the source again', async () => {
    const config = { targets: [target()] };
    const before = await postgresRows(sql, 'r2.events');
    expect((await runArchive(db.url, config)).targets[0]!.detail).toBeUndefined();
    expect((await sql.query(`SELECT count(*)::int AS n FROM r2.events`)).rows[0].n).toBe(1);
    await sql.query(`CREATE TABLE r2.events_child () INHERITS (r2.events)`);
    const outcome = await outcomeOf(restoreFromCli(config, db.url, { from: '2025-06-01', to: '2025-06-02', into: 'r2.events_child' }));
    const inSource = await postgresRows(sql, 'r2.events');
    const next = inSource.length > 1 ? (await runArchive(db.url, config)).targets[0]!.detail : undefined;
    expect(
      inSource.length,
      `restore into a child of the source put ${inSource.length - 1} archived rows back into what reads of r2.events return ` +
        `(restore: ${outcome.ok ? JSON.stringify(outcome.value) : outcome.error.message}; the next archive run: ${next ?? 'ok'})`,
    ).toBe(1);
    expect(before.length).toBe(41);
    expect(outcome.ok).toBe(false);
    expect(!outcome.ok && outcome.error.message).toMatch(
      /r2\.events_child shares its storage with the archive's source r2\.events \(one is a partition or an inheriting child of the other\)/,
    );
  });
});

describe('two restores at once: one into a partitioned table, one into its partition', () => {
  it('puts each row in once (the lock is per table name; the partition is the same storage)', async () => {
    const config = { targets: [target()] };
    const before = await postgresRows(sql, 'r2.events');
    expect((await runArchive(db.url, config)).targets[0]!.detail).toBeUndefined();
    // No unique key (as in the existing test of two restores into one table), partitioned by day.
    await sql.query(`
      CREATE TABLE r2.back (id bigint, created_at timestamptz NOT NULL, body text) PARTITION BY RANGE (created_at);
      CREATE TABLE r2.back_2025 PARTITION OF r2.back FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
      CREATE FUNCTION r2.slow() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$;
      CREATE TRIGGER slow AFTER INSERT ON r2.back FOR EACH STATEMENT EXECUTE FUNCTION r2.slow();
      CREATE TRIGGER slow AFTER INSERT ON r2.back_2025 FOR EACH STATEMENT EXECUTE FUNCTION r2.slow();`);
    const outcomes = await Promise.all([
      outcomeOf(restoreFromCli(config, db.url, { from: '2025-06-01', to: '2025-06-02', into: 'r2.back' })),
      outcomeOf(restoreFromCli(config, db.url, { from: '2025-06-01', to: '2025-06-02', into: 'r2.back_2025' })),
    ]);
    const restored = await postgresRows(sql, 'r2.back');
    const archived = before.filter((row) => !row.includes('fresh'));
    expect(restored, `outcomes: ${outcomes.map((o) => (o.ok ? JSON.stringify(o.value) : o.error.message)).join(' | ')}`).toEqual(archived);
    // The one that found the other running says so.
    for (const outcome of outcomes)
      if (!outcome.ok) expect(outcome.error.message).toMatch(/another restore into r2\.back or a table of its tree is running/);
  });
});
