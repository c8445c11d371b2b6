import { Logger } from '@aws-lambda-powertools/logger';
import type pg from 'pg';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { ConfigError } from '../../shared/errors';
import { tryLockTarget } from '../../shared/advisory-lock';
import { ORDERS_DDL, runArchive, seedOrders } from '../support/archive';
import { createTestDatabase, type TestDatabase } from '../support/db';

let db: TestDatabase;
let sql: pg.Client;

const move = { source: 'app.orders', destination: 'app.orders_archive', ageColumn: 'completed_at', ageFallbackColumn: 'created_at', retention: '90 days' } as const;

async function ids(table: string): Promise<number[]> {
  const { rows } = await sql.query(`SELECT id FROM ${table} ORDER BY id`);
  return rows.map((r) => Number(r.id));
}

async function snapshot(table: string) {
  const { rows } = await sql.query(`SELECT * FROM ${table} ORDER BY id`);
  return rows;
}

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
});

beforeEach(async () => {
  await sql.query(ORDERS_DDL);
  await sql.query('DROP SCHEMA IF EXISTS housekeeping CASCADE');
});

afterEach(() => vi.restoreAllMocks());

describe('archive job: moving rows', () => {
  it('moves every expired row exactly once, in batches, and a second run has nothing to do', async () => {
    await sql.query(seedOrders(1234, 100));
    const before = await snapshot('app.orders');
    const summary = await runArchive(db.url, { targets: [{ ...move, batchSize: 100 }] });
    expect(summary.targets[0]).toMatchObject({ state: 'succeeded', stopReason: 'done', counts: { rowsMoved: 1234, batches: 13, alreadyArchived: 0 } });
    expect(await ids('app.orders')).toEqual(Array.from({ length: 100 }, (_, i) => 1235 + i));
    const archived = await snapshot('app.orders_archive');
    expect(archived).toEqual(before.slice(0, 1234)); // every column, every row, unchanged
    const again = await runArchive(db.url, { targets: [{ ...move, batchSize: 100 }] });
    expect(again.targets[0]).toMatchObject({ stopReason: 'done', counts: { rowsMoved: 0, batches: 0 } });
    const ledger = await sql.query(`SELECT state, detail FROM housekeeping.job_runs WHERE job = 'archive' ORDER BY recorded_at`);
    expect(ledger.rows.map((r) => r.state)).toEqual(['started', 'succeeded', 'started', 'succeeded']);
    expect(ledger.rows[1].detail).toBe('stopped: done');
  });

  it('uses the fallback column where the primary age column is NULL', async () => {
    await sql.query(`INSERT INTO app.orders (id, created_at, completed_at) VALUES
      (1, now() - interval '200 days', NULL),              -- never completed, created long ago: expired by fallback
      (2, now() - interval '200 days', now() - interval '1 day'), -- completed recently: kept although created long ago
      (3, now() - interval '1 day', NULL),                 -- new
      (4, now() - interval '300 days', now() - interval '100 days')`);
    const summary = await runArchive(db.url, { targets: [move] });
    expect(summary.targets[0]!.counts.rowsMoved).toBe(2);
    expect(await ids('app.orders_archive')).toEqual([1, 4]);
    expect(await ids('app.orders')).toEqual([2, 3]);
  });

  it('uses indexes for the two-branch age predicate and warns once when the source is scanned sequentially', async () => {
    // Expired rows carry the highest keys and rows lie in random physical order: without the age
    // indexes, walking the key index costs more than reading the whole table.
    await sql.query(`INSERT INTO app.orders (id, created_at, completed_at)
      SELECT i, CASE WHEN i > 20000 THEN now() - interval '200 days' ELSE now() END,
             CASE WHEN i > 20000 AND i % 2 = 0 THEN now() - interval '150 days' END
      FROM generate_series(1, 22000) AS i ORDER BY random(); ANALYZE app.orders`);
    const output: string[] = [];
    for (const stream of [process.stdout, process.stderr]) {
      vi.spyOn(stream, 'write').mockImplementation((chunk: string | Uint8Array) => (output.push(String(chunk)), true));
    }
    const logger = new Logger({ serviceName: 'test', logLevel: 'INFO' });
    await runArchive(db.url, { targets: [{ ...move, maxRowsPerRun: 10 }] }, { logger });
    expect(output.join('')).toContain('"cutoff":');
    expect(output.join('')).not.toContain('sequentially');
    await sql.query('DROP INDEX app.orders_completed_at_idx; DROP INDEX app.orders_created_at_idx');
    await runArchive(db.url, { targets: [{ ...move, maxRowsPerRun: 500 }] }, { logger });
    const warnings = output.join('').split('\n').filter((line) => line.includes('scans app.orders sequentially'));
    expect(warnings).toHaveLength(1); // once per run, not once per batch
    expect(JSON.parse(warnings[0]!)).toMatchObject({ level: 'WARN', target: 'app.orders' });
  });

  it('purge mode deletes expired rows without copying them', async () => {
    await sql.query(seedOrders(300, 10));
    const summary = await runArchive(db.url, {
      targets: [{ source: 'app.orders', mode: 'purge', ageColumn: 'created_at', retention: '100 days', batchSize: 64 }],
    });
    expect(summary.targets[0]).toMatchObject({ counts: { rowsPurged: 300, batches: 5 } });
    expect(await ids('app.orders')).toHaveLength(10);
    expect(await ids('app.orders_archive')).toEqual([]);
  });

  it('stops at maxRowsPerRun and says so; the next run continues', async () => {
    await sql.query(seedOrders(500, 0));
    const first = await runArchive(db.url, { targets: [{ ...move, batchSize: 120, maxRowsPerRun: 250 }] });
    expect(first.targets[0]).toMatchObject({ stopReason: 'max rows reached', counts: { rowsMoved: 250, batches: 3 } });
    const second = await runArchive(db.url, { targets: [{ ...move, batchSize: 120, maxRowsPerRun: 250 }] });
    expect(second.targets[0]!.counts.rowsMoved).toBe(250);
    expect(await ids('app.orders_archive')).toEqual(Array.from({ length: 500 }, (_, i) => i + 1));
  });

  it('dry run counts what would move and moves nothing', async () => {
    await sql.query(seedOrders(77, 5));
    const summary = await runArchive(db.url, { targets: [move], dryRun: true });
    expect(summary.targets[0]).toMatchObject({ state: 'succeeded', counts: { expiredRows: 77, wouldMove: 77 } });
    expect(summary.targets[0]!.notes[0]).toMatch(/dry run: nothing was changed\. 77 row\(s\) of app\.orders are older than/);
    expect(await ids('app.orders')).toHaveLength(82);
    expect(await ids('app.orders_archive')).toEqual([]);
  });

  it('skips keys already in the archive instead of duplicating them', async () => {
    await sql.query(seedOrders(10, 0));
    await sql.query(`INSERT INTO app.orders_archive SELECT * FROM app.orders WHERE id <= 3`);
    const summary = await runArchive(db.url, { targets: [move] });
    expect(summary.targets[0]!.counts).toMatchObject({ rowsMoved: 10, alreadyArchived: 3 });
    expect(await ids('app.orders_archive')).toEqual(Array.from({ length: 10 }, (_, i) => i + 1));
    expect(await ids('app.orders')).toEqual([]);
  });
});

