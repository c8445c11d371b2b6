import type { DateTime } from 'luxon';
import type pg from 'pg';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { PartitionEventInput } from '../../functions/partition/policy';
import { partitionsOf } from '../support/catalog';
import { createTestDatabase, databaseToday, type TestDatabase } from '../support/db';
import { rowDigests, tableFingerprints } from '../support/fingerprint';
import { runPartition } from '../support/jobs';

/**
 * Rows parked in DEFAULT are moved into a new partition by DELETE + INSERT. Whatever that would
 * fire (foreign-key actions, DELETE triggers, rules) must not fire: the job refuses to move them,
 * names what would fire and the range, creates every other partition, and fails the target.
 */

let db: TestDatabase;
let sql: pg.Client;
let today: DateTime;

const day = (offset: number) => today.plus({ days: offset });
const dayName = (offset: number) => `orders_p${day(offset).toFormat('yyyy_MM_dd')}`;
const literal = (offset: number) => `${day(offset).toFormat('yyyy-MM-dd')} 00:00:00+00:00`;
const event = (premake = 2): PartitionEventInput => ({ targets: [{ table: 'app.orders', interval: 'day', premake }], maintainLedger: false });

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
  today = await databaseToday(sql);
});

beforeEach(async () => {
  await sql.query(`DROP SCHEMA IF EXISTS app CASCADE; DROP SCHEMA IF EXISTS housekeeping CASCADE; CREATE SCHEMA app;
    CREATE TABLE app.orders (id bigint NOT NULL, placed_at timestamptz NOT NULL, note text, PRIMARY KEY (id, placed_at)) PARTITION BY RANGE (placed_at);
    CREATE TABLE app.orders_default PARTITION OF app.orders DEFAULT;
    CREATE TABLE app.audit (id bigserial PRIMARY KEY, what text NOT NULL);
    CREATE TABLE app.bystander (id int PRIMARY KEY, v text);
    INSERT INTO app.bystander SELECT i, md5(i::text) FROM generate_series(1, 20) i;`);
});

/** One order placed on day `offset` (tomorrow: in DEFAULT, no partition yet) with two lines referencing it. */
async function orderWithLines(onDelete: string, offset = 1) {
  await sql.query(`CREATE TABLE app.order_lines (
      id int PRIMARY KEY, order_id bigint, placed_at timestamptz, sku text,
      CONSTRAINT order_lines_order_fk FOREIGN KEY (order_id, placed_at) REFERENCES app.orders (id, placed_at) ON DELETE ${onDelete})`);
  const placed = day(offset).plus({ hours: 9 }).toISO();
  await sql.query(`INSERT INTO app.orders VALUES (1, $1, 'an order')`, [placed]);
  await sql.query(`INSERT INTO app.order_lines VALUES (1, 1, $1, 'a'), (2, 1, $1, 'b')`, [placed]);
}

/** Runs the job and proves that no table but the target's own partitions changed, and no row of the target did either. */
async function runAndCompare(input: PartitionEventInput) {
  const others = await tableFingerprints(sql, ['app.orders_*']);
  const orders = await rowDigests(sql, 'app.orders');
  const summary = await runPartition(db.url, input);
  expect(await tableFingerprints(sql, ['app.orders_*'])).toEqual(others);
  expect(await rowDigests(sql, 'app.orders')).toEqual(orders);
  return summary.targets[0]!;
}

