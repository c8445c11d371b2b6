import { describe, expect, it } from 'vitest';
import { LATEST_MIGRATION, migrate } from '../../shared/migrate';
import { createTestDatabase } from '../support/db';

describe('migrations', () => {
  it('apply exactly once when several first runs race, and are a no-op afterwards', async () => {
    const db = await createTestDatabase();
    const sessions = await Promise.all([1, 2, 3, 4].map((i) => db.connect(`migrator-${i}`)));
    const applied = await Promise.all(sessions.map((s) => migrate(s)));
    expect(applied.flat().sort()).toEqual(Array.from({ length: LATEST_MIGRATION }, (_, i) => i + 1));
    const { rows } = await sessions[0]!.query(`SELECT version FROM housekeeping.schema_migrations ORDER BY version`);
    expect(rows.map((r) => r.version)).toEqual(Array.from({ length: LATEST_MIGRATION }, (_, i) => i + 1));
    expect(await migrate(sessions[1]!)).toEqual([]);
  });
});
