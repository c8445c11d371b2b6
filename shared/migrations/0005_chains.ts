/**
 * Continuations. A run that stops on its time budget with work left invokes its function again;
 * the hops of that chain are one logical run: every ledger row of a Lambda run carries its
 * chain's id and its hop (0 for the scheduled or manual invocation).
 *
 * `chains` holds one row per (job, target) whose work a chain has taken on. `hop` is the hop
 * expected next (or running); it moves by compare-and-set under the target's advisory lock, so a
 * scheduled tick during a live chain neither starts a second chain nor runs the target beside it,
 * and a duplicate delivery of a continuation finds itself superseded. A row not updated for
 * longer than the function's timeout belongs to a dead chain and may be taken over.
 */
export default `
ALTER TABLE housekeeping.job_runs ADD COLUMN chain_id uuid, ADD COLUMN hop integer;

-- The view's * was expanded when it was made; make it again so it shows the new columns.
CREATE OR REPLACE VIEW housekeeping.latest_runs AS
SELECT DISTINCT ON (job, target) *
FROM housekeeping.job_runs
ORDER BY job, target, started_at DESC, recorded_at DESC;

CREATE INDEX job_runs_chain_idx ON housekeeping.job_runs (chain_id) WHERE chain_id IS NOT NULL;

-- One logical run across hops.
CREATE VIEW housekeeping.chain_runs AS
SELECT job, target, chain_id,
       count(*) FILTER (WHERE state <> 'started') AS hops,
       max(hop) AS last_hop,
       min(started_at) AS started_at,
       max(recorded_at) AS last_recorded_at,
       (array_agg(state ORDER BY recorded_at DESC))[1] AS last_state,
       (array_agg(detail ORDER BY recorded_at DESC))[1] AS last_detail
FROM housekeeping.job_runs
WHERE chain_id IS NOT NULL
GROUP BY job, target, chain_id;

CREATE TABLE housekeeping.chains (
  job        text        NOT NULL,
  target     text        NOT NULL,
  chain_id   uuid        NOT NULL,
  hop        integer     NOT NULL CHECK (hop >= 0),
  state      text        NOT NULL CHECK (state IN ('continuing', 'ended')),
  detail     text,
  started_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (job, target)
);
`;