describe('archive job on a partitioned source', () => {
  it('moves rows out of a partitioned table whose primary key includes the partition column', async () => {
    await sql.query(`CREATE TABLE app.events (id bigint NOT NULL, created_at timestamptz NOT NULL, kind text, PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at);
      CREATE TABLE app.events_old PARTITION OF app.events FOR VALUES FROM (MINVALUE) TO (now() - interval '30 days');
      CREATE TABLE app.events_new PARTITION OF app.events FOR VALUES FROM (now() - interval '30 days') TO (MAXVALUE);
      CREATE TABLE app.events_archive (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, kind text);
      INSERT INTO app.events SELECT i, now() - (i || ' days')::interval + interval '12 hours', 'k' FROM generate_series(1, 120) AS i;`);
    const summary = await runArchive(db.url, {
      targets: [{ source: 'app.events', destination: 'app.events_archive', ageColumn: 'created_at', retention: '60 days', batchSize: 25 }],
    });
    expect(summary.targets[0]).toMatchObject({ state: 'succeeded', counts: { rowsMoved: 60 } });
    expect(await ids('app.events_archive')).toEqual(Array.from({ length: 60 }, (_, i) => 61 + i));
    expect(await ids('app.events')).toEqual(Array.from({ length: 60 }, (_, i) => i + 1));
  });
});

