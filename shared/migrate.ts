import type pg from 'pg';
import { inTransaction, relationExists } from './db';
import ledger from './migrations/0001_ledger';
import settings from './migrations/0002_settings';
import rollupState from './migrations/0003_rollup_state';
import partitionRetirements from './migrations/0004_partition_retirements';
import chains from './migrations/0005_chains';
import archiveObjects from './migrations/0006_archive_objects';

/** Numbered, append-only: never edit a shipped migration, add the next number. */
export const MIGRATIONS: ReadonlyArray<{ version: number; name: string; sql: string }> = [
  { version: 1, name: 'ledger', sql: ledger },
  { version: 2, name: 'settings', sql: settings },
  { version: 3, name: 'rollup_state', sql: rollupState },
  { version: 4, name: 'partition_retirements', sql: partitionRetirements },
  { version: 5, name: 'chains', sql: chains },
  { version: 6, name: 'archive_objects', sql: archiveObjects },
];

export const LATEST_MIGRATION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

/**
 * Whether every migration this code knows is applied. Not max(version): numbers are reserved by
 * parallel branches, so a database that ran 7 may still lack 4 once that branch is merged.
 */
async function allApplied(client: pg.ClientBase): Promise<boolean> {
  if (!(await relationExists(client, 'housekeeping.schema_migrations'))) return false;
  const { rows } = await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM housekeeping.schema_migrations WHERE version = ANY ($1::int[])`, [
    MIGRATIONS.map((m) => m.version),
  ]);
  return rows[0]!.n === MIGRATIONS.length;
}

/**
 * Brings schema `housekeeping` up to date. Cheap when nothing is pending (one query); otherwise
 * each migration runs in its own transaction under a transaction-scoped advisory lock, so
 * concurrent first runs of several jobs apply each migration exactly once.
 */
export async function migrate(client: pg.ClientBase): Promise<number[]> {
  if (await allApplied(client)) return [];
  const applied: number[] = [];
  for (const migration of MIGRATIONS) {
    await inTransaction(client, async () => {
      await client.query(`SELECT pg_advisory_xact_lock(hashtext('pg-housekeeper'), hashtext('migrations'))`);
      await client.query(`CREATE SCHEMA IF NOT EXISTS housekeeping`);
      await client.query(
        `CREATE TABLE IF NOT EXISTS housekeeping.schema_migrations (
           version    integer PRIMARY KEY,
           name       text NOT NULL,
           applied_at timestamptz NOT NULL DEFAULT now())`,
      );
      const { rowCount } = await client.query(`SELECT 1 FROM housekeeping.schema_migrations WHERE version = $1`, [migration.version]);
      if (rowCount) return;
      await client.query(migration.sql);
      await client.query(`INSERT INTO housekeeping.schema_migrations (version, name) VALUES ($1, $2)`, [migration.version, migration.name]);
      applied.push(migration.version);
    });
  }
  return applied;
}
