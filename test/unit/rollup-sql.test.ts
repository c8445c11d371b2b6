import { describe, expect, it } from 'vitest';
import type { RollupPolicy } from '../../functions/rollup/policy';
import { renderChangedBuckets, renderFirstEvent, renderRecompute } from '../../functions/rollup/sql';

/** The exact statements the rollup job sends: a change to any of them shows here as a diff. */
const catalog = { source: { schema: 'app', name: 'usage' }, target: { schema: 'app', name: 'usage_hourly' }, changedAtPrecision: 6 };
const policy = {
  name: 'usage_hourly',
  source: 'app.usage',
  target: 'app.usage_hourly',
  timeColumn: 'occurred_at',
  bucket: 'hour',
  spec: {
    groupBy: ['tenant_id'],
    bucketColumn: 'bucket',
    measures: [
      { name: 'events', fn: 'count' },
      { name: 'units', fn: 'sum', column: 'units' },
    ],
  },
  settleDelayMinutes: 5,
  sliceBuckets: 24,
  lookbackBuckets: 2,
  pauseMs: 0,
} satisfies RollupPolicy;
const at = (iso: string) => Date.parse(iso);

describe('rollup statements', () => {
  it('a spec window: delete the window, aggregate it again, insert, count', () => {
    const [remove, insert] = renderRecompute(policy, catalog, at('2026-11-23T10:00:00Z'), at('2026-11-23T12:00:00Z'));
    expect(remove!.text).toBe(`DELETE FROM "app"."usage_hourly" WHERE "bucket" >= $1 AND "bucket" < $2`);
    expect(remove!.values).toEqual(['2026-11-23T10:00:00.000Z', '2026-11-23T12:00:00.000Z']);
    expect(
      insert!.text,
    ).toBe(`WITH agg AS (SELECT date_trunc($1::text, s."occurred_at") AS pghk_bucket, s."tenant_id", count(*) AS "pghk_measure_0", sum(s."units") AS "pghk_measure_1", count(*) AS pghk_rows_read FROM "app"."usage" AS s WHERE s."occurred_at" >= $2 AND s."occurred_at" < $3 GROUP BY 1, s."tenant_id"),
ins AS (INSERT INTO "app"."usage_hourly" ("bucket", "tenant_id", "events", "units") SELECT pghk_bucket, "tenant_id", agg."pghk_measure_0", agg."pghk_measure_1" FROM agg RETURNING 1)
SELECT (SELECT count(*) FROM ins)::bigint AS written, coalesce((SELECT sum(pghk_rows_read) FROM agg), 0)::bigint AS rows_read`);
    expect(insert!.values).toEqual(['hour', '2026-11-23T10:00:00.000Z', '2026-11-23T12:00:00.000Z']);
  });

  it('a function window: one call', () => {
    const statements = renderRecompute(
      { ...policy, spec: undefined, function: 'app.refresh_usage', bucket: 'day' },
      { ...catalog, function: { schema: 'app', name: 'refresh_usage' } },
      at('2026-11-23T00:00:00Z'),
      at('2026-11-24T00:00:00Z'),
    );
    expect(statements.map((s) => s.text)).toEqual([`SELECT "app"."refresh_usage"($1::timestamptz, $2::timestamptz)::bigint AS written`]);
    expect(statements[0]!.values).toEqual(['2026-11-23T00:00:00.000Z', '2026-11-24T00:00:00.000Z']);
  });

  it('refuses a window off the bucket grid before writing anything', () => {
    expect(() => renderRecompute(policy, catalog, at('2026-11-23T10:30:00Z'), at('2026-11-23T12:00:00Z'))).toThrow(/not on hour boundaries/);
  });

  it('the changed buckets below the lookback, and the first event', () => {
    const changed = renderChangedBuckets(
      { ...policy, changedAtColumn: 'updated_at' },
      catalog,
      '2026-11-23 09:15:00.123456+00',
      at('2026-11-23T08:00:00Z'),
    );
    expect(changed.text).toBe(
      `SELECT DISTINCT date_trunc($1::text, "occurred_at") AS bucket FROM "app"."usage" WHERE "updated_at" >= $2 AND "occurred_at" < $3`,
    );
    expect(changed.values).toEqual(['hour', '2026-11-23 09:15:00.123456+00', '2026-11-23T08:00:00.000Z']);
    expect(renderFirstEvent(policy, catalog).text).toBe(
      `SELECT min("occurred_at") FILTER (WHERE isfinite("occurred_at")) AS first FROM "app"."usage"`,
    );
  });
});
