import type pg from 'pg';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { restoreFromCli } from '../../scripts/cli';
import { runArchive } from '../support/archive';
import { captureS3Invariant, postgresRows } from '../support/archive-s3';
import { createTestDatabase, type TestDatabase } from '../support/db';
import { duckdb, startTestS3, type TestS3 } from '../support/s3';

/**
 * Schemas users have, through archive and back through restore: keys under a case-insensitive
 * collation, stored generated columns, bpchar's own spaces, and columns named like the layout's
 * folders. Found by an adversarial review; each restore is compared row for row with the source.
 */
let db: TestDatabase;
let sql: pg.Client;
let s3: TestS3;

const target = (source: string, extra: Record<string, unknown> = {}, s3Options: Record<string, unknown> = {}) => ({
  source,
  destination: { s3: { bucket: 'hk-archive', prefix: 'sc', rowsPerObject: 100, rowGroupRows: 100, ...s3Options } },
  ageColumn: 'created_at',
  retention: '30 days',
  ...extra,
});
const JUNE_FIRST = { from: '2025-06-01', to: '2025-06-01' };

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
  s3 = await startTestS3();
});

beforeEach(async () => {
  await sql.query(`DROP SCHEMA IF EXISTS sc CASCADE; CREATE SCHEMA sc;`);
  await sql.query(`TRUNCATE housekeeping.archive_restores, housekeeping.archive_objects`).catch(() => {});
  await s3.empty();
});

/** sc.named: a key that compares without case (c = C) but is unique byte for byte, holding b, c and C. */
async function createCaseInsensitiveKeys() {
  await sql.query(`
    CREATE COLLATION sc.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
    CREATE TABLE sc.named (name text COLLATE sc.ci NOT NULL, created_at timestamptz NOT NULL, body text);
    CREATE UNIQUE INDEX named_name ON sc.named (name COLLATE "C");
    INSERT INTO sc.named VALUES ('b', '2025-06-01', 'b'), ('c', '2025-06-01', 'lower c'), ('C', '2025-06-01', 'upper C');`);
}

describe('restore', () => {
  it('restores both c and C of a key that compares case-insensitively but is unique byte for byte; twice is once', async () => {
    await createCaseInsensitiveKeys();
    const before = await postgresRows(sql, 'sc.named');
    const invariant = await captureS3Invariant(sql, s3, { source: 'sc.named', folder: 'sc/table=sc.named' });
    const config = { targets: [target('sc.named', { key: 'name' })] };
    expect((await runArchive(db.url, config)).targets[0]!.detail).toBeUndefined();
    expect(await invariant.verify()).toMatchObject({ left: 0, archived: 3 });
    await sql.query(`CREATE TABLE sc.named_back (LIKE sc.named INCLUDING ALL)`);
    const into = { ...JUNE_FIRST, into: 'sc.named_back' };
    expect(await restoreFromCli(config, db.url, into)).toMatchObject({ rowsInserted: 3, rowsAlreadyPresent: 0 });
    expect(await restoreFromCli(config, db.url, into)).toMatchObject({ rowsInserted: 0, rowsAlreadyPresent: 3 });
    expect(await postgresRows(sql, 'sc.named_back')).toEqual(before);
    // A table unique under the case-insensitive collation cannot hold both: refused, naming the key, nothing of the object restored.
    await sql.query(`CREATE TABLE sc.named_ci (LIKE sc.named); CREATE UNIQUE INDEX ON sc.named_ci (name)`);
    await expect(restoreFromCli(config, db.url, { ...JUNE_FIRST, into: 'sc.named_ci' })).rejects.toThrow(/refused 1 row\(s\) of .* \(name = [cC]\)/);
    expect(await postgresRows(sql, 'sc.named_ci')).toEqual([]);
  });

  it('restores a table with a stored generated column into LIKE ... INCLUDING ALL; another generation expression is refused', async () => {
    await sql.query(`
      CREATE TABLE sc.priced (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, net numeric(12, 2),
        gross numeric(14, 2) GENERATED ALWAYS AS (net * 1.2) STORED);
      INSERT INTO sc.priced (id, created_at, net) SELECT i, '2025-06-01'::timestamptz + i * interval '1 minute', i * 10.05 FROM generate_series(1, 5) AS i;`);
    const before = await postgresRows(sql, 'sc.priced');
    const config = { targets: [target('sc.priced')] };
    expect((await runArchive(db.url, config)).targets[0]!.counts).toMatchObject({ rowsMoved: 5 });
    // The archived objects hold the generated values as the source had them.
    const dir = await s3.download('sc/table=sc.priced/');
    const gross = await duckdb(`SELECT CAST(gross AS VARCHAR) AS g FROM read_parquet('${dir}/sc/table=sc.priced/*/*.parquet') ORDER BY id`);
    expect(gross.map((r) => r.g)).toEqual(['12.06', '24.12', '36.18', '48.24', '60.30']);
    await sql.query(`CREATE TABLE sc.priced_back (LIKE sc.priced INCLUDING ALL)`);
    expect(await restoreFromCli(config, db.url, { ...JUNE_FIRST, into: 'sc.priced_back' })).toMatchObject({ rowsInserted: 5 });
    expect(await postgresRows(sql, 'sc.priced_back')).toEqual(before);
    await sql.query(`CREATE TABLE sc.priced_other (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, net numeric(12, 2),
        gross numeric(14, 2) GENERATED ALWAYS AS (net * 1.25) STORED)`);
    await expect(restoreFromCli(config, db.url, { ...JUNE_FIRST, into: 'sc.priced_other' })).rejects.toThrow(
      /with different contents under the same key/,
    );
    expect(await postgresRows(sql, 'sc.priced_other')).toEqual([]);
  });
});

