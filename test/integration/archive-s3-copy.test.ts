import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { copyRows } from '../../functions/archive/s3/copy';
import { sql as tag } from '../../shared/sql';
import { createTestDatabase, type TestDatabase } from '../support/db';

/**
 * Written by an adversarial review: a pick that fails mid-COPY (statement_timeout, a cancelled query), then the next pick
 * on the same session. The suite's setup file (no-queued-queries.ts) turns a query queued behind
 * another into an error thrown from the warning handler: pg 9 refuses it outright.
 */
let db: TestDatabase;
let client: pg.Client;
const warnings: string[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  client = await db.connect('copy-pick');
  process.on('warning', (w) => warnings.push(`${w.name}: ${w.message}`));
});

describe('copyRows after a COPY that fails part-way', () => {
  it('statement_timeout while rows stream: the pick fails with the timeout, no query is queued behind the COPY, and the next pick works', async () => {
    await client.query(`SET statement_timeout = '300ms'`);
    // Rows stream at once, then the statement sleeps past the timeout: the error arrives mid-COPY.
    const slow = tag`SELECT g, CASE WHEN g = 5000 THEN pg_sleep(1)::text END FROM generate_series(1, 5000) AS g`;
    const failure = await copyRows(client, slow).then(
      () => new Error('no error'),
      (e: Error) => e,
    );
    expect(failure.message).toMatch(/statement timeout/);
    // Let a queued ROLLBACK's warning reach process.on('warning').
    await new Promise((r) => setTimeout(r, 50));
    expect(
      warnings.filter((w) => w.includes('already executing')),
      'a query was queued behind the failing COPY',
    ).toEqual([]);
    await client.query(`SET statement_timeout = 0`);
    const next = await copyRows(client, tag`SELECT 1::int`);
    expect(next.byteLength).toBeGreaterThan(0);
    expect((await client.query(`SELECT pg_current_xact_id_if_assigned() IS NULL AS idle, now() = statement_timestamp() AS outside`)).rows[0]).toEqual(
      {
        idle: true,
        outside: true,
      },
    );
  });
});

describe('copyRows when the session is terminated mid-COPY', () => {
  it('fails with the connection error (no hang), and the next pick on it fails too, promptly', async () => {
    const victim = await db.connect('copy-victim');
    const pid = (await victim.query(`SELECT pg_backend_pid() AS pid`)).rows[0].pid;
    const killer = await db.connect('copy-killer');
    const slow = tag`SELECT g, CASE WHEN g = 5000 THEN pg_sleep(5)::text END FROM generate_series(1, 5000) AS g`;
    const started = Date.now();
    const pick = copyRows(victim, slow).then(
      () => new Error('no error'),
      (e: Error) => e,
    );
    await new Promise((r) => setTimeout(r, 300));
    await killer.query(`SELECT pg_terminate_backend($1)`, [pid]);
    const failure = await pick;
    expect(Date.now() - started).toBeLessThan(3000);
    expect(failure.message).not.toBe('no error');
    const next = await Promise.race([
      copyRows(victim, tag`SELECT 1::int`).then(
        () => 'ok',
        (e: Error) => `error: ${e.message}`,
      ),
      new Promise((r) => setTimeout(() => r('hang'), 3000)),
    ]);
    expect(next).toMatch(/^error: /);
  });
});
