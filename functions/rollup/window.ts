import type pg from 'pg';
import { relationExists } from '../../shared/db';
import { CatalogError } from '../../shared/errors';
import { displayName, parseQualifiedName, quoteIdent, quoteQualified, type QualifiedName } from '../../shared/identifiers';
import { instant, isBucketStart } from './buckets';
import type { RollupPolicy } from './policy';

export interface WindowResult {
  /** Target rows written (spec mode), or what the function returned. */
  written: number;
  /** Source rows aggregated (spec mode; 0 in function mode, which does not say). */
  rowsRead: number;
}

/**
 * Recomputes [from, to) (epoch ms, bucket starts) inside the caller's transaction: the window's
 * target rows are replaced, never added to.
 */
export type RecomputeWindow = (client: pg.ClientBase, from: number, to: number) => Promise<WindowResult>;

interface Column {
  name: string;
  type: string;
  category: string;
}

async function columnsOf(client: pg.ClientBase, table: QualifiedName, role: string): Promise<Map<string, Column>> {
  const { rows } = await client.query<{ name: string; type: string; category: string }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, t.typcategory AS category
     FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
     WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`,
    [quoteQualified(table)],
  );
  if (rows.length === 0) {
    if (!(await relationExists(client, quoteQualified(table)))) throw new CatalogError(displayName(table), `${role} table ${displayName(table)} does not exist`);
  }
  return new Map(rows.map((r) => [r.name, r]));
}

const TIME_TYPES = ['timestamp with time zone', 'timestamp without time zone'];

function requireColumn(columns: Map<string, Column>, table: QualifiedName, column: string, field: string): Column {
  const found = columns.get(column);
  if (!found) throw new CatalogError(displayName(table), `${field}: column ${column} does not exist in ${displayName(table)}`);
  return found;
}

/**
 * Checks source, target and spec (or function) against the catalog before anything is written,
 * and returns the window recompute for this rollup.
 */
export async function prepareRecompute(client: pg.ClientBase, policy: RollupPolicy): Promise<RecomputeWindow> {
  const source = parseQualifiedName(policy.source, 'source');
  const target = parseQualifiedName(policy.target, 'target');
  const sourceColumns = await columnsOf(client, source, 'source');
  for (const [column, field] of [[policy.timeColumn, 'timeColumn'], ...(policy.changedAtColumn ? [[policy.changedAtColumn, 'changedAtColumn']] : [])] as const) {
    const found = requireColumn(sourceColumns, source, column, field);
    if (!TIME_TYPES.includes(found.type)) {
      throw new CatalogError(displayName(source), `${field}: ${displayName(source)}.${column} is ${found.type}; expected timestamptz or timestamp`);
    }
  }
  const targetColumns = await columnsOf(client, target, 'target');
  const time = quoteIdent(policy.timeColumn);
  // A window off the bucket grid would delete part of a bucket and write a partial one beside it.
  const bounds = (from: number, to: number): [string, string] => {
    if (!isBucketStart(from, policy.bucket) || !isBucketStart(to, policy.bucket)) {
      throw new Error(`internal: window [${instant(from)}, ${instant(to)}) is not on ${policy.bucket} boundaries; nothing was written`);
    }
    return [instant(from), instant(to)];
  };

  if (policy.function) {
    const fn = parseQualifiedName(policy.function, 'function');
    const { rows } = await client.query<{ returns: string | null }>(
      `SELECT format_type(p.prorettype, NULL) AS returns FROM pg_proc p WHERE p.oid = to_regprocedure($1)`,
      [`${quoteQualified(fn)}(timestamptz, timestamptz)`],
    );
    if (rows.length === 0) {
      throw new CatalogError(displayName(fn), `function: ${displayName(fn)}(window_start timestamptz, window_end timestamptz) does not exist`);
    }
    if (rows[0]!.returns !== 'bigint') {
      throw new CatalogError(displayName(fn), `function: ${displayName(fn)} returns ${rows[0]!.returns}; it must return bigint`);
    }
    const call = `SELECT ${quoteQualified(fn)}($1::timestamptz, $2::timestamptz)::bigint AS written`;
    return async (c, from, to) => {
      const { rows: result } = await c.query<{ written: string | null }>(call, bounds(from, to));
      return { written: Number(result[0]?.written ?? 0), rowsRead: 0 };
    };
  }

  const spec = policy.spec!;
  requireColumn(targetColumns, target, spec.bucketColumn, 'spec.bucketColumn');
  for (const [i, column] of spec.groupBy.entries()) {
    requireColumn(sourceColumns, source, column, `spec.groupBy[${i}]`);
    requireColumn(targetColumns, target, column, `spec.groupBy[${i}]`);
  }
  for (const [i, measure] of spec.measures.entries()) {
    requireColumn(targetColumns, target, measure.name, `spec.measures[${i}].name`);
    if (!measure.column) continue;
    const found = requireColumn(sourceColumns, source, measure.column, `spec.measures[${i}].column`);
    // typcategory N = numeric; min/max also make sense on dates and times (D).
    const allowed = measure.fn === 'sum' ? ['N'] : ['N', 'D'];
    if (!allowed.includes(found.category)) {
      throw new CatalogError(
        displayName(source),
        `spec.measures[${i}]: ${measure.fn}(${measure.column}) needs a numeric${measure.fn === 'sum' ? '' : ' or date/time'} column, but ${displayName(source)}.${measure.column} is ${found.type}`,
      );
    }
  }

  const groups = spec.groupBy.map((g) => `s.${quoteIdent(g)}`);
  // Measures are aliased so a measure named like a group column cannot be confused with it.
  const measures = spec.measures.map(
    (m, i) => `${m.fn === 'count' && !m.column ? 'count(*)' : `${m.fn}(s.${quoteIdent(m.column!)})`} AS ${quoteIdent(measureAlias(i))}`,
  );
  const targetColumnsList = [spec.bucketColumn, ...spec.groupBy, ...spec.measures.map((m) => m.name)].map(quoteIdent).join(', ');
  const bucketColumn = quoteIdent(spec.bucketColumn);
  const remove = `DELETE FROM ${quoteQualified(target)} WHERE ${bucketColumn} >= $1 AND ${bucketColumn} < $2`;
  const insert =
    `WITH agg AS (SELECT date_trunc($3::text, s.${time}) AS pghk_bucket${groups.map((g) => `, ${g}`).join('')}, ` +
    `${measures.join(', ')}, count(*) AS pghk_rows_read FROM ${quoteQualified(source)} AS s ` +
    `WHERE s.${time} >= $1 AND s.${time} < $2 GROUP BY ${['1', ...groups].join(', ')}), ` +
    `ins AS (INSERT INTO ${quoteQualified(target)} (${targetColumnsList}) SELECT ${[
      'pghk_bucket',
      ...spec.groupBy.map(quoteIdent),
      ...spec.measures.map((_, i) => `agg.${quoteIdent(measureAlias(i))}`),
    ].join(', ')} FROM agg RETURNING 1) ` +
    `SELECT (SELECT count(*) FROM ins)::bigint AS written, coalesce((SELECT sum(pghk_rows_read) FROM agg), 0)::bigint AS rows_read`;
  return async (c, from, to) => {
    const window = bounds(from, to);
    await c.query(remove, window);
    const { rows } = await c.query<{ written: string; rows_read: string }>(insert, [...window, policy.bucket]);
    return { written: Number(rows[0]!.written), rowsRead: Number(rows[0]!.rows_read) };
  };
}

function measureAlias(index: number): string {
  return `pghk_measure_${index}`;
}
