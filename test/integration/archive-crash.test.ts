import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { queryOne, sleep } from '../../shared/postgres';
import { captureArchiveInvariant, ORDERS_DDL, seedOrders } from '../support/archive';
import { createTestDatabase, type TestDatabase } from '../support/db';

let db: TestDatabase;
let sql: pg.Client;
let slowConfig: string;
let fastConfig: string;
let invariant: Awaited<ReturnType<typeof captureArchiveInvariant>>;

const ROWS = 4000;
const KILLS = 12;

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
  await sql.query(ORDERS_DDL);
  await sql.query(seedOrders(ROWS, 0));
  // Distinct contents per row, so a row swapped, changed or half-copied shows in the digests.
  await sql.query(`UPDATE app.orders SET status = md5(id::text), amount = id * 1.01`);
  invariant = await captureArchiveInvariant(sql, { source: 'app.orders', destination: 'app.orders_archive' });
  const dir = mkdtempSync(join(tmpdir(), 'hk-crash-'));
  const target = { source: 'app.orders', destination: 'app.orders_archive', ageColumn: 'completed_at', retention: '90 days' };
  // Small batches with pauses: each killed run gets through only part of the rows.
  slowConfig = join(dir, 'slow.json');
  writeFileSync(slowConfig, JSON.stringify({ targets: [{ ...target, batchSize: 7, pauseMs: 15 }] }));
  fastConfig = join(dir, 'fast.json');
  writeFileSync(fastConfig, JSON.stringify({ targets: [{ ...target, batchSize: 1000 }] }));
});

/** Starts the CLI in its own process group, so a kill reaches node itself and not only a wrapper. */
function startArchiveRun(config: string) {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', 'scripts/housekeeper.ts', 'run', 'archive', '--config', config, '--database-url', db.url],
    {
      detached: true,
      stdio: 'ignore',
    },
  );
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited };
}

async function keyCounts() {
  return queryOne<{ source: number; archive: number; both: number; distinct_keys: number }>(
    sql,
    `
    SELECT (SELECT count(*) FROM app.orders)::int AS source,
           (SELECT count(*) FROM app.orders_archive)::int AS archive,
           (SELECT count(*) FROM app.orders o JOIN app.orders_archive a USING (id))::int AS both,
           (SELECT count(DISTINCT id) FROM (SELECT id FROM app.orders UNION ALL SELECT id FROM app.orders_archive) u)::int AS distinct_keys`,
  );
}

describe('archive under SIGKILL at random moments', () => {
  it('always leaves every row, contents included, in exactly one of source and archive, and a final run finishes the job', async () => {
    let killedMidRun = 0;
    const partial = new Set<number>(); // distinct part-done states seen after a kill
    // Each kill waits until the run has moved something since the last kill (or finished), then
    // lands at a random moment after: on a loaded machine the CLI can take seconds to start, and a
    // fixed delay then kills it before its first batch every time.
    for (let i = 0; i < KILLS && (await keyCounts()).archive < ROWS; i++) {
      const before = (await keyCounts()).archive;
      const { child, exited } = startArchiveRun(slowConfig);
      let done = false;
      void exited.then(() => (done = true));
      await expect.poll(async () => done || (await keyCounts()).archive !== before, { timeout: 60_000, interval: 20 }).toBe(true);
      await sleep(Math.random() * 400);
      try {
        process.kill(-child.pid!, 'SIGKILL');
        if (!done) killedMidRun++;
      } catch {
        // it had already finished
      }
      await exited;
      const counts = await keyCounts();
      if (counts.archive > 0 && counts.archive < ROWS) partial.add(counts.archive);
      if (process.env.DEBUG_CRASH) console.log('after kill', i, counts);
      expect(counts.both).toBe(0);
      expect(counts.source + counts.archive).toBe(ROWS);
      expect(counts.distinct_keys).toBe(ROWS);
      // Whole rows, not only keys: source ∪ archive holds every row byte for byte as before.
      await invariant.verify({ state: 'succeeded', counts: { batches: 1 } });
    }
    expect(killedMidRun).toBeGreaterThanOrEqual(3);
    expect(partial.size).toBeGreaterThanOrEqual(3); // the kills really landed in the middle of the work
    // Some kills left a backend finishing its batch; wait until no session of ours remains.
    await expect
      .poll(
        async () => (await sql.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pg-housekeeper/archive'`)).rows[0].n,
        { timeout: 10_000 },
      )
      .toBe(0);

    const { exited } = startArchiveRun(fastConfig);
    expect(await exited).toBe(0);
    const final = await keyCounts();
    expect(final).toEqual({ source: 0, archive: ROWS, both: 0, distinct_keys: ROWS });
    await invariant.verify({ state: 'succeeded', counts: { batches: 1 } });
    const rows = await sql.query(`SELECT min(id)::int AS lo, max(id)::int AS hi FROM app.orders_archive`);
    expect(rows.rows[0]).toEqual({ lo: 1, hi: ROWS });
  });
});
