/**
 * Retirements in flight. Dropping a partition without a DEFAULT is two statements that cannot
 * share a transaction (DETACH ... CONCURRENTLY, then DROP): a run that dies between them leaves a
 * standalone table no later run would see, because the catalog lists attached partitions only.
 * The partition job records the retirement before the detach starts and deletes the row with the
 * drop (or once the detach is done, in detach mode); each run first finishes its parent's rows.
 * `partition_oid` pins the table: a different table that later takes the name is never dropped.
 */
export default `
CREATE TABLE housekeeping.partition_retirements (
  parent           text        NOT NULL,
  partition_schema text        NOT NULL,
  partition_name   text        NOT NULL,
  partition_oid    oid         NOT NULL,
  mode             text        NOT NULL CHECK (mode IN ('drop', 'detach')),
  recorded_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (parent, partition_oid)
);
`;
