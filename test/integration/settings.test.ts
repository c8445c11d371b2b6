import type { DateTime } from 'luxon';
import type pg from 'pg';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { JOBS } from '../../functions/registry';
import { ledgerMigrations, migrate } from '../../shared/migrate';
import { runArchive } from '../support/archive';
import { partitionsOf, relationsIn } from '../support/catalog';
import { createTestDatabase, databaseToday, type TestDatabase } from '../support/db';
import { rowDigests, tableFingerprints } from '../support/fingerprint';
import { runPartition } from '../support/jobs';
import { capturedLogger, runRollup, USAGE_DDL, usageRollup } from '../support/rollup';

const MIGRATIONS = ledgerMigrations(JOBS);

/** housekeeping.settings: which rows reach which target, which keys can never be overridden, and rows that reach nothing. */
let db: TestDatabase;
let sql: pg.Client;
let today: DateTime;

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
  today = await databaseToday(sql);
});

beforeEach(async () => {
  await sql.query(USAGE_DDL); // recreates schema app and drops housekeeping
  await sql.query(`
    INSERT INTO app.usage (occurred_at, tenant, units) SELECT now() - i * interval '41 minutes', 'acme', i FROM generate_series(1, 100) AS i;
    CREATE TABLE app.other_usage (LIKE app.usage INCLUDING ALL);
    INSERT INTO app.other_usage (occurred_at, tenant, units) VALUES (now() - interval '3 hours', 'globex', 5);
    CREATE TABLE app.orders (id bigint PRIMARY KEY, created_at timestamptz NOT NULL);
    CREATE TABLE app.orders_archive (LIKE app.orders INCLUDING ALL);
    CREATE TABLE app.other_archive (LIKE app.orders INCLUDING ALL);
    INSERT INTO app.orders SELECT i, now() - interval '200 days' FROM generate_series(1, 20) AS i;`);
  for (const table of ['events', 'other']) {
    await sql.query(`CREATE TABLE app.${table} (created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at)`);
    for (const offset of [-20, -10, 0]) {
      const from = today.plus({ days: offset });
      await sql.query(
        `CREATE TABLE app.${table}_p${from.toFormat('yyyy_MM_dd')} PARTITION OF app.${table} FOR VALUES FROM ('${from.toISO()}') TO ('${from.plus({ days: 1 }).toISO()}')`,
      );
    }
  }
  await migrate(sql, MIGRATIONS);
});

afterEach(() => {
  vi.restoreAllMocks();
});

const events = { table: 'app.events', interval: 'day' as const, premake: 2 };
const orders = { source: 'app.orders', destination: 'app.orders_archive', ageColumn: 'created_at', retention: '90 days' };

async function setting(job: string, target: string, key: string, value: string) {
  await sql.query(`INSERT INTO housekeeping.settings (job, target, key, value) VALUES ($1, $2, $3, $4)`, [job, target, key, value]);
}

describe('implicit targets take only their own settings', () => {
  it("a '*' retention meant for daily tables does not reach the ledger's own target; a row keyed to the ledger does", async () => {
    await runPartition(db.url, { targets: [events] }); // partitions the ledger from this month on
    // Three months of history in the ledger, each in its own monthly partition.
    const month = today.startOf('month');
    for (const back of [3, 2, 1]) {
      const from = month.minus({ months: back });
      await sql.query(
        `CREATE TABLE housekeeping.job_runs_p${from.toFormat('yyyy_MM')} PARTITION OF housekeeping.job_runs FOR VALUES FROM ('${from.toISO()}') TO ('${from.plus({ months: 1 }).toISO()}')`,
      );
      await sql.query(
        `INSERT INTO housekeeping.job_runs (run_id, job, target, state, started_at, recorded_at) VALUES (gen_random_uuid(), 'archive', 'app.orders', 'succeeded', $1, $1)`,
        [from.plus({ days: 3 }).toISO()],
      );
    }
    const history = `(SELECT * FROM housekeeping.job_runs WHERE recorded_at < '${month.toISO()}')`;
    const before = await rowDigests(sql, history);
    expect(before).toHaveLength(3);

    await setting('partition', '*', 'retention', '{"duration": "7 days"}');
    await setting('partition', 'housekeeping.job_runs', 'premake', '4');
    const summary = await runPartition(db.url, { targets: [events] });
    expect(summary.failed).toEqual([]);
    expect(await rowDigests(sql, history)).toEqual(before);
    // The user's table took the '*' row: its partitions older than 7 days are gone.
    expect(Object.keys(await partitionsOf(sql, 'app.events'))).not.toContain(`events_p${today.minus({ days: 10 }).toFormat('yyyy_MM_dd')}`);
    const policies = await sql.query(
      `SELECT DISTINCT ON (target) target, policy FROM housekeeping.job_runs WHERE state = 'started' AND job = 'partition' ORDER BY target, recorded_at DESC`,
    );
    expect(policies.rows.find((r) => r.target === 'housekeeping.job_runs')!.policy).toMatchObject({
      premake: 4,
      retention: { keep: 13, mode: 'drop' },
    });
  });
});

