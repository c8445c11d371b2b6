import type { Context } from 'aws-lambda';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runLocally } from '../../scripts/run-local';
import { queryOne } from '../../shared/postgres';
import { ORDERS_DDL, seedOrders } from '../support/archive';
import { partitionsOf } from '../support/catalog';
import { createTestDatabase, type TestDatabase } from '../support/db';
import { quietLogger } from '../support/jobs';
import { lambdaContext, serveDatabaseSecret } from '../support/lambda';
import { rollupMismatches, USAGE_DDL, usageRollup } from '../support/rollup';

/**
 * README, "Database roles": the grants each job needs, run as a role that has exactly those, and
 * the owner role that keeps partitions droppable under Secrets Manager's alternating-users rotation.
 */
const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:roles-db-AbCdEf';
type Handler = (
  event: unknown,
  context: Context,
) => Promise<{ targets: Array<{ target: string; state: string; detail?: string; counts: Record<string, number> }> }>;

let db: TestDatabase;
let sql: pg.Client;
let roles: { owner: string; a: string; b: string; least: string };
let partition: Handler;

const urlAs = (role: string) => {
  const url = new URL(db.url);
  url.username = role;
  url.password = `${role}-Pa55`;
  return url.toString();
};

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
  roles = { owner: `${db.name}_owner`, a: `${db.name}_a`, b: `${db.name}_b`, least: `${db.name}_hk` };
  // The alternating users of a rotation are members of one NOLOGIN role that owns the tables.
  await sql.query(`CREATE ROLE ${roles.owner} NOLOGIN;
    CREATE ROLE ${roles.a} LOGIN PASSWORD '${roles.a}-Pa55' IN ROLE ${roles.owner};
    CREATE ROLE ${roles.b} LOGIN PASSWORD '${roles.b}-Pa55' IN ROLE ${roles.owner};
    CREATE ROLE ${roles.least} LOGIN PASSWORD '${roles.least}-Pa55';
    GRANT CREATE ON DATABASE ${db.name} TO ${roles.owner}, ${roles.least};`);
  ({ handler: partition } = (await import('../../functions/partition/handler')) as never);
});

afterAll(async () => {
  delete process.env.PGHK_DB_ROLE;
  await sql.query(`DROP SCHEMA IF EXISTS app, housekeeping CASCADE`);
  for (const role of Object.values(roles)) {
    await sql.query(`DROP OWNED BY ${role}; DROP ROLE IF EXISTS ${role}`).catch(() => {});
  }
});

async function runPartitionAs(login: string, ownerRole: string | undefined, policy: unknown) {
  const stop = serveDatabaseSecret(urlAs(login), SECRET_ARN);
  if (ownerRole) process.env.PGHK_DB_ROLE = ownerRole;
  else delete process.env.PGHK_DB_ROLE;
  try {
    return await partition(policy, lambdaContext());
  } catch (error) {
    return { error: (error as Error).message, targets: [] };
  } finally {
    stop();
  }
}

describe('partition under alternating-users rotation', () => {
  beforeAll(async () => {
    // The schema belongs to someone else (the master user, say), so only a table's owner may drop
    // it. Each table is owned by the owner role, with one partition ten days old.
    await sql.query(`CREATE SCHEMA app; GRANT USAGE, CREATE ON SCHEMA app TO ${roles.owner}`);
    for (const table of ['with_owner', 'without_owner']) {
      await sql.query(`SET ROLE ${roles.owner};
        CREATE TABLE app.${table} (id bigserial, created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at);
        CREATE TABLE app.${table}_old PARTITION OF app.${table} FOR VALUES FROM (date_trunc('day', now() - interval '10 days')) TO (date_trunc('day', now() - interval '9 days'));
        RESET ROLE;`);
    }
  });

  const fill = (table: string) => ({ targets: [{ table: `app.${table}`, interval: 'day', premake: 2 }] });
  const retire = (table: string) => ({ targets: [{ table: `app.${table}`, interval: 'day', premake: 2, retention: { keep: 3 } }] });

  it('with PGHK_DB_ROLE, what one user created the other can drop', async () => {
    const filled = await runPartitionAs(roles.a, roles.owner, fill('with_owner'));
    expect(filled.targets[0]).toMatchObject({ state: 'succeeded' });
    const { rows } = await sql.query<{ owner: string }>(
      `SELECT DISTINCT pg_get_userbyid(c.relowner) AS owner FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'app.with_owner'::regclass`,
    );
    expect(rows).toEqual([{ owner: roles.owner }]);
    const retired = await runPartitionAs(roles.b, roles.owner, retire('with_owner'));
    expect(retired.targets[0]).toMatchObject({ state: 'succeeded', counts: { dropped: 7 } });
    expect(Object.keys(await partitionsOf(sql, 'app.with_owner'))).toHaveLength(6);
  });

  it('without it, the other user of the rotation cannot drop them (why the option exists)', async () => {
    await runPartitionAs(roles.a, undefined, fill('without_owner'));
    const retired = await runPartitionAs(roles.b, undefined, retire('without_owner'));
    expect(retired).toMatchObject({ error: 'partition: 1 target(s) failed: app.without_owner' });
    const { detail } = await queryOne<{ detail: string }>(sql, `SELECT detail FROM housekeeping.latest_runs WHERE target = 'app.without_owner'`);
    expect(detail).toMatch(/must be owner/);
  });
});

describe('archive and rollup with only the grants the README lists', () => {
  it('run to completion as a role that owns nothing', async () => {
    await sql.query(ORDERS_DDL.replace('DROP SCHEMA IF EXISTS app CASCADE; CREATE SCHEMA app;', ''));
    await sql.query(seedOrders(200, 10));
    await sql.query(USAGE_DDL.replace(/DROP SCHEMA IF EXISTS app CASCADE; DROP SCHEMA IF EXISTS housekeeping CASCADE; CREATE SCHEMA app;/, ''));
    await sql.query(
      `INSERT INTO app.usage (occurred_at, tenant, units) SELECT now() - i * interval '11 minutes', 'acme', i FROM generate_series(1, 300) i`,
    );
    const role = roles.least;
    await sql.query(`GRANT USAGE ON SCHEMA app TO ${role};
      GRANT SELECT, DELETE, UPDATE (id) ON app.orders TO ${role};
      GRANT SELECT, INSERT ON app.orders_archive TO ${role};
      GRANT SELECT ON app.usage TO ${role};
      GRANT SELECT, INSERT, DELETE ON app.usage_hourly TO ${role};
      GRANT pg_monitor TO ${role};`);
    // The housekeeping schema of the partition runs above belongs to the owner role; this role makes its own.
    await sql.query(`DROP SCHEMA housekeeping CASCADE`);
    const options = { logger: quietLogger() };
    const archived = await runLocally(
      'archive',
      { targets: [{ source: 'app.orders', destination: 'app.orders_archive', ageColumn: 'completed_at', retention: '90 days' }] },
      urlAs(role),
      options,
    );
    expect(archived.targets[0]).toMatchObject({ state: 'succeeded', counts: { rowsMoved: 200 } });
    const rolled = await runLocally('rollup', { targets: [usageRollup] }, urlAs(role), options);
    expect(rolled.targets[0]).toMatchObject({ state: 'succeeded', stopReason: 'done' });
    expect(await rollupMismatches(sql)).toEqual([]);
  });
});
