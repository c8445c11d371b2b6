/**
 * Which definition an archive object's `checksum` follows, so restore knows what to recompute:
 * `source-fields-sha256` (checksum.ts: sha256 over each row's fields as Postgres's binary COPY
 * sent them), written by every run from this migration on. Rows written before have none: a
 * 32-hex checksum is an md5 over the rows' canonical texts (restore recomputes it), a 64-hex one
 * a sha256 over the PLAIN values an earlier writer encoded (restore cannot; it checks size and
 * row count only).
 */
export default `
ALTER TABLE housekeeping.archive_objects ADD COLUMN checksum_kind text;
`;
