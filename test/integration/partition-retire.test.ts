import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { DateTime } from 'luxon';
import type pg from 'pg';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { PartitionEventInput } from '../../functions/partition/policy';
import { partitionsOf } from '../support/catalog';
import { createTestDatabase, databaseToday, type TestDatabase } from '../support/db';
import { rowDigests, tableFingerprints } from '../support/fingerprint';
import { runPartition } from '../support/jobs';

/**
 * Without a DEFAULT partition, dropping an expired partition is DETACH ... CONCURRENTLY and then
 * DROP: two transactions. A run that fails or dies between them must not leave the detached
 * table behind for good: the next run finds the recorded retirement and finishes it.
 */

let db: TestDatabase;
let sql: pg.Client;
let today: DateTime;

const name = (offset: number) => `events_p${today.plus({ days: offset }).toFormat('yyyy_MM_dd')}`;
const event = (mode: 'drop' | 'detach' = 'drop'): PartitionEventInput => ({
  targets: [{ table: 'app.events', interval: 'day', premake: 1, retention: { keep: 3, mode } }],
  maintainLedger: false,
});
// The target's partitions (and tables detached from it) change by design; the test's own controls too.
const NOT_COMPARED = ['app.events_*', 'testctl.*'];

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
  today = await databaseToday(sql);
});

beforeEach(async () => {
  await sql.query(`DROP EVENT TRIGGER IF EXISTS interfere_with_drop;
    DROP SCHEMA IF EXISTS app CASCADE; DROP SCHEMA IF EXISTS housekeeping CASCADE; DROP SCHEMA IF EXISTS testctl CASCADE;
    CREATE SCHEMA app; CREATE SCHEMA testctl;
    CREATE TABLE app.events (id bigint NOT NULL, created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at);
    CREATE TABLE app.bystander (id int PRIMARY KEY, v text);
    INSERT INTO app.bystander SELECT i, md5(i::text) FROM generate_series(1, 20) i;
    CREATE SEQUENCE testctl.drops;`);
  for (const offset of [-10, -9, 0, 1]) {
    await sql.query(
      `CREATE TABLE app.${name(offset)} PARTITION OF app.events FOR VALUES FROM ('${today.plus({ days: offset }).toISO()}') TO ('${today.plus({ days: offset + 1 }).toISO()}')`,
    );
  }
  await sql.query(`INSERT INTO app.events SELECT i, $1::timestamptz + i * interval '1 minute' FROM generate_series(1, 5) i`, [
    today.plus({ days: -10 }).toISO(),
  ]);
});

/**
 * An event trigger on the first DROP TABLE only (a sequence is not rolled back with the failed
 * statement): `fail` raises, as a DROP blocked or killed would; `sleep` holds the DROP so a test
 * can kill the run in the middle of it.
 */
async function interfereWithFirstDrop(how: 'fail' | 'sleep') {
  const action = how === 'fail' ? `RAISE EXCEPTION 'simulated failure of the first DROP TABLE'` : 'PERFORM pg_sleep(60)';
  await sql.query(`CREATE FUNCTION testctl.interfere() RETURNS event_trigger LANGUAGE plpgsql AS $$
      BEGIN IF nextval('testctl.drops') = 1 THEN ${action}; END IF; END $$;
    CREATE EVENT TRIGGER interfere_with_drop ON ddl_command_start WHEN TAG IN ('DROP TABLE') EXECUTE FUNCTION testctl.interfere();`);
}

async function tableState(table: string): Promise<'missing' | 'standalone' | 'partition'> {
  const { rows } = await sql.query(`SELECT relispartition FROM pg_class WHERE oid = to_regclass($1)`, [`app.${table}`]);
  return rows.length === 0 ? 'missing' : rows[0].relispartition ? 'partition' : 'standalone';
}

const recorded = async () =>
  (await sql.query(`SELECT parent, partition_name, mode FROM housekeeping.partition_retirements ORDER BY partition_name`)).rows;

