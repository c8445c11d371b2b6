/**
 * Hot overrides: an operator changes a policy value without a deploy. `target` is the target's
 * name (e.g. public.events) or '*' for every target of the job; `key` is a dotted policy path
 * (e.g. premake, retention.keep).
 */
export default `
CREATE TABLE housekeeping.settings (
  job        text        NOT NULL,
  target     text        NOT NULL DEFAULT '*',
  key        text        NOT NULL,
  value      jsonb       NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now(),
  updated_by text        NOT NULL DEFAULT current_user,
  PRIMARY KEY (job, target, key)
);
`;
