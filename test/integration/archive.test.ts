import { Logger } from '@aws-lambda-powertools/logger';
import type pg from 'pg';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { readArchiveCatalog } from '../../functions/archive/catalog';
import { planCutoffs } from '../../functions/archive/plan';
import { renderArchiveSql } from '../../functions/archive/sql';
import { tryLockTarget } from '../../shared/advisory-lock';
import { ConfigError } from '../../shared/errors';
import { databaseNow } from '../../shared/postgres';
import { captureArchiveInvariant, ORDERS_DDL, runArchive, runArchiveChecked, seedOrders } from '../support/archive';
import { createTestDatabase, type TestDatabase } from '../support/db';
import { rowDigests } from '../support/fingerprint';

let db: TestDatabase;
let sql: pg.Client;

const move = {
  source: 'app.orders',
  destination: 'app.orders_archive',
  ageColumn: 'completed_at',
  ageFallbackColumn: 'created_at',
  retention: '90 days',
} as const;
const purge = { source: 'app.orders', mode: 'purge', ageColumn: 'created_at', retention: '100 days' } as const;
/** The rows `purge` retires (seedOrders keeps every row far from the cutoff). */
const PURGE_EXPIRED = `t.created_at < now() - interval '100 days'`;

async function ids(table: string): Promise<number[]> {
  const { rows } = await sql.query(`SELECT id FROM ${table} ORDER BY id`);
  return rows.map((r) => Number(r.id));
}

const range = (from: number, to: number) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
/** Every archive run in this file goes through the invariant: see captureArchiveInvariant. */
const archive = (event: Parameters<typeof runArchiveChecked>[2], options?: Parameters<typeof runArchiveChecked>[3]) =>
  runArchiveChecked(sql, db.url, event, options);

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
});

beforeEach(async () => {
  await sql.query(ORDERS_DDL);
  await sql.query('DROP SCHEMA IF EXISTS housekeeping CASCADE; DROP SCHEMA IF EXISTS other CASCADE; CREATE SCHEMA other');
});

afterEach(() => vi.restoreAllMocks());

describe('archive job: moving rows', () => {
  it('moves every expired row exactly once, in batches, and a second run has nothing to do', async () => {
    await sql.query(seedOrders(1234, 100));
    const summary = await archive({ targets: [{ ...move, batchSize: 100 }] });
    expect(summary.targets[0]).toMatchObject({
      state: 'succeeded',
      stopReason: 'done',
      counts: { rowsMoved: 1234, batches: 13, alreadyArchived: 0 },
    });
    expect(await ids('app.orders')).toEqual(range(1235, 1334));
    expect(await ids('app.orders_archive')).toEqual(range(1, 1234));
    const again = await archive({ targets: [{ ...move, batchSize: 100 }] });
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
    const summary = await archive({ targets: [move] });
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
      vi.spyOn(stream, 'write').mockImplementation((chunk: string | Uint8Array) => {
        output.push(String(chunk));
        return true;
      });
    }
    const logger = new Logger({ serviceName: 'test', logLevel: 'INFO' });
    await archive({ targets: [{ ...move, maxRowsPerRun: 10 }] }, { logger });
    expect(output.join('')).toContain('"cutoff":');
    expect(output.join('')).not.toContain('sequentially');
    await sql.query('DROP INDEX app.orders_completed_at_idx; DROP INDEX app.orders_created_at_idx');
    await archive({ targets: [{ ...move, maxRowsPerRun: 500 }] }, { logger });
    const warnings = output
      .join('')
      .split('\n')
      .filter((line) => line.includes('scans app.orders sequentially'));
    expect(warnings).toHaveLength(1); // once per run, not once per batch
    expect(JSON.parse(warnings[0]!)).toMatchObject({ level: 'WARN', target: 'app.orders' });
  });

  it('purge mode deletes expired rows without copying them', async () => {
    await sql.query(seedOrders(300, 10));
    const summary = await archive({ targets: [{ ...purge, batchSize: 64 }] }, { expired: PURGE_EXPIRED });
    expect(summary.targets[0]).toMatchObject({ stopReason: 'done', counts: { rowsPurged: 300, batches: 5 } });
    expect(await ids('app.orders')).toEqual(range(301, 310));
    expect(await ids('app.orders_archive')).toEqual([]);
  });

  it('stops at maxRowsPerRun and says so; the next run continues', async () => {
    await sql.query(seedOrders(500, 0));
    const first = await archive({ targets: [{ ...move, batchSize: 120, maxRowsPerRun: 250 }] });
    expect(first.targets[0]).toMatchObject({ stopReason: 'max rows reached', counts: { rowsMoved: 250, batches: 3 } });
    const second = await archive({ targets: [{ ...move, batchSize: 120, maxRowsPerRun: 250 }] });
    expect(second.targets[0]!.counts.rowsMoved).toBe(250);
    expect(await ids('app.orders_archive')).toEqual(range(1, 500));
  });

  it('dry run counts what would move and moves nothing', async () => {
    await sql.query(seedOrders(77, 5));
    const summary = await archive({ targets: [move], dryRun: true });
    expect(summary.targets[0]).toMatchObject({ state: 'succeeded', counts: { expiredRows: 77, wouldMove: 77 } });
    expect(summary.targets[0]!.notes[0]).toMatch(/dry run: nothing was changed\. 77 row\(s\) of app\.orders are older than/);
  });

  it('dry run refuses what a real run would refuse', async () => {
    await sql.query(seedOrders(5, 0));
    await sql.query(`CREATE TABLE other.items (id int PRIMARY KEY, order_id bigint REFERENCES app.orders ON DELETE CASCADE)`);
    const summary = await archive({ targets: [move], dryRun: true });
    expect(summary.targets[0]).toMatchObject({
      state: 'failed',
      detail: expect.stringMatching(/^app\.orders is referenced by foreign keys: items_order_id_fkey/),
    });
  });

  it('does not stop as done while expired rows remain after a batch that moved none of its picked rows', async () => {
    // A BEFORE DELETE trigger keeps rows 1-10 (the whole first batch): the run must go on past
    // them to rows 11-30, which a run ending on "moved 0" never reached.
    await sql.query(seedOrders(30, 0));
    await sql.query(`CREATE FUNCTION app.keep_first() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN IF OLD.id <= 10 THEN RETURN NULL; END IF; RETURN OLD; END $$;
      CREATE TRIGGER keep_first BEFORE DELETE ON app.orders FOR EACH ROW EXECUTE FUNCTION app.keep_first()`);
    const summary = await archive({ targets: [{ ...move, batchSize: 10, allowTriggers: true }] });
    expect(summary.targets[0]).toMatchObject({ state: 'succeeded', stopReason: 'done', counts: { rowsMoved: 20, batches: 3 } });
    expect(await ids('app.orders')).toEqual(range(1, 10));
    expect(await ids('app.orders_archive')).toEqual(range(11, 30));
  });
});

