import type pg from 'pg';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { runArchive } from '../support/archive';
import { openS3ArchiveTest, postgresRows } from '../support/archive-s3';
import type { TestDatabase } from '../support/db';
import type { TestS3 } from '../support/s3';

/** Written by an adversarial review helper: refusals of an S3 target before anything moves, for shapes where the trigger or key sits on one partition only. */
let db: TestDatabase;
let sql: pg.Client;
let s3: TestS3;

beforeAll(async () => {
  ({ db, sql, s3 } = await openS3ArchiveTest());
});

beforeEach(async () => {
  await s3.empty();
  await sql.query(`DROP SCHEMA IF EXISTS rf CASCADE; CREATE SCHEMA rf;
    CREATE TABLE rf.ev (id bigint NOT NULL, at timestamptz NOT NULL, body text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
    CREATE TABLE rf.ev_2024 PARTITION OF rf.ev FOR VALUES FROM ('2024-01-01 00:00+00') TO ('2025-01-01 00:00+00');
    CREATE TABLE rf.ev_default PARTITION OF rf.ev DEFAULT;
    INSERT INTO rf.ev SELECT i, '2024-03-01'::timestamptz + i * interval '1 hour', md5(i::text) FROM generate_series(1, 20) AS i;
    INSERT INTO rf.ev SELECT i, '2023-03-01'::timestamptz + i * interval '1 hour', md5(i::text) FROM generate_series(21, 40) AS i;
    CREATE TABLE rf.audit (id bigint, at timestamptz);
    CREATE FUNCTION rf.log() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO rf.audit VALUES (OLD.id, OLD.at); RETURN OLD; END $$;`);
});

const target = {
  source: 'rf.ev',
  key: ['id', 'at'],
  ageColumn: 'at',
  retention: '30 days',
  destination: { s3: { bucket: 'hk-archive', prefix: 'rf', rowsPerObject: 100, rowGroupRows: 100 } },
};

async function expectRefused(pattern: RegExp) {
  const before = await postgresRows(sql, 'rf.ev');
  const summary = await runArchive(db.url, { targets: [target] });
  expect(summary.targets[0]!.state).not.toBe('succeeded');
  expect(String(summary.targets[0]!.detail)).toMatch(pattern);
  expect(await postgresRows(sql, 'rf.ev')).toEqual(before);
  expect(await s3.keys('rf/')).toEqual([]);
  expect((await sql.query('SELECT count(*)::int AS n FROM rf.audit')).rows[0].n).toBe(0);
}

describe('S3 target refusals on a partitioned source', () => {
  it('refuses a DELETE trigger on the DEFAULT partition only, naming it', async () => {
    await sql.query(`CREATE TRIGGER audit_default AFTER DELETE ON rf.ev_default FOR EACH ROW EXECUTE FUNCTION rf.log()`);
    await expectRefused(/audit_default/);
  });
  it('refuses a BEFORE DELETE trigger on one partition that skips rows, naming it', async () => {
    await sql.query(`CREATE FUNCTION rf.keep() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
      CREATE TRIGGER keep_2024 BEFORE DELETE ON rf.ev_2024 FOR EACH ROW EXECUTE FUNCTION rf.keep()`);
    await expectRefused(/keep_2024/);
  });
  it('refuses a foreign key that references one partition only, naming it', async () => {
    await sql.query(`CREATE TABLE rf.child (id bigint, at timestamptz, FOREIGN KEY (id, at) REFERENCES rf.ev_2024 (id, at) ON DELETE CASCADE);
      INSERT INTO rf.child VALUES (1, '2024-03-01'::timestamptz + interval '1 hour')`);
    await expectRefused(/child/);
  });
  it('refuses a DELETE rule on a partition, naming it', async () => {
    await sql.query(`CREATE RULE no_delete AS ON DELETE TO rf.ev_default DO INSTEAD NOTHING`);
    await expectRefused(/no_delete/);
  });
});
