import type pg from 'pg';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { setObjectStoreFactory } from '../../functions/archive/s3/store';
import { JOBS } from '../../functions/registry';
import { openSession } from '../../shared/db';
import { parseJobEvent, runJob } from '../../shared/run-job';
import { TimeBudget } from '../../shared/time-budget';
import { captureS3Invariant, hookUploads } from '../support/archive-s3';
import { createTestDatabase, type TestDatabase } from '../support/db';
import { quietLogger } from '../support/jobs';
import { startTestS3, type TestS3 } from '../support/s3';

/**
 * The batch written ahead is picked on the reading session while the batch before it uploads and
 * commits. Here it is still being read when that batch ends early: redone after a conflict, a
 * shorter next request (maxRowsPerRun), the budget spent. Dropping it must not make anything wait
 * for it forever (it once waited for its own removal), and nothing of it may stay behind.
 */
let db: TestDatabase;
let sql: pg.Client;
let s3: TestS3;
const FOLDER = 'ah/table=ah.events';
const ROWS = 3000;

const target = (extra: Record<string, unknown> = {}) => ({
  source: 'ah.events',
  // Batches of 500 rows, picked 100 at a time: batch 1 is picks 1-5, the batch ahead picks 6-10.
  destination: { s3: { bucket: 'hk-archive', prefix: 'ah', rowsPerObject: 500, rowGroupRows: 100 } },
  ageColumn: 'created_at',
  retention: '30 days',
  ...extra,
});
const SESSION = { job: 'archive', lockTimeoutMs: 3000, statementTimeoutMs: 60_000 };
/** The batch ahead's second pick waits 1.5 s on the reader: batch 1 uploads and commits meanwhile. */
const SLOW_PICK = 7;

/** A run whose reading session sleeps before pick SLOW_PICK (queued before its BEGIN, so its statements stay in order); 'hung' after 15 s. */
async function runWithSlowPick(targets: unknown[], budget = TimeBudget.unlimited()) {
  let opened = 0;
  let begins = 0;
  const connect = async () => {
    const client = await openSession({ kind: 'url', url: db.url }, SESSION);
    if (opened++ === 0) return client;
    const query = client.query.bind(client) as (...args: unknown[]) => unknown;
    (client as { query: unknown }).query = (...args: unknown[]) => {
      if (args[0] === 'BEGIN' && ++begins === SLOW_PICK) void query('SELECT pg_sleep(1.5)');
      return query(...args);
    };
    return client;
  };
  const event = parseJobEvent(JOBS.archive, { targets }, 'event');
  const run = runJob(JOBS.archive, event, { jobs: JOBS, connect, logger: quietLogger(), budget });
  const outcome = await Promise.race([run, new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 15_000))]);
  if (outcome === 'hung') throw new Error('the run never ended');
  return outcome.targets[0]!;
}

/** Nothing of a dropped batch is left: no committed manifest row, no pending copy, no session. */
async function nothingLeft() {
  const { rows } = await sql.query(`SELECT count(*)::int AS n FROM housekeeping.archive_objects WHERE state = 'committed'`);
  expect(rows[0].n).toBe(0);
  expect(await s3.keys('ah/_pending/')).toEqual([]);
  const sessions = async () =>
    (await sql.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pg-housekeeper/archive'`)).rows[0].n;
  await expect.poll(sessions, { timeout: 5_000 }).toBe(0);
}

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
  s3 = await startTestS3();
});
beforeEach(async () => {
  await sql.query(`
    DROP SCHEMA IF EXISTS ah CASCADE; CREATE SCHEMA ah;
    CREATE TABLE ah.events (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, body text, n numeric(10, 2));
    CREATE INDEX ON ah.events (created_at);
    INSERT INTO ah.events SELECT i, '2025-06-01 00:00:00+00'::timestamptz + (i % 5) * interval '1 day' + i * interval '1 second', md5(i::text) || repeat('x', 200), i * 1.25
      FROM generate_series(1, ${ROWS}) AS i;
    INSERT INTO ah.events VALUES (100000, now(), 'fresh', 1);
    ANALYZE ah.events;`);
  await sql.query(`TRUNCATE housekeeping.archive_restores, housekeeping.archive_objects`).catch(() => {});
  await s3.empty();
});
afterEach(() => setObjectStoreFactory(undefined));

describe('a batch written ahead, still being read when the batch before it ends', () => {
  it('is dropped when the batch before is redone (a row updated, a new version, during its upload); the run moves every row', async () => {
    const invariant = await captureS3Invariant(sql, s3, { source: 'ah.events', folder: FOLDER });
    const writer = await db.connect('writer');
    hookUploads(async (_key, _body, count) => {
      if (count === 1) await writer.query(`UPDATE ah.events SET body = body WHERE id = 10`);
      return undefined;
    });
    const summary = await runWithSlowPick([target()]);
    expect(summary.detail).toBeUndefined();
    expect(summary.counts.batchesRedone).toBe(1);
    expect(await invariant.verify()).toMatchObject({ left: 1, archived: ROWS });
    await nothingLeft();
  });

  it('is dropped when the next request asks for fewer rows (maxRowsPerRun); the run ends at the cap', async () => {
    const invariant = await captureS3Invariant(sql, s3, { source: 'ah.events', folder: FOLDER });
    const summary = await runWithSlowPick([target({ maxRowsPerRun: 700 })]);
    expect(summary.detail).toBeUndefined();
    expect(summary.counts.rowsMoved).toBe(700);
    await invariant.verifyNow();
    await nothingLeft();
  });

  it('is dropped when the budget is spent after the batch before; the run ends', async () => {
    const invariant = await captureS3Invariant(sql, s3, { source: 'ah.events', folder: FOLDER });
    const budget = TimeBudget.unlimited();
    let asked = 0;
    const allows = budget.allows.bind(budget);
    budget.allows = (ms: number) => ++asked <= 1 && allows(ms);
    budget.forTarget = () => budget;
    const summary = await runWithSlowPick([target()], budget);
    expect(summary.counts.rowsMoved).toBe(500);
    await invariant.verifyNow();
    await nothingLeft();
  });
});
