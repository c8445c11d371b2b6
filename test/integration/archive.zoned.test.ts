import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { runArchiveChecked } from '../support/archive';
import { createTestDatabase, type TestDatabase } from '../support/db';

/**
 * Runs with the process in America/Sao_Paulo (vitest.config.ts). `timestamp` and `date` ages
 * carry no zone: they must be compared with the policy zone's wall clock, and no value crossing
 * the driver may be read or written in the process's zone (node-postgres reads a timestamp as
 * local time). Rows sit a minute or a day either side of the cutoff, so a shift by the process
 * zone (3 hours from UTC, 12 from Tokyo) moves them to the wrong side.
 */
let db: TestDatabase;
let sql: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
  expect(Intl.DateTimeFormat().resolvedOptions().timeZone).toBe('America/Sao_Paulo');
});

describe('archive with zone-less age columns, process in São Paulo', () => {
  it('a timestamp age (also part of a composite key) is compared with the policy zone wall clock', async () => {
    // Wall-clock times in Tokyo, a minute either side of 90 days ago, and each id twice, so
    // batches of one page through (id, seen_at), the timestamp key going to and from the driver.
    await sql.query(`DROP SCHEMA IF EXISTS app CASCADE; CREATE SCHEMA app;
      CREATE TABLE app.visits (id int NOT NULL, seen_at timestamp NOT NULL, note text, PRIMARY KEY (id, seen_at));
      CREATE TABLE app.visits_archive (LIKE app.visits INCLUDING ALL);
      WITH cutoff AS (SELECT (now() AT TIME ZONE 'Asia/Tokyo') - interval '90 days' AS at)
      INSERT INTO app.visits SELECT i, at + d * interval '1 minute' + i * interval '1 microsecond', 'visit' FROM cutoff, generate_series(1, 4) AS i, unnest(ARRAY[-1, 1, -600, 600]) AS d;`);
    const summary = await runArchiveChecked(sql, db.url, {
      targets: [
        {
          source: 'app.visits',
          destination: 'app.visits_archive',
          key: ['id', 'seen_at'],
          ageColumn: 'seen_at',
          retention: '90 days',
          timeZone: 'Asia/Tokyo',
          batchSize: 1,
        },
      ],
    });
    expect(summary.targets[0]).toMatchObject({ state: 'succeeded', stopReason: 'done', counts: { rowsMoved: 8, batches: 8 } });
    const kept = await sql.query(`SELECT count(*)::int AS n FROM app.visits WHERE seen_at > (now() AT TIME ZONE 'Asia/Tokyo') - interval '90 days'`);
    const archived = await sql.query(
      `SELECT count(*)::int AS n FROM app.visits_archive WHERE seen_at < (now() AT TIME ZONE 'Asia/Tokyo') - interval '90 days'`,
    );
    expect([kept.rows[0].n, archived.rows[0].n]).toEqual([8, 8]);
  });

  it("a date age is compared with the date in the policy zone (two zones 25 hours apart: one of them is never on São Paulo's date)", async () => {
    const zones = ['Pacific/Kiritimati', 'Pacific/Pago_Pago'];
    await sql.query(`DROP SCHEMA IF EXISTS app CASCADE; CREATE SCHEMA app;`);
    for (const [index, zone] of zones.entries()) {
      await sql.query(`CREATE TABLE app.days${index} (id int PRIMARY KEY, day date NOT NULL);
        CREATE TABLE app.days${index}_archive (LIKE app.days${index} INCLUDING ALL);
        INSERT INTO app.days${index} SELECT d + 2, ((now() AT TIME ZONE '${zone}') - interval '90 days')::date + d FROM generate_series(-2, 2) AS d;`);
    }
    const cutoffDates = async () =>
      Promise.all(
        zones.map(
          async (zone) => (await sql.query(`SELECT ((now() AT TIME ZONE $1) - interval '90 days')::date::text AS d`, [zone])).rows[0].d as string,
        ),
      );
    const before = await cutoffDates();
    const summary = await runArchiveChecked(sql, db.url, {
      targets: zones.map((zone, index) => ({
        source: `app.days${index}`,
        destination: `app.days${index}_archive`,
        ageColumn: 'day',
        retention: '90 days',
        timeZone: zone,
      })),
    });
    const after = await cutoffDates();
    for (const [index, zone] of zones.entries()) {
      expect(summary.targets[index]).toMatchObject({ state: 'succeeded', stopReason: 'done' });
      const archived = (await sql.query(`SELECT day::text AS day FROM app.days${index}_archive ORDER BY day`)).rows.map((r) => r.day as string);
      const all = (
        await sql.query(`SELECT day::text AS day FROM app.days${index} UNION ALL SELECT day::text FROM app.days${index}_archive ORDER BY day`)
      ).rows.map((r) => r.day as string);
      // Exactly the days before the cutoff date in the policy zone (the two before it). The run
      // read the clock between these two reads; if a day began in between, either cutoff holds.
      const candidates = [...new Set([before[index]!, after[index]!])].map((cutoff) => all.filter((day) => day < cutoff));
      expect(candidates, `${zone}: archived ${archived.join(', ')}`).toContainEqual(archived);
      expect(archived.length).toBeGreaterThanOrEqual(2);
    }
  });
});
