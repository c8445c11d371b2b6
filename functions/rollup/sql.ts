import { ident, join, param, qualified, raw, type Sql, sql } from '../../shared/sql';
import { instant, isBucketStart } from './buckets';
import type { RollupCatalog } from './catalog';
import type { RollupPolicy } from './policy';

/**
 * Pure: the SQL of a rollup. Windows and times are bound as ISO-8601 UTC text, so no value
 * depends on the driver's Date handling or the process's zone.
 */

/** What the last statement of a recompute returns: rows written, and source rows read (spec mode). */
export interface RecomputeRow {
  written: string | null;
  rows_read?: string;
}

/**
 * The statements that recompute [from, to) inside the caller's transaction: the window's target
 * rows are replaced, never added to. The last one returns a RecomputeRow. A window off the
 * bucket grid is refused: it would delete part of a bucket and write a partial one beside it.
 */
export function renderRecompute(policy: RollupPolicy, catalog: RollupCatalog, from: number, to: number): Sql[] {
  if (!isBucketStart(from, policy.bucket) || !isBucketStart(to, policy.bucket)) {
    throw new Error(`internal: window [${instant(from)}, ${instant(to)}) is not on ${policy.bucket} boundaries; nothing was written`);
  }
  const start = param(instant(from));
  const end = param(instant(to));
  if (catalog.function) {
    return [sql`SELECT ${qualified(catalog.function)}(${start}::timestamptz, ${end}::timestamptz)::bigint AS written`];
  }
  const spec = policy.spec!;
  const time = sql`s.${ident(policy.timeColumn)}`;
  const groups = spec.groupBy.map((g) => sql`s.${ident(g)}`);
  // Measures are aliased so a measure named like a group column cannot be confused with it.
  const measures = spec.measures.map(
    (m, i) => sql`${m.fn === 'count' && !m.column ? raw('count(*)') : sql`${raw(m.fn)}(s.${ident(m.column!)})`} AS ${measureAlias(i)}`,
  );
  const bucketColumn = ident(spec.bucketColumn);
  const targetColumns = join([spec.bucketColumn, ...spec.groupBy, ...spec.measures.map((m) => m.name)].map(ident));
  const selected = join([raw('pghk_bucket'), ...spec.groupBy.map(ident), ...spec.measures.map((_, i) => sql`agg.${measureAlias(i)}`)]);
  const aggregate = sql`SELECT date_trunc(${policy.bucket}::text, ${time}) AS pghk_bucket${join(
    groups.map((g) => sql`, ${g}`),
    '',
  )}, ${join(measures)}, count(*) AS pghk_rows_read FROM ${qualified(catalog.source)} AS s WHERE ${time} >= ${start} AND ${time} < ${end} GROUP BY ${join([raw('1'), ...groups])}`;
  const insert = sql`INSERT INTO ${qualified(catalog.target)} (${targetColumns}) SELECT ${selected} FROM agg RETURNING 1`;
  return [
    sql`DELETE FROM ${qualified(catalog.target)} WHERE ${bucketColumn} >= ${start} AND ${bucketColumn} < ${end}`,
    sql`WITH agg AS (${aggregate}),
ins AS (${insert})
SELECT (SELECT count(*) FROM ins)::bigint AS written, coalesce((SELECT sum(pghk_rows_read) FROM agg), 0)::bigint AS rows_read`,
  ];
}

function measureAlias(index: number): Sql {
  return ident(`pghk_measure_${index}`);
}

/**
 * A new rollup's first event, where its backfill starts. Rows at '-infinity' (or 'infinity') lie
 * in no bucket; the first finite one is where the buckets start.
 */
export function renderFirstEvent(policy: RollupPolicy, catalog: RollupCatalog): Sql {
  const time = ident(policy.timeColumn);
  return sql`SELECT min(${time}) FILTER (WHERE isfinite(${time})) AS first FROM ${qualified(catalog.source)}`;
}

/**
 * The buckets holding rows changed at or after `changesSince` (as stored in the state row) whose
 * bucket is already published (below `before`). Untyped parameters take the columns' own types:
 * for `timestamp` columns the UTC wall clock.
 */
export function renderChangedBuckets(
  policy: RollupPolicy & { changedAtColumn: string },
  catalog: RollupCatalog,
  changesSince: string,
  before: number,
): Sql {
  const time = ident(policy.timeColumn);
  return sql`SELECT DISTINCT date_trunc(${policy.bucket}::text, ${time}) AS bucket FROM ${qualified(catalog.source)} WHERE ${ident(policy.changedAtColumn)} >= ${changesSince} AND ${time} < ${instant(before)}`;
}