describe('values', () => {
  it("keeps a bpchar's own trailing spaces (no length, so no padding) in the object and through restore; char(n) drops its padding", async () => {
    await sql.query(`
      CREATE TABLE sc.codes (id int PRIMARY KEY, created_at timestamptz NOT NULL, loose bpchar, fixed char(5), fixed_list char(4)[]);
      INSERT INTO sc.codes VALUES (1, '2025-06-01', 'ab  ', 'ab', '{ab,"c  "}'), (2, '2025-06-01', '', '', '{}'), (3, '2025-06-01', NULL, NULL, NULL), (4, '2025-06-01', ' x', ' x', '{" x"}');`);
    const lengths = `SELECT id, octet_length(loose) AS loose, octet_length(fixed::text) AS fixed, fixed_list::text AS list FROM sc.codes ORDER BY id`;
    const { rows: before } = await sql.query(lengths);
    const config = { targets: [target('sc.codes')] };
    expect((await runArchive(db.url, config)).targets[0]!.counts).toMatchObject({ rowsMoved: 4 });
    const dir = await s3.download('sc/table=sc.codes/');
    const stored = await duckdb(
      `SELECT id, octet_length(CAST(loose AS BLOB))::INTEGER AS loose, octet_length(CAST(fixed AS BLOB))::INTEGER AS fixed FROM read_parquet('${dir}/sc/table=sc.codes/*/*.parquet') ORDER BY id`,
    );
    expect(stored).toEqual([
      { id: 1, loose: 4, fixed: 2 },
      { id: 2, loose: 0, fixed: 0 },
      { id: 3, loose: null, fixed: null },
      { id: 4, loose: 2, fixed: 2 },
    ]);
    await sql.query(`CREATE TABLE sc.codes_back (LIKE sc.codes INCLUDING ALL)`);
    const into = { ...JUNE_FIRST, into: 'sc.codes_back' };
    expect(await restoreFromCli(config, db.url, into)).toMatchObject({ rowsInserted: 4 });
    // Twice is once: the rows already there compare equal, spaces included.
    expect(await restoreFromCli(config, db.url, into)).toMatchObject({ rowsInserted: 0, rowsAlreadyPresent: 4 });
    expect((await sql.query(lengths.replace('sc.codes', 'sc.codes_back'))).rows).toEqual(before);
  });
});

describe('column names', () => {
  it('refuses, before anything moves, columns named as the layout folders (dt, table, and the prefix’s own name=value), without regard to case', async () => {
    await sql.query(`CREATE TABLE sc.ev (id int PRIMARY KEY, created_at timestamptz NOT NULL, "DT" text, "table" text, env text, note text);
      INSERT INTO sc.ev VALUES (1, '2025-06-01 10:00+00', 'mine', 't1', 'prod', 'n');`);
    const before = await postgresRows(sql, 'sc.ev');
    const summary = await runArchive(db.url, { targets: [target('sc.ev', {}, { prefix: 'sc/env=prod' })] });
    expect(summary.targets[0]!.state).toBe('failed');
    expect(summary.targets[0]!.detail).toContain('has column(s) DT, table, env named as the object layout');
    expect(summary.targets[0]!.detail).toContain('Nothing was moved');
    expect(await postgresRows(sql, 'sc.ev')).toEqual(before);
    expect(await s3.keys()).toEqual([]);
    // Without those names the same table moves.
    await sql.query(
      `ALTER TABLE sc.ev RENAME "DT" TO label; ALTER TABLE sc.ev RENAME "table" TO source_table; ALTER TABLE sc.ev RENAME env TO environment`,
    );
    expect((await runArchive(db.url, { targets: [target('sc.ev', {}, { prefix: 'sc/env=prod' })] })).targets[0]!.counts).toMatchObject({
      rowsMoved: 1,
    });
  });
});

