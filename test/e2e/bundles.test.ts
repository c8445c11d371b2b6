import { existsSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { Duration } from 'aws-cdk-lib';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXTERNAL_MODULES } from '../../infra/job-function';
import { tryLockTarget, unlockTarget } from '../../shared/advisory-lock';
import { ORDERS_DDL, seedOrders } from '../support/archive';
import { partitionsOf } from '../support/catalog';
import { createTestDatabase, type TestDatabase } from '../support/db';
import { startFakeSecretsManager } from '../support/fake-secrets-manager';
import { rollupMismatches, usageRollup } from '../support/rollup';
import { duckdb, startTestS3 } from '../support/s3';
import { type Bundle, emfValues, type Invocation, invokeBundle, synthesizeBundles } from './bundle-harness';

const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:e2e-db-AbCdEf';
const LOG_TABLES = 75; // their archive policy is over EventBridge's 8,192-character input cap

let db: TestDatabase;
let sql: pg.Client;
let fake: Awaited<ReturnType<typeof startFakeSecretsManager>>;
let bundles: Record<string, Bundle>;

const partitionPolicy = { targets: [{ table: 'app.events', interval: 'day' as const, premake: 2 }] };
const archivePolicy = {
  targets: Array.from({ length: LOG_TABLES }, (_, i) => ({
    source: `app.log_${i}`,
    mode: 'purge' as const,
    ageColumn: 'created_at',
    retention: '90 days',
    batchSize: 5000,
  })),
};

const invoke = (job: string, event: unknown, options: { remainingMs?: number; secretsManagerUrl?: string } = {}) =>
  invokeBundle(bundles[job]!, event, { secretsManagerUrl: options.secretsManagerUrl ?? fake.url, remainingMs: options.remainingMs });

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
  const url = new URL(db.url);
  fake = await startFakeSecretsManager({
    [SECRET_ARN]: JSON.stringify({ host: url.hostname, port: Number(url.port), username: url.username, password: url.password, dbname: db.name }),
  });
  await sql.query(`CREATE SCHEMA app; CREATE TABLE app.events (id bigserial, created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at)`);
  await sql.query(
    Array.from(
      { length: LOG_TABLES },
      (_, i) => `CREATE TABLE app.log_${i} (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL);
        INSERT INTO app.log_${i} (created_at) VALUES (now() - interval '200 days'), (now() - interval '100 days'), (now());`,
    ).join('\n'),
  );
  const hourly = { rate: Duration.hours(1) };
  bundles = synthesizeBundles('E2E', SECRET_ARN, {
    partition: { schedule: hourly, policy: partitionPolicy },
    archive: { schedule: { cron: '15 3 * * ? *', timeZone: 'UTC' }, policy: archivePolicy },
    rollup: { schedule: { rate: Duration.minutes(15) }, policy: { targets: [usageRollup] } },
  });
}, 120_000);

afterAll(async () => {
  await fake?.close();
});

/** Every log line (not the EMF records) carries the Powertools Lambda context. */
function expectLambdaContextOnEveryLogLine(invocation: Invocation) {
  const logLines = invocation.lines.filter((line) => line.level !== undefined);
  expect(logLines.length).toBeGreaterThan(2);
  for (const line of logLines) {
    expect(line, line.message).toMatchObject({
      cold_start: true,
      function_request_id: 'e2e-request-1',
      function_name: 'pg-housekeeper-e2e',
      service: 'pg-housekeeper',
    });
  }
}