describe('rows in DEFAULT that a move would make foreign keys act on', () => {
  it.each(['CASCADE', 'RESTRICT', 'NO ACTION', 'SET NULL', 'SET DEFAULT'])(
    'ON DELETE %s: refused, named with the range; the other partitions are created; the alarm count is 0',
    async (onDelete) => {
      await orderWithLines(onDelete);
      const target = await runAndCompare(event());
      expect(target.state).toBe('failed');
      expect(target.detail).toContain(`DEFAULT partition app.orders_default holds rows in [${literal(1)}, ${literal(2)})`);
      expect(target.detail).toContain(`foreign key order_lines_order_fk on app.order_lines (ON DELETE ${onDelete}) references app.orders`);
      expect(target.detail).toContain(`app.${dayName(1)} was not created`);
      expect(target.counts).toMatchObject({ created: 2, rowsMovedFromDefault: 0, rowsLeftInDefault: 1, rescuesRefused: 1, partitionsAhead: 0 });
      expect(Object.keys(await partitionsOf(sql, 'app.orders'))).toEqual(['orders_default', dayName(0), dayName(2)]);
      // Every run refuses again, until someone moves the rows; nothing changes meanwhile.
      const again = await runAndCompare(event());
      expect(again).toMatchObject({ state: 'failed', counts: { created: 0, rescuesRefused: 1, partitionsAhead: 0 } });
    },
  );

  it('a foreign key referencing the DEFAULT partition itself: refused, named', async () => {
    await sql.query(`INSERT INTO app.orders VALUES (1, $1, 'an order')`, [day(1).plus({ hours: 9 }).toISO()]);
    await sql.query(`CREATE TABLE app.parked_refs (order_id bigint, placed_at timestamptz,
      CONSTRAINT parked_fk FOREIGN KEY (order_id, placed_at) REFERENCES app.orders_default (id, placed_at) ON DELETE CASCADE);
      INSERT INTO app.parked_refs SELECT id, placed_at FROM app.orders`);
    const target = await runAndCompare(event());
    expect(target.state).toBe('failed');
    expect(target.detail).toContain('foreign key parked_fk on app.parked_refs (ON DELETE CASCADE) references app.orders_default');
    expect(target.counts).toMatchObject({ created: 2, rescuesRefused: 1, partitionsAhead: 0 });
  });

  it('once someone moves the rows, the next run creates the partition', async () => {
    await orderWithLines('CASCADE');
    expect((await runAndCompare(event())).state).toBe('failed');
    await sql.query(`DELETE FROM app.orders`); // the owner's decision, lines and all
    const target = await runAndCompare(event());
    expect(target).toMatchObject({ state: 'succeeded', counts: { created: 1, rescuesRefused: 0, partitionsAhead: 2 } });
    expect(Object.keys(await partitionsOf(sql, 'app.orders'))).toEqual(['orders_default', dayName(0), dayName(1), dayName(2)]);
  });

  it('creates every partition as usual when DEFAULT holds no row of their ranges', async () => {
    await orderWithLines('CASCADE', 10); // beyond premake: stays in DEFAULT, moved by no one
    const target = await runAndCompare(event());
    expect(target).toMatchObject({ state: 'succeeded', counts: { created: 3, rescuesRefused: 0, partitionsAhead: 2 } });
  });

  it('a gap in the past is left in DEFAULT with a warning, and does not fail the target', async () => {
    await orderWithLines('CASCADE', -2);
    await sql.query(`CREATE TABLE app.${dayName(-3)} PARTITION OF app.orders FOR VALUES FROM ('${day(-3).toISO()}') TO ('${day(-2).toISO()}')`);
    const target = await runAndCompare(event());
    expect(target).toMatchObject({ state: 'succeeded', counts: { created: 4, rescuesRefused: 1, rowsLeftInDefault: 1, partitionsAhead: 2 } });
    expect(target.notes).toEqual([
      expect.stringContaining(`warning: DEFAULT partition app.orders_default holds rows in [${literal(-2)}, ${literal(-1)})`),
    ]);
    expect(Object.keys(await partitionsOf(sql, 'app.orders'))).not.toContain(dayName(-2));
  });
});

