import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { restoreFromCli } from '../../scripts/cli';
import { runArchive } from '../support/archive';
import { captureS3Invariant, objectRows, openS3ArchiveTest, postgresRows } from '../support/archive-s3';
import type { TestDatabase } from '../support/db';
import type { TestS3 } from '../support/s3';

/**
 * The S3 destination with the process in America/Sao_Paulo (vitest.config.ts) and the policy in
 * Europe/Berlin: timestamps are written as UTC microseconds (timestamptz) or wall-clock ones
 * (timestamp), dates as days, none through the process's zone; each row's dt is its Berlin day.
 * Rows sit minutes either side of a Berlin midnight, where a shift by either zone changes the day.
 */
let db: TestDatabase;
let sql: pg.Client;
let s3: TestS3;

beforeAll(async () => {
  ({ db, sql, s3 } = await openS3ArchiveTest());
  expect(Intl.DateTimeFormat().resolvedOptions().timeZone).toBe('America/Sao_Paulo');
});

describe('archive to S3, process in São Paulo, policy in Berlin', () => {
  it('keeps every time value exact, files each row under its Berlin day, and restores it whole', async () => {
    await sql.query(`DROP SCHEMA IF EXISTS zs CASCADE; CREATE SCHEMA zs;
      CREATE TABLE zs.events (id int NOT NULL, at timestamptz NOT NULL, wall timestamp, day date, PRIMARY KEY (id, at));
      INSERT INTO zs.events VALUES
        (1, '2025-06-01 23:59:59.999999+02', '2025-06-01 23:59:59.999999', '2025-06-01'),
        (2, '2025-06-02 00:00:00+02', '2025-06-02 00:00:00', '2025-06-02'),
        (3, '2025-06-01 21:30:00-03', '1969-12-31 23:59:59', '1969-12-31'),
        (4, '2025-10-26 02:30:00+01', '2025-10-26 02:30:00', NULL);`);
    const before = await postgresRows(sql, 'zs.events');
    const folder = 'zs/table=zs.events';
    const invariant = await captureS3Invariant(sql, s3, { source: 'zs.events', folder });
    const config = {
      targets: [
        {
          source: 'zs.events',
          key: ['id', 'at'],
          ageColumn: 'at',
          retention: '30 days',
          timeZone: 'Europe/Berlin',
          destination: { s3: { bucket: 'hk-archive', prefix: 'zs', rowsPerObject: 100, rowGroupRows: 100 } },
        },
      ],
    };
    const summary = await runArchive(db.url, config);
    expect(summary.targets[0]!.detail).toBeUndefined();
    expect(await invariant.verify()).toMatchObject({ left: 0, archived: 4 });
    const days = Object.fromEntries((await objectRows(s3, folder, invariant.columns)).map((row) => [JSON.parse(row.text)[0], row.dt]));
    // 3: 21:30 in São Paulo is 02:30 the next day in Berlin.
    expect(days).toEqual({ 1: '2025-06-01', 2: '2025-06-02', 3: '2025-06-02', 4: '2025-10-26' });
    await sql.query(`CREATE TABLE zs.events_back (LIKE zs.events INCLUDING ALL)`);
    const range = { from: '2025-06-01', to: '2025-10-31', into: 'zs.events_back' };
    expect(await restoreFromCli(config, db.url, range)).toMatchObject({ rowsInserted: 4 });
    expect(await restoreFromCli(config, db.url, range)).toMatchObject({ rowsInserted: 0, rowsAlreadyPresent: 4 });
    expect(await postgresRows(sql, 'zs.events_back')).toEqual(before);
  });
});
