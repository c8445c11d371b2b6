import type pg from 'pg';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { ArchiveEventInput } from '../../functions/archive/policy';
import { runArchiveChecked } from '../support/archive';
import { createTestDatabase, type TestDatabase } from '../support/db';

/**
 * Sources and archives that are members of a bigger structure: a leaf partition of a partitioned
 * table (archived on its own, as people do with one old partition), or a table in an inheritance
 * tree. Their foreign keys and triggers are declared on the parent and live on the member as
 * clones, and reads of a parent see its members' rows.
 */

let db: TestDatabase;
let sql: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
});
beforeEach(async () => {
  await sql.query('DROP SCHEMA IF EXISTS housekeeping CASCADE; DROP SCHEMA IF EXISTS app CASCADE; CREATE SCHEMA app');
});

const archive = (event: ArchiveEventInput) => runArchiveChecked(sql, db.url, event);

/** app.ev partitioned by created_at; app.ev_old holds 20 rows from 2010, unique on id; app.ev_archive unique on id. */
const EVENTS = `
  CREATE TABLE app.ev (id bigint NOT NULL, created_at timestamptz NOT NULL, note text, PRIMARY KEY (id, created_at)) PARTITION BY RANGE (created_at);
  CREATE TABLE app.ev_old PARTITION OF app.ev FOR VALUES FROM ('2000-01-01') TO ('2020-01-01');
  CREATE TABLE app.ev_new PARTITION OF app.ev FOR VALUES FROM ('2020-01-01') TO ('2100-01-01');
  CREATE UNIQUE INDEX ON app.ev_old (id);
  CREATE TABLE app.ev_archive (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, note text);
  INSERT INTO app.ev SELECT i, '2010-01-01'::timestamptz + i * interval '1 day', 'n' || i FROM generate_series(1, 20) i;
  CREATE TABLE app.audit (id bigint);
  CREATE FUNCTION app.audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO app.audit VALUES (coalesce(OLD.id, NEW.id)); RETURN coalesce(OLD, NEW); END $$;
`;
const fromOldPartition = { source: 'app.ev_old', destination: 'app.ev_archive', ageColumn: 'created_at', retention: '30 days' } as const;

describe('archive: a source or archive that is a partition', () => {
  it('refuses a source partition referenced through its parent by a foreign key (ON DELETE CASCADE), naming the key', async () => {
    await sql.query(EVENTS);
    await sql.query(`CREATE TABLE app.child (id int PRIMARY KEY, ev_id bigint, ev_at timestamptz, FOREIGN KEY (ev_id, ev_at) REFERENCES app.ev ON DELETE CASCADE);
      INSERT INTO app.child VALUES (1, 1, '2010-01-01'::timestamptz + interval '1 day')`);
    const summary = await archive({ targets: [fromOldPartition] });
    expect(summary.targets[0]!.state).toBe('failed');
    expect(summary.targets[0]!.detail).toMatch(
      /app\.ev_old is referenced by foreign keys: child_ev_id_ev_at_fkey on app\.child \(ON DELETE CASCADE\)/,
    );
  });

  it('refuses a source partition whose parent has a DELETE row trigger (cloned onto the partition)', async () => {
    await sql.query(EVENTS);
    await sql.query(`CREATE TRIGGER ev_audit AFTER DELETE ON app.ev FOR EACH ROW EXECUTE FUNCTION app.audit()`);
    const summary = await archive({ targets: [fromOldPartition] });
    expect(summary.targets[0]!.state).toBe('failed');
    expect(summary.targets[0]!.detail).toMatch(/user triggers would fire on every batch: ev_audit on app\.ev \(DELETE\)/);
  });

  it('refuses an archive partition whose parent has an INSERT row trigger (cloned onto the partition)', async () => {
    await sql.query(`
      CREATE TABLE app.o (id bigint PRIMARY KEY, created_at timestamptz NOT NULL);
      INSERT INTO app.o SELECT i, '2010-01-01'::timestamptz + i * interval '1 day' FROM generate_series(1, 20) i;
      CREATE TABLE app.arch (id bigint NOT NULL, created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at);
      CREATE TABLE app.arch_old PARTITION OF app.arch FOR VALUES FROM ('2000-01-01') TO ('2100-01-01');
      ALTER TABLE app.arch_old ADD PRIMARY KEY (id);
      CREATE TABLE app.audit (id bigint);
      CREATE FUNCTION app.audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO app.audit VALUES (NEW.id); RETURN NEW; END $$;
      CREATE TRIGGER arch_audit AFTER INSERT ON app.arch FOR EACH ROW EXECUTE FUNCTION app.audit()`);
    const summary = await archive({ targets: [{ source: 'app.o', destination: 'app.arch_old', ageColumn: 'created_at', retention: '30 days' }] });
    expect(summary.targets[0]!.state).toBe('failed');
    expect(summary.targets[0]!.detail).toMatch(/user triggers would fire on every batch: arch_audit on app\.arch \(INSERT\)/);
  });

  it('still moves a source partition with neither, every row once', async () => {
    await sql.query(EVENTS);
    const summary = await archive({ targets: [fromOldPartition] });
    expect(summary.targets[0]).toMatchObject({ state: 'succeeded', counts: { rowsMoved: 20 } });
  });

  it('purge of a source partition is refused the same way', async () => {
    await sql.query(EVENTS);
    await sql.query(`CREATE TABLE app.child (id int PRIMARY KEY, ev_id bigint, ev_at timestamptz, FOREIGN KEY (ev_id, ev_at) REFERENCES app.ev ON DELETE SET NULL);
      INSERT INTO app.child VALUES (1, 1, '2010-01-01'::timestamptz + interval '1 day')`);
    const summary = await runArchiveChecked(
      sql,
      db.url,
      { targets: [{ source: 'app.ev_old', mode: 'purge', ageColumn: 'created_at', retention: '30 days' }] },
      { expired: `t.created_at < now() - interval '30 days'` },
    );
    expect(summary.targets[0]!.detail).toMatch(
      /app\.ev_old is referenced by foreign keys: child_ev_id_ev_at_fkey on app\.child \(ON DELETE SET NULL\)/,
    );
  });
});