describe('archive job: keys already in the archive', () => {
  it('deletes a row whose byte-identical copy is already archived, counting it as alreadyArchived', async () => {
    await sql.query(seedOrders(10, 0));
    await sql.query(`INSERT INTO app.orders_archive SELECT * FROM app.orders WHERE id <= 3`);
    const summary = await archive({ targets: [move] });
    expect(summary.targets[0]).toMatchObject({ state: 'succeeded', counts: { rowsMoved: 10, alreadyArchived: 3 } });
    expect(await ids('app.orders_archive')).toEqual(range(1, 10));
    expect(await ids('app.orders')).toEqual([]);
  });

  it('keeps a row whose key is archived with other contents, names the key, and moves nothing of that batch', async () => {
    await sql.query(seedOrders(20, 0));
    await sql.query(`UPDATE app.orders SET amount = 999.99 WHERE id = 10;
      INSERT INTO app.orders_archive SELECT id, created_at, completed_at, status, 1.00 FROM app.orders WHERE id = 10`);
    const summary = await archive({ targets: [move] });
    expect(summary.targets[0]!.state).toBe('failed');
    expect(summary.targets[0]!.detail).toMatch(
      /^app\.orders_archive already holds 1 key\(s\) of expired app\.orders rows with different contents: id 10\. Nothing of this batch was moved/,
    );
    expect(await ids('app.orders')).toEqual(range(1, 20));
    const archived = await sql.query(`SELECT id, amount FROM app.orders_archive`);
    expect(archived.rows).toEqual([{ id: '10', amount: '1.00' }]);
    const source = await sql.query(`SELECT amount FROM app.orders WHERE id = 10`);
    expect(source.rows[0].amount).toBe('999.99');
  });

  it('counts a value that differs only in its bytes (1.5 vs 1.50, case) as different', async () => {
    await sql.query(`ALTER TABLE app.orders ALTER COLUMN amount TYPE numeric; ALTER TABLE app.orders_archive ALTER COLUMN amount TYPE numeric;
      CREATE COLLATION other.nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
      ALTER TABLE app.orders ALTER COLUMN status TYPE text COLLATE other.nocase; ALTER TABLE app.orders_archive ALTER COLUMN status TYPE text COLLATE other.nocase`);
    await sql.query(seedOrders(3, 0));
    await sql.query(`UPDATE app.orders SET amount = 1.50 WHERE id = 1; UPDATE app.orders SET status = 'Done' WHERE id = 2;
      INSERT INTO app.orders_archive SELECT id, created_at, completed_at, 'done', CASE WHEN id = 1 THEN 1.5 ELSE amount END FROM app.orders WHERE id <= 2`);
    expect(
      (
        await sql.query(
          `SELECT count(*)::int AS n FROM app.orders o JOIN app.orders_archive a USING (id) WHERE o.amount = a.amount AND o.status = a.status`,
        )
      ).rows[0].n,
    ).toBe(2); // equal by =
    const summary = await archive({ targets: [move] });
    expect(summary.targets[0]!.detail).toMatch(/already holds 2 key\(s\) .*: id 1, 2\./);
  });

  it('moves the batches before a collision, then stops naming at most ten keys', async () => {
    await sql.query(seedOrders(40, 0));
    await sql.query(`INSERT INTO app.orders_archive SELECT id, created_at, completed_at, 'other', amount FROM app.orders WHERE id BETWEEN 21 AND 35`);
    const summary = await archive({ targets: [{ ...move, batchSize: 10 }] });
    expect(summary.targets[0]).toMatchObject({ state: 'failed', counts: { rowsMoved: 20, batches: 2 } });
    expect(summary.targets[0]!.detail).toContain(
      'already holds 10 key(s) of expired app.orders rows with different contents: id 21, 22, 23, 24, 25, 26, 27, 28, 29, 30.',
    );
    expect(await ids('app.orders')).toEqual(range(21, 40));
  });

  it('names more than ten colliding keys of one batch as "and N more"', async () => {
    await sql.query(seedOrders(40, 0));
    await sql.query(`INSERT INTO app.orders_archive SELECT id, created_at, completed_at, 'other', amount FROM app.orders WHERE id > 25`);
    const summary = await archive({ targets: [move] });
    expect(summary.targets[0]!.detail).toContain(
      'already holds 15 key(s) of expired app.orders rows with different contents: id 26, 27, 28, 29, 30, 31, 32, 33, 34, 35 and 5 more.',
    );
  });
});

