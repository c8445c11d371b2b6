import { readFileSync } from 'node:fs';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runLocally } from '../../scripts/run-local';
import { createTestDatabase, type TestDatabase } from '../support/db';
import { quietLogger } from '../support/jobs';
import { serveDatabaseSecret } from '../support/lambda';

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
    const tables = await sql.query(`SELECT string_agg(relname, ',' ORDER BY relname) AS names FROM pg_class WHERE relnamespace = 'demo'::regnamespace AND relkind IN ('r', 'p') AND relname NOT LIKE '%\\_p%'`);
    expect(tables.rows[0].names).toBe('events,events_default,events_hourly,invoices,orders,orders_archive');

    const partition = await runLocally('partition', example('partition'), db.url, { logger: quietLogger() });
    expect(partition.failed).toEqual([]);
    expect(partition.targets[0]!.counts).toMatchObject({ dropped: 6, rowsLeftInDefault: 0 });
    expect(partition.targets[0]!.counts.rowsMovedFromDefault).toBeGreaterThan(0);

    const archive = await runLocally('archive', example('archive'), db.url, { logger: quietLogger() });
    expect(archive.targets[0]).toMatchObject({ state: 'succeeded', stopReason: 'done' });
    expect(archive.targets[0]!.counts.rowsMoved).toBeGreaterThan(1000);

    const rollup = await runLocally('rollup', example('rollup'), db.url, { logger: quietLogger() });
    expect(rollup.targets[0]).toMatchObject({ state: 'succeeded', stopReason: 'caught up', counts: { sourceRowsRead: 500 } });
  });
});
