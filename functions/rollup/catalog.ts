import type pg from 'pg';
import { relationExists } from '../../shared/db';
import { CatalogError } from '../../shared/errors';
import { displayName, parseQualifiedName, type QualifiedName, quoteQualified } from '../../shared/identifiers';
import { TIME_COLUMN_TYPES } from '../../shared/postgres';
import type { RollupPolicy } from './policy';

/** What a rollup reads and writes, checked against the catalog. */
export interface RollupCatalog {
  source: QualifiedName;
  target: QualifiedName;
  /** The user's recompute function, in function mode. */
  function?: QualifiedName;
  /**
   * Fractional digits the changed-at column keeps (6 without a modifier). A column that keeps
   * fewer rounds a stamp to the nearest, which can fall up to half a unit before the clock it
   * was taken from: the horizon a run records is truncated to this precision.
   */
  changedAtPrecision: number;
}

interface Column {
  name: string;
  /** With its modifier, as an operator reads it: timestamp(3) with time zone. */
  type: string;
  /** Without it: timestamp with time zone. */
  baseType: string;
  typmod: number;
  category: string;
}

async function columnsOf(client: pg.ClientBase, table: QualifiedName, role: string): Promise<Map<string, Column>> {
  const { rows } = await client.query<Column>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, format_type(a.atttypid, NULL) AS "baseType",
            a.atttypmod AS typmod, t.typcategory AS category
     FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
     WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped`,
    [quoteQualified(table)],
  );
  if (rows.length === 0) {
    if (!(await relationExists(client, quoteQualified(table))))
      throw new CatalogError(displayName(table), `${role} table ${displayName(table)} does not exist`);
  }
  return new Map(rows.map((r) => [r.name, r]));
}

function requireColumn(columns: Map<string, Column>, table: QualifiedName, column: string, field: string): Column {
  const found = columns.get(column);
  if (!found) throw new CatalogError(displayName(table), `${field}: column ${column} does not exist in ${displayName(table)}`);
  return found;
}

/** A bucket is a UTC hour or day of an instant: a `date` holds no instant. Any precision. */
const isInstantType = (column: Column) => TIME_COLUMN_TYPES[column.baseType] === 'timestamptz' || TIME_COLUMN_TYPES[column.baseType] === 'timestamp';

/**
 * Checks source, target and spec (or function) against the catalog before anything is written:
 * every column named exists, event-time and changed-at columns hold instants, measures have
 * types their function takes, the function exists and returns bigint.
 */
export async function readRollupCatalog(client: pg.ClientBase, policy: RollupPolicy): Promise<RollupCatalog> {
  const source = parseQualifiedName(policy.source, 'source');
  const target = parseQualifiedName(policy.target, 'target');
  const sourceColumns = await columnsOf(client, source, 'source');
  let changedAtPrecision = 6;
  for (const [column, field] of [
    [policy.timeColumn, 'timeColumn'],
    ...(policy.changedAtColumn ? [[policy.changedAtColumn, 'changedAtColumn']] : []),
  ] as const) {
    const found = requireColumn(sourceColumns, source, column, field);
    if (!isInstantType(found)) {
      throw new CatalogError(displayName(source), `${field}: ${displayName(source)}.${column} is ${found.type}; expected timestamptz or timestamp`);
    }
    if (field === 'changedAtColumn' && found.typmod >= 0) changedAtPrecision = found.typmod;
  }
  const targetColumns = await columnsOf(client, target, 'target');

  if (policy.function) {
    const fn = parseQualifiedName(policy.function, 'function');
    const { rows } = await client.query<{ returns: string | null }>(
      `SELECT format_type(p.prorettype, NULL) AS returns FROM pg_proc p WHERE p.oid = to_regprocedure($1)`,
      [`${quoteQualified(fn)}(timestamptz, timestamptz)`],
    );
    const found = rows[0];
    if (!found) {
      throw new CatalogError(displayName(fn), `function: ${displayName(fn)}(window_start timestamptz, window_end timestamptz) does not exist`);
    }
    if (found.returns !== 'bigint') {
      throw new CatalogError(displayName(fn), `function: ${displayName(fn)} returns ${found.returns}; it must return bigint`);
    }
    return { source, target, function: fn, changedAtPrecision };
  }

  const spec = policy.spec!;
  // The window's DELETE compares the bucket column with the window's bounds: a column that does
  // not hold the bucket start as an instant (text, a number, a date for hour buckets) makes it
  // miss the rows the INSERT wrote, and every recompute adds them again.
  const bucketColumn = requireColumn(targetColumns, target, spec.bucketColumn, 'spec.bucketColumn');
  if (!isInstantType(bucketColumn) && !(policy.bucket === 'day' && TIME_COLUMN_TYPES[bucketColumn.baseType] === 'date')) {
    throw new CatalogError(
      displayName(target),
      `spec.bucketColumn: ${displayName(target)}.${spec.bucketColumn} is ${bucketColumn.type}; it must be timestamptz or timestamp` +
        `${policy.bucket === 'day' ? ' (or date)' : ' (date only for day buckets)'}: a recompute finds the rows it replaces by it (nothing was written)`,
    );
  }
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
  return { source, target, changedAtPrecision };
}
