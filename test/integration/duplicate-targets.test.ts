import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../../shared/errors';
import { createTestDatabase, type TestDatabase } from '../support/db';
import { runRollup, USAGE_DDL, usageRollup } from '../support/rollup';

/**
 * Two targets of one policy that are one target to the lock, the ledger and the state (the same
 * name), or that write the same rows (two rollups into one table): the second works under the
 * first's state, or deletes what the first wrote.
 */

let db: TestDatabase;
let sql: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
});

describe('one policy, two targets that are one', () => {
  it('refuses two rollups with the same name before connecting (the second never computed the buckets the first had published)', async () => {
    await sql.query(USAGE_DDL);
    await sql.query(`CREATE TABLE app.usage_daily (bucket timestamptz NOT NULL, tenant text NOT NULL, events bigint NOT NULL, units numeric NOT NULL, peak numeric,
      PRIMARY KEY (bucket, tenant));
      INSERT INTO app.usage (occurred_at, tenant, units) SELECT now() - interval '3 days' + i * interval '1 hour', 'acme', 1 FROM generate_series(0, 48) i`);
    const daily = { ...usageRollup, target: 'app.usage_daily', bucket: 'day' as const };
    await expect(runRollup(db.url, { targets: [usageRollup, daily] })).rejects.toThrowError(ConfigError);
    await expect(runRollup(db.url, { targets: [usageRollup, daily] })).rejects.toThrowError(
      /^event\.targets\[1\]: names the same target as targets\[0\] \(usage_hourly\)/,
    );
    expect((await sql.query(`SELECT to_regclass('housekeeping.rollup_state') IS NULL AS untouched`)).rows[0].untouched).toBe(true);
  });

  it('refuses two rollups writing one target table (each recompute deleted the rows the other wrote)', async () => {
    await sql.query(USAGE_DDL);
    await sql.query(`CREATE TABLE app.usage_eu (LIKE app.usage INCLUDING ALL)`);
    const eu = { ...usageRollup, name: 'usage_eu_hourly', source: 'app.usage_eu' };
    await expect(runRollup(db.url, { targets: [usageRollup, eu] })).rejects.toThrowError(
      /^event\.targets\[1\]\.target: app\.usage_hourly is also the target of targets\[0\] \(usage_hourly\)/,
    );
  });
});