describe('archive job on a partitioned source', () => {
  // Every id 1..40 is in each of the three partitions: the primary key is (id, created_at).
  const EVENTS_DDL = `CREATE TABLE app.events (id bigint NOT NULL, created_at timestamptz NOT NULL, kind text, PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at);
    CREATE TABLE app.events_older PARTITION OF app.events FOR VALUES FROM (MINVALUE) TO (now() - interval '150 days');
    CREATE TABLE app.events_old PARTITION OF app.events FOR VALUES FROM (now() - interval '150 days') TO (now() - interval '30 days');
    CREATE TABLE app.events_new PARTITION OF app.events FOR VALUES FROM (now() - interval '30 days') TO (MAXVALUE);
    INSERT INTO app.events SELECT i, now() - d * interval '1 day' + i * interval '1 minute', 'k' || d FROM generate_series(1, 40) AS i, unnest(ARRAY[200, 100, 1]) AS d;`;
  const events = { source: 'app.events', destination: 'app.events_archive', ageColumn: 'created_at', retention: '60 days', batchSize: 25 } as const;

  it('refuses key id when ids repeat across partitions, naming the index and the fix', async () => {
    await sql.query(`${EVENTS_DDL} CREATE TABLE app.events_archive (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, kind text);`);
    const summary = await archive({ targets: [events] });
    expect(summary.targets[0]!.state).toBe('failed');
    expect(summary.targets[0]!.detail).toMatch(
      /^key: app\.events has no primary key or unique index on id; .*its unique index events_pkey is on \(id, created_at\): a partitioned table's unique index must include the partition column.*Set key to \["id","created_at"\]/,
    );
  });

  it('moves by the whole key (id, created_at): both rows of a repeated id, each exactly once', async () => {
    await sql.query(
      `${EVENTS_DDL} CREATE TABLE app.events_archive (id bigint NOT NULL, created_at timestamptz NOT NULL, kind text, PRIMARY KEY (id, created_at));`,
    );
    const summary = await archive({ targets: [{ ...events, key: ['id', 'created_at'] }] });
    expect(summary.targets[0]).toMatchObject({ state: 'succeeded', stopReason: 'done', counts: { rowsMoved: 80, batches: 4 } });
    expect((await sql.query(`SELECT count(*)::int AS n, count(DISTINCT id)::int AS ids FROM app.events_archive`)).rows[0]).toEqual({
      n: 80,
      ids: 40,
    });
    expect(await ids('app.events')).toEqual(range(1, 40));
  });

  it('refuses an archive unique on id alone for a source unique only on (id, created_at)', async () => {
    await sql.query(`${EVENTS_DDL} CREATE TABLE app.events_archive (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, kind text);`);
    const summary = await archive({ targets: [{ ...events, key: ['id', 'created_at'] }] });
    expect(summary.targets[0]!.detail).toMatch(
      /^app\.events_archive's unique index events_archive_pkey is on id, but app\.events is unique only on \(id, created_at\): two of its rows could claim one archived key/,
    );
  });

  it('names colliding keys of a composite key, and keeps both versions', async () => {
    await sql.query(`${EVENTS_DDL} CREATE TABLE app.events_archive (id bigint NOT NULL, created_at timestamptz NOT NULL, kind text, PRIMARY KEY (id, created_at));
      INSERT INTO app.events_archive SELECT id, created_at, 'changed' FROM app.events WHERE id = 3 AND kind = 'k200'`);
    const summary = await archive({ targets: [{ ...events, key: ['id', 'created_at'] }] });
    expect(summary.targets[0]!.detail).toMatch(
      /already holds 1 key\(s\) of expired app\.events rows with different contents: \(id, created_at\) \(3, \d{4}-\d\d-\d\d [\d:.]+\+00\)\./,
    );
  });

  it('moves out of a partitioned table partitioned by its key', async () => {
    await sql.query(`CREATE TABLE app.events (id bigint PRIMARY KEY, created_at timestamptz NOT NULL) PARTITION BY RANGE (id);
      CREATE TABLE app.events_a PARTITION OF app.events FOR VALUES FROM (MINVALUE) TO (50);
      CREATE TABLE app.events_b PARTITION OF app.events FOR VALUES FROM (50) TO (MAXVALUE);
      CREATE TABLE app.events_archive (id bigint PRIMARY KEY, created_at timestamptz NOT NULL);
      INSERT INTO app.events SELECT i, now() - (i || ' days')::interval + interval '12 hours' FROM generate_series(1, 100) AS i`);
    const summary = await archive({ targets: [{ ...events, batchSize: 7 }] });
    expect(summary.targets[0]).toMatchObject({ state: 'succeeded', counts: { rowsMoved: 40 } });
    expect(await ids('app.events')).toEqual(range(1, 60));
  });
});

