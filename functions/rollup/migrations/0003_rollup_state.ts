/**
 * One row per rollup. `watermark`: every bucket below it is final and exact; it moves in the same
 * transaction as the slice it covers. `changes_seen_until`: rows whose changed-at column is at or
 * after it have not yet been looked at.
 */
export default `
CREATE TABLE housekeeping.rollup_state (
  name               text PRIMARY KEY,
  watermark          timestamptz NOT NULL,
  changes_seen_until timestamptz,
  updated_at         timestamptz NOT NULL DEFAULT now()
);
`;
