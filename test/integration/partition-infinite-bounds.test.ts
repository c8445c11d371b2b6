import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../support/db';
import { tableFingerprints } from '../support/fingerprint';
import { runPartition } from '../support/jobs';

/**
 * Catch-all partitions bounded by '-infinity' or 'infinity' (the time types' own infinities, which
 * people use where MINVALUE/MAXVALUE would do): the catalog read them as infinite key ms, the
 * planner started its walk at -infinity and the target failed with "Invalid time value" before
 * creating anything, so tomorrow's partition was never made.
 */

let db: TestDatabase;
let sql: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
});

describe('partitions bounded by infinity', () => {
  it.each(['timestamptz', 'timestamp', 'date'])('%s key: adopted like MINVALUE/MAXVALUE, and today and premake are created', async (type) => {
    await sql.query(`DROP SCHEMA IF EXISTS app CASCADE; DROP SCHEMA IF EXISTS housekeeping CASCADE; CREATE SCHEMA app;
      CREATE TABLE app.ev (id int, at ${type} NOT NULL) PARTITION BY RANGE (at);
      CREATE TABLE app.ev_old PARTITION OF app.ev FOR VALUES FROM ('-infinity') TO ('2020-01-01');
      CREATE TABLE app.ev_later PARTITION OF app.ev FOR VALUES FROM ('2100-01-01') TO ('infinity');
      INSERT INTO app.ev VALUES (1, '-infinity'), (2, '2019-06-01'), (3, '2100-06-01')`);
    const before = await tableFingerprints(sql, ['app.ev_p*']);
    const summary = await runPartition(db.url, { targets: [{ table: 'app.ev', interval: 'day', premake: 2 }], maintainLedger: false });
    expect(summary.targets[0]).toMatchObject({ state: 'succeeded', counts: { created: 3, dropped: 0, partitionsAhead: 2 } });
    expect(await tableFingerprints(sql, ['app.ev_p*'])).toEqual(before);
    // Today's rows have a partition.
    await sql.query(`INSERT INTO app.ev VALUES (4, now())`);
  });
});