describe('rows another session holds', () => {
  const holding = async (statement: string, work: () => Promise<void>) => {
    const holder = await db.connect('holder');
    await holder.query('BEGIN');
    await holder.query(statement);
    try {
      await work();
    } finally {
      await holder.query('ROLLBACK');
      await holder.end();
    }
  };

  it('leaves only the held key of a key that compares case-insensitively: c held, C and b moved', async () => {
    await createCaseInsensitiveKeys();
    const invariant = await captureS3Invariant(sql, s3, { source: 'sc.named', folder: 'sc/table=sc.named' });
    const config = { targets: [target('sc.named', { key: 'name' })] };
    await holding(`SELECT * FROM sc.named WHERE name = 'c' COLLATE "C" FOR UPDATE`, async () => {
      const summary = await runArchive(db.url, config);
      expect(summary.targets[0]!.detail).toBeUndefined();
      expect(summary.targets[0]!.counts).toMatchObject({ rowsMoved: 2, lockedRowBatches: 1 });
      expect((await sql.query(`SELECT body FROM sc.named`)).rows).toEqual([{ body: 'lower c' }]);
      expect(await invariant.verify()).toMatchObject({ left: 1, archived: 2 });
    });
    expect((await runArchive(db.url, config)).targets[0]!.counts).toMatchObject({ rowsMoved: 1 });
    expect(await invariant.verify()).toMatchObject({ left: 0, archived: 3 });
  });

  it('moves past a long range of held rows and around densely held ones, every batch moving what it can', async () => {
    await sql.query(`CREATE TABLE sc.r (id int PRIMARY KEY, created_at timestamptz NOT NULL, body text);
      INSERT INTO sc.r SELECT i, '2025-06-01'::timestamptz + i * interval '1 minute', 'b' || i FROM generate_series(1, 3000) AS i`);
    const invariant = await captureS3Invariant(sql, s3, { source: 'sc.r', folder: 'sc/table=sc.r' });
    // An uncommitted backfill holding ten batches' worth of rows in a row.
    await holding(`SELECT * FROM sc.r WHERE id BETWEEN 501 AND 1500 FOR UPDATE`, async () => {
      const summary = await runArchive(db.url, { targets: [target('sc.r')] });
      expect(summary.targets[0]!.detail).toBeUndefined();
      expect(summary.targets[0]!.counts).toMatchObject({ rowsMoved: 2000 });
      expect((await sql.query(`SELECT min(id)::int AS lo, max(id)::int AS hi, count(*)::int AS n FROM sc.r`)).rows).toEqual([
        { lo: 501, hi: 1500, n: 1000 },
      ]);
      expect(await invariant.verify()).toMatchObject({ left: 1000, archived: 2000 });
    });
    // Three rows in four held, all over the table.
    await holding(`SELECT * FROM sc.r WHERE id % 4 <> 0 FOR UPDATE`, async () => {
      const summary = await runArchive(db.url, { targets: [target('sc.r', {}, { rowsPerObject: 400 })] });
      expect(summary.targets[0]!.detail).toBeUndefined();
      expect(summary.targets[0]!.counts).toMatchObject({ rowsMoved: 250 });
      expect(await invariant.verify()).toMatchObject({ left: 750, archived: 2250 });
    });
    expect((await runArchive(db.url, { targets: [target('sc.r')] })).targets[0]!.counts).toMatchObject({ rowsMoved: 750 });
    expect(await invariant.verify()).toMatchObject({ left: 0, archived: 3000 });
  });

  it('in a partitioned source with a composite key of awkward texts, leaves the held row and moves every other, from every partition', async () => {
    await sql.query(`
      CREATE TABLE sc.parts (n int NOT NULL, region text NOT NULL, id int NOT NULL, created_at timestamptz NOT NULL, body text, PRIMARY KEY (region, id, created_at)) PARTITION BY RANGE (created_at);
      CREATE TABLE sc.parts_may PARTITION OF sc.parts FOR VALUES FROM ('2025-05-01') TO ('2025-06-01');
      CREATE TABLE sc.parts_june PARTITION OF sc.parts FOR VALUES FROM ('2025-06-01') TO ('2025-07-01');
      INSERT INTO sc.parts SELECT row_number() OVER (), r, i, '2025-05-20'::timestamptz + i * interval '1 day', r || i
        FROM unnest(ARRAY['a"b\\', 'a"b', 'x,y', 'NULL']) AS r, generate_series(1, 20) AS i;`);
    // n, the first column, numbers the rows: the invariant's check that no row is in two objects.
    const invariant = await captureS3Invariant(sql, s3, { source: 'sc.parts', folder: 'sc/table=sc.parts' });
    const config = { targets: [target('sc.parts', { key: ['region', 'id', 'created_at'] })] };
    // Held in each partition: (a"b\, 2) in May and (a"b\, 20) in June; (a"b, 2) and (a"b, 20) are not held.
    await holding(`SELECT * FROM sc.parts WHERE region = 'a"b\\' AND id IN (2, 20) FOR UPDATE`, async () => {
      const summary = await runArchive(db.url, config);
      expect(summary.targets[0]!.detail).toBeUndefined();
      expect(summary.targets[0]!.counts).toMatchObject({ rowsMoved: 78 });
      expect((await sql.query(`SELECT region, id FROM sc.parts ORDER BY id`)).rows).toEqual([
        { region: 'a"b\\', id: 2 },
        { region: 'a"b\\', id: 20 },
      ]);
      expect(await invariant.verify()).toMatchObject({ left: 2, archived: 78 });
    });
    expect((await runArchive(db.url, config)).targets[0]!.counts).toMatchObject({ rowsMoved: 2 });
    expect(await invariant.verify()).toMatchObject({ left: 0, archived: 80 });
  });
});
