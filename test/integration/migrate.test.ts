import { describe, expect, it } from 'vitest';
import { JOBS } from '../../functions/registry';
import { ledgerMigrations, migrate } from '../../shared/migrate';
import { createTestDatabase } from '../support/db';

const MIGRATIONS = ledgerMigrations(JOBS);
const VERSIONS = MIGRATIONS.map((m) => m.version);

describe('migrations', () => {
  it('apply exactly once when several first runs race, and are a no-op afterwards', async () => {
    const db = await createTestDatabase();
    const sessions = await Promise.all([1, 2, 3, 4].map((i) => db.connect(`migrator-${i}`)));
    const applied = await Promise.all(sessions.map((s) => migrate(s, MIGRATIONS)));
    expect(applied.flat().sort((a, b) => a - b)).toEqual(VERSIONS);
    const { rows } = await sessions[0]!.query(`SELECT version FROM housekeeping.schema_migrations ORDER BY version`);
    expect(rows.map((r) => r.version)).toEqual(VERSIONS);
    expect(await migrate(sessions[1]!, MIGRATIONS)).toEqual([]);
  });

  it('apply a migration numbered below one already applied (numbers are reserved by parallel branches)', async () => {
    const db = await createTestDatabase();
    const sql = await db.connect();
    // As if a branch's later number ran here before an earlier number was merged.
    await sql.query(`CREATE SCHEMA housekeeping;
      CREATE TABLE housekeeping.schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());
      INSERT INTO housekeeping.schema_migrations (version, name) VALUES (99, 'from another branch')`);
    expect(await migrate(sql, MIGRATIONS)).toEqual(VERSIONS);
    expect(await migrate(sql, MIGRATIONS)).toEqual([]);
  });
});
