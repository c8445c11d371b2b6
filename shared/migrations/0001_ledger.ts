/**
 * The run ledger. Append-only: one row per state change of a run. Range-partitioned by month on
 * recorded_at; the DEFAULT partition means a write never fails even before the partition job
 * has created this month's partition (it then rescues those rows into the right month).
 */
export default `
CREATE TABLE housekeeping.job_runs (
  run_id      uuid        NOT NULL,
  job         text        NOT NULL,
  target      text        NOT NULL,
  state       text        NOT NULL CHECK (state IN ('started', 'succeeded', 'failed', 'skipped')),
  started_at  timestamptz NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  duration_ms bigint,
  counts      jsonb       NOT NULL DEFAULT '{}'::jsonb,
  policy      jsonb,
  detail      text,
  dry_run     boolean     NOT NULL DEFAULT false
) PARTITION BY RANGE (recorded_at);

CREATE TABLE housekeeping.job_runs_default PARTITION OF housekeeping.job_runs DEFAULT;

CREATE INDEX job_runs_latest_idx ON housekeeping.job_runs (job, target, started_at DESC, recorded_at DESC);

CREATE VIEW housekeeping.latest_runs AS
SELECT DISTINCT ON (job, target) *
FROM housekeeping.job_runs
ORDER BY job, target, started_at DESC, recorded_at DESC;
`;
