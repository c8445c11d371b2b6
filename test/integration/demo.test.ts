import { readFileSync } from 'node:fs';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { demoHousekeeping, sandboxArchiveBucket } from '../../infra/housekeeping.config';
import { SANDBOX_ARCHIVE_COLUMNS } from '../../infra/sandbox-archive';
import { seedDemo } from '../../scripts/demo';
import { runLocally } from '../../scripts/run-local';
import { createTestDatabase, type TestDatabase } from '../support/db';
import { quietLogger } from '../support/jobs';
import { serveDatabaseSecret } from '../support/lambda';
import { duckdb, startTestS3 } from '../support/s3';

const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:sandbox-db-AbCdEf';
let db: TestDatabase;
let sql: pg.Client;
let stopServingSecret: () => void;

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
  stopServingSecret = serveDatabaseSecret(db.url, SECRET_ARN);
});

afterAll(() => stopServingSecret());

const example = (name: string) => JSON.parse(readFileSync(new URL(`../../examples/${name}.json`, import.meta.url), 'utf8')) as unknown;

describe('the sandbox seed and the example configs', () => {
  it('the demo-seed Lambda creates the demo tables, and every example config runs against them', async () => {
    const { handler } = await import('../../functions/demo-seed/handler');
    expect(await handler()).toEqual({ seeded: true });
    const tables = await sql.query(
      `SELECT string_agg(relname, ',' ORDER BY relname) AS names FROM pg_class WHERE relnamespace = 'demo'::regnamespace AND relkind IN ('r', 'p') AND relname NOT LIKE '%\\_p%'`,
    );
    expect(tables.rows[0].names).toBe('events,events_default,events_hourly,invoices,orders,orders_archive,page_views');

    const partition = await runLocally('partition', example('partition'), db.url, { logger: quietLogger() });
    expect(partition.failed).toEqual([]);
    expect(partition.targets[0]!.counts).toMatchObject({ dropped: 6, rowsLeftInDefault: 0 });
    expect(partition.targets[0]!.counts.rowsMovedFromDefault).toBeGreaterThan(0);

    const archive = await runLocally('archive', example('archive'), db.url, { logger: quietLogger() });
    expect(archive.targets[0]).toMatchObject({ state: 'succeeded', stopReason: 'done' });
    expect(archive.targets[0]!.counts.rowsMoved).toBeGreaterThan(1000);

    const rollup = await runLocally('rollup', example('rollup'), db.url, { logger: quietLogger() });
    expect(rollup.targets[0]).toMatchObject({ state: 'succeeded', stopReason: 'done', counts: { sourceRowsRead: 500 } });
  });

  it('the sandbox’s S3 target archives demo.page_views into the columns its Athena table declares, one folder per day', async () => {
    const s3 = await startTestS3(sandboxArchiveBucket);
    const policy = demoHousekeeping.archive!.policy;
    const target = policy.targets.find((t) => t.source === 'demo.page_views')!;
    const run = await runLocally('archive', { ...policy, targets: [target] }, db.url, { logger: quietLogger() });
    expect(run.targets[0]).toMatchObject({ state: 'succeeded', stopReason: 'done' });
    expect(run.targets[0]!.counts.rowsMoved).toBeGreaterThan(2000);
    const dir = await s3.download('demo/table=demo.page_views/');
    const files = `read_parquet('${dir}/demo/table=demo.page_views/*/*.parquet', hive_partitioning = 1)`;
    // Hive (Athena) types as DuckDB reads the same Parquet types; DuckDB also takes table= in the path as a partition, Athena's location is below it.
    const asDuckDb: Record<string, string> = { bigint: 'BIGINT', int: 'INTEGER', string: 'VARCHAR', timestamp: 'TIMESTAMP WITH TIME ZONE' };
    const described = await duckdb(`SELECT column_name, column_type FROM (DESCRIBE SELECT * EXCLUDE (dt, "table") FROM ${files})`);
    expect(described).toEqual(SANDBOX_ARCHIVE_COLUMNS['demo.page_views']!.map((c) => ({ column_name: c.name, column_type: asDuckDb[c.type] })));
    const [counts] = await duckdb(`SELECT count(*)::int AS n, count(DISTINCT dt)::int AS days FROM ${files}`);
    expect(counts).toEqual({ n: run.targets[0]!.counts.rowsMoved, days: expect.any(Number) });
    expect(counts!.days).toBeGreaterThan(80);
  });

  it("npm start's seed names itself pg-housekeeper/demo-seed, as the seed Lambda does", async () => {
    // Held by another session, the demo schema makes the seed wait long enough to be seen.
    const locker = await db.connect('locker');
    await locker.query('BEGIN');
    await locker.query('LOCK TABLE demo.invoices IN ACCESS SHARE MODE');
    const seeding = seedDemo(db.url).then(
      () => 'seeded',
      (error: Error) => error.message,
    );
    try {
      const waiting = await vi.waitFor(
        async () => {
          const { rows } = await sql.query(`SELECT application_name FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'`, [
            db.name,
          ]);
          if (rows.length === 0) throw new Error('the seed is not waiting yet');
          return rows;
        },
        { timeout: 30_000, interval: 50 },
      );
      expect(waiting).toEqual([{ application_name: 'pg-housekeeper/demo-seed' }]);
    } finally {
      await locker.query('ROLLBACK');
    }
    expect(await seeding).toBe('seeded');
  });
});
