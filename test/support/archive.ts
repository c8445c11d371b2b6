import type { ArchiveEventInput } from '../../functions/archive/policy';
import type { JobSummary } from '../../shared/run-job';
import { runLocally } from '../../scripts/run-local';
import { quietLogger, type TestRunOptions } from './jobs';

export function runArchive(url: string, event: ArchiveEventInput, options: TestRunOptions = {}): Promise<JobSummary> {
  return runLocally('archive', event, url, { logger: options.logger ?? quietLogger(), budget: options.budget });
}

/** app.orders (hot) and app.orders_archive with the same columns; `expired` rows older than 100 days. */
export const ORDERS_DDL = `
  DROP SCHEMA IF EXISTS app CASCADE; CREATE SCHEMA app;
  CREATE TABLE app.orders (
    id bigint PRIMARY KEY,
    created_at timestamptz NOT NULL,
    completed_at timestamptz,
    status text NOT NULL DEFAULT 'new',
    amount numeric(12, 2) NOT NULL DEFAULT 0
  );
  CREATE INDEX ON app.orders (created_at);
  CREATE INDEX ON app.orders (completed_at);
  CREATE TABLE app.orders_archive (LIKE app.orders INCLUDING DEFAULTS);
  ALTER TABLE app.orders_archive ADD PRIMARY KEY (id);
`;

/** Rows 1..expired are 100+ days old (completed), then `fresh` recent rows. */
export function seedOrders(expired: number, fresh: number): string {
  return `
    INSERT INTO app.orders (id, created_at, completed_at, status, amount)
    SELECT i, now() - interval '200 days' + i * interval '1 second', now() - interval '150 days', 'done', i % 1000
    FROM generate_series(1, ${expired}) AS i;
    INSERT INTO app.orders (id, created_at, completed_at, status, amount)
    SELECT i, now() - interval '1 day', NULL, 'new', 1 FROM generate_series(${expired + 1}, ${expired + fresh}) AS i;
    ANALYZE app.orders;`;
}