describe('the deployable bundles', () => {
  it('are self-contained, minified, with source maps, well under 1 MB, and carry their deployed policy', () => {
    expect(Object.keys(bundles).sort()).toEqual(['archive', 'partition', 'rollup']);
    for (const bundle of Object.values(bundles)) {
      const size = statSync(join(bundle.dir, 'index.js')).size;
      expect(size).toBeLessThan(1024 * 1024);
      expect(existsSync(join(bundle.dir, 'index.js.map'))).toBe(true);
    }
    expect(JSON.parse(readFileSync(join(bundles.partition!.dir, 'policy.json'), 'utf8'))).toEqual(partitionPolicy);
  });

  it('require nothing but Node’s own modules and the clients the Lambda runtime provides (its NODE_PATH)', () => {
    for (const bundle of Object.values(bundles)) {
      const code = readFileSync(join(bundle.dir, 'index.js'), 'utf8');
      const required = new Set([...code.matchAll(/\brequire\("([^"]+)"\)/g)].map((m) => m[1]!));
      const foreign = [...required].filter((name) => !builtinModules.includes(name.replace(/^node:/, '')) && !name.startsWith('node:'));
      // The SDK's signer tries the optional CRT package in a try/catch, and goes on without it.
      const allowed: readonly string[] = [...EXTERNAL_MODULES, '@aws-sdk/signature-v4-crt'];
      expect(foreign.filter((name) => !allowed.includes(name))).toEqual([]);
      expect(foreign).toEqual(expect.arrayContaining(['@aws-sdk/client-s3', '@aws-sdk/client-lambda']));
    }
  });

  it('archive to S3: an ad-hoc S3 target moves its rows into Parquet (the S3 client from the runtime), read back by DuckDB', async () => {
    const s3 = await startTestS3('hk-e2e');
    await sql.query(`CREATE TABLE app.visits (id bigint PRIMARY KEY, seen_at timestamptz NOT NULL, amount numeric(10,2), tags text[]);
      INSERT INTO app.visits SELECT i, now() - interval '200 days' - i * interval '1 hour', i * 1.25, ARRAY['a', 'b' || i] FROM generate_series(1, 120) i;
      INSERT INTO app.visits VALUES (1000, now(), 1, NULL)`);
    // 120 hours back from now: five or six UTC days, by the time of day the test runs.
    const { rows: spanned } = await sql.query(
      `SELECT count(DISTINCT (seen_at AT TIME ZONE 'UTC')::date)::int AS days FROM app.visits WHERE id <= 120`,
    );
    const invocation = await invokeBundle(
      bundles.archive!,
      { targets: [{ source: 'app.visits', ageColumn: 'seen_at', retention: '90 days', destination: { s3: { bucket: 'hk-e2e', prefix: 'e2e' } } }] },
      { secretsManagerUrl: fake.url, env: s3.env },
    );
    expect(invocation.lines.filter((line) => line.level === 'ERROR')).toEqual([]);
    expect(invocation.ok, invocation.stdout.slice(-2000)).toBe(true);
    expect(invocation.result.targets[0]).toMatchObject({ state: 'succeeded', counts: { rowsMoved: 120 } });
    const dir = await s3.download('e2e/table=app.visits/');
    const read = await duckdb(
      `SELECT count(*)::int AS n, sum(amount)::varchar AS total, count(DISTINCT dt)::int AS days FROM read_parquet('${dir}/e2e/table=app.visits/*/*.parquet', hive_partitioning = 1)`,
    );
    expect(read).toEqual([{ n: 120, total: '9075.00', days: spanned[0].days }]);
    expect((await sql.query(`SELECT id FROM app.visits`)).rows).toEqual([{ id: '1000' }]);
  });

  it('partition: the empty event the schedule sends runs the deployed policy; context on every line; a safety metric per target', async () => {
    const invocation = await invoke('partition', {});
    expect(invocation.ok, invocation.stdout).toBe(true);
    expect(invocation.result.targets.map((t: { target: string; state: string }) => [t.target, t.state])).toEqual([
      ['app.events', 'succeeded'],
      ['housekeeping.job_runs', 'succeeded'],
    ]);
    expect(Object.keys(await partitionsOf(sql, 'app.events'))).toHaveLength(3);
    expect(fake.calls.some((c) => c.target === 'secretsmanager.GetSecretValue' && c.secretId === SECRET_ARN && c.authorized)).toBe(true);
    expectLambdaContextOnEveryLogLine(invocation);
    const since = emfValues(invocation, 'SecondsSinceLastSuccess');
    expect(since).toHaveLength(2);
    for (const value of since) expect(value).toBeLessThan(60);
    expect(emfValues(invocation, 'PartitionsAhead')).toEqual([2, 2]);
  });

  it('a scheduled event without input (the envelope) also runs the deployed policy', async () => {
    const invocation = await invoke('partition', { 'detail-type': 'Scheduled Event', source: 'aws.events', detail: {} });
    expect(invocation.result.targets[0]).toMatchObject({ target: 'app.events', state: 'succeeded', counts: { created: 0 } });
  });

  it('archive: 75 deployed targets from an empty event; an event with targets is an ad-hoc run of its own', async () => {
    const deployed = await invoke('archive', {});
    expect(deployed.ok, deployed.stdout.slice(-2000)).toBe(true);
    expect(deployed.result.targets).toHaveLength(LOG_TABLES);
    expect(
      deployed.result.targets.every((t: { state: string; counts: { rowsPurged: number } }) => t.state === 'succeeded' && t.counts.rowsPurged === 2),
    ).toBe(true);
    expect(emfValues(deployed, 'SecondsSinceLastSuccess')).toHaveLength(LOG_TABLES);

    await sql.query(ORDERS_DDL.replace('DROP SCHEMA IF EXISTS app CASCADE; CREATE SCHEMA app;', ''));
    await sql.query(seedOrders(300, 20));
    const adHoc = await invoke('archive', {
      targets: [{ source: 'app.orders', destination: 'app.orders_archive', ageColumn: 'completed_at', retention: '90 days' }],
    });
    expect(adHoc.result.targets).toHaveLength(1);
    expect(adHoc.result.targets[0]).toMatchObject({ target: 'app.orders', state: 'succeeded', counts: { rowsMoved: 300 } });
  });

  it('rollup runs its deployed policy; statement_timeout is capped by the remaining time, and a vanished client is noticed', async () => {
    await sql.query(`CREATE TABLE app.usage (id bigserial PRIMARY KEY, occurred_at timestamptz NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), tenant text NOT NULL, units numeric NOT NULL);
      CREATE TABLE app.usage_hourly (bucket timestamptz NOT NULL, tenant text NOT NULL, events bigint NOT NULL, units numeric NOT NULL, peak numeric, PRIMARY KEY (bucket, tenant));
      INSERT INTO app.usage (occurred_at, tenant, units) SELECT now() - i * interval '7 minutes', 'acme', i FROM generate_series(1, 400) i`);
    const rolled = await invoke('rollup', {});
    expect(rolled.result.targets[0]).toMatchObject({ target: 'usage_hourly', state: 'succeeded', stopReason: 'done' });
    expect(await rollupMismatches(sql)).toEqual([]);

    // A user function runs inside the job's own session: it sees the session's settings.
    await sql.query(`CREATE TABLE app.seen (statement_timeout text, check_interval text);
      CREATE FUNCTION app.capture(window_start timestamptz, window_end timestamptz) RETURNS bigint LANGUAGE sql AS $$
        INSERT INTO app.seen VALUES (current_setting('statement_timeout'), current_setting('client_connection_check_interval'));
        SELECT 0::bigint $$`);
    const captured = await invoke(
      'rollup',
      { targets: [{ name: 'capture', source: 'app.usage', timeColumn: 'occurred_at', target: 'app.usage_hourly', function: 'app.capture' }] },
      { remainingMs: 40_000 },
    );
    expect(captured.ok, captured.stdout).toBe(true);
    const { rows } = await sql.query<{ statement_timeout: string; check_interval: string }>('SELECT DISTINCT * FROM app.seen');
    expect(rows).toHaveLength(1);
    // 40 s remaining minus the budget's margin (at least 5 s), not the 300 s default.
    const [, amount, unit] = /^(\d+)(ms|s|min)$/.exec(rows[0]!.statement_timeout)!;
    const seconds = Number(amount) * { ms: 0.001, s: 1, min: 60 }[unit as 'ms' | 's' | 'min'];
    expect(seconds).toBeGreaterThan(25);
    expect(seconds).toBeLessThanOrEqual(35);
    expect(rows[0]!.check_interval).toBe('5s');
  });

  it('a target that fails every run keeps reporting its age, and so does one skipped because its lock is held', async () => {
    const failing = { targets: [{ table: 'app.missing', interval: 'day' }], maintainLedger: false };
    await invoke('partition', failing);
    // Its last success was three hours ago; it has failed since.
    await sql.query(`INSERT INTO housekeeping.job_runs (run_id, job, target, state, started_at, recorded_at)
      VALUES (gen_random_uuid(), 'partition', 'app.missing', 'succeeded', now() - interval '3 hours', now() - interval '3 hours')`);
    const failed = await invoke('partition', failing);
    expect(failed.ok).toBe(false);
    expect(emfValues(failed, 'TargetsFailed')).toEqual([1]);
    expect(emfValues(failed, 'SecondsSinceLastSuccess')[0]).toBeGreaterThanOrEqual(3 * 3600);
    expect(emfValues(failed, 'PartitionsAhead')).toEqual([]);

    await sql.query(`UPDATE housekeeping.job_runs SET started_at = started_at - interval '5 hours', recorded_at = recorded_at - interval '5 hours'
      WHERE job = 'partition' AND target = 'app.events'`);
    const holder = await db.connect('lock holder');
    expect(await tryLockTarget(holder, 'partition', 'app.events')).toBe(true);
    try {
      const skipped = await invoke('partition', {});
      expect(skipped.result.targets[0]).toMatchObject({ target: 'app.events', state: 'skipped' });
      expect(Math.max(...emfValues(skipped, 'SecondsSinceLastSuccess'))).toBeGreaterThanOrEqual(5 * 3600);
    } finally {
      await unlockTarget(holder, 'partition', 'app.events');
    }
  });

  it('a dry run ({"dryRun": true}) plans the deployed policy and publishes no metrics', async () => {
    const dry = await invoke('partition', { dryRun: true });
    expect(dry.ok, dry.stdout).toBe(true);
    expect(dry.result).toMatchObject({ dryRun: true, targets: [{ target: 'app.events' }] });
    expect(dry.lines.filter((line) => line._aws)).toEqual([]);
  });

  it('fails the invocation, naming the field, on a bad event', async () => {
    const { ok, stdout } = await invoke('partition', { targets: [{ table: 'app.events', interval: 'weekly' }] });
    expect(ok).toBe(false);
    expect(stdout).toContain('ERROR event.targets[0].interval: Invalid option');
  });

  it('fails within seconds, naming the missing route, when Secrets Manager never answers (no NAT, no endpoint)', async () => {
    const sockets: Socket[] = [];
    const blackHole: Server = createServer((socket) => void sockets.push(socket));
    await new Promise<void>((resolve) => blackHole.listen(0, '127.0.0.1', resolve));
    try {
      const port = (blackHole.address() as { port: number }).port;
      const { ok, error, elapsedMs } = await invoke('partition', {}, { secretsManagerUrl: `http://127.0.0.1:${port}` });
      expect(ok).toBe(false);
      expect(error).toMatch(
        /^Secrets Manager: cannot reach Secrets Manager within \d+ s .*NAT gateway or a com\.amazonaws\.eu-west-1\.secretsmanager VPC endpoint/,
      );
      expect(elapsedMs).toBeLessThan(15_000);
    } finally {
      for (const socket of sockets) socket.destroy();
      blackHole.close();
    }
  }, 30_000);
});
