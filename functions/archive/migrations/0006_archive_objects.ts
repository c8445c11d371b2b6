/**
 * The manifest of archive objects on S3. A row is inserted in the same transaction that deletes
 * the object's rows from the source (state `committed`): from then on the object's pending copy
 * (`pending_key`) must exist until it is published under `object_key` (state `published`). A run
 * that dies in between leaves a `committed` row, which the next run of the target publishes
 * before its first batch. Pending objects with no `committed` row are garbage (their rows are
 * still in the source) and are deleted. `(bucket, object_key)` is unique: no published object is
 * ever overwritten by another batch's rows.
 *
 * `archive_restores` records each object restored into a table (restore is idempotent: a second
 * restore of the same object into the same table inserts nothing and records nothing new).
 */
export default `
CREATE TABLE housekeeping.archive_objects (
  id            bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  source        text        NOT NULL,
  bucket        text        NOT NULL,
  object_key    text        NOT NULL,
  pending_key   text        NOT NULL,
  dt            date        NOT NULL,
  state         text        NOT NULL CHECK (state IN ('committed', 'published')),
  run_id        text        NOT NULL,
  key_columns   text[]      NOT NULL,
  first_key     text[]      NOT NULL,
  last_key      text[]      NOT NULL,
  row_count     bigint      NOT NULL CHECK (row_count > 0),
  checksum      text        NOT NULL,
  size_bytes    bigint      NOT NULL,
  columns       jsonb       NOT NULL,
  committed_at  timestamptz NOT NULL DEFAULT now(),
  published_at  timestamptz,
  UNIQUE (bucket, object_key)
);
CREATE INDEX archive_objects_pending_idx ON housekeeping.archive_objects (source, bucket) WHERE state = 'committed';
CREATE INDEX archive_objects_dt_idx ON housekeeping.archive_objects (source, dt);

CREATE TABLE housekeeping.archive_restores (
  object_id     bigint      NOT NULL REFERENCES housekeeping.archive_objects (id),
  into_table    text        NOT NULL,
  rows_inserted bigint      NOT NULL,
  rows_present  bigint      NOT NULL,
  restored_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (object_id, into_table)
);
`;