describe('keys that identify a target cannot be overridden', () => {
  it.each([
    ['partition', 'app.events', 'table', '"app.other"'],
    ['rollup', 'usage_hourly', 'source', '"app.other_usage"'],
    ['rollup', 'usage_hourly', 'name', '"usage_other"'],
    ['rollup', 'usage_hourly', 'lockKey', '424242'],
    ['rollup', '*', 'target', '"app.other_usage"'],
    ['archive', 'app.orders', 'destination', '"app.other_archive"'],
    ['archive', 'app.orders', 'source', '"app.other_usage"'],
  ])('%s %s %s = %s: the target fails naming the row, and no table changes', async (job, target, key, value) => {
    const tablesBefore = await tableFingerprints(sql);
    const catalogBefore = await relationsIn(sql, 'app');
    await setting(job, target, key, value);

    const summary =
      job === 'partition'
        ? await runPartition(db.url, { targets: [events], maintainLedger: false })
        : job === 'rollup'
          ? await runRollup(db.url, { targets: [usageRollup] })
          : await runArchive(db.url, { targets: [orders] });
    expect(summary.targets[0]!.state).toBe('failed');
    expect(summary.targets[0]!.detail).toMatch(
      new RegExp(`housekeeping\\.settings \\(job '${job}', target '${target.replace('*', '\\*')}', key '${key}'\\): '${key}' identifies the target`),
    );
    expect(await tableFingerprints(sql)).toEqual(tablesBefore);
    expect(await relationsIn(sql, 'app')).toEqual(catalogBefore);
    const state = await sql.query(`SELECT count(*)::int AS n FROM housekeeping.rollup_state`);
    expect(state.rows[0].n).toBe(0);
  });
});

describe('opt-ins that let a run change rows outside its policy are deployed, never overridden', () => {
  it.each([
    ['*', 'allowReferencingForeignKeys'],
    ['app.orders', 'allowReferencingForeignKeys'],
    ['*', 'allowTriggers'],
  ])('archive %s %s = true: the target fails naming the row, and the child rows a CASCADE would delete stay', async (target, key) => {
    await sql.query(`CREATE TABLE app.items (id int PRIMARY KEY, order_id bigint REFERENCES app.orders ON DELETE CASCADE);
      INSERT INTO app.items SELECT i, i FROM generate_series(1, 20) AS i;
      CREATE TABLE app.audit (id bigint);
      CREATE FUNCTION app.audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO app.audit VALUES (OLD.id); RETURN OLD; END $$;
      CREATE TRIGGER orders_audit AFTER DELETE ON app.orders FOR EACH ROW EXECUTE FUNCTION app.audit()`);
    const tablesBefore = await tableFingerprints(sql);
    await setting('archive', target, key, 'true');
    // The deployed policy allows the other one, so only the override stands between the run and the rows.
    const other = key === 'allowTriggers' ? 'allowReferencingForeignKeys' : 'allowTriggers';
    const summary = await runArchive(db.url, { targets: [{ ...orders, [other]: true }] });
    expect(summary.targets[0]!.state).toBe('failed');
    expect(summary.targets[0]!.detail).toMatch(
      new RegExp(
        `housekeeping\\.settings \\(job 'archive', target '${target.replace('*', '\\*')}', key '${key}'\\): '${key}' lets a run change rows its policy does not name`,
      ),
    );
    expect(await tableFingerprints(sql)).toEqual(tablesBefore);
  });
});

describe('settings rows that match no target are reported', () => {
  it('names the row and the key it should have had, in the log and in the run summary; matching rows are not reported', async () => {
    await setting('rollup', 'public.usage_hourly', 'lookbackBuckets', '5');
    await setting('rollup', 'app.usage', 'pauseMs', '1');
    await setting('rollup', 'usage_hourly', 'sliceBuckets', '12');
    await setting('rollup', '*', 'settleDelayMinutes', '0');
    await setting('rolup', 'usage_hourly', 'pauseMs', '1');
    await setting('partition', 'events', 'premake', '3');

    const { logger, lines } = capturedLogger();
    const rollup = await runRollup(db.url, { targets: [usageRollup] }, { logger });
    expect(rollup.failed).toEqual([]);
    expect(rollup.warnings).toEqual([
      "housekeeping.settings row (job 'rollup', target 'app.usage', key 'pauseMs') matches no target of this run and is ignored: " +
        "rollup settings are keyed by the rollup's name (or '*'); did you mean target 'usage_hourly'?",
      "housekeeping.settings row (job 'rollup', target 'public.usage_hourly', key 'lookbackBuckets') matches no target of this run and is ignored: " +
        "rollup settings are keyed by the rollup's name (or '*'); did you mean target 'usage_hourly'?",
      "housekeeping.settings row (job 'rolup', target 'usage_hourly', key 'pauseMs') is ignored: 'rolup' is not a job (partition, archive, rollup)",
    ]);
    const warned = lines().filter((line) => line.level === 'WARN' && String(line.message).startsWith('housekeeping.settings row'));
    expect(warned.map((line) => line.message)).toEqual(rollup.warnings);
    expect(lines().find((line) => line.message === 'run summary')).toMatchObject({ warnings: rollup.warnings });

    const partition = await runPartition(db.url, { targets: [events], maintainLedger: false });
    expect(partition.warnings).toEqual([
      "housekeeping.settings row (job 'partition', target 'events', key 'premake') matches no target of this run and is ignored: " +
        "partition settings are keyed by the table as schema.table (or '*'); did you mean target 'app.events'?",
      "housekeeping.settings row (job 'rolup', target 'usage_hourly', key 'pauseMs') is ignored: 'rolup' is not a job (partition, archive, rollup)",
    ]);
  });
});
