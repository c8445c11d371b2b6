import * as z from 'zod';
import { durationSchema, identifierSchema, qualifiedNameSchema, runOptionsShape, timeZoneSchema } from '../../shared/config';

export const archiveTargetSchema = z
  .strictObject({
    /** The hot table rows leave. */
    source: qualifiedNameSchema,
    /** The archive table (same columns). Required in move mode, refused in purge mode. */
    destination: qualifiedNameSchema.optional(),
    /** move: copy to destination then delete; purge: delete without copying. */
    mode: z.enum(['move', 'purge']).default('move'),
    /** Unique key column: batches are picked and deleted by it. */
    key: identifierSchema.default('id'),
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
  })
  .superRefine((value, ctx) => {
    if (value.mode === 'move' && !value.destination) {
      ctx.addIssue({ code: 'custom', path: ['destination'], message: 'is required in move mode (or set mode: "purge" to delete without copying)' });
    }
    if (value.mode === 'purge' && value.destination) {
      ctx.addIssue({ code: 'custom', path: ['destination'], message: 'must not be set in purge mode: purge deletes without copying' });
    }
    const qualify = (name: string) => (name.includes('.') ? name : `public.${name}`);
    if (value.destination && qualify(value.destination) === qualify(value.source)) {
      ctx.addIssue({ code: 'custom', path: ['destination'], message: 'must differ from source' });
    }
    if (value.ageFallbackColumn && value.ageFallbackColumn === value.ageColumn) {
      ctx.addIssue({ code: 'custom', path: ['ageFallbackColumn'], message: 'must differ from ageColumn' });
    }
  });

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
