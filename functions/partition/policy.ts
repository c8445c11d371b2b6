import * as z from 'zod';
import { durationSchema, qualifiedNameSchema, runOptionsShape, timeZoneSchema } from '../../shared/config';
import { MAX_IDENTIFIER_BYTES } from '../../shared/identifiers';

export const PARTITION_INTERVALS = ['hour', 'day', 'week', 'month', 'quarter', 'year'] as const;
export type PartitionInterval = (typeof PARTITION_INTERVALS)[number];

/** Length of the name suffix each interval appends to the parent's name (see naming.ts). */
const SUFFIX_LENGTH: Record<PartitionInterval, number> = {
  hour: '_p2026_11_23_1400'.length,
  day: '_p2026_11_23'.length,
  week: '_p2026w48'.length,
  month: '_p2026_11'.length,
  quarter: '_p2026q4'.length,
  year: '_p2026'.length,
};

const retentionSchema = z
  .strictObject({
    /** Keep the current partition and this many before it; older ones are retired. */
    keep: z.number().int().min(1).optional(),
    /** Retire partitions whose upper bound is at or before now minus this ("90 days", "6 months"). */
    duration: durationSchema.optional(),
    /** drop: gone for good. detach: left as a standalone table for you to archive. */
    mode: z.enum(['drop', 'detach']).default('drop'),
  })
  .superRefine((value, ctx) => {
    if ((value.keep === undefined) === (value.duration === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'set exactly one of keep (a number of intervals) or duration (e.g. "90 days")' });
    }
  });

export const partitionTargetSchema = z
  .strictObject({
    /** The RANGE-partitioned parent, "table" or "schema.table". */
    table: qualifiedNameSchema,
    interval: z.enum(PARTITION_INTERVALS),
    /** Partitions to keep ready beyond the current one. */
    premake: z.number().int().min(1).max(500).default(4),
    retention: retentionSchema.optional(),
    /** Boundaries are local midnights/month starts in this IANA zone. */
    timeZone: timeZoneSchema.default('UTC'),
  })
  .superRefine((value, ctx) => {
    const table = value.table.split('.').pop() ?? '';
    const longest = Buffer.byteLength(table, 'utf8') + (SUFFIX_LENGTH[value.interval] ?? 0);
    if (longest > MAX_IDENTIFIER_BYTES) {
      ctx.addIssue({
        code: 'custom',
        path: ['table'],
        message: `partition names for ${JSON.stringify(table)} would be ${longest} bytes (interval ${value.interval}); Postgres truncates names over ${MAX_IDENTIFIER_BYTES} bytes`,
      });
    }
  });

/** More sessions than this would crowd a small database's connection limit for little gain. */
const MAX_CONCURRENCY = 16;
const CONCURRENCY_MESSAGE = `concurrency is how many sessions work targets at once: a whole number from 1 to ${MAX_CONCURRENCY}`;

export const partitionEventSchema = z.strictObject({
  targets: z.array(partitionTargetSchema).min(1),
  ...runOptionsShape,
  /** Also keep housekeeping.job_runs partitioned by month (on by default). */
  maintainLedger: z.boolean().default(true),
  /** Months of run history to keep in housekeeping.job_runs. */
  ledgerRetentionMonths: z.number().int().min(1).max(120).default(13),
  /**
   * Sessions that work different targets at once (each target still under its own advisory lock,
   * its steps in order). 1 works them one after the other.
   */
  concurrency: z.number().int(CONCURRENCY_MESSAGE).min(1, CONCURRENCY_MESSAGE).max(MAX_CONCURRENCY, CONCURRENCY_MESSAGE).default(4),
});

export type PartitionTargetPolicy = z.output<typeof partitionTargetSchema>;
export type PartitionTargetInput = z.input<typeof partitionTargetSchema>;
export type PartitionEvent = z.output<typeof partitionEventSchema>;
export type PartitionEventInput = z.input<typeof partitionEventSchema>;
