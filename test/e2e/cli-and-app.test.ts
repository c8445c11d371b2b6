import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { USAGE } from '../../infra/context';
import { seedDemo } from '../../scripts/demo';
import { createTestDatabase, type TestDatabase } from '../support/db';

const run = promisify(execFile);
const NO_SDK = ['--import', 'tsx', '--import', './test/support/no-aws-sdk.mjs'];

async function node(args: string[], env: NodeJS.ProcessEnv = {}) {
  try {
    const { stdout, stderr } = await run(process.execPath, args, { env: { ...process.env, ...env } });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const e = error as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
}

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
  const sql = await db.connect();
  await sql.query(`CREATE SCHEMA app; CREATE TABLE app.events (id bigserial, created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at)`);
});

describe('a local command that does not call AWS', () => {
  it('never loads the AWS SDK, so it prints no SDK warning', async () => {
    const config = join(mkdtempSync(join(tmpdir(), 'hk-cli-')), 'partition.json');
    writeFileSync(config, JSON.stringify({ targets: [{ table: 'app.events', interval: 'day', premake: 2 }] }));
    const cli = await node([...NO_SDK, 'scripts/housekeeper.ts', 'run', 'partition', '--config', config, '--database-url', db.url, '--dry-run']);
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stdout).toContain('partition (dry run): 1 target(s)');
    expect(cli.stderr).not.toMatch(/AWS SDK|NodeVersionSupportWarning/);
  });

  it('runs the deployed policy (--deployed, the one infra/housekeeping.config.ts ships) dry, without the SDK', async () => {
    const sql = await db.connect();
    await sql.query(`CREATE TABLE public.events (id bigserial, created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at);
      CREATE TABLE public.invoices (id bigserial, issued_at date NOT NULL) PARTITION BY RANGE (issued_at)`);
    const cli = await node([...NO_SDK, 'scripts/housekeeper.ts', 'run', 'partition', '--deployed', '--dry-run', '--database-url', db.url]);
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stdout).toContain('partition (dry run): 2 target(s)');
    expect(cli.stdout).toMatch(/ATTACH PARTITION "public"\."events_p\d{4}_\d\d_\d\d"/);
    expect(cli.stdout).toMatch(/ATTACH PARTITION "public"\."invoices_p\d{4}_\d\d"/);
    const both = await node([...NO_SDK, 'scripts/housekeeper.ts', 'run', 'partition', '--deployed', '--config', 'x.json', '--database-url', db.url]);
    expect(both.code).toBe(2);
    expect(both.stderr).toContain('--deployed: runs the policy in infra/housekeeping.config.ts; leave out --config');
  });

  it('runs one database of the fleet by id (--database), its deployed policy, against a local copy; every log line names it', async () => {
    // A local copy of the sandbox's database: the demo tables its seed makes.
    const copy = await createTestDatabase();
    await seedDemo(copy.url);
    const cli = await node([...NO_SDK, 'scripts/housekeeper.ts', 'run', 'partition', '--database', 'demo', '--database-url', copy.url], {
      POWERTOOLS_LOG_LEVEL: 'INFO',
    });
    expect(cli.code, cli.stderr).toBe(0);
    expect(cli.stdout).toContain('demo: partition: 3 target(s)');
    expect(cli.stdout).toMatch(/succeeded +demo\.events /);
    const lines = cli.stdout
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(lines.length).toBeGreaterThan(3);
    for (const line of lines) expect(line.database, String(line.message)).toBe('demo');

    const unknown = await node([...NO_SDK, 'scripts/housekeeper.ts', 'run', 'partition', '--database', 'orders', '--database-url', copy.url]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('--database: infra/housekeeping.config.ts lists no database "orders" (it lists demo)');
    const withConfig = await node([
      ...NO_SDK,
      'scripts/housekeeper.ts',
      'run',
      'partition',
      '--database',
      'demo',
      '--config',
      'x.json',
      '--database-url',
      copy.url,
    ]);
    expect(withConfig.code).toBe(2);
    expect(withConfig.stderr).toContain("--database: runs that database's policy from infra/housekeeping.config.ts; leave out --config");
  });

  it('while the Lambda entry does load it, at import (the probe works)', async () => {
    const lambda = await node([...NO_SDK, '--input-type=module', '-e', `await import('./shared/lambda.ts')`]);
    expect(lambda.code).not.toBe(0);
    expect(lambda.stderr).toContain('the AWS SDK was loaded: @aws-sdk/client-secrets-manager');
  });
});

describe('cdk synth without context', () => {
  // cdk.json's app command, as `cdk synth` runs it: context arrives in CDK_CONTEXT_JSON.
  it('prints what is missing and the one-line usage, no stack trace, exit 2', async () => {
    const synth = await node(['--import', 'tsx', 'infra/app.ts'], { CDK_CONTEXT_JSON: '{}' });
    expect(synth.code).toBe(2);
    expect(synth.stderr.trim().split('\n')).toEqual([
      'nothing to deploy: list your databases in infra/housekeeping.config.ts, or pass -c secretArn=… for one existing database, or -c demo=true for a sandbox',
      USAGE,
    ]);
  });

  it('names a partial secret ARN the same way', async () => {
    const synth = await node(['--import', 'tsx', 'infra/app.ts'], {
      CDK_CONTEXT_JSON: JSON.stringify({ secretArn: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod-db' }),
    });
    expect(synth.code).toBe(2);
    expect(synth.stderr).toMatch(/^secretArn: .* is not a complete secret ARN/);
    expect(synth.stderr).not.toMatch(/^\s+at /m);
  });
});
