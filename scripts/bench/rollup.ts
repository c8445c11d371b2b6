import type pg from 'pg';
import { runLocally } from '../run-local';
import { connect, fmt, percentile, silentLogger } from './util';

const ROWS = 5_000_000;
const DAYS = 90;
const INCREMENTAL_RUNS = 7;

function policy(name: string, source: string, target: string) {
  return {
    name,
    source,
    timeColumn: 'occurred_at',
    changedAtColumn: 'updated_at',
    target,
    settleDelayMinutes: 0,
    spec: {
      groupBy: ['tenant_id', 'kind'],
      measures: [
        { name: 'events', fn: 'count' as const },
        { name: 'units', fn: 'sum' as const, column: 'units' },
        { name: 'peak', fn: 'max' as const, column: 'units' },
      ],
    },
  };
}

async function createSource(sql: pg.Client, table: string, rows: number, days: number) {
  await sql.query(`CREATE TABLE bench.${table} (id bigserial PRIMARY KEY, occurred_at timestamptz NOT NULL, updated_at timestamptz NOT NULL,
      tenant_id int NOT NULL, kind text NOT NULL, units numeric NOT NULL);
    INSERT INTO bench.${table} (occurred_at, updated_at, tenant_id, kind, units)
    SELECT t, t, i % 200, (ARRAY['api','web','batch','cron'])[1 + i % 4], (i % 97)::numeric
    FROM generate_series(1, ${rows}) AS i,
         LATERAL (SELECT date_trunc('hour', now()) - interval '${days} days' + (i::float8 / ${rows}) * interval '${days} days' AS t) AS x;
    CREATE INDEX ON bench.${table} (occurred_at);
    CREATE INDEX ON bench.${table} (updated_at);`);
  await sql.query(`VACUUM ANALYZE bench.${table}`);
}

async function createTarget(sql: pg.Client, table: string) {
  await sql.query(`DROP TABLE IF EXISTS bench.${table};
    CREATE TABLE bench.${table} (bucket timestamptz NOT NULL, tenant_id int NOT NULL, kind text NOT NULL, events bigint NOT NULL, units numeric NOT NULL, peak numeric,
      PRIMARY KEY (bucket, tenant_id, kind));`);
}

async function runOnce(url: string, target: ReturnType<typeof policy>) {
  const started = performance.now();
  const summary = await runLocally('rollup', { targets: [target], statementTimeoutMs: 600_000 }, url, { logger: silentLogger() });
  if (summary.failed.length) throw new Error(summary.targets[0]!.detail);
  return { ms: performance.now() - started, counts: summary.targets[0]!.counts };
}

/** A run that finds one new hour to add: the watermark is put back one hour before each run. */
async function incremental(sql: pg.Client, url: string, name: string, target: ReturnType<typeof policy>) {
  const times: number[] = [];
  for (let i = 0; i < INCREMENTAL_RUNS; i++) {
    await sql.query(`UPDATE housekeeping.rollup_state SET watermark = watermark - interval '1 hour' WHERE name = $1`, [name]);
    times.push((await runOnce(url, target)).ms);
  }
  return percentile(times, 50);
}

export async function benchRollup(url: string): Promise<string[]> {
  const sql = await connect(url);
  try {
    await sql.query(`DROP SCHEMA IF EXISTS bench CASCADE; DROP SCHEMA IF EXISTS housekeeping CASCADE; CREATE SCHEMA bench`);
    await createSource(sql, 'events', ROWS, DAYS);
    const upper = `date_trunc('hour', now())`;

    // (b-upper) one INSERT ... SELECT ... GROUP BY over the whole range
    await createTarget(sql, 'hourly_once');
    await sql.query('CHECKPOINT');
    const started = performance.now();
    await sql.query(`INSERT INTO bench.hourly_once SELECT date_trunc('hour', occurred_at), tenant_id, kind, count(*), sum(units), max(units)
      FROM bench.events WHERE occurred_at < ${upper} GROUP BY 1, 2, 3`);
    const onceMs = performance.now() - started;

    // (a) our backfill, default slice of 24 hourly buckets, one transaction each
    await createTarget(sql, 'hourly');
    await sql.query('CHECKPOINT');
    const backfill = await runOnce(url, policy('bench_90d', 'bench.events', 'bench.hourly'));
    const same = await sql.query(`SELECT count(*)::int AS n FROM (
      (SELECT * FROM bench.hourly EXCEPT SELECT * FROM bench.hourly_once) UNION ALL (SELECT * FROM bench.hourly_once EXCEPT SELECT * FROM bench.hourly)) d`);
    if (same.rows[0].n !== 0) throw new Error('backfill result differs from the single GROUP BY');

    // (b) incremental cost with 1 day versus 90 days of history already rolled up
    await createSource(sql, 'events_1d', Math.round(ROWS / DAYS), 1);
    await createTarget(sql, 'hourly_1d');
    await runOnce(url, policy('bench_1d', 'bench.events_1d', 'bench.hourly_1d'));
    const oneDay = await incremental(sql, url, 'bench_1d', policy('bench_1d', 'bench.events_1d', 'bench.hourly_1d'));
    const ninetyDays = await incremental(sql, url, 'bench_90d', policy('bench_90d', 'bench.events', 'bench.hourly'));

    const rate = (ms: number) => ROWS / (ms / 1000);
    return [
      `rollup: ${ROWS.toLocaleString()} source rows over ${DAYS} days into hourly buckets by 2 columns (800 groups), 3 measures`,
      `  (a) backfill, slices of 24 buckets     ${fmt(rate(backfill.ms), 0).padStart(9)} rows/s  (${backfill.counts.slices} slices, ${fmt(backfill.ms / 1000, 1)} s)`,
      `      one INSERT ... SELECT ... GROUP BY  ${fmt(rate(onceMs), 0).padStart(9)} rows/s  (one transaction, ${fmt(onceMs / 1000, 1)} s)`,
      `      ratio backfill / single statement ${fmt(onceMs / backfill.ms, 2)}   (target ≥ 0.8)`,
      `  (b) run adding one new hour (median of ${INCREMENTAL_RUNS}): 1 day of history ${fmt(oneDay, 1)} ms, 90 days ${fmt(ninetyDays, 1)} ms`,
      `      ratio 90 days / 1 day ${fmt(ninetyDays / oneDay, 2)}   (target ≤ 1.3)`,
    ];
  } finally {
    await sql.query('DROP SCHEMA IF EXISTS bench CASCADE').catch(() => {});
    await sql.end();
  }
}
