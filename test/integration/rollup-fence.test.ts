import pg from 'pg';
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { databaseNow } from '../../shared/postgres';
import { createTestDatabase, type TestDatabase } from '../support/db';
import { capturedLogger, rollupMismatches, runRollup, runRollupLater, USAGE_DDL, usageRollup } from '../support/rollup';

/**
 * `now()` is a transaction's start time. A transaction that began before a run and commits after
 * it can land rows stamped before the run's bounds; the fence (the oldest open transaction's
 * start) keeps the upper bound and the changed-at horizon behind it. Each test holds such a
 * transaction open on a second real connection: it begins before the run and writes after it.
 */
let db: TestDatabase;
let sql: pg.Client;
const HOUR = 3_600_000;

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
});

beforeEach(async () => {
  await sql.query(USAGE_DDL);
});

afterEach(() => {
  vi.restoreAllMocks();
});

const watermark = async () =>
  (await sql.query(`SELECT watermark FROM housekeeping.rollup_state WHERE name = 'usage_hourly'`)).rows[0]?.watermark as Date;

describe('the rollup fence', () => {
  it('an edit stamped by a transaction that began before a run and committed after it is still found (changed-at horizon)', async () => {
    await sql.query(`INSERT INTO app.usage (occurred_at, tenant, units) VALUES (now() - interval '30 hours', 'acme', 1)`);
    await runRollup(db.url, { targets: [usageRollup] });

    const editor = await db.connect('late-editor');
    await editor.query('BEGIN');
    const since = await databaseNow(editor); // has not written: no xid yet
    const { logger, lines } = capturedLogger();
    const during = await runRollup(db.url, { targets: [usageRollup] }, { logger });
    expect(during.targets[0]!.state).toBe('succeeded');
    // updated_at = now() is the transaction's start, older than this second run's clock
    await editor.query(`UPDATE app.usage SET units = 100, updated_at = now() WHERE occurred_at < now() - interval '29 hours'`);
    await editor.query('COMMIT');

    await runRollup(db.url, { targets: [usageRollup] });
    expect(await rollupMismatches(sql)).toEqual([]);
    const old = await sql.query(`SELECT units::int FROM app.usage_hourly WHERE bucket < now() - interval '29 hours'`);
    expect(old.rows).toEqual([{ units: 100 }]);
    // The second run said who held it back.
    const held = lines().find((line) => line.message === 'rollup fence');
    expect(held).toMatchObject({ holder: { application: 'late-editor', state: 'idle in transaction', since: since.toISOString() } });
    await editor.end();
  });

  it('the upper bound stops at the start of a transaction that began before a bucket boundary and inserts after the run', async () => {
    // No changed-at column and no lookback: only the upper bound can keep the late row's bucket open.
    const policy = { ...usageRollup, changedAtColumn: undefined, lookbackBuckets: 0 };
    await sql.query(`INSERT INTO app.usage (occurred_at, tenant, units) VALUES (now() - interval '5 hours', 'acme', 1)`);
    const importer = await db.connect('slow-import');
    await importer.query('BEGIN');
    const since = await databaseNow(importer);

    // The run's clock reads two hours later: the importer's start now lies behind a bucket boundary.
    const first = await runRollupLater(db.url, { targets: [policy] }, 2 * HOUR);
    expect(first.targets[0]!.state).toBe('succeeded');
    const heldAt = await watermark();

    await importer.query(`INSERT INTO app.usage (occurred_at, tenant, units) VALUES (now(), 'acme', 7)`); // stamped with its start
    await importer.query('COMMIT');
    await runRollupLater(db.url, { targets: [policy] }, 2 * HOUR);
    expect((await watermark()).getTime()).toBeGreaterThan(since.getTime());
    expect(await rollupMismatches(sql)).toEqual([]);
    expect(heldAt.getTime()).toBe(Math.floor(since.getTime() / HOUR) * HOUR);
    expect(first.targets[0]!.notes.join('\n')).toMatch(
      /upper bound held back to .* by pid \d+ \(application "slow-import", state "idle in transaction", since /,
    );
    await importer.end();
  });

  it('idle sessions and the run’s own session do not hold it back', async () => {
    await sql.query(`INSERT INTO app.usage (occurred_at, tenant, units) VALUES (now() - interval '5 hours', 'acme', 1)`);
    const idle = await db.connect('idle-app');
    await idle.query('SELECT 1'); // connected, no transaction open
    const dbNow = await databaseNow(sql);
    const summary = await runRollupLater(db.url, { targets: [usageRollup] }, 2 * HOUR);
    expect(summary.targets[0]!.state).toBe('succeeded');
    expect((await watermark()).getTime()).toBeGreaterThanOrEqual(Math.floor((dbNow.getTime() + 2 * HOUR) / HOUR) * HOUR);
    expect(summary.targets[0]!.notes.join('\n')).not.toMatch(/held back/);
    await idle.end();
  });

  it('a role that cannot see other roles’ sessions is warned that the fence is blind to them', async () => {
    const role = `${db.name}_limited`;
    const other = `${db.name}_app`;
    await sql.query(`DROP ROLE IF EXISTS ${role}; DROP ROLE IF EXISTS ${other};
      CREATE ROLE ${role} LOGIN PASSWORD 'limited'; CREATE ROLE ${other} LOGIN PASSWORD 'app';
      GRANT CREATE, CONNECT ON DATABASE ${db.name} TO ${role}, ${other};
      GRANT USAGE ON SCHEMA app TO ${role}, ${other}; GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA app TO ${role}, ${other};
      GRANT DELETE ON app.usage_hourly TO ${role}; GRANT USAGE ON ALL SEQUENCES IN SCHEMA app TO ${other};
      INSERT INTO app.usage (occurred_at, tenant, units) VALUES (now() - interval '5 hours', 'acme', 1)`);
    try {
      const url = (user: string, password: string) => {
        const parsed = new URL(db.url);
        parsed.username = user;
        parsed.password = password;
        return parsed.toString();
      };
      const app = new pg.Client({ connectionString: url(other, 'app'), application_name: 'other-role-app' });
      await app.connect();
      await app.query('BEGIN');
      await app.query('SELECT now()');

      const limited = await runRollup(url(role, 'limited'), { targets: [usageRollup] });
      expect(limited.targets[0]!.state).toBe('succeeded');
      expect(limited.targets[0]!.notes.join('\n')).toMatch(
        new RegExp(`fence cannot see \\d+ session\\(s\\) of other roles .*grant pg_monitor \\(or pg_read_all_stats\\) to ${role}`),
      );
      const privileged = await runRollup(db.url, { targets: [usageRollup] });
      expect(privileged.targets[0]!.notes.join('\n')).not.toMatch(/cannot see/);
      expect(privileged.targets[0]!.notes.join('\n')).toMatch(/application "other-role-app"/);
      await app.query('ROLLBACK');
      await app.end();
    } finally {
      await sql.query(`DROP OWNED BY ${role}, ${other}; DROP ROLE ${role}; DROP ROLE ${other}`);
    }
  });
});