describe('a drop that fails after its detach', () => {
  it('is recorded, and the next run drops the detached table', async () => {
    await interfereWithFirstDrop('fail');
    const before = await tableFingerprints(sql, NOT_COMPARED);
    const first = await runPartition(db.url, event());
    expect(first.targets[0]).toMatchObject({ state: 'failed', counts: { dropped: 1, created: 3 } });
    expect(first.targets[0]!.detail).toContain('simulated failure of the first DROP TABLE');
    expect(await tableState(name(-10))).toBe('standalone'); // detached, not dropped
    expect(await tableState(name(-9))).toBe('missing');
    expect(await recorded()).toEqual([{ parent: 'app.events', partition_name: name(-10), mode: 'drop' }]);

    const second = await runPartition(db.url, event());
    expect(second.targets[0]).toMatchObject({ state: 'succeeded', counts: { dropped: 1, created: 0 } });
    expect(await tableState(name(-10))).toBe('missing');
    expect(await recorded()).toEqual([]);
    expect(await tableFingerprints(sql, NOT_COMPARED)).toEqual(before);
  });

  it('dry run prints the drop it would finish and changes nothing', async () => {
    await interfereWithFirstDrop('fail');
    await runPartition(db.url, event());
    const fingerprints = await tableFingerprints(sql, ['testctl.*']);
    const dry = await runPartition(db.url, { ...event(), dryRun: true });
    const notes = dry.targets[0]!.notes.join('\n');
    expect(notes).toContain(`-- finish an earlier run's retirement: app.${name(-10)} was detached by a run that did not finish dropping it`);
    expect(notes).toContain(`DROP TABLE "app"."${name(-10)}";`);
    expect(dry.targets[0]!.counts).toMatchObject({ wouldDrop: 1 });
    expect(await tableFingerprints(sql, ['testctl.*'])).toEqual(fingerprints);
    expect(await tableState(name(-10))).toBe('standalone');
    expect(await recorded()).toHaveLength(1);
  });

  it('never drops a different table that took the name since', async () => {
    await interfereWithFirstDrop('fail');
    await runPartition(db.url, event());
    await sql.query(`DROP TABLE app.${name(-10)}; CREATE TABLE app.${name(-10)} (note text); INSERT INTO app.${name(-10)} VALUES ('not yours')`);
    const rows = await rowDigests(sql, `app.${name(-10)}`);
    const second = await runPartition(db.url, event());
    expect(second.targets[0]).toMatchObject({ state: 'succeeded', counts: { dropped: 0 } });
    expect(await tableState(name(-10))).toBe('standalone');
    expect(await rowDigests(sql, `app.${name(-10)}`)).toEqual(rows);
    expect(await recorded()).toEqual([]);
  });

  it('in detach mode, a completed detach leaves no record and the table in place', async () => {
    const before = await tableFingerprints(sql, NOT_COMPARED);
    const summary = await runPartition(db.url, event('detach'));
    expect(summary.targets[0]).toMatchObject({ state: 'succeeded', counts: { detached: 2 } });
    expect(await tableState(name(-10))).toBe('standalone');
    expect((await sql.query(`SELECT count(*)::int AS n FROM app.${name(-10)}`)).rows[0].n).toBe(5);
    expect(await recorded()).toEqual([]);
    expect(await tableFingerprints(sql, NOT_COMPARED)).toEqual(before);
  });
});

describe('a run killed between DETACH and DROP', () => {
  it('leaves a record, and the next run drops the detached table', async () => {
    await interfereWithFirstDrop('sleep');
    const before = await tableFingerprints(sql, NOT_COMPARED);
    const config = join(mkdtempSync(join(tmpdir(), 'hk-retire-')), 'partition.json');
    writeFileSync(config, JSON.stringify(event()));
    // In its own process group, so the kill reaches node and not only a wrapper.
    const child = spawn(
      process.execPath,
      ['--import', 'tsx', 'scripts/housekeeper.ts', 'run', 'partition', '--config', config, '--database-url', db.url],
      {
        detached: true,
        stdio: 'ignore',
      },
    );
    const exited = new Promise((resolve) => child.on('exit', resolve));
    const sleeping = async () =>
      (
        await sql.query(
          `SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pg-housekeeper/partition' AND wait_event = 'PgSleep' AND query LIKE 'DROP TABLE%'`,
        )
      ).rows;
    await expect.poll(async () => (await sleeping()).length, { timeout: 30_000, interval: 100 }).toBe(1);
    process.kill(-child.pid!, 'SIGKILL');
    await exited;
    // The server notices a dead client only when it next talks to it; a Lambda that dies takes its
    // socket with it. Only this database's sessions: other test files share the server.
    const ours = `FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'pg-housekeeper/partition'`;
    await sql.query(`SELECT pg_terminate_backend(pid) ${ours}`);
    await expect.poll(async () => (await sql.query(`SELECT count(*)::int AS n ${ours}`)).rows[0].n).toBe(0);

    expect(await tableState(name(-10))).toBe('standalone');
    expect(await recorded()).toEqual([{ parent: 'app.events', partition_name: name(-10), mode: 'drop' }]);

    const next = await runPartition(db.url, event());
    expect(next.targets[0]).toMatchObject({ state: 'succeeded' });
    expect(await tableState(name(-10))).toBe('missing');
    expect(await tableState(name(-9))).toBe('missing');
    expect(await recorded()).toEqual([]);
    expect(Object.keys(await partitionsOf(sql, 'app.events')).sort()).toEqual([name(-3), name(-2), name(-1), name(0), name(1)].sort());
    expect(await tableFingerprints(sql, NOT_COMPARED)).toEqual(before);
  }, 60_000);
});
