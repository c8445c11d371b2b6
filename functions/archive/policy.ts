import * as z from 'zod';
import { durationSchema, identifierSchema, qualifiedNameSchema, runOptionsShape, timeZoneSchema } from '../../shared/config';

/** Bucket names as S3 allows them today (3-63 lowercase letters, digits, dots, hyphens). */
const BUCKET = /^(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
/** Path segments of letters, digits and `!-_.*'()=`: keys every S3 tool, Athena and DuckDB read as written. */
const PREFIX = /^[A-Za-z0-9!_.*'()=-]+(\/[A-Za-z0-9!_.*'()=-]+)*$/;

/**
 * An S3 destination: rows leave Postgres as Parquet objects under
 * `<prefix>/table=<schema.table>/dt=<date>/part-<first key>-<last key>.parquet` (README, "Archive to S3").
 */
export const s3DestinationSchema = z.strictObject({
  bucket: z.string().regex(BUCKET, 'is not an S3 bucket name (3-63 lowercase letters, digits, dots and hyphens)'),
  /** Objects go under this prefix (no leading or trailing slash). */
  prefix: z
    .string()
    .regex(PREFIX, "must be path segments of letters, digits and !-_.*'()= separated by single slashes, without a leading or trailing slash")
    .refine((value) => !value.split('/').some((part) => part.startsWith('_') || part === '.' || part === '..'), {
      message: "no segment may start with _ (readers skip such paths; _pending is the job's own) or be . or ..",
    }),
  format: z.literal('parquet').default('parquet'),
  /**
   * gzip (the default) is zlib's native deflate at level 1: faster to write than the JavaScript
   * snappy here, and about half its size on typical rows, which is also what Athena scans and bills.
   */
  compression: z.enum(['snappy', 'gzip', 'none']).default('gzip'),
  /** Rows per batch: each batch writes one object per day it spans, then deletes its rows in one transaction. */
  rowsPerObject: z.number().int().min(1).max(1_000_000).default(100_000),
  /** Rows fetched, encoded and buffered at a time (one Parquet row group): what bounds a run's memory besides the object. */
  rowGroupRows: z.number().int().min(100).max(100_000).default(10_000),
  /** SSE-KMS: objects are encrypted with this key (id or ARN); without it the bucket's default encryption applies. */
  kmsKeyId: z.string().min(1).max(2048).optional(),
});

export type S3Destination = z.output<typeof s3DestinationSchema>;

export const archiveTargetSchema = z
  .strictObject({
    /** The hot table rows leave. */
    source: qualifiedNameSchema,
    /**
     * The archive table (same columns), or `{ s3: {...} }` for Parquet objects on S3. Required in
     * move mode, refused in purge mode.
     */
    destination: z.union([qualifiedNameSchema, z.strictObject({ s3: s3DestinationSchema })]).optional(),
    /** move: copy to destination then delete; purge: delete without copying. */
    mode: z.enum(['move', 'purge']).default('move'),
    /**
     * Unique key: one column, or several for a source unique only on a combination (a partitioned
     * table's key must include its partition column). Batches are picked in key order and located
     * by it; the source must be provably unique on these columns (or a subset of them).
     */
    key: z.union([identifierSchema, z.array(identifierSchema).min(1).max(8)]).default('id'),
    /** Timestamp column that says how old a row is. */
    ageColumn: identifierSchema,
    /** Used when ageColumn is NULL: age = COALESCE(ageColumn, ageFallbackColumn). */
    ageFallbackColumn: identifierSchema.optional(),
    /** Rows older than this are archived: "13 months", "90 days", "48 hours". */
    retention: durationSchema,
    /** Zone for calendar arithmetic on the database clock (month ends, DST). */
    timeZone: timeZoneSchema.default('UTC'),
    batchSize: z.number().int().min(1).max(100_000).default(5_000),
    /** Pause between batches, to leave I/O and replication room. */
    pauseMs: z.number().int().min(0).max(60_000).default(0),
    /** Stop after this many rows in one run (the next run continues). */
    maxRowsPerRun: z.number().int().min(1).optional(),
    /**
     * Let the run delete source rows that other tables' foreign keys reference, firing their ON
     * DELETE actions (CASCADE deletes child rows, SET NULL blanks them, RESTRICT/NO ACTION fails the
     * batch). Off by default: the run refuses, naming each foreign key.
     */
    allowReferencingForeignKeys: z.boolean().default(false),
    /**
     * Let user triggers fire: DELETE triggers on the source and INSERT triggers on the destination
     * (an audit trigger then writes its rows; a trigger that changes or drops the archived row
     * fails the batch). Off by default: the run refuses, naming each trigger.
     */
    allowTriggers: z.boolean().default(false),
  })
  .superRefine((value, ctx) => {
    if (value.mode === 'move' && !value.destination) {
      ctx.addIssue({ code: 'custom', path: ['destination'], message: 'is required in move mode (or set mode: "purge" to delete without copying)' });
    }
    if (value.mode === 'purge' && value.destination) {
      ctx.addIssue({ code: 'custom', path: ['destination'], message: 'must not be set in purge mode: purge deletes without copying' });
    }
    const qualify = (name: string) => (name.includes('.') ? name : `public.${name}`);
    if (typeof value.destination === 'string' && qualify(value.destination) === qualify(value.source)) {
      ctx.addIssue({ code: 'custom', path: ['destination'], message: 'must differ from source' });
    }
    const key = keyColumns(value);
    if (new Set(key).size !== key.length) {
      ctx.addIssue({ code: 'custom', path: ['key'], message: `names a column twice: ${key.join(', ')}` });
    }
    if (value.ageFallbackColumn && value.ageFallbackColumn === value.ageColumn) {
      ctx.addIssue({ code: 'custom', path: ['ageFallbackColumn'], message: 'must differ from ageColumn' });
    }
  });

/** The archive table's name, or undefined for purge mode and S3 destinations. */
export function destinationTable(policy: { destination?: string | { s3: S3Destination } }): string | undefined {
  return typeof policy.destination === 'string' ? policy.destination : undefined;
}

/** The S3 destination, or undefined for a table destination and purge mode. */
export function s3Destination(policy: { destination?: string | { s3: S3Destination } }): S3Destination | undefined {
  return typeof policy.destination === 'object' ? policy.destination.s3 : undefined;
}

/** The key as a list of columns, whichever way the policy spelled it. */
export function keyColumns(policy: { key: string | string[] }): string[] {
  return typeof policy.key === 'string' ? [policy.key] : policy.key;
}

export const archiveEventSchema = z.strictObject({
  targets: z.array(archiveTargetSchema).min(1),
  ...runOptionsShape,
  /** A progress log line every this many batches. */
  progressEveryBatches: z.number().int().min(1).max(10_000).default(10),
});

export type ArchiveTargetPolicy = z.output<typeof archiveTargetSchema>;
export type ArchiveTargetInput = z.input<typeof archiveTargetSchema>;
export type ArchiveEvent = z.output<typeof archiveEventSchema>;
export type ArchiveEventInput = z.input<typeof archiveEventSchema>;
