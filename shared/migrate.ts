import type pg from 'pg';
import { inTransaction, relationExists } from './db';
import type { JobRegistry } from './job';
import ledger from './migrations/0001_ledger';
import settings from './migrations/0002_settings';
import chains from './migrations/0005_chains';
import { queryOne } from './postgres';

/**
 * A numbered change to schema `housekeeping`. Numbers form one sequence across the spine and
 * every job, append-only: never edit or renumber a shipped migration (databases have run it by
 * its number), add the next free number. A job's own tables come with the job
 * (functions/<job>/migrations/), the run ledger's with the spine (shared/migrations/).
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** The spine's own: the run ledger, the settings overrides, the continuation chains. */
const SPINE_MIGRATIONS: readonly Migration[] = [
  { version: 1, name: 'ledger', sql: ledger },
  { version: 2, name: 'settings', sql: settings },
  { version: 5, name: 'chains', sql: chains },
];

/** Every migration a deployment knows, the spine's and each job's, in version order; a number used twice is refused. */
export function ledgerMigrations(jobs: JobRegistry): Migration[] {
  const all = [...SPINE_MIGRATIONS, ...Object.values(jobs).flatMap((job) => job.migrations ?? [])].sort((a, b) => a.version - b.version);
  for (const [i, migration] of all.entries()) {
    if (i > 0 && all[i - 1]!.version === migration.version) {
      throw new Error(`internal: migrations ${all[i - 1]!.name} and ${migration.name} share version ${migration.version}`);
    }
  }
  return all;
}

/**
 * Whether every migration this code knows is applied. Not max(version): numbers are reserved by
 * parallel branches, so a database that ran 7 may still lack 4 once that branch is merged.
 */
async function allApplied(client: pg.ClientBase, migrations: readonly Migration[]): Promise<boolean> {
  if (!(await relationExists(client, 'housekeeping.schema_migrations'))) return false;
  const { n } = await queryOne<{ n: number }>(
    client,
    `SELECT count(*)::int AS n FROM housekeeping.schema_migrations WHERE version = ANY ($1::int[])`,
    [migrations.map((m) => m.version)],
  );
  return n === migrations.length;
}

/**
 * Brings schema `housekeeping` up to date. Cheap when nothing is pending (one query); otherwise
 * each migration runs in its own transaction under a transaction-scoped advisory lock, so
 * concurrent first runs of several jobs apply each migration exactly once.
 */
export async function migrate(client: pg.ClientBase, migrations: readonly Migration[]): Promise<number[]> {
  if (await allApplied(client, migrations)) return [];
  const applied: number[] = [];
  for (const migration of migrations) {
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
