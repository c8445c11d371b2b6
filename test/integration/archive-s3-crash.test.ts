import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { ORDERS_DDL, seedOrders } from '../support/archive';
import { captureS3Invariant } from '../support/archive-s3';
import { createTestDatabase, type TestDatabase } from '../support/db';
import { startTestS3, type TestS3 } from '../support/s3';

let db: TestDatabase;
let sql: pg.Client;
let s3: TestS3;
let slowConfig: string;
let fastConfig: string;
let invariant: Awaited<ReturnType<typeof captureS3Invariant>>;

const ROWS = 3000;
const FOLDER = 'crash/table=app.orders';

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
  s3 = await startTestS3();
  await sql.query(ORDERS_DDL);
  await sql.query(seedOrders(ROWS, 0));
  // Distinct contents per row, and seven days interleaved by key: every batch writes several objects.
  await sql.query(
    `UPDATE app.orders SET status = md5(id::text), amount = id * 1.01, completed_at = completed_at - (id % 7) * interval '1 day' - id * interval '1 microsecond'`,
  );
  invariant = await captureS3Invariant(sql, s3, { source: 'app.orders', folder: FOLDER });
  const dir = mkdtempSync(join(tmpdir(), 'hk-s3-crash-'));
  const target = { source: 'app.orders', ageColumn: 'completed_at', retention: '90 days' };
  const destination = (rowsPerObject: number) => ({ s3: { bucket: s3.bucket, prefix: 'crash', rowsPerObject, rowGroupRows: 100 } });
  slowConfig = join(dir, 'slow.json');
  writeFileSync(slowConfig, JSON.stringify({ targets: [{ ...target, destination: destination(60), pauseMs: 15 }] }));
  fastConfig = join(dir, 'fast.json');
  writeFileSync(fastConfig, JSON.stringify({ targets: [{ ...target, destination: destination(1000) }] }));
});

/** The CLI in its own process group (so a kill reaches node itself), reaching the test's S3 server. */
function startArchiveRun(config: string, crashAt?: string) {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'scripts/housekeeper.ts', 'run', 'archive', '--config', config, '--database-url', db.url],
    {
      detached: true,
      stdio: 'ignore',
      env: { ...process.env, ...s3.env, ...(crashAt ? { PGHK_CRASH_AT: crashAt } : {}) },
    },
  );
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, exited };
}

const manifestStates = async () =>
  (await sql.query<{ state: string; n: number }>(`SELECT state, count(*)::int AS n FROM housekeeping.archive_objects GROUP BY state ORDER BY state`))
    .rows;
const sourceCount = async () => (await sql.query<{ n: number }>(`SELECT count(*)::int AS n FROM app.orders`)).rows[0]!.n;
const noSessionLeft = () =>
  expect
    .poll(
      async () => (await sql.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pg-housekeeper/archive'`)).rows[0].n,
      { timeout: 10_000 },
    )
    .toBe(0);

describe('archive to S3 under SIGKILL: no row lost, none doubled, contents compared', () => {
  // Each step builds on what the one before left (tests in a file run in order); each its own test, so
  // none waits on the others' time under a loaded machine.
  // 1. Each gap on purpose: the process kills itself at the point, in its second batch.
  it.each(['after-upload', 'after-verify', 'after-commit', 'after-copy', 'after-publish'])('killed at the gap %s', async (point) => {
    const { exited } = startArchiveRun(slowConfig, `${point}:2`);
    expect(await exited).toMatchObject({ signal: 'SIGKILL' });
    await s3.settled();
    await noSessionLeft();
    const now = await invariant.verifyNow();
    const states = await manifestStates();
    if (process.env.DEBUG_CRASH) console.log(point, now, states);
    // What each gap leaves: before the commit nothing of the dying batch is recorded (its pending
    // copies are garbage, named by no manifest row); the batch before it may still have been
    // publishing (a batch publishes while the next is written), so its objects (seven days, at most
    // seven) may be committed. From the commit on, the batch's objects are committed and still to
    // publish; once published, nothing is left committed (the next batch commits only after that).
    const committed = states.find((s) => s.state === 'committed')?.n ?? 0;
    if (point === 'after-upload' || point === 'after-verify') {
      expect(committed).toBeLessThanOrEqual(7);
      const named = new Set(
        (await sql.query<{ pending_key: string }>(`SELECT pending_key FROM housekeeping.archive_objects`)).rows.map((r) => r.pending_key),
      );
      expect(
        (await s3.keys('crash/_pending/')).filter((key) => !named.has(key)).length,
        'the dying batch left uncommitted pending copies',
      ).toBeGreaterThan(0);
    } else if (point === 'after-publish') expect(committed).toBe(0);
    else expect(committed).toBeGreaterThan(0);
    // After the commit, the rows are only in the pending copies; after the copy, readers see them already.
    if (point === 'after-commit') expect(now.committedPending).toBeGreaterThan(0);
    if (point === 'after-copy') expect(now.committedPending).toBe(0);
  });

  // 2. Random moments: each kill waits until the run has moved rows, then lands at random.
  it('killed at random moments of runs that have started moving', async () => {
    let killedMidRun = 0;
    for (let i = 0; i < 8 && (await sourceCount()) > 0; i++) {
      const before = await sourceCount();
      const { child, exited } = startArchiveRun(slowConfig);
      let done = false;
      void exited.then(() => (done = true));
      await expect.poll(async () => done || (await sourceCount()) !== before, { timeout: 60_000, interval: 20 }).toBe(true);
      await new Promise((resolve) => setTimeout(resolve, Math.random() * 300));
      try {
        process.kill(-child.pid!, 'SIGKILL');
        if (!done) killedMidRun++;
      } catch {
        // it had already finished
      }
      await exited;
      await s3.settled();
      await noSessionLeft();
      const now = await invariant.verifyNow();
      if (process.env.DEBUG_CRASH) console.log('random kill', i, now, await manifestStates());
    }
    expect(killedMidRun).toBeGreaterThanOrEqual(2);
  }, 120_000);

  // 3. A run to the end reconciles what the kills left and moves the rest.
  it('the next run reconciles what the kills left and finishes: every row in exactly one published object', async () => {
    const { exited } = startArchiveRun(fastConfig);
    expect(await exited).toMatchObject({ code: 0 });
    const final = await invariant.verify();
    expect(final).toMatchObject({ left: 0, archived: ROWS });
    expect(await manifestStates()).toEqual([{ state: 'published', n: final.objects }]);
    const { rows } = await sql.query(`SELECT sum(row_count)::int AS rows FROM housekeeping.archive_objects`);
    expect(rows[0].rows).toBe(ROWS);
  });
});
