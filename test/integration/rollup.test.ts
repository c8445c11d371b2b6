import type pg from 'pg';
import { beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { tryLockTarget } from '../../shared/advisory-lock';
import { ConfigError } from '../../shared/errors';
import { createTestDatabase, type TestDatabase } from '../support/db';
import { rollupMismatches, runRollup, USAGE_DDL, usageRollup } from '../support/rollup';

let db: TestDatabase;
let sql: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
});

beforeEach(async () => {
  await sql.query(USAGE_DDL);
});

/** A small deterministic PRNG, so a failing sequence can be replayed from its seed. */
function prng(seed: number) {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

const watermark = async () =>
  (await sql.query(`SELECT watermark FROM housekeeping.rollup_state WHERE name = 'usage_hourly'`)).rows[0]?.watermark as Date;

describe('rollup exactness', () => {
  it.each([1, 2, 3])('property: random inserts, late rows, edits, deletes and runs keep every finished bucket exact (seed %i)', async (seed) => {
    const random = prng(seed);
    const tenants = ['acme', 'globex', 'initech'];
    await sql.query(
      `INSERT INTO app.usage (occurred_at, tenant, units)
       SELECT now() - interval '72 hours' + (i * interval '7 minutes'), (ARRAY['acme','globex','initech'])[1 + i % 3], i % 17
       FROM generate_series(1, 500) AS i`,
    );
    const policy = { ...usageRollup, sliceBuckets: 6, lookbackBuckets: 2 };
    await runRollup(db.url, { targets: [policy] });
    expect(await rollupMismatches(sql)).toEqual([]);
    for (let step = 0; step < 30; step++) {
      const op = random();
      const hoursAgo = Math.floor(random() * 70);
      const tenant = tenants[Math.floor(random() * 3)];
      if (op < 0.35) {
        // new or late rows, anywhere in the last 70 hours; updated_at defaults to now()
        await sql.query(
          `INSERT INTO app.usage (occurred_at, tenant, units) SELECT now() - make_interval(hours => $1) - i * interval '1 minute', $2, $3 FROM generate_series(1, $4) i`,
          [hoursAgo, tenant, Math.floor(random() * 50), 1 + Math.floor(random() * 5)],
        );
      } else if (op < 0.6) {
        // edits: the value changes and updated_at says so
        await sql.query(
          `UPDATE app.usage SET units = units + 3, updated_at = now() WHERE id IN (SELECT id FROM app.usage ORDER BY random() LIMIT 5)`,
        );
      } else if (op < 0.75) {
        // deletes inside the lookback window, the only deletes a rollup without tombstones can see (README)
        const wm = await watermark();
        await sql.query(
          `DELETE FROM app.usage WHERE id IN (SELECT id FROM app.usage WHERE occurred_at >= $1::timestamptz - interval '2 hours' ORDER BY random() LIMIT 3)`,
          [wm],
        );
      } else {
        const summary = await runRollup(db.url, { targets: [policy] });
        expect(summary.failed).toEqual([]);
        expect(await rollupMismatches(sql)).toEqual([]);
      }
    }
    await runRollup(db.url, { targets: [policy] });
    expect(await rollupMismatches(sql)).toEqual([]);
  });

  it('backfills from the oldest event in slices, then a run with one new hour reads only recent buckets', async () => {
    await sql.query(`INSERT INTO app.usage (occurred_at, tenant, units)
      SELECT date_trunc('hour', now()) - interval '48 hours' + i * interval '10 minutes', 'acme', 1 FROM generate_series(0, 299) i`);
    const first = await runRollup(db.url, { targets: [{ ...usageRollup, sliceBuckets: 10 }] });
    expect(first.targets[0]).toMatchObject({ state: 'succeeded', stopReason: 'done', counts: { slices: 5 + 1, bucketsWritten: 48 + 2 } });
    // 48 hourly buckets in slices of 10: 5 slices, plus the (empty) 2-bucket lookback below the first watermark
    expect((await watermark()).getTime()).toBe(Math.floor(Date.now() / 3_600_000) * 3_600_000);
    expect(first.targets[0]!.counts.sourceRowsRead).toBe(288);
    expect(await rollupMismatches(sql)).toEqual([]);
    const again = await runRollup(db.url, { targets: [{ ...usageRollup, sliceBuckets: 10 }] });
    expect(again.targets[0]!.counts).toMatchObject({ bucketsWritten: 2, recomputedRanges: 1 });
    expect(again.targets[0]!.counts.lagSeconds).toBeLessThan(3_700);
  });

  it('catches an edit to an old bucket through the changed-at column, and not without it', async () => {
    await sql.query(
      `INSERT INTO app.usage (occurred_at, tenant, units) VALUES (now() - interval '30 hours', 'acme', 5), (now() - interval '2 hours', 'acme', 1)`,
    );
    await sql.query(`CREATE TABLE app.usage_hourly_b (LIKE app.usage_hourly INCLUDING ALL)`);
    const both = { targets: [usageRollup, { ...usageRollup, name: 'no_changed_at', changedAtColumn: undefined, target: 'app.usage_hourly_b' }] };
    await runRollup(db.url, both);
    await sql.query(`UPDATE app.usage SET units = 50, updated_at = now() WHERE occurred_at < now() - interval '29 hours'`);
    await runRollup(db.url, both);
    expect(await rollupMismatches(sql)).toEqual([]);
    const stale = await sql.query(`SELECT units FROM app.usage_hourly_b WHERE bucket < now() - interval '29 hours'`);
    expect(stale.rows).toEqual([{ units: '5' }]); // documented: without changedAtColumn only the lookback is recomputed
  });

  it('recomputes, never adds: running the same windows again changes nothing, and vanished groups vanish', async () => {
    await sql.query(
      `INSERT INTO app.usage (occurred_at, tenant, units) VALUES (now() - interval '3 hours', 'acme', 2), (now() - interval '3 hours', 'globex', 4)`,
    );
    await runRollup(db.url, { targets: [{ ...usageRollup, lookbackBuckets: 5 }] });
    const before = await sql.query(`SELECT * FROM app.usage_hourly ORDER BY bucket, tenant`);
    await runRollup(db.url, { targets: [{ ...usageRollup, lookbackBuckets: 5 }] });
    expect((await sql.query(`SELECT * FROM app.usage_hourly ORDER BY bucket, tenant`)).rows).toEqual(before.rows);
    await sql.query(`DELETE FROM app.usage WHERE tenant = 'globex'`);
    await runRollup(db.url, { targets: [{ ...usageRollup, lookbackBuckets: 5 }] });
    expect((await sql.query(`SELECT tenant FROM app.usage_hourly`)).rows).toEqual([{ tenant: 'acme' }]);
  });
  // The fence (open transactions holding back the upper bound and the changed-at horizon): rollup-fence.test.ts.
});

describe('rollup modes and edges', () => {
  it('empty source: sets the watermark and writes nothing else', async () => {
    const summary = await runRollup(db.url, { targets: [usageRollup] });
    expect(summary.targets[0]).toMatchObject({ state: 'succeeded', counts: { targetRowsWritten: 0, sourceRowsRead: 0 } });
    expect(await watermark()).toBeInstanceOf(Date);
    expect((await sql.query(`SELECT count(*)::int AS n FROM app.usage_hourly`)).rows[0].n).toBe(0);
  });

  it('a first run over rows that are all in the future starts the watermark at the upper bound, not ahead of the clock', async () => {
    await sql.query(`INSERT INTO app.usage (occurred_at, tenant, units) VALUES (now() + interval '1 day', 'acme', 1)`);
    await runRollup(db.url, { targets: [usageRollup] });
    expect((await watermark()).getTime()).toBeLessThanOrEqual(Date.now());
    const next = await runRollup(db.url, { targets: [usageRollup] });
    expect(next.targets[0]!.state).toBe('succeeded');
  });

  it('day buckets', async () => {
    await sql.query(`CREATE TABLE app.usage_daily (LIKE app.usage_hourly INCLUDING ALL);
      INSERT INTO app.usage (occurred_at, tenant, units) SELECT now() - i * interval '5 hours', 'acme', i FROM generate_series(1, 40) i`);
    const daily = { ...usageRollup, name: 'usage_daily', bucket: 'day' as const, target: 'app.usage_daily' };
    await runRollup(db.url, { targets: [daily] });
    expect(await rollupMismatches(sql, 'usage_daily', 'day', 'app.usage_daily')).toEqual([]);
    const buckets = await sql.query(`SELECT count(*)::int AS n FROM app.usage_daily WHERE bucket <> date_trunc('day', bucket)`);
    expect(buckets.rows[0].n).toBe(0);
  });

  it('custom-function mode runs an existing window function', async () => {
    await sql.query(`
      CREATE FUNCTION app.refresh_usage(window_start timestamptz, window_end timestamptz) RETURNS bigint LANGUAGE plpgsql AS $$
      DECLARE n bigint;
      BEGIN
        DELETE FROM app.usage_hourly WHERE bucket >= window_start AND bucket < window_end;
        INSERT INTO app.usage_hourly (bucket, tenant, events, units, peak)
        SELECT date_trunc('hour', occurred_at), tenant, count(*), sum(units), max(units) FROM app.usage
        WHERE occurred_at >= window_start AND occurred_at < window_end GROUP BY 1, 2;
        GET DIAGNOSTICS n = ROW_COUNT;
        RETURN n;
      END $$;
      INSERT INTO app.usage (occurred_at, tenant, units) SELECT now() - i * interval '13 minutes', 'acme', i FROM generate_series(1, 100) i;`);
    const { spec: _spec, ...base } = usageRollup;
    const summary = await runRollup(db.url, { targets: [{ ...base, function: 'app.refresh_usage' }] });
    expect(summary.targets[0]).toMatchObject({ state: 'succeeded' });
    expect(summary.targets[0]!.counts.targetRowsWritten).toBeGreaterThan(10);
    expect(await rollupMismatches(sql)).toEqual([]);
  });

  it('two concurrent runs: one works, one is skipped, and the result is exact; an explicit lock key serializes with other entry points', async () => {
    await sql.query(
      `INSERT INTO app.usage (occurred_at, tenant, units) SELECT now() - i * interval '3 minutes', 'acme', 1 FROM generate_series(1, 2000) i`,
    );
    const slow = { ...usageRollup, sliceBuckets: 1, pauseMs: 30 };
    const [a, b] = await Promise.all([runRollup(db.url, { targets: [slow] }), runRollup(db.url, { targets: [slow] })]);
    expect([a.targets[0]!.state, b.targets[0]!.state].sort()).toEqual(['skipped', 'succeeded']);
    expect(await rollupMismatches(sql)).toEqual([]);

    const other = await db.connect('legacy-cron');
    await other.query('SELECT pg_advisory_lock(424242)');
    const locked = await runRollup(db.url, { targets: [{ ...usageRollup, lockKey: 424242 }] });
    expect(locked.targets[0]).toMatchObject({ state: 'skipped', detail: 'locked: another run holds this target' });
    await other.query('SELECT pg_advisory_unlock(424242)');
    expect(await tryLockTarget(other, 'rollup', 'usage_hourly')).toBe(true); // the default key is free
    await other.query('SELECT pg_advisory_unlock_all()');
  });

  it('refuses a watermark ahead of the database clock, writing nothing', async () => {
    await sql.query(`INSERT INTO app.usage (occurred_at, tenant, units) VALUES (now() - interval '2 hours', 'acme', 1)`);
    await runRollup(db.url, { targets: [usageRollup] });
    await sql.query(`TRUNCATE app.usage_hourly; UPDATE housekeeping.rollup_state SET watermark = now() + interval '1 day'`);
    const summary = await runRollup(db.url, { targets: [usageRollup] });
    expect(summary.targets[0]!.state).toBe('failed');
    expect(summary.targets[0]!.detail).toMatch(/watermark .* is ahead of the database clock .*refusing to write/);
    expect((await sql.query(`SELECT count(*)::int AS n FROM app.usage_hourly`)).rows[0].n).toBe(0);
  });
});

describe('rollup refuses bad input before writing', () => {
  it.each([
    [
      { spec: { groupBy: ['region'], measures: [{ name: 'events', fn: 'count' }] } },
      /spec\.groupBy\[0\]: column region does not exist in app\.usage/,
    ],
    [
      { spec: { groupBy: ['tenant'], measures: [{ name: 'total', fn: 'count' }] } },
      /spec\.measures\[0\]\.name: column total does not exist in app\.usage_hourly/,
    ],
    [
      { spec: { groupBy: ['tenant'], measures: [{ name: 'events', fn: 'sum', column: 'tenant' }] } },
      /spec\.measures\[0\]: sum\(tenant\) needs a numeric column, but app\.usage\.tenant is text/,
    ],
    [{ target: 'app.missing' }, /target table app\.missing does not exist/],
    [{ timeColumn: 'tenant' }, /timeColumn: app\.usage\.tenant is text; expected timestamptz or timestamp/],
    [{ spec: undefined, function: 'app.nope' }, /function: app\.nope\(window_start timestamptz, window_end timestamptz\) does not exist/],
  ])('%j', async (change, message) => {
    await sql.query(`INSERT INTO app.usage (occurred_at, tenant, units) VALUES (now() - interval '2 hours', 'acme', 1)`);
    const summary = await runRollup(db.url, { targets: [{ ...usageRollup, ...change } as never] });
    expect(summary.targets[0]!.state).toBe('failed');
    expect(summary.targets[0]!.detail).toMatch(message);
    expect((await sql.query(`SELECT count(*)::int AS n FROM app.usage_hourly`)).rows[0].n).toBe(0);
    expect((await sql.query(`SELECT count(*)::int AS n FROM housekeeping.rollup_state`)).rows[0].n).toBe(0);
  });

  it.each([
    [{ spec: { measures: [{ name: 'events', fn: 'median' }] } }, /targets\[0\]\.spec\.measures\[0\]\.fn: Invalid option/],
    [{ spec: { measures: [{ name: 'units', fn: 'sum' }] } }, /targets\[0\]\.spec\.measures\[0\]\.column: is required for sum/],
    [{ source: 'app.usage; drop table app.usage' }, /targets\[0\]\.source: .* must be "table" or "schema\.table"/],
    [{ source: 'usage; drop table x' }, /targets\[0\]\.source: .* is not a plain identifier/],
    [
      { spec: { groupBy: ['tenant"; --'], measures: [{ name: 'events', fn: 'count' }] } },
      /targets\[0\]\.spec\.groupBy\[0\]: .* is not a plain identifier/,
    ],
    [{ function: 'app.refresh' }, /set exactly one of spec .* or function/],
    [{ sliceBuckets: 0 }, /targets\[0\]\.sliceBuckets: Too small/],
  ])('refuses %j', async (change, message) => {
    const run = runRollup(db.url, { targets: [{ ...usageRollup, ...change } as never] });
    await expect(run).rejects.toThrowError(ConfigError);
    await expect(run).rejects.toThrowError(message);
  });
});
