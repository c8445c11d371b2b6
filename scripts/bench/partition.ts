import { sleep } from '../../shared/postgres';
import { runLocally } from '../run-local';
import { connect, fmt, latencyProbe, silentLogger } from './util';

const TABLES = 200;
const EXISTING_DAYS = 31; // today and the 30 days before it
const KEEP = 7; // → 23 expired partitions per table, as in the field notes' pg_partman measurement

async function seed(url: string) {
  const sql = await connect(url);
  await sql.query(`DROP SCHEMA IF EXISTS bench CASCADE; DROP SCHEMA IF EXISTS housekeeping CASCADE; CREATE SCHEMA bench`);
  await sql.query(`
    DO $$
    DECLARE t int; d int; day date;
    BEGIN
      FOR t IN 1..${TABLES} LOOP
        EXECUTE format('CREATE TABLE bench.t%s (id bigserial, created_at timestamptz NOT NULL, payload text) PARTITION BY RANGE (created_at)', t);
        EXECUTE format('CREATE INDEX ON bench.t%s (created_at)', t);
        FOR d IN 0..${EXISTING_DAYS - 1} LOOP
          day := current_date - d;
          EXECUTE format('CREATE TABLE bench.t%s_p%s PARTITION OF bench.t%s FOR VALUES FROM (%L) TO (%L)',
                         t, to_char(day, 'YYYY_MM_DD'), t, day::timestamptz, (day + 1)::timestamptz);
        END LOOP;
      END LOOP;
    END $$`);
  await sql.end();
}

async function maintain(url: string) {
  const event = {
    targets: Array.from({ length: TABLES }, (_, i) => ({ table: `bench.t${i + 1}`, interval: 'day', premake: 7, retention: { keep: KEEP } })),
    maintainLedger: false,
  };
  const started = performance.now();
  const summary = await runLocally('partition', event, url, { logger: silentLogger() });
  const ms = performance.now() - started;
  if (summary.failed.length > 0) throw new Error(`bench run failed: ${summary.targets.find((t) => t.state === 'failed')?.detail}`);
  const total = (key: string) => summary.targets.reduce((sum, t) => sum + (t.counts[key] ?? 0), 0);
  return { ms, created: total('created'), dropped: total('dropped') };
}

/** Writes rows for today into random tables: what a production writer does while maintenance runs. */
function startWriter(url: string) {
  return connect(url, 'bench-writer').then((writer) => {
    let n = 0;
    const probe = latencyProbe(() => writer.query(`INSERT INTO bench.t${(n++ % TABLES) + 1} (created_at, payload) VALUES (now(), repeat('x', 200))`));
    return {
      async stop() {
        const result = await probe.stop();
        await writer.end();
        return result;
      },
    };
  });
}

export async function benchPartition(url: string): Promise<string[]> {
  await seed(url);
  const idle = await startWriter(url);
  await sleep(3_000);
  const baseline = await idle.stop();

  const busy = await startWriter(url);
  const full = await maintain(url);
  const during = await busy.stop();
  const noop = await maintain(url);

  return [
    `partition: ${TABLES} daily tables, premake 7, keep ${KEEP}: created ${full.created}, dropped ${full.dropped}`,
    `  full maintenance          ${fmt(full.ms / 1000, 2)} s total, ${fmt(full.ms / TABLES, 1)} ms per table`,
    `  no-op rerun               ${fmt(noop.ms / 1000, 2)} s total, ${fmt(noop.ms / TABLES, 1)} ms per table  (ratio to full run: ${fmt(noop.ms / full.ms, 2)})`,
    `  writer worst INSERT       idle ${fmt(baseline.worst)} ms (p99 ${fmt(baseline.p99)}, n=${baseline.count}); during maintenance ${fmt(during.worst)} ms (p99 ${fmt(during.p99)}, n=${during.count})`,
    `  ratio worst during / idle ${fmt(during.worst / baseline.worst, 2)}x   (p99 ratio ${fmt(during.p99 / baseline.p99, 2)}x)`,
  ];
}