describe('archive job beside other sessions', () => {
  it('skips rows another session has locked, and moves them on a later run', async () => {
    await sql.query(seedOrders(200, 0));
    const holder = await db.connect('holder');
    await holder.query('BEGIN');
    await holder.query('SELECT * FROM app.orders WHERE id BETWEEN 50 AND 59 FOR UPDATE');
    const started = performance.now();
    const summary = await runArchive(db.url, { targets: [{ ...move, batchSize: 30 }] });
    const elapsed = performance.now() - started;
    expect(summary.targets[0]!.counts.rowsMoved).toBe(190);
    expect(summary.targets[0]!.counts.lockedRowBatches).toBeGreaterThanOrEqual(1);
    expect(await ids('app.orders')).toEqual(Array.from({ length: 10 }, (_, i) => 50 + i));
    expect(elapsed).toBeLessThan(30_000); // never waited for the holder, which never lets go during the run
    await holder.query('ROLLBACK');
    await runArchive(db.url, { targets: [move] });
    expect(await ids('app.orders')).toEqual([]);
    expect(await ids('app.orders_archive')).toHaveLength(200);
  });

  it('keeps every row exactly once while another session inserts and updates during the run', async () => {
    await sql.query(seedOrders(3000, 0));
    const writer = await db.connect('writer');
    let writing = true;
    let nextId = 100_000;
    const writes = (async () => {
      while (writing) {
        // backdated inserts (eligible), fresh inserts (not), and edits that make rows young again
        await writer.query(`INSERT INTO app.orders (id, created_at, completed_at) VALUES ($1, now() - interval '400 days', now() - interval '300 days'), ($2, now(), NULL)`, [nextId, nextId + 1]);
        nextId += 2;
        await writer.query(`UPDATE app.orders SET completed_at = now(), status = 'reopened' WHERE id = (SELECT id FROM app.orders WHERE id < 3000 ORDER BY random() LIMIT 1)`);
      }
    })();
    await runArchive(db.url, { targets: [{ ...move, batchSize: 50, pauseMs: 2 }] });
    writing = false;
    await writes;
    const source = await ids('app.orders');
    const archive = await ids('app.orders_archive');
    const all = [...source, ...archive];
    expect(new Set(all).size).toBe(all.length); // no key in both tables
    const expected = [...Array.from({ length: 3000 }, (_, i) => i + 1), ...Array.from({ length: nextId - 100_000 }, (_, i) => 100_000 + i)];
    expect(all.sort((a, b) => a - b)).toEqual(expected); // and none lost
    const reopenedArchived = await sql.query(`SELECT count(*)::int AS n FROM app.orders_archive WHERE status = 'reopened' AND completed_at > now() - interval '1 day'`);
    expect(reopenedArchived.rows[0].n).toBe(0); // a row made young again was never archived
  });

  it('two concurrent runs: one moves, one is skipped, and every row is moved once', async () => {
    await sql.query(seedOrders(400, 0));
    const other = await db.connect('other');
    expect(await tryLockTarget(other, 'archive', 'app.orders')).toBe(true);
    const skipped = await runArchive(db.url, { targets: [move] });
    await other.query('SELECT pg_advisory_unlock_all()');
    expect(skipped.targets[0]).toMatchObject({ state: 'skipped', detail: 'locked: another run holds this target' });

    const [a, b] = await Promise.all([
      runArchive(db.url, { targets: [{ ...move, batchSize: 20, pauseMs: 5 }] }),
      runArchive(db.url, { targets: [{ ...move, batchSize: 20, pauseMs: 5 }] }),
    ]);
    const states = [a.targets[0]!.state, b.targets[0]!.state].sort();
    expect(states).toEqual(['skipped', 'succeeded']);
    expect((a.targets[0]!.counts.rowsMoved ?? 0) + (b.targets[0]!.counts.rowsMoved ?? 0)).toBe(400);
    expect(await ids('app.orders_archive')).toHaveLength(400);
  });
});

