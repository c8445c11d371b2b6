import type { Context } from 'aws-lambda';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { captureArchiveInvariant, ORDERS_DDL, seedOrders } from '../support/archive';
import { createTestDatabase, type TestDatabase } from '../support/db';
import { lambdaContext, scheduledEvent, serveDatabaseSecret } from '../support/lambda';

const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:archive-db-AbCdEf';
let db: TestDatabase;
let sql: pg.Client;
let stopServingSecret: () => void;
let handler: (
  event: unknown,
  context: Context,
) => Promise<{ targets: Array<{ state: string; stopReason?: string; counts: Record<string, number> }> }>;

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
  stopServingSecret = serveDatabaseSecret(db.url, SECRET_ARN);
  ({ handler } = (await import('../../functions/archive/handler')) as never);
});

afterAll(() => stopServingSecret());

describe('archive Lambda handler', () => {
  it('stops cleanly when the remaining time runs short, and the next invocation continues', async () => {
    await sql.query(ORDERS_DDL);
    await sql.query(seedOrders(3000, 10));
    const policy = {
      targets: [
        { source: 'app.orders', destination: 'app.orders_archive', ageColumn: 'completed_at', retention: '90 days', batchSize: 20, pauseMs: 20 },
      ],
    };
    const invariant = await captureArchiveInvariant(sql, { source: 'app.orders', destination: 'app.orders_archive' });
    // 8 s left minus the 5 s safety margin: about 3 s of batches, far too few for 3,000 rows.
    const first = await handler(scheduledEvent(policy), lambdaContext(8_000));
    expect(first.targets[0]).toMatchObject({ state: 'succeeded', stopReason: 'time budget nearly spent' });
    const movedFirst = first.targets[0]!.counts.rowsMoved!;
    expect(movedFirst).toBeGreaterThan(0);
    expect(movedFirst).toBeLessThan(3000);
    const archived = await sql.query(`SELECT count(*)::int AS n FROM app.orders_archive`);
    expect(archived.rows[0].n).toBe(movedFirst);
    await invariant.verify(first.targets[0]);

    const rest = await handler({ ...policy, targets: [{ ...policy.targets[0], pauseMs: 0, batchSize: 5000 }] }, lambdaContext(60_000));
    expect(rest.targets[0]).toMatchObject({ stopReason: 'done', counts: { rowsMoved: 3000 - movedFirst } });
    const left = await sql.query(`SELECT count(*)::int AS n FROM app.orders`);
    expect(left.rows[0].n).toBe(10);
    await invariant.verify(rest.targets[0]);
  });
});
