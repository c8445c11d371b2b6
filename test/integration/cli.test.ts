import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { partitionsOf } from '../support/catalog';
import { createTestDatabase, type TestDatabase } from '../support/db';

const run = promisify(execFile);
let db: TestDatabase;
let sql: pg.Client;
let configPath: string;

async function housekeeper(...args: string[]) {
  try {
    const { stdout, stderr } = await run(process.execPath, ['--import', 'tsx', 'scripts/housekeeper.ts', ...args], { env: { ...process.env, POWERTOOLS_LOG_LEVEL: 'INFO' } });
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
});
