import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type pg from 'pg';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { JOBS } from '../../functions/registry';
import { relationExists } from '../../shared/db';
import { ledgerMigrations, migrate } from '../../shared/migrate';
import { partitionsOf } from '../support/catalog';
import { createTestDatabase, type TestDatabase } from '../support/db';

const MIGRATIONS = ledgerMigrations(JOBS);

const run = promisify(execFile);
let db: TestDatabase;
let sql: pg.Client;
let configPath: string;

async function housekeeper(...args: string[]) {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', 'scripts/housekeeper.ts', ...args], {
      env: { ...process.env, POWERTOOLS_LOG_LEVEL: 'INFO' },
    });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
  await sql.query(`CREATE SCHEMA app;
    CREATE TABLE app.events (id bigserial, created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at);`);
  configPath = join(mkdtempSync(join(tmpdir(), 'hk-cli-')), 'partition.json');
  writeFileSync(configPath, JSON.stringify({ targets: [{ table: 'app.events', interval: 'day', premake: 2 }] }));
});

describe('housekeeper CLI', () => {
  it('dry run prints the SQL and changes nothing; a real run creates; status shows it', async () => {
    const dry = await housekeeper('run', 'partition', '--config', configPath, '--database-url', db.url, '--dry-run');
    expect(dry.code).toBe(0);
    expect(dry.stdout).toContain('partition (dry run): 1 target(s)');
    expect(dry.stdout).toMatch(/ALTER TABLE "app"\."events" ATTACH PARTITION "app"\."events_p\d{4}_\d\d_\d\d"/);
    expect(await partitionsOf(sql, 'app.events')).toEqual({});

    const real = await housekeeper('run', 'partition', '--config', configPath, '--database-url', db.url);
    expect(real.code).toBe(0);
    expect(real.stdout).toMatch(/succeeded +app\.events +created 3, dropped 0/);
    expect(real.stdout.split('\n').some((line) => line.startsWith('{"level":"INFO","message":"run summary"'))).toBe(true);
    expect(Object.keys(await partitionsOf(sql, 'app.events'))).toHaveLength(3);

    const status = await housekeeper('status', '--database-url', db.url);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(/partition +app\.events +succeeded .*created 3/);
  });

  it('exits 2 with the field named for a bad config, and 1 when a target fails', async () => {
    const badPath = join(mkdtempSync(join(tmpdir(), 'hk-cli-')), 'bad.json');
    writeFileSync(badPath, JSON.stringify({ targets: [{ table: 'app.events', interval: 'daily' }] }));
    const bad = await housekeeper('run', 'partition', '--config', badPath, '--database-url', db.url);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('ConfigError: config.targets[0].interval: Invalid option');

    const missingPath = join(mkdtempSync(join(tmpdir(), 'hk-cli-')), 'missing.json');
    writeFileSync(missingPath, JSON.stringify({ targets: [{ table: 'app.nope', interval: 'day' }] }));
    const failed = await housekeeper('run', 'partition', '--config', missingPath, '--database-url', db.url);
    expect(failed.code).toBe(1);
    expect(failed.stdout).toContain('table app.nope does not exist');
  });

  it('status opens its session like a run does: application_name and lock_timeout apply', async () => {
    await migrate(sql, MIGRATIONS);
    const locker = await db.connect('locker');
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE housekeeping.job_runs IN ACCESS EXCLUSIVE MODE');
    try {
      const status = housekeeper('status', '--database-url', db.url);
      const waiting = await vi.waitFor(
        async () => {
          const { rows } = await sql.query(`SELECT application_name FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'`, [
            db.name,
          ]);
          if (rows.length === 0) throw new Error('status is not waiting yet');
          return rows;
        },
        { timeout: 30_000, interval: 50 },
      );
      expect(waiting).toEqual([{ application_name: 'pg-housekeeper/status' }]);
      // Still locked: status gives up after its lock_timeout instead of hanging.
      const result = await status;
      expect(result.code).toBe(1);
      expect(result.stderr).toContain('canceling statement due to lock timeout');
    } finally {
      await locker.query('ROLLBACK');
    }
  });

  it('status and demo refuse a non-loopback database without TLS exactly as run does', async () => {
    // 0.0.0.0 reaches this machine's server, but it is not a loopback name, so TLS is required
    // (shared/db.ts) and the test server offers none.
    const remote = db.url.replace('127.0.0.1', '0.0.0.0');
    const outcomes = {
      run: await housekeeper('run', 'partition', '--config', configPath, '--database-url', remote),
      status: await housekeeper('status', '--database-url', remote),
      demo: await housekeeper('demo', '--database-url', remote),
    };
    for (const outcome of Object.values(outcomes)) {
      expect(outcome.code).toBe(1);
      expect(outcome.stderr).toContain('Error: The server does not support SSL connections');
    }
    // demo refused before seeding, not only at the partition run after it.
    expect(await relationExists(sql, 'demo.events')).toBe(false);
    // The refusal is about TLS alone: with it switched off explicitly, the same address works.
    const plain = await housekeeper('status', '--database-url', `${remote}?sslmode=disable`);
    expect(plain.code).toBe(0);
    expect(plain.stdout).toMatch(/partition +app\.events +succeeded/);
  });
});