/**
 * Runs one batch statement the way the job builds it, on its own session with no lock timeout,
 * while `writer` holds an uncommitted change to a picked row; commits the writer once the batch
 * waits for that row. The delete then re-reads the row (EvalPlanQual): only its re-check keeps
 * a row that changed since the pick.
 */
async function batchAgainstConcurrentUpdate(
  target: { source: string; destination: string; ageColumn: string; retention: string; key?: string[] },
  writerSql: string[],
) {
  const [schema, name] = target.source.split('.') as [string, string];
  const [dschema, dname] = target.destination.split('.') as [string, string];
  const catalog = await readArchiveCatalog(
    sql,
    { schema, name },
    { schema: dschema, name: dname },
    { key: target.key ?? ['id'], ageColumn: target.ageColumn, allowReferencingForeignKeys: false, allowTriggers: false },
  );
  const cutoffs = planCutoffs(await databaseNow(sql), { retention: target.retention, timeZone: 'UTC' }, { primary: 'timestamptz' });
  const statements = renderArchiveSql({ schema, name }, { schema: dschema, name: dname }, target, catalog, cutoffs);

  const writer = await db.connect('writer');
  const mover = await db.connect('mover');
  try {
    await writer.query('BEGIN');
    for (const text of writerSql) await writer.query(text);
    const moverPid = (await mover.query('SELECT pg_backend_pid() AS pid')).rows[0].pid;
    const batch = mover.query(statements.batch({ limit: 1000, skipExisting: false, skipLocked: false }));
    await expect
      .poll(async () => (await sql.query(`SELECT wait_event_type FROM pg_stat_activity WHERE pid = $1`, [moverPid])).rows[0]?.wait_event_type)
      .toBe('Lock');
    await writer.query('COMMIT');
    return (await batch).rows[0];
  } finally {
    // An open writer transaction would block the next test's DROP SCHEMA forever.
    await Promise.all([writer.end(), mover.end()]);
  }
}