describe('archive: an archive whose reads see more than its own rows', () => {
  it('refuses an archive the source inherits from (its reads saw the source rows as archived: 19 of 20 rows were deleted uncopied)', async () => {
    await sql.query(`
      CREATE TABLE app.arch (id bigint PRIMARY KEY, created_at timestamptz NOT NULL);
      CREATE TABLE app.o (id bigint PRIMARY KEY, created_at timestamptz NOT NULL) INHERITS (app.arch);
      INSERT INTO app.o SELECT i, '2010-01-01'::timestamptz + i * interval '1 day' FROM generate_series(1, 20) i;
      -- one identical copy archived already: the batch then compares every picked row with the archive
      INSERT INTO app.arch VALUES (5, '2010-01-01'::timestamptz + 5 * interval '1 day')`);
    const before = await sql.query<{ n: number }>('SELECT count(*)::int AS n FROM ONLY app.arch');
    const summary = await archive({ targets: [{ source: 'app.o', destination: 'app.arch', ageColumn: 'created_at', retention: '30 days' }] });
    expect(summary.targets[0]!.state).toBe('failed');
    expect(summary.targets[0]!.detail).toMatch(/app\.arch has tables that inherit from it \(app\.o\); a read of it sees their rows as archived/);
    expect((await sql.query('SELECT count(*)::int AS n FROM app.o')).rows[0].n).toBe(20);
    expect((await sql.query('SELECT count(*)::int AS n FROM ONLY app.arch')).rows[0].n).toBe(before.rows[0]!.n);
  });

  it('refuses an archive that is the partitioned parent of the source, or a partition of it', async () => {
    await sql.query(EVENTS);
    const intoParent = await archive({
      targets: [{ source: 'app.ev_old', destination: 'app.ev', key: ['id', 'created_at'], ageColumn: 'created_at', retention: '30 days' }],
    });
    expect(intoParent.targets[0]!.detail).toMatch(/app\.ev_old and app\.ev share app\.ev_old: one is a partition of the other/);
    const intoPartition = await archive({
      targets: [{ source: 'app.ev', destination: 'app.ev_new', key: ['id', 'created_at'], ageColumn: 'created_at', retention: '30 days' }],
    });
    expect(intoPartition.targets[0]!.detail).toMatch(/app\.ev and app\.ev_new share app\.ev_new: one is a partition of the other/);
  });
});