describe('archive job refuses bad tables before moving anything', () => {
  it.each([
    ['an extra column in the source', 'ALTER TABLE app.orders ADD COLUMN note text', /only in app\.orders: note/],
    ['an extra column in the archive', 'ALTER TABLE app.orders_archive ADD COLUMN archived_by text', /only in app\.orders_archive: archived_by/],
    [
      'a type mismatch',
      'ALTER TABLE app.orders_archive ALTER COLUMN amount TYPE integer',
      /incompatible types: amount \(app\.orders: numeric\(12,2\), app\.orders_archive: integer\)/,
    ],
    ['a narrower archive column', 'ALTER TABLE app.orders ALTER COLUMN status TYPE varchar(40); ALTER TABLE app.orders_archive ALTER COLUMN status TYPE varchar(10)', /incompatible types: status/],
    ['no unique key on the archive', 'ALTER TABLE app.orders_archive DROP CONSTRAINT orders_archive_pkey', /app\.orders_archive has no primary key or unique index on id alone/],
    ['a missing archive', 'DROP TABLE app.orders_archive', /destination table app\.orders_archive does not exist/],
    ['a missing source', 'DROP TABLE app.orders CASCADE', /source table app\.orders does not exist/],
    ['a source key that is not unique', 'ALTER TABLE app.orders DROP CONSTRAINT orders_pkey', /key: app\.orders has no primary key or unique index on id; .* must be unique/],
    ['a missing age column', 'ALTER TABLE app.orders DROP COLUMN completed_at; ALTER TABLE app.orders_archive DROP COLUMN completed_at', /ageColumn: column completed_at does not exist in app\.orders/],
    ['an age column that is not a timestamp', 'ALTER TABLE app.orders ALTER COLUMN completed_at TYPE text; ALTER TABLE app.orders_archive ALTER COLUMN completed_at TYPE text', /app\.orders\.completed_at is text; expected timestamptz, timestamp or date/],
  ])('%s', async (_label, ddl, message) => {
    await sql.query(seedOrders(50, 0).replace(/ANALYZE app.orders;/, ''));
    await sql.query(ddl);
    const before = await sql.query(`SELECT to_regclass('app.orders') IS NOT NULL AS present`);
    const sourceBefore = before.rows[0].present ? await ids('app.orders') : [];
    const summary = await runArchive(db.url, { targets: [move] });
    expect(summary.targets[0]!.state).toBe('failed');
    expect(summary.targets[0]!.detail).toMatch(message);
    if (before.rows[0].present) expect(await ids('app.orders')).toEqual(sourceBefore);
  });

  it('a missing key column', async () => {
    await sql.query(seedOrders(5, 0));
    const summary = await runArchive(db.url, { targets: [{ ...move, key: 'order_id' }] });
    expect(summary.targets[0]!.detail).toBe('key: column order_id does not exist in app.orders');
    expect(await ids('app.orders')).toHaveLength(5);
  });

  it.each([
    [{ ...move, source: 'orders; drop table x' }, /targets\[0\]\.source: "orders; drop table x" is not a plain identifier/],
    [{ ...move, destination: 'app."archive"' }, /targets\[0\]\.destination: .* is not a plain identifier/],
    [{ ...move, key: 'id) OR (1=1' }, /targets\[0\]\.key: .*is not a plain identifier/],
    [{ ...move, ageColumn: 'created_at; --' }, /targets\[0\]\.ageColumn: .*is not a plain identifier/],
    [{ ...move, batchSize: 0 }, /targets\[0\]\.batchSize: Too small.*got 0/],
    [{ ...move, batchSize: 10_000_000 }, /targets\[0\]\.batchSize: Too big.*got 10000000/],
    [{ ...move, retention: '0 days' }, /targets\[0\]\.retention: "0 days" is not a duration/],
    [{ ...move, retention: 'forever' }, /targets\[0\]\.retention: "forever" is not a duration/],
    [{ source: 'app.orders', ageColumn: 'created_at', retention: '1 day' }, /targets\[0\]\.destination: is required in move mode/],
    [{ ...move, mode: 'purge' }, /targets\[0\]\.destination: must not be set in purge mode/],
    [{ ...move, destination: 'public.orders', source: 'orders' }, /targets\[0\]\.destination: must differ from source/],
  ])('refuses %j', async (target, message) => {
    await sql.query(seedOrders(5, 0));
    const run = runArchive(db.url, { targets: [target as never] });
    await expect(run).rejects.toThrowError(ConfigError);
    await expect(run).rejects.toThrowError(message);
    expect(await ids('app.orders')).toHaveLength(5);
  });
});