describe('rows in DEFAULT that a move would fire triggers or rules for', () => {
  beforeEach(async () => {
    await sql.query(`INSERT INTO app.orders VALUES (1, $1, 'tomorrow')`, [day(1).plus({ hours: 9 }).toISO()]);
    await sql.query(`CREATE FUNCTION app.audit() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN INSERT INTO app.audit (what) VALUES (TG_OP || ' ' || TG_TABLE_NAME || ' ' || TG_LEVEL); RETURN NULL; END $$`);
  });

  it.each([
    [
      'a row DELETE trigger on the parent',
      'CREATE TRIGGER audit_delete AFTER DELETE ON app.orders FOR EACH ROW EXECUTE FUNCTION app.audit()',
      'trigger audit_delete on app.orders (fires on DELETE)',
    ],
    [
      'a row DELETE trigger on DEFAULT',
      'CREATE TRIGGER audit_delete BEFORE DELETE ON app.orders_default FOR EACH ROW EXECUTE FUNCTION app.audit()',
      'trigger audit_delete on app.orders_default (fires on DELETE)',
    ],
    [
      'a statement DELETE trigger on DEFAULT',
      'CREATE TRIGGER audit_delete AFTER DELETE OR UPDATE ON app.orders_default FOR EACH STATEMENT EXECUTE FUNCTION app.audit()',
      'trigger audit_delete on app.orders_default (fires on DELETE)',
    ],
    [
      'a DELETE rule on DEFAULT',
      `CREATE RULE keep_deleted AS ON DELETE TO app.orders_default DO ALSO INSERT INTO app.audit (what) VALUES ('deleted ' || old.id)`,
      'rule keep_deleted on app.orders_default (ON DELETE)',
    ],
  ])('%s: refused, named', async (_label, ddl, named) => {
    await sql.query(ddl);
    const target = await runAndCompare(event());
    expect(target.state).toBe('failed');
    expect(target.detail).toContain(`holds rows in [${literal(1)}, ${literal(2)}); moving them (a DELETE and an INSERT) would fire ${named}`);
    expect(target.counts).toMatchObject({ created: 2, rescuesRefused: 1, partitionsAhead: 0 });
  });

  it('a statement DELETE trigger on DEFAULT does not fire when there is nothing to move', async () => {
    await sql.query(`DELETE FROM app.orders`);
    await sql.query('CREATE TRIGGER audit_delete AFTER DELETE ON app.orders_default FOR EACH STATEMENT EXECUTE FUNCTION app.audit()');
    const target = await runAndCompare(event());
    expect(target).toMatchObject({ state: 'succeeded', counts: { created: 3, partitionsAhead: 2 } });
  });

  it('INSERT triggers do not fire and do not stop the move: the rows enter the new table before it is attached', async () => {
    await sql.query(`CREATE TRIGGER audit_insert AFTER INSERT ON app.orders FOR EACH ROW EXECUTE FUNCTION app.audit();
                     CREATE TRIGGER stamp BEFORE INSERT ON app.orders FOR EACH ROW EXECUTE FUNCTION app.audit()`);
    const target = await runAndCompare(event());
    expect(target).toMatchObject({ state: 'succeeded', counts: { created: 3, rowsMovedFromDefault: 1, rowsLeftInDefault: 0, partitionsAhead: 2 } });
    const moved = await sql.query(`SELECT tableoid::regclass::text AS part FROM app.orders`);
    expect(moved.rows).toEqual([{ part: `app.${dayName(1)}` }]);
    // The parent's triggers were cloned onto the new partition when it was attached: inserts from now on fire them.
    await sql.query(`INSERT INTO app.orders VALUES (2, $1, 'later')`, [day(1).plus({ hours: 10 }).toISO()]);
    expect((await sql.query(`SELECT count(*)::int AS n FROM app.audit`)).rows[0].n).toBe(1);
  });

  it('a disabled DELETE trigger does not stop the move', async () => {
    await sql.query(`CREATE TRIGGER audit_delete AFTER DELETE ON app.orders FOR EACH ROW EXECUTE FUNCTION app.audit();
                     ALTER TABLE app.orders DISABLE TRIGGER audit_delete`);
    const target = await runAndCompare(event());
    expect(target).toMatchObject({ state: 'succeeded', counts: { created: 3, rowsMovedFromDefault: 1 } });
  });
});

describe('dry run with rows a move would fire foreign keys for', () => {
  it('says it would refuse, and changes nothing', async () => {
    await orderWithLines('CASCADE');
    const target = await runAndCompare({ ...event(), dryRun: true });
    expect(target.counts).toMatchObject({ wouldCreate: 3, wouldMoveFromDefault: 0, wouldRefuse: 1 });
    expect(target.notes.join('\n')).toContain(
      `-- would refuse app.${dayName(1)}: DEFAULT holds 1 row(s) of its range and moving them would fire foreign key order_lines_order_fk`,
    );
    expect(Object.keys(await partitionsOf(sql, 'app.orders'))).toEqual(['orders_default']);
  });
});
