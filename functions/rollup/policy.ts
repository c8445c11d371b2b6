import * as z from 'zod';
import { identifierSchema, qualifiedNameSchema, runOptionsShape } from '../../shared/config';

const MEASURE_FUNCTIONS = ['count', 'sum', 'min', 'max'] as const;

const measureSchema = z
  .strictObject({
    /** Target column the value is written to. */
    name: identifierSchema,
    fn: z.enum(MEASURE_FUNCTIONS),
    /** Source column aggregated; omitted for count (count of rows). */
    column: identifierSchema.optional(),
  })
  .superRefine((value, ctx) => {
    if (value.fn !== 'count' && !value.column) ctx.addIssue({ code: 'custom', path: ['column'], message: `is required for ${value.fn}` });
  });

const rollupSpecSchema = z.strictObject({
  groupBy: z.array(identifierSchema).default([]),
  measures: z.array(measureSchema).min(1),
  /** Target column holding the bucket start. */
  bucketColumn: identifierSchema.default('bucket'),
});

export const rollupTargetSchema = z
  .strictObject({
    /** Names the rollup's state row and lock. */
    name: identifierSchema,
    source: qualifiedNameSchema,
    /** Event-time column of the source (timestamptz or timestamp, read as UTC). */
    timeColumn: identifierSchema,
    /** Set on insert and on every edit (e.g. updated_at): edited or late rows older than the lookback are found by it. */
    changedAtColumn: identifierSchema.optional(),
    /** Buckets are UTC hours or UTC days. */
    bucket: z.enum(['hour', 'day']).default('hour'),
    target: qualifiedNameSchema,
    /** Declarative mode: the job writes the SQL. */
    spec: rollupSpecSchema.optional(),
    /** Or: an existing function (window_start timestamptz, window_end timestamptz) RETURNS bigint that recomputes one window idempotently. */
    function: qualifiedNameSchema.optional(),
    /** Younger data is not final: the upper bound is the bucket floor of now() minus this. */
    settleDelayMinutes: z.number().int().min(0).max(10_080).default(5),
    /** Buckets per backfill slice (one transaction each). */
    sliceBuckets: z.number().int().min(1).max(10_000).default(24),
    /** Recent buckets recomputed on every run, for late rows. */
    lookbackBuckets: z.number().int().min(0).max(1_000).default(2),
    pauseMs: z.number().int().min(0).max(60_000).default(0),
    /** Serialize with other entry points that already take this advisory lock key. */
    lockKey: z.number().int().min(Number.MIN_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER).optional(),
  })
  .superRefine((value, ctx) => {
    if ((value.spec === undefined) === (value.function === undefined)) {
      ctx.addIssue({ code: 'custom', message: 'set exactly one of spec (groupBy and measures) or function (an existing SQL function)' });
    }
  });

export const rollupEventSchema = z.strictObject({
  targets: z.array(rollupTargetSchema).min(1),
  ...runOptionsShape,
});

export type RollupPolicy = z.output<typeof rollupTargetSchema>;
export type RollupEvent = z.output<typeof rollupEventSchema>;
export type RollupEventInput = z.input<typeof rollupEventSchema>;