describe('archive job beside other sessions', () => {
  it('skips rows another session has locked, and moves them on a later run', async () => {
    await sql.query(seedOrders(200, 0));
    const holder = await db.connect('holder');
    await holder.query('BEGIN');
    await holder.query('SELECT * FROM app.orders WHERE id BETWEEN 50 AND 59 FOR UPDATE');
    const summary = await archive({ targets: [{ ...move, batchSize: 30 }] });
    expect(summary.targets[0]!.counts.rowsMoved).toBe(190);
    expect(summary.targets[0]!.counts.lockedRowBatches).toBeGreaterThanOrEqual(1);
    expect(await ids('app.orders')).toEqual(range(50, 59));
    await holder.query('ROLLBACK');
    await archive({ targets: [move] });
    expect(await ids('app.orders')).toEqual([]);
    expect(await ids('app.orders_archive')).toHaveLength(200);
  });

  it.each([
    ['a plain source (re-check: the row address)', false],
    ['a partitioned source (re-check: the age predicate)', true],
  ])('keeps a row made young between pick and delete, and archives a row edited but still expired as edited: %s', async (_label, partitioned) => {
    if (partitioned) {
      await sql.query(`DROP TABLE app.orders, app.orders_archive;
        CREATE TABLE app.orders (id bigint NOT NULL, created_at timestamptz NOT NULL, completed_at timestamptz, status text NOT NULL DEFAULT 'new', amount numeric(12, 2) NOT NULL DEFAULT 0, PRIMARY KEY (id)) PARTITION BY RANGE (id);
        CREATE TABLE app.orders_low PARTITION OF app.orders FOR VALUES FROM (MINVALUE) TO (6);
        CREATE TABLE app.orders_high PARTITION OF app.orders FOR VALUES FROM (6) TO (MAXVALUE);
        CREATE TABLE app.orders_archive (LIKE app.orders); ALTER TABLE app.orders_archive ADD PRIMARY KEY (id);`);
    }
    await sql.query(seedOrders(10, 0));
    await sql.query(`CREATE TABLE other.mirror AS SELECT * FROM app.orders`);
    const guard = await captureArchiveInvariant(sql, { source: 'app.orders', destination: 'app.orders_archive', mirror: 'other.mirror' });
    const result = await batchAgainstConcurrentUpdate(
      { source: 'app.orders', destination: 'app.orders_archive', ageColumn: 'completed_at', retention: '90 days' },
      [
        `UPDATE app.orders SET completed_at = now(), status = 'reopened' WHERE id = 5`,
        `UPDATE other.mirror SET completed_at = now(), status = 'reopened' WHERE id = 5`,
        `UPDATE app.orders SET status = 'edited' WHERE id = 7`,
        `UPDATE other.mirror SET status = 'edited' WHERE id = 7`,
      ],
    );
    expect(result.picked).toBe(10);
    expect(await ids('app.orders')).toContain(5);
    expect(await ids('app.orders_archive')).not.toContain(5);
    await guard.verify({ state: 'succeeded', counts: { batches: 1 } });
  });

  it('keeps every row exactly once, contents included, while another session inserts and updates during the run', async () => {
    await sql.query(seedOrders(3000, 0));
    await sql.query(`CREATE TABLE other.mirror AS SELECT * FROM app.orders`);
    const writer = await db.connect('writer');
    let writing = true;
    let nextId = 100_000;
    const writes = (async () => {
      while (writing) {
        // Backdated inserts (eligible), fresh inserts (not), and edits that make rows young
        // again, each mirrored in the same transaction (so only if it happened in the source).
        await writer.query(
          `WITH i AS (INSERT INTO app.orders (id, created_at, completed_at) VALUES ($1, now() - interval '400 days', now() - interval '300 days'), ($2, now(), NULL) RETURNING *)
          INSERT INTO other.mirror SELECT * FROM i`,
          [nextId, nextId + 1],
        );
        nextId += 2;
        await writer.query(`WITH u AS (UPDATE app.orders SET completed_at = now(), status = 'reopened' WHERE id = (SELECT id FROM app.orders WHERE id < 3000 ORDER BY random() LIMIT 1) RETURNING *)
          UPDATE other.mirror AS m SET completed_at = u.completed_at, status = u.status FROM u WHERE m.id = u.id`);
      }
    })();
    const guard = await captureArchiveInvariant(sql, { source: 'app.orders', destination: 'app.orders_archive', mirror: 'other.mirror' });
    const summary = await runArchive(db.url, { targets: [{ ...move, batchSize: 50, pauseMs: 2 }] }).finally(() => (writing = false));
    await writes;
    await guard.verify(summary.targets[0]);
    const reopenedArchived = await sql.query(
      `SELECT count(*)::int AS n FROM app.orders_archive WHERE status = 'reopened' AND completed_at > now() - interval '1 day'`,
    );
    expect(reopenedArchived.rows[0].n).toBe(0); // a row made young again was never archived
  });

  it('two concurrent runs: one moves, one is skipped, and every row is moved once', async () => {
    await sql.query(seedOrders(400, 0));
    const other = await db.connect('other');
    expect(await tryLockTarget(other, 'archive', 'app.orders')).toBe(true);
    const skipped = await archive({ targets: [move] });
    await other.query('SELECT pg_advisory_unlock_all()');
    expect(skipped.targets[0]).toMatchObject({ state: 'skipped', detail: 'locked: another run holds this target' });

    const guard = await captureArchiveInvariant(sql, { source: 'app.orders', destination: 'app.orders_archive' });
    const [a, b] = await Promise.all([
      runArchive(db.url, { targets: [{ ...move, batchSize: 20, pauseMs: 5 }] }),
      runArchive(db.url, { targets: [{ ...move, batchSize: 20, pauseMs: 5 }] }),
    ]);
    const states = [a.targets[0]!.state, b.targets[0]!.state].sort();
    expect(states).toEqual(['skipped', 'succeeded']);
    expect((a.targets[0]!.counts.rowsMoved ?? 0) + (b.targets[0]!.counts.rowsMoved ?? 0)).toBe(400);
    await guard.verify({ state: 'succeeded', counts: { batches: 20 } });
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
      /incompatible types: amount \(app\.orders: numeric\(12,2\), app\.orders_archive: integer: a different type\)/,
    ],
    [
      'a narrower archive column',
      'ALTER TABLE app.orders ALTER COLUMN status TYPE varchar(40); ALTER TABLE app.orders_archive ALTER COLUMN status TYPE varchar(10)',
      /incompatible types: status \(app\.orders: character varying\(40\), app\.orders_archive: character varying\(10\): the archive is shorter/,
    ],
    [
      'unconstrained numeric into numeric(12,2) (rounds 12.345678 to 12.35)',
      'ALTER TABLE app.orders ALTER COLUMN amount TYPE numeric; UPDATE app.orders SET amount = 12.345678',
      /amount \(app\.orders: numeric, app\.orders_archive: numeric\(12,2\): the source holds any precision and scale, the archive would round to its own\)/,
    ],
    [
      'numeric(10,4) into numeric(12,2)',
      'ALTER TABLE app.orders ALTER COLUMN amount TYPE numeric(10,4)',
      /amount \(app\.orders: numeric\(10,4\), app\.orders_archive: numeric\(12,2\): the archive's scale 2 would round the source's scale 4\)/,
    ],
    [
      'numeric(10,2) into numeric(12,4) (pads 1.50 to 1.5000)',
      'ALTER TABLE app.orders_archive ALTER COLUMN amount TYPE numeric(12,4)',
      /amount \(.*numeric\(12,4\): the archive's scale 4 would pad values of scale 2/,
    ],
    [
      'numeric(12,2) into numeric(11,2)',
      'ALTER TABLE app.orders_archive ALTER COLUMN amount TYPE numeric(11,2)',
      /the archive's precision 11 holds fewer integer digits than the source's 12/,
    ],
    [
      'timestamptz into timestamptz(0)',
      'ALTER TABLE app.orders_archive ALTER COLUMN created_at TYPE timestamptz(0)',
      /created_at \(app\.orders: timestamp with time zone, app\.orders_archive: timestamp\(0\) with time zone: the archive keeps 0 fractional digits of the source's 6/,
    ],
    [
      'char(4) into char(6) (pads the value)',
      'ALTER TABLE app.orders ALTER COLUMN status TYPE char(4); ALTER TABLE app.orders_archive ALTER COLUMN status TYPE char(6)',
      /status \(app\.orders: character\(4\), app\.orders_archive: character\(6\): the type modifiers differ/,
    ],
    [
      'an archive column generated from another expression',
      'ALTER TABLE app.orders_archive DROP COLUMN status; ALTER TABLE app.orders_archive ADD COLUMN status text GENERATED ALWAYS AS (amount::text) STORED',
      /status \(generated in app\.orders_archive as \(amount\)::text, a stored value in app\.orders: the archive would compute another value\)/,
    ],
    [
      'no unique key on the archive',
      'ALTER TABLE app.orders_archive DROP CONSTRAINT orders_archive_pkey',
      /app\.orders_archive has no primary key or unique index on id alone/,
    ],
    ['a missing archive', 'DROP TABLE app.orders_archive', /destination table app\.orders_archive does not exist/],
    ['a missing source', 'DROP TABLE app.orders CASCADE', /source table app\.orders does not exist/],
    [
      'a source that is a view',
      'ALTER TABLE app.orders RENAME TO orders_data; CREATE VIEW app.orders AS SELECT * FROM app.orders_data',
      /source app\.orders is not a table \(relkind v\)/,
    ],
    [
      'a source key that is not unique',
      'ALTER TABLE app.orders DROP CONSTRAINT orders_pkey',
      /key: app\.orders has no primary key or unique index on id; .* must be unique/,
    ],
    [
      'a source unique only on an expression of the key',
      `ALTER TABLE app.orders DROP CONSTRAINT orders_pkey; ALTER TABLE app.orders ALTER COLUMN id SET NOT NULL; CREATE UNIQUE INDEX orders_id_status ON app.orders (id, lower(status))`,
      /key: app\.orders has no primary key or unique index on id; .*unique index orders_id_status does not count: it is on an expression \(CREATE UNIQUE INDEX orders_id_status ON app\.orders USING btree \(id, lower\(status\)\)\)/,
    ],
    [
      'a source unique only in part (a partial index)',
      `ALTER TABLE app.orders DROP CONSTRAINT orders_pkey; ALTER TABLE app.orders ALTER COLUMN id SET NOT NULL; CREATE UNIQUE INDEX orders_live_id ON app.orders (id) WHERE status <> 'void'`,
      /unique index orders_live_id does not count: it is partial \(WHERE \.\.\.\), so rows outside its predicate may repeat/,
    ],
    [
      'a key that may be NULL',
      `ALTER TABLE app.orders DROP CONSTRAINT orders_pkey; ALTER TABLE app.orders ALTER COLUMN id DROP NOT NULL; CREATE UNIQUE INDEX ON app.orders (id)`,
      /key: app\.orders\.id may be NULL; .* Make it NOT NULL/,
    ],
    [
      'a source other tables inherit from',
      `CREATE TABLE other.orders_2020 () INHERITS (app.orders)`,
      /app\.orders has tables that inherit from it \(other\.orders_2020\); .* cannot be proven unique/,
    ],
    [
      'a foreign key that references the source',
      `CREATE TABLE other.items (id int PRIMARY KEY, order_id bigint REFERENCES app.orders ON DELETE CASCADE); INSERT INTO other.items VALUES (1, 1)`,
      /^app\.orders is referenced by foreign keys: items_order_id_fkey on other\.items \(ON DELETE CASCADE\)\. Deleting its expired rows would fire .* set allowReferencingForeignKeys: true/,
    ],
    [
      'a foreign key from the source to itself',
      `ALTER TABLE app.orders ADD COLUMN parent_id bigint REFERENCES app.orders; ALTER TABLE app.orders_archive ADD COLUMN parent_id bigint`,
      /app\.orders is referenced by foreign keys: orders_parent_id_fkey on app\.orders \(ON DELETE NO ACTION\)/,
    ],
    [
      'a row trigger on the source (an audit log)',
      `CREATE TABLE other.audit (id bigint, at timestamptz DEFAULT now());
       CREATE FUNCTION other.audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO other.audit (id) VALUES (OLD.id); RETURN OLD; END $$;
       CREATE TRIGGER orders_audit AFTER DELETE ON app.orders FOR EACH ROW EXECUTE FUNCTION other.audit()`,
      /^user triggers would fire on every batch: orders_audit on app\.orders \(DELETE\)\. .* set allowTriggers: true/,
    ],
    [
      'a statement trigger on the archive',
      `CREATE FUNCTION other.noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
       CREATE TRIGGER archive_insert AFTER INSERT ON app.orders_archive FOR EACH STATEMENT EXECUTE FUNCTION other.noop()`,
      /user triggers would fire on every batch: archive_insert on app\.orders_archive \(INSERT\)/,
    ],
    [
      'a DELETE rule on the source',
      `CREATE TABLE other.deleted (id bigint); CREATE RULE keep_deleted AS ON DELETE TO app.orders DO ALSO INSERT INTO other.deleted VALUES (OLD.id)`,
      /app\.orders has DELETE rules \(keep_deleted on app\.orders\): a rule rewrites each batch's DELETE/,
    ],
    [
      'an INSERT rule on the archive',
      `CREATE RULE skip_insert AS ON INSERT TO app.orders_archive DO INSTEAD NOTHING`,
      /app\.orders_archive has INSERT rules \(skip_insert on app\.orders_archive\)/,
    ],
    [
      'a missing age column',
      'ALTER TABLE app.orders DROP COLUMN completed_at; ALTER TABLE app.orders_archive DROP COLUMN completed_at',
      /ageColumn: column completed_at does not exist in app\.orders/,
    ],
    [
      'an age column that is not a timestamp',
      'ALTER TABLE app.orders ALTER COLUMN completed_at TYPE text; ALTER TABLE app.orders_archive ALTER COLUMN completed_at TYPE text',
      /app\.orders\.completed_at is text; expected timestamptz, timestamp or date/,
    ],
  ])('%s', async (_label, ddl, message) => {
    await sql.query(seedOrders(50, 0).replace(/ANALYZE app.orders;/, ''));
    await sql.query(ddl);
    const summary = await archive({ targets: [move] });
    expect(summary.targets[0]!.state).toBe('failed');
    expect(summary.targets[0]!.detail).toMatch(message);
  });

  it('refuses in purge mode too (foreign keys, triggers, key)', async () => {
    await sql.query(seedOrders(50, 0));
    await sql.query(`CREATE TABLE other.items (id int PRIMARY KEY, order_id bigint REFERENCES app.orders ON DELETE SET NULL)`);
    const summary = await archive({ targets: [purge] }, { expired: PURGE_EXPIRED });
    expect(summary.targets[0]!.detail).toMatch(
      /app\.orders is referenced by foreign keys: items_order_id_fkey on other\.items \(ON DELETE SET NULL\)/,
    );
  });

  it('a missing key column', async () => {
    await sql.query(seedOrders(5, 0));
    const summary = await archive({ targets: [{ ...move, key: 'order_id' }] });
    expect(summary.targets[0]!.detail).toBe('key: column order_id does not exist in app.orders');
  });

  it.each([
    [{ ...move, source: 'orders; drop table x' }, /targets\[0\]\.source: "orders; drop table x" is not a plain identifier/],
    [{ ...move, destination: 'app."archive"' }, /targets\[0\]\.destination: .* is not a plain identifier/],
    [{ ...move, key: 'id) OR (1=1' }, /targets\[0\]\.key: .*is not a plain identifier/],
    [{ ...move, key: ['id', 'id'] }, /targets\[0\]\.key: names a column twice: id, id/],
    [{ ...move, key: [] }, /targets\[0\]\.key/],
    [{ ...move, ageColumn: 'created_at; --' }, /targets\[0\]\.ageColumn: .*is not a plain identifier/],
    [{ ...move, batchSize: 0 }, /targets\[0\]\.batchSize: Too small.*got 0/],
    [{ ...move, batchSize: 10_000_000 }, /targets\[0\]\.batchSize: Too big.*got 10000000/],
    [{ ...move, retention: '0 days' }, /targets\[0\]\.retention: "0 days" is not a duration/],
    [{ ...move, retention: 'forever' }, /targets\[0\]\.retention: "forever" is not a duration/],
    [{ ...move, allowTriggers: 'yes' }, /targets\[0\]\.allowTriggers: Invalid input: expected boolean/],
    [{ source: 'app.orders', ageColumn: 'created_at', retention: '1 day' }, /targets\[0\]\.destination: is required in move mode/],
    [{ ...move, mode: 'purge' }, /targets\[0\]\.destination: must not be set in purge mode/],
    [{ ...move, destination: 'public.orders', source: 'orders' }, /targets\[0\]\.destination: must differ from source/],
  ])('refuses %j', async (target, message) => {
    await sql.query(seedOrders(5, 0));
    const guard = await captureArchiveInvariant(sql, { source: 'app.orders', destination: 'app.orders_archive' });
    const run = runArchive(db.url, { targets: [target as never] });
    await expect(run).rejects.toThrowError(ConfigError);
    await expect(run).rejects.toThrowError(message);
    await guard.verify();
  });
});

describe('archive job: what it accepts', () => {
  it('archives into columns that hold every value exactly: wider precision and length, or no modifier', async () => {
    await sql.query(`ALTER TABLE app.orders ALTER COLUMN amount TYPE numeric(10,4), ALTER COLUMN status TYPE varchar(10), ALTER COLUMN created_at TYPE timestamptz(3),
        ADD COLUMN code char(3) NOT NULL DEFAULT 'ab', ADD COLUMN total numeric(8,2) NOT NULL DEFAULT 0, ADD COLUMN bits varbit(4);
      ALTER TABLE app.orders_archive ALTER COLUMN amount TYPE numeric(14,4), ALTER COLUMN status TYPE varchar(20), ALTER COLUMN created_at TYPE timestamptz,
        ADD COLUMN code bpchar, ADD COLUMN total numeric, ADD COLUMN bits varbit(8)`);
    await sql.query(seedOrders(30, 0));
    await sql.query(
      `UPDATE app.orders SET amount = 123456.789 + id / 10000.0, created_at = created_at + interval '0.123456 seconds', total = 1.50, bits = B'101'`,
    );
    const summary = await archive({ targets: [move] });
    expect(summary.targets[0]!.detail).toBeUndefined();
    expect(summary.targets[0]).toMatchObject({ state: 'succeeded', counts: { rowsMoved: 30 } });
  });

  it('accepts a unique index with INCLUDE columns, a deferrable primary key, a source that references a parent, an archive with foreign keys', async () => {
    await sql.query(`CREATE TABLE other.customers (id int PRIMARY KEY); INSERT INTO other.customers VALUES (1);
      ALTER TABLE app.orders DROP CONSTRAINT orders_pkey, ADD COLUMN customer_id int NOT NULL DEFAULT 1 REFERENCES other.customers ON DELETE CASCADE;
      CREATE UNIQUE INDEX orders_id_covering ON app.orders (id) INCLUDE (status);
      ALTER TABLE app.orders_archive DROP CONSTRAINT orders_archive_pkey, ADD COLUMN customer_id int NOT NULL REFERENCES other.customers,
        ADD PRIMARY KEY (id) DEFERRABLE INITIALLY DEFERRED`);
    await sql.query(seedOrders(30, 5));
    await sql.query(`INSERT INTO app.orders_archive SELECT * FROM app.orders WHERE id = 7`); // found only at COMMIT
    const summary = await archive({ targets: [{ ...move, batchSize: 10 }] });
    expect(summary.targets[0]).toMatchObject({ state: 'succeeded', counts: { rowsMoved: 30, alreadyArchived: 1 } });
  });

  it('an archive referenced by other tables is fine; one whose foreign key a row breaks fails the batch and moves nothing', async () => {
    await sql.query(`CREATE TABLE other.notes (order_id bigint REFERENCES app.orders_archive); CREATE TABLE other.customers (id int PRIMARY KEY);
      ALTER TABLE app.orders ADD COLUMN customer_id int NOT NULL DEFAULT 1; ALTER TABLE app.orders_archive ADD COLUMN customer_id int NOT NULL REFERENCES other.customers`);
    await sql.query(seedOrders(20, 0));
    const broken = await archive({ targets: [move] });
    expect(broken.targets[0]).toMatchObject({
      state: 'failed',
      detail: expect.stringMatching(/violates foreign key constraint "orders_archive_customer_id_fkey"/),
    });
    await sql.query(`INSERT INTO other.customers VALUES (1)`);
    const summary = await archive({ targets: [move] });
    expect(summary.targets[0]).toMatchObject({ state: 'succeeded', counts: { rowsMoved: 20 } });
  });

  it('allowReferencingForeignKeys: moves the rows and lets their ON DELETE actions run, changing only the referencing table', async () => {
    await sql.query(seedOrders(20, 5));
    await sql.query(`CREATE TABLE other.items (id int PRIMARY KEY, order_id bigint REFERENCES app.orders ON DELETE CASCADE);
      INSERT INTO other.items SELECT i, i FROM generate_series(1, 25) AS i`);
    const summary = await archive({ targets: [{ ...move, allowReferencingForeignKeys: true }] }, { allowedToChange: ['other.items'] });
    expect(summary.targets[0]).toMatchObject({ state: 'succeeded', counts: { rowsMoved: 20 } });
    expect(await ids('other.items')).toEqual(range(21, 25)); // children of archived orders went with them
  });

  it('allowReferencingForeignKeys with NO ACTION: a child still referencing an expired row fails its batch, which moves nothing', async () => {
    await sql.query(seedOrders(20, 0));
    await sql.query(`CREATE TABLE other.items (id int PRIMARY KEY, order_id bigint REFERENCES app.orders); INSERT INTO other.items VALUES (1, 15)`);
    const summary = await archive({ targets: [{ ...move, batchSize: 10, allowReferencingForeignKeys: true }] });
    expect(summary.targets[0]).toMatchObject({
      state: 'failed',
      counts: { rowsMoved: 10, batches: 1 },
      detail: expect.stringMatching(/violates foreign key constraint "items_order_id_fkey"/),
    });
    expect(await ids('app.orders')).toEqual(range(11, 20));
  });

  it('allowTriggers: the source trigger fires once per moved row; a trigger that alters or drops archived rows fails the batch', async () => {
    await sql.query(seedOrders(20, 0));
    await sql.query(`CREATE TABLE other.audit (id bigint);
      CREATE FUNCTION other.audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO other.audit VALUES (OLD.id); RETURN OLD; END $$;
      CREATE TRIGGER orders_audit AFTER DELETE ON app.orders FOR EACH ROW EXECUTE FUNCTION other.audit()`);
    const allowed = await archive({ targets: [{ ...move, allowTriggers: true, maxRowsPerRun: 10 }] }, { allowedToChange: ['other.audit'] });
    expect(allowed.targets[0]).toMatchObject({ state: 'succeeded', counts: { rowsMoved: 10 } });
    expect(await ids('other.audit')).toEqual(range(1, 10));

    for (const body of [`NEW.amount := NEW.amount + 1; RETURN NEW;`, `IF NEW.id = 15 THEN RETURN NULL; END IF; RETURN NEW;`]) {
      await sql.query(`CREATE OR REPLACE FUNCTION other.rewrite() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN ${body} END $$;
        CREATE OR REPLACE TRIGGER archive_rewrite BEFORE INSERT ON app.orders_archive FOR EACH ROW EXECUTE FUNCTION other.rewrite()`);
      const refused = await archive({ targets: [{ ...move, allowTriggers: true }] }, { allowedToChange: ['other.audit'] });
      expect(refused.targets[0]!.state).toBe('failed');
      expect(refused.targets[0]!.detail).toMatch(
        /^app\.orders_archive did not receive every row this batch deleted unchanged .*the batch was rolled back/,
      );
      expect(await ids('app.orders')).toEqual(range(11, 20));
    }
  });
});

it('rows of the archive tests are compared whole: the digest sees a changed amount', async () => {
  // The invariant's own check: a change in one value of one row changes the digests.
  await sql.query(seedOrders(3, 0));
  const before = await rowDigests(sql, 'app.orders');
  await sql.query(`UPDATE app.orders SET amount = amount + 0.01 WHERE id = 2`);
  expect(await rowDigests(sql, 'app.orders')).not.toEqual(before);
});
