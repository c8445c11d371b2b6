import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Context } from 'aws-lambda';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { relationExists } from '../../shared/db';
import { sleep } from '../../shared/postgres';
import { createTestDatabase, type TestDatabase } from '../support/db';
import { lambdaContext, scheduledEvent, serveDatabaseSecret } from '../support/lambda';
import { rollupMismatches, USAGE_DDL, usageRollup } from '../support/rollup';

let db: TestDatabase;
let sql: pg.Client;

const HOURS = 240;

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
});

async function seedTenDays() {
  await sql.query(USAGE_DDL);
  await sql.query(`INSERT INTO app.usage (occurred_at, tenant, units)
    SELECT date_trunc('hour', now()) - interval '${HOURS} hours' + i * interval '3 minutes', (ARRAY['a','b','c'])[1 + i % 3], i % 11
    FROM generate_series(0, ${HOURS * 20 - 1}) AS i`);
}

/** The watermark, or undefined while no run has got as far as creating its state. */
async function watermark(): Promise<Date | undefined> {
  if (!(await relationExists(sql, 'housekeeping.rollup_state'))) return undefined;
  const { rows } = await sql.query(`SELECT watermark FROM housekeeping.rollup_state WHERE name = 'usage_hourly'`);
  return rows[0]?.watermark as Date | undefined;
}

describe('rollup crash and resume', () => {
  it('a SIGKILL mid-backfill leaves every bucket below the watermark exact, and a rerun resumes from it', async () => {
    await seedTenDays();
    const dir = mkdtempSync(join(tmpdir(), 'hk-rollup-'));
    const slow = join(dir, 'slow.json');
    writeFileSync(slow, JSON.stringify({ targets: [{ ...usageRollup, sliceBuckets: 1, pauseMs: 40 }] }));
    const marks = new Set<number>();
    const upper = () => Math.floor(Date.now() / 3_600_000) * 3_600_000;
    const midBackfill = () => [...marks].filter((mark) => mark < upper()).length;
    // Each kill waits until the run has got somewhere (its state created, or a slice committed since
    // the last kill), then lands at a random moment after: a loaded machine that starts the CLI
    // slowly cannot make every kill land before the work begins.
    for (let i = 0; i < 10 && (i < 4 || midBackfill() < 3); i++) {
      const before = (await watermark())?.getTime();
      const child = spawn(
        process.execPath,
        ['--import', 'tsx', 'scripts/housekeeper.ts', 'run', 'rollup', '--config', slow, '--database-url', db.url],
        {
          detached: true,
          stdio: 'ignore',
        },
      );
      let done = false;
      const exited = new Promise((resolve) => child.on('exit', resolve)).then(() => (done = true));
      await expect.poll(async () => done || (await watermark())?.getTime() !== before, { timeout: 60_000, interval: 50 }).toBe(true);
      await sleep(Math.random() * 800);
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // already done
      }
      await exited;
      const wm = await watermark();
      if (wm) marks.add(wm.getTime());
      expect(await rollupMismatches(sql)).toEqual([]); // exact below the watermark, whatever the moment of death
    }
    // the kills landed at several different points in the middle of the backfill
    expect(midBackfill()).toBeGreaterThanOrEqual(3);

    await expect
      .poll(
        async () => (await sql.query(`SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = 'pg-housekeeper/rollup'`)).rows[0].n,
        { timeout: 10_000 },
      )
      .toBe(0);
    const fast = join(dir, 'fast.json');
    writeFileSync(fast, JSON.stringify({ targets: [{ ...usageRollup, sliceBuckets: 48 }] }));
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'scripts/housekeeper.ts', 'run', 'rollup', '--config', fast, '--database-url', db.url],
      { stdio: 'ignore' },
    );
    expect(await new Promise((resolve) => child.on('exit', resolve))).toBe(0);
    expect((await watermark())!.getTime()).toBe(Math.floor(Date.now() / 3_600_000) * 3_600_000);
    expect(await rollupMismatches(sql)).toEqual([]);
  });
});

describe('rollup Lambda handler', () => {
  const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:rollup-db-AbCdEf';
  let stopServingSecret = () => {};
  afterAll(() => stopServingSecret());

  it('stops before the time budget ends with the watermark at a committed slice; the next invocation continues', async () => {
    await seedTenDays();
    stopServingSecret = serveDatabaseSecret(db.url, SECRET_ARN);
    const { handler } = (await import('../../functions/rollup/handler')) as unknown as {
      handler: (e: unknown, c: Context) => Promise<{ targets: Array<{ state: string; stopReason: string; counts: Record<string, number> }> }>;
    };
    const policy = { targets: [{ ...usageRollup, sliceBuckets: 1, pauseMs: 20 }] };
    const first = await handler(scheduledEvent(policy), lambdaContext(8_000));
    expect(first.targets[0]).toMatchObject({ state: 'succeeded', stopReason: 'time budget nearly spent' });
    expect(first.targets[0]!.counts.lagSeconds).toBeGreaterThan(3_600);
    expect(await rollupMismatches(sql)).toEqual([]);
    const second = await handler({ targets: [{ ...usageRollup, sliceBuckets: 100 }] }, lambdaContext(120_000));
    expect(second.targets[0]).toMatchObject({ stopReason: 'done' });
    expect(second.targets[0]!.counts.lagSeconds).toBeLessThan(3_700);
    expect(await rollupMismatches(sql)).toEqual([]);
  });
});
