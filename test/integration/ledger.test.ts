import { randomUUID } from 'node:crypto';
import { expect, it } from 'vitest';
import { JOBS } from '../../functions/registry';
import { recordRunState } from '../../shared/ledger';
import { ledgerMigrations, migrate } from '../../shared/migrate';
import { sleep } from '../../shared/postgres';
import { createTestDatabase } from '../support/db';

it('records a run state written while the partition job attaches the month it belongs to (it waited on DEFAULT, then Postgres refused its stale routing)', async () => {
  const db = await createTestDatabase();
  const [job, attach] = [await db.connect(), await db.connect()];
  await migrate(job, ledgerMigrations(JOBS));
  // What the partition job's ledger target does on a fresh ledger: this month's partition is made
  // beside DEFAULT and attached with DEFAULT locked (its rows of the month moved first).
  await attach.query(`CREATE TABLE housekeeping.job_runs_this_month (LIKE housekeeping.job_runs INCLUDING DEFAULTS INCLUDING CONSTRAINTS)`);
  await attach.query('BEGIN');
  await attach.query('LOCK housekeeping.job_runs_default IN ACCESS EXCLUSIVE MODE');
  await attach.query(
    `ALTER TABLE housekeeping.job_runs ATTACH PARTITION housekeeping.job_runs_this_month
     FOR VALUES FROM (date_trunc('month', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') TO ((date_trunc('month', now() AT TIME ZONE 'UTC') + interval '1 month') AT TIME ZONE 'UTC')`,
  );
  const runId = randomUUID();
  // Routed to DEFAULT (the only partition it saw), it waits for the lock...
  const written = recordRunState(job, {
    runId,
    job: 'partition',
    target: 'app.events',
    state: 'succeeded',
    startedAt: new Date(),
    durationMs: 5,
    counts: { created: 3 },
  });
  written.catch(() => {});
  await sleep(300);
  // ...and once the attach commits, its row belongs to the new partition, not DEFAULT.
  await attach.query('COMMIT');
  await written;
  const { rows } = await job.query(`SELECT tableoid::regclass::text AS part, state, counts FROM housekeeping.job_runs WHERE run_id = $1`, [runId]);
  expect(rows).toEqual([{ part: 'housekeeping.job_runs_this_month', state: 'succeeded', counts: { created: 3 } }]);
});
