import { Duration } from 'aws-cdk-lib';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DatabaseConfig } from '../../infra/fleet';
import { createTestDatabase, type TestDatabase } from '../support/db';
import { startFakeSecretsManager } from '../support/fake-secrets-manager';
import { tableFingerprints } from '../support/fingerprint';
import { type Bundle, type Invocation, invokeBundle, synthesizeFleetBundles } from './bundle-harness';

/**
 * Two databases of one fleet, two secrets: the synthesized bundle of each database, run with its
 * function's exact environment, reads only its own secret and changes only its own database.
 */
const SECRET = {
  orders: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:orders-db-AbCdEf',
  billing: 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:billing-db-GhIjKl',
} as const;
type Id = keyof typeof SECRET;

// The same policy for both: what keeps them apart is the secret each function reads, not the policy.
const jobs = {
  partition: { schedule: { rate: Duration.hours(1) }, policy: { targets: [{ table: 'app.events', interval: 'day' as const, premake: 2 }] } },
  archive: {
    schedule: { rate: Duration.hours(1) },
    policy: { targets: [{ source: 'app.log', mode: 'purge' as const, ageColumn: 'created_at', retention: '90 days' }] },
  },
};

const databases: Record<Id, TestDatabase> = {} as never;
const sql: Record<Id, pg.Client> = {} as never;
let fake: Awaited<ReturnType<typeof startFakeSecretsManager>>;
let bundles: Record<string, Bundle>;

beforeAll(async () => {
  for (const id of ['orders', 'billing'] as const) {
    databases[id] = await createTestDatabase();
    sql[id] = await databases[id].connect();
    await sql[id].query(`CREATE SCHEMA app;
      CREATE TABLE app.events (id bigserial, created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at);
      CREATE TABLE app.log (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL);
      -- 5, 15, ..., 195 days old: a 90-day retention keeps 9 rows.
      INSERT INTO app.log (created_at) SELECT now() - (i * 10 + 5) * interval '1 day' FROM generate_series(0, 19) i;`);
  }
  const secretOf = (db: TestDatabase) => {
    const url = new URL(db.url);
    return JSON.stringify({ host: url.hostname, port: Number(url.port), username: url.username, password: url.password, dbname: db.name });
  };
  fake = await startFakeSecretsManager({ [SECRET.orders]: secretOf(databases.orders), [SECRET.billing]: secretOf(databases.billing) });
  const fleet: DatabaseConfig[] = (['orders', 'billing'] as const).map((id) => ({ id, secretArn: SECRET[id], jobs }));
  bundles = synthesizeFleetBundles('FleetE2E', fleet);
}, 180_000);

afterAll(async () => {
  await fake?.close();
});

const fingerprints = async () => ({ orders: await tableFingerprints(sql.orders), billing: await tableFingerprints(sql.billing) });
const ledgerExists = async (id: Id) =>
  (await sql[id].query<{ ok: boolean }>(`SELECT to_regclass('housekeeping.job_runs') IS NOT NULL AS ok`)).rows[0]!.ok;

/** Runs `<id>/<job>` and returns what it did, and which secrets it asked Secrets Manager for. */
async function run(id: Id, job: string): Promise<{ invocation: Invocation; secretsRead: string[] }> {
  const before = fake.calls.length;
  const invocation = await invokeBundle(bundles[`${id}/${job}`]!, {}, { secretsManagerUrl: fake.url });
  expect(invocation.ok, invocation.stdout.slice(-2000)).toBe(true);
  return { invocation, secretsRead: [...new Set(fake.calls.slice(before).map((call) => call.secretId))] };
}

describe('two databases of one fleet, run from the synthesized bundles', () => {
  it('one bundle per database and job, each with its own database id and secret in its environment', () => {
    expect(Object.keys(bundles).sort()).toEqual(['billing/archive', 'billing/partition', 'orders/archive', 'orders/partition']);
    for (const [key, bundle] of Object.entries(bundles)) {
      const id = key.split('/')[0] as Id;
      expect(bundle.environment).toMatchObject({ PGHK_DATABASE_ID: id, PGHK_DB_SECRET_ARN: SECRET[id] });
    }
  });

  it("orders' functions read only the orders secret and change only the orders database; every log line and metric says orders", async () => {
    const before = await fingerprints();
    const partition = await run('orders', 'partition');
    const archive = await run('orders', 'archive');
    const after = await fingerprints();

    expect(partition.secretsRead).toEqual([SECRET.orders]);
    expect(archive.secretsRead).toEqual([SECRET.orders]);
    expect(after.billing).toEqual(before.billing);
    expect(await ledgerExists('billing')).toBe(false);
    expect(after.orders).not.toEqual(before.orders);
    expect(Object.keys(after.orders).filter((t) => t.startsWith('app.events_p'))).toHaveLength(3);
    expect(after.orders['app.log']).toMatch(/^9:/);
    expect(await ledgerExists('orders')).toBe(true);

    for (const { invocation } of [partition, archive]) {
      expect(invocation.result.database).toBe('orders');
      const logLines = invocation.lines.filter((line) => line.level !== undefined);
      expect(logLines.length).toBeGreaterThan(2);
      for (const line of logLines) expect(line.database, line.message).toBe('orders');
      expect(logLines.find((line) => line.message === 'run summary')).toMatchObject({ database: 'orders' });
      const emf = invocation.lines.filter((line) => line._aws);
      expect(emf).toHaveLength(1);
      expect(emf[0]!._aws.CloudWatchMetrics[0].Dimensions).toEqual([expect.arrayContaining(['service', 'job', 'database'])]);
      expect(emf[0]!.database).toBe('orders');
    }
  });

  it("billing's functions read only the billing secret and change only the billing database", async () => {
    const before = await fingerprints();
    const partition = await run('billing', 'partition');
    const archive = await run('billing', 'archive');
    const after = await fingerprints();

    expect(partition.secretsRead).toEqual([SECRET.billing]);
    expect(archive.secretsRead).toEqual([SECRET.billing]);
    expect(after.orders).toEqual(before.orders);
    expect(after.billing).not.toEqual(before.billing);
    expect(after.billing['app.log']).toMatch(/^9:/);
    expect(partition.invocation.result.database).toBe('billing');
    for (const line of archive.invocation.lines.filter((l) => l.level !== undefined)) expect(line.database).toBe('billing');
    // Each database's ledger holds its own runs only.
    for (const id of ['orders', 'billing'] as const) {
      const { rows } = await sql[id].query<{ jobs: string[] }>(`SELECT array_agg(DISTINCT job ORDER BY job) AS jobs FROM housekeeping.job_runs`);
      expect(rows[0]!.jobs, id).toEqual(['archive', 'partition']);
    }
  });
});
