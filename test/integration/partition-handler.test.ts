import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { Context } from 'aws-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { SQLSTATE, sqlState } from '../../shared/postgres';
import { resetSecretCache } from '../../shared/secrets';
import { partitionsOf } from '../support/catalog';
import { createTestDatabase, type TestDatabase } from '../support/db';
import { lambdaContext, scheduledEvent } from '../support/lambda';

const secrets = mockClient(SecretsManagerClient);
const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:pg-housekeeper-db-AbCdEf';

let db: TestDatabase;
let sql: pg.Client;
let role: string;
let handler: (event: unknown, context: Context) => Promise<unknown>;
let output: string[];
let errorOutput: string[];

function secretFor(password: string) {
  const url = new URL(db.url);
  return {
    SecretString: JSON.stringify({ host: url.hostname, port: Number(url.port), username: role, password, dbname: db.name, engine: 'postgres' }),
  };
}

const policy = { targets: [{ table: 'app.events', interval: 'day', premake: 2 }], maintainLedger: false };

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
  role = `${db.name}_app`;
  await sql.query(`CREATE ROLE ${role} LOGIN SUPERUSER PASSWORD 'first-Pa55word'`);
  process.env.PGHK_DB_SECRET_ARN = SECRET_ARN;
  process.env.POWERTOOLS_LOG_LEVEL = 'INFO';
  process.env.POWERTOOLS_METRICS_DISABLED = 'false'; // this file checks the EMF record
  // Imported after the environment is set, as Lambda does at cold start.
  ({ handler } = await import('../../functions/partition/handler'));
});

afterAll(async () => {
  delete process.env.PGHK_DB_SECRET_ARN;
  await sql.query(`DROP ROLE IF EXISTS ${role}`).catch(() => {});
});

beforeEach(async () => {
  secrets.reset();
  resetSecretCache();
  output = [];
  errorOutput = [];
  vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    errorOutput.push(String(chunk));
    return true;
  });
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    output.push(String(chunk));
    return true;
  });
  await sql.query(`DROP SCHEMA IF EXISTS app CASCADE; CREATE SCHEMA app;
    CREATE TABLE app.events (id bigserial, created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at);`);
  await sql.query(`ALTER ROLE ${role} PASSWORD 'first-Pa55word'`);
});

afterEach(() => {
  vi.restoreAllMocks();
});

const logLines = () =>
  output
    .join('')
    .split('\n')
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Record<string, unknown>);

describe('partition Lambda handler', () => {
  it('runs end to end from an EventBridge Scheduled Event, logging JSON with job, target and run id', async () => {
    secrets.on(GetSecretValueCommand, { SecretId: SECRET_ARN }).resolves(secretFor('first-Pa55word'));
    const summary = (await handler(scheduledEvent(policy), lambdaContext())) as { targets: Array<{ state: string; counts: Record<string, number> }> };
    expect(summary.targets[0]).toMatchObject({ state: 'succeeded', counts: { created: 3 } });
    expect(Object.keys(await partitionsOf(sql, 'app.events'))).toHaveLength(3);
    const lines = logLines();
    const done = lines.find((l) => l.message === 'target succeeded')!;
    expect(done).toMatchObject({ service: 'pg-housekeeper', job: 'partition', target: 'app.events', level: 'INFO' });
    expect(done.runId).toMatch(/^[0-9a-f-]{36}$/);
    expect(lines.find((l) => l.message === 'run summary')).toMatchObject({ job: 'partition', failed: [] });
    const emf = lines.find((l) => l._aws !== undefined)!;
    expect(emf).toMatchObject({ job: 'partition', PartitionsCreated: 3, PartitionsAhead: 2, TargetsFailed: 0 });
    expect((emf._aws as { CloudWatchMetrics: Array<{ Namespace: string; Dimensions: string[][] }> }).CloudWatchMetrics[0]).toMatchObject({
      Namespace: 'PgHousekeeper',
      Dimensions: [expect.arrayContaining(['job'])],
    });
    const application = await sql.query(`SELECT count(*)::int AS n FROM housekeeping.job_runs WHERE target = 'app.events'`);
    expect(application.rows[0].n).toBe(2);
  });

  it('accepts the policy itself as the event (the rule target input) and reuses the cached secret', async () => {
    secrets.on(GetSecretValueCommand).resolves(secretFor('first-Pa55word'));
    await handler(policy, lambdaContext());
    await handler(policy, lambdaContext());
    expect(secrets.commandCalls(GetSecretValueCommand)).toHaveLength(1);
  });

  it('fetches the secret again once when Postgres rejects a rotated password', async () => {
    secrets.on(GetSecretValueCommand).resolvesOnce(secretFor('first-Pa55word')).resolves(secretFor('second-Pa55word'));
    await handler(policy, lambdaContext()); // caches the first password
    await sql.query(`ALTER ROLE ${role} PASSWORD 'second-Pa55word'`); // rotation
    const summary = (await handler(policy, lambdaContext())) as { failed: string[] };
    expect(summary.failed).toEqual([]);
    expect(secrets.commandCalls(GetSecretValueCommand)).toHaveLength(2);
  });

  it('fails the invocation when a target fails, after running the others', async () => {
    secrets.on(GetSecretValueCommand).resolves(secretFor('first-Pa55word'));
    const event = { ...policy, targets: [{ table: 'app.missing', interval: 'day' }, ...policy.targets] };
    await expect(handler(event, lambdaContext())).rejects.toThrowError('partition: 1 target(s) failed: app.missing');
    expect(Object.keys(await partitionsOf(sql, 'app.events'))).toHaveLength(3);
  });

  it('refuses a bad event before connecting, naming the field', async () => {
    await expect(handler(scheduledEvent({ targets: [{ table: 'app.events', interval: 'day', premake: 0 }] }), lambdaContext())).rejects.toThrowError(
      /event\.targets\[0\]\.premake: Too small/,
    );
    expect(secrets.commandCalls(GetSecretValueCommand)).toHaveLength(0);
  });

  it('never puts the password in a log line or an error, even when every login fails', async () => {
    const password = 'never-Log-This-9f3e';
    secrets.on(GetSecretValueCommand).resolves(secretFor(password));
    const error = await handler(policy, lambdaContext()).catch((e: Error) => e);
    expect(error).toBeInstanceOf(Error);
    expect(sqlState(error)).toBe(SQLSTATE.invalidPassword);
    expect(secrets.commandCalls(GetSecretValueCommand)).toHaveLength(2);
    expect(errorOutput.join('')).toContain('password authentication failed');
    const everything = `${output.join('')}\n${errorOutput.join('')}\n${(error as Error).message}\n${(error as Error).stack}\n${JSON.stringify(error)}`;
    expect(everything).not.toContain(password);
  });

  it('stops cleanly when the remaining Lambda time is already spent', async () => {
    secrets.on(GetSecretValueCommand).resolves(secretFor('first-Pa55word'));
    const summary = (await handler(policy, lambdaContext(1_000))) as { targets: Array<{ state: string; detail: string }> };
    expect(summary.targets[0]).toMatchObject({ state: 'skipped', detail: 'time budget spent before this target started' });
    expect(Object.keys(await partitionsOf(sql, 'app.events'))).toHaveLength(0);
  });
});
