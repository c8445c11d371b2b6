import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { App, Duration } from 'aws-cdk-lib';
import { Schedule } from 'aws-cdk-lib/aws-events';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HousekeepingStack } from '../../infra/stack';
import { ORDERS_DDL, seedOrders } from '../support/archive';
import { partitionsOf } from '../support/catalog';
import { createTestDatabase, type TestDatabase } from '../support/db';
import { startFakeSecretsManager } from '../support/fake-secrets-manager';
import { rollupMismatches, usageRollup } from '../support/rollup';

const run = promisify(execFile);
const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:e2e-db-AbCdEf';

let db: TestDatabase;
let sql: pg.Client;
let fake: Awaited<ReturnType<typeof startFakeSecretsManager>>;
const bundles: Record<string, { dir: string; environment: Record<string, string> }> = {};

/**
 * Synthesizes the real stack (the artifact `cdk deploy` would upload) and finds each job's bundle
 * through the asset metadata CDK writes on the function.
 */
function synthesizeBundles() {
  const outdir = mkdtempSync(join(tmpdir(), 'hk-cdk-'));
  const app = new App({ outdir, context: { 'aws:cdk:enable-asset-metadata': true } });
  const every = Schedule.rate(Duration.hours(1));
  new HousekeepingStack(app, 'E2E', {
    target: { kind: 'existing', secretArn: SECRET_ARN },
    config: {
      partition: { schedule: every, policy: { targets: [{ table: 'app.events', interval: 'day', premake: 2 }] } },
      archive: { schedule: every, policy: { targets: [{ source: 'app.orders', destination: 'app.orders_archive', ageColumn: 'completed_at', retention: '90 days' }] } },
      rollup: { schedule: every, policy: { targets: [usageRollup] } },
    },
  });
  const assembly = app.synth();
  const template = JSON.parse(readFileSync(join(assembly.directory, 'E2E.template.json'), 'utf8')) as {
    Resources: Record<string, { Type: string; Metadata?: Record<string, string>; Properties: { Environment?: { Variables: Record<string, string> } } }>;
  };
  for (const [logicalId, resource] of Object.entries(template.Resources)) {
    if (resource.Type !== 'AWS::Lambda::Function') continue;
    const job = ['Partition', 'Archive', 'Rollup'].find((name) => logicalId.startsWith(`Housekeeping${name}`));
    if (!job) continue;
    bundles[job.toLowerCase()] = {
      dir: join(assembly.directory, resource.Metadata!['aws:asset:path']!),
      environment: resource.Properties.Environment!.Variables,
    };
  }
}

/** Runs a bundle's handler in a fresh Node process, as Lambda would: event in, JSON result or error out. */
async function invokeBundle(job: string, event: unknown) {
  const bundle = bundles[job]!;
  const script = `
    const { handler } = require(${JSON.stringify(join(bundle.dir, 'index.js'))});
    const deadline = Date.now() + 60000;
    handler(${JSON.stringify(event)}, { awsRequestId: 'e2e', getRemainingTimeInMillis: () => deadline - Date.now() })
      .then((result) => { process.stdout.write('\\nRESULT ' + JSON.stringify(result) + '\\n'); })
      .catch((error) => { process.stdout.write('\\nERROR ' + error.message + '\\n'); process.exitCode = 1; });`;
  const env = {
    PATH: process.env.PATH,
    ...bundle.environment,
    AWS_REGION: 'eu-west-1',
    AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
    AWS_SECRET_ACCESS_KEY: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY',
    AWS_ENDPOINT_URL_SECRETS_MANAGER: fake.url,
    POWERTOOLS_LOG_LEVEL: 'INFO',
  };
  try {
    const { stdout } = await run(process.execPath, ['-e', script], { env, cwd: tmpdir() });
    return { ok: true, stdout, result: JSON.parse(stdout.split('\nRESULT ')[1]!) };
  } catch (error) {
    return { ok: false, stdout: (error as { stdout: string }).stdout, result: undefined };
  }
}

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
  const url = new URL(db.url);
  fake = await startFakeSecretsManager({
    [SECRET_ARN]: JSON.stringify({ host: url.hostname, port: Number(url.port), username: url.username, password: url.password, dbname: db.name }),
  });
  synthesizeBundles();
}, 120_000);

afterAll(async () => {
  await fake?.close();
});

describe('the deployable bundles', () => {
  it('are self-contained, minified, with source maps, well under 1 MB', () => {
    expect(Object.keys(bundles).sort()).toEqual(['archive', 'partition', 'rollup']);
    for (const bundle of Object.values(bundles)) {
      const size = statSync(join(bundle.dir, 'index.js')).size;
      expect(size).toBeLessThan(1024 * 1024);
      expect(existsSync(join(bundle.dir, 'index.js.map'))).toBe(true);
    }
  });

  it('partition: a scheduled event through the real Secrets Manager client path creates partitions', async () => {
    await sql.query(`CREATE SCHEMA app; CREATE TABLE app.events (id bigserial, created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at)`);
    const { ok, stdout, result } = await invokeBundle('partition', {
      'detail-type': 'Scheduled Event',
      source: 'aws.events',
      detail: { targets: [{ table: 'app.events', interval: 'day', premake: 2 }] },
    });
    expect(ok).toBe(true);
    expect(result.targets[0]).toMatchObject({ target: 'app.events', state: 'succeeded', counts: { created: 3 } });
    expect(Object.keys(await partitionsOf(sql, 'app.events'))).toHaveLength(3);
    expect(fake.calls.some((c) => c.target === 'secretsmanager.GetSecretValue' && c.secretId === SECRET_ARN && c.authorized)).toBe(true);
    expect(stdout).toContain('"message":"run summary"');
    expect(stdout).toContain('"Namespace":"PgHousekeeper"');
  });

  it('archive and rollup bundles run their jobs end to end', async () => {
    await sql.query(ORDERS_DDL.replace('DROP SCHEMA IF EXISTS app CASCADE; CREATE SCHEMA app;', ''));
    await sql.query(seedOrders(300, 20));
    const archived = await invokeBundle('archive', { targets: [{ source: 'app.orders', destination: 'app.orders_archive', ageColumn: 'completed_at', retention: '90 days' }] });
    expect(archived.result.targets[0]).toMatchObject({ state: 'succeeded', counts: { rowsMoved: 300 } });

    await sql.query(`CREATE TABLE app.usage (id bigserial PRIMARY KEY, occurred_at timestamptz NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), tenant text NOT NULL, units numeric NOT NULL);
      CREATE TABLE app.usage_hourly (bucket timestamptz NOT NULL, tenant text NOT NULL, events bigint NOT NULL, units numeric NOT NULL, peak numeric, PRIMARY KEY (bucket, tenant));
      INSERT INTO app.usage (occurred_at, tenant, units) SELECT now() - i * interval '7 minutes', 'acme', i FROM generate_series(1, 400) i`);
    const rolled = await invokeBundle('rollup', { targets: [usageRollup] });
    expect(rolled.result.targets[0]).toMatchObject({ state: 'succeeded', stopReason: 'caught up' });
    expect(await rollupMismatches(sql)).toEqual([]);
  });

  it('fails the invocation, naming the field, on a bad event', async () => {
    const { ok, stdout } = await invokeBundle('partition', { targets: [{ table: 'app.events', interval: 'weekly' }] });
    expect(ok).toBe(false);
    expect(stdout).toContain('ERROR event.targets[0].interval: Invalid option');
  });
});
