import type pg from 'pg';

/**
 * Demo tables, placed relative to the database clock so the demo always has work to do:
 * - demo.events (daily, timestamptz): partitions from 20 to 10 days ago, none for today or
 *   later, and rows for tomorrow stuck in its DEFAULT partition;
 * - demo.invoices (monthly, date): partitions from 18 to 4 months ago;
 * - demo.orders / demo.orders_archive for the archive job, demo.page_views for its S3 destination;
 *   demo.events_hourly for the rollup.
 * Used by `npm start` and, in the CDK sandbox (-c demo=true), by a one-off seed function.
 */
const DEMO_SQL = `
      DROP SCHEMA IF EXISTS demo CASCADE;
      CREATE SCHEMA demo;
      CREATE TABLE demo.events (
        id          bigserial,
        occurred_at timestamptz NOT NULL,
        kind        text NOT NULL,
        payload     jsonb NOT NULL DEFAULT '{}'
      ) PARTITION BY RANGE (occurred_at);
      CREATE INDEX ON demo.events (occurred_at);
      CREATE TABLE demo.events_default PARTITION OF demo.events DEFAULT;
      CREATE TABLE demo.invoices (
        id        bigserial,
        issued_on date NOT NULL,
        amount    numeric(12, 2) NOT NULL
      ) PARTITION BY RANGE (issued_on);

      DO $$
      DECLARE
        day date;
        month date;
      BEGIN
        FOR day IN SELECT generate_series(current_date - 20, current_date - 10, interval '1 day')::date LOOP
          EXECUTE format('CREATE TABLE demo.%I PARTITION OF demo.events FOR VALUES FROM (%L) TO (%L)',
                         'events_p' || to_char(day, 'YYYY_MM_DD'), day::timestamptz, (day + 1)::timestamptz);
        END LOOP;
        FOR month IN SELECT generate_series(date_trunc('month', current_date) - interval '18 months',
                                            date_trunc('month', current_date) - interval '4 months', interval '1 month')::date LOOP
          EXECUTE format('CREATE TABLE demo.%I PARTITION OF demo.invoices FOR VALUES FROM (%L) TO (%L)',
                         'invoices_p' || to_char(month, 'YYYY_MM'), month, (month + interval '1 month')::date);
        END LOOP;
      END $$;

      INSERT INTO demo.events (occurred_at, kind)
      SELECT current_date - 10 + (i * 7 || ' minutes')::interval, 'page_view' FROM generate_series(1, 500) AS i;
      -- Tomorrow has no partition yet: these rows land in DEFAULT and the job must rescue them.
      INSERT INTO demo.events (occurred_at, kind)
      SELECT current_date + 1 + (i || ' minutes')::interval, 'signup' FROM generate_series(1, 40) AS i;
      INSERT INTO demo.invoices (issued_on, amount)
      SELECT current_date - (i * 10), i FROM generate_series(20, 50) AS i;

      -- archive demo: orders older than 90 days move to demo.orders_archive
      CREATE TABLE demo.orders (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, completed_at timestamptz, amount numeric(12, 2) NOT NULL);
      CREATE INDEX ON demo.orders (completed_at);
      CREATE INDEX ON demo.orders (created_at);
      CREATE TABLE demo.orders_archive (LIKE demo.orders);
      ALTER TABLE demo.orders_archive ADD PRIMARY KEY (id);
      INSERT INTO demo.orders SELECT i, now() - i * interval '3 hours', CASE WHEN i % 4 <> 0 THEN now() - i * interval '3 hours' + interval '1 hour' END, i % 500
      FROM generate_series(1, 2000) AS i;

      -- archive to S3 demo (the sandbox): page views older than 30 days leave as Parquet objects
      CREATE TABLE demo.page_views (id bigint PRIMARY KEY, viewed_at timestamptz NOT NULL, path text NOT NULL, duration_ms integer);
      CREATE INDEX ON demo.page_views (viewed_at);
      INSERT INTO demo.page_views SELECT i, now() - i * interval '1 hour', '/page/' || (i % 40), CASE WHEN i % 9 <> 0 THEN i % 3000 END
      FROM generate_series(1, 2880) AS i;

      -- rollup demo: demo.events folded into hourly counts per kind
      CREATE TABLE demo.events_hourly (bucket timestamptz NOT NULL, kind text NOT NULL, events bigint NOT NULL, PRIMARY KEY (bucket, kind));

`;

/** The seed's session: dropping the old demo schema may wait for locks. The Lambda and `npm start` both open it so. */
export const DEMO_SEED_SESSION = { job: 'demo-seed', lockTimeoutMs: 10_000, statementTimeoutMs: 120_000 } as const;

export async function seedDemo(client: pg.ClientBase): Promise<void> {
  await client.query(DEMO_SQL);
}
