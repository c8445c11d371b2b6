import { quoteIdent } from '../../../shared/identifiers';
import { join, param, qualified, raw, type Sql, sql } from '../../../shared/sql';
import type { ArchiveCutoffs } from '../plan';
import type { S3Catalog } from './catalog';

/** The statements of one S3 archive target, with its cutoffs bound. */
export interface S3Statements {
  /**
   * Up to `limit` expired rows after `afterKey`, in key order, each as: its key columns' texts (one
   * field each: a text[] would be parsed again in JS), its day, its row version (xmin), then the
   * canonical texts (read with rowMode 'array').
   */
  pick(limit: number, afterKey: string[] | undefined): Sql;
  /**
   * Deletes the written rows, found by key (one array per key column), each only if it is still
   * the version written (same xmin: any UPDATE makes a new version) and still expired: a row
   * updated since the pick stays, and the batch is redone. Returns `n`, the rows deleted.
   * `first` and `last` are the batch's lowest and highest keys: the rows are looked up within that
   * range of the key index, not by scanning (and hashing) the whole table on every batch.
   */
  remove(keys: string[][], versions: string[], first: string[], last: string[]): Sql;
}

const INTEGER_TYPES = new Set(['smallint', 'integer', 'bigint']);

/**
 * Texts of integers (xids, integer keys) as one array literal: they need no quoting, and the
 * driver would otherwise escape each of a batch's 100,000 elements on its own.
 */
function digitsArray(texts: string[]): string {
  return `{${texts.join(',')}}`;
}

/**
 * Pure: the SQL of an S3 archive target. Values (cutoffs, limit, keys, digests, the zone) are bind
 * parameters; everything else is identifiers the catalog vouched for, quoted, and the canonical
 * text expressions columns.ts builds from them.
 */
export function renderS3Sql(catalog: S3Catalog, cutoffs: ArchiveCutoffs): S3Statements {
  const src = qualified(catalog.source);
  const keys = catalog.keyColumns.map((k) => raw(`t.${quoteIdent(k)}`));
  const age = raw(`t.${quoteIdent(catalog.ageColumn)}`);
  const primary = param(cutoffs.primary);
  const predicate =
    catalog.ageFallbackColumn === undefined
      ? sql`${age} < ${primary}`
      : sql`(${age} < ${primary} OR (${age} IS NULL AND ${raw(`t.${quoteIdent(catalog.ageFallbackColumn)}`)} < ${param(cutoffs.fallback ?? cutoffs.primary)}))`;
  const values = raw(catalog.columns.map((c, i) => `${c.select} AS c${i}`).join(', '));
  const tuple = (parts: Sql[]) => (parts.length === 1 ? parts[0]! : sql`(${join(parts)})`);
  const keyTexts = join(keys.map((k, i) => sql`${k}::text AS ${raw(`k${i}`)}`));
  const orderBy = join(keys);

  const pick = (limit: number, afterKey: string[] | undefined) => {
    const after = afterKey === undefined ? raw('') : sql` AND ${tuple(keys)} > ${tuple(afterKey.map((k) => sql`${k}`))}`;
    // The rows are picked first (a subquery with the limit, so by the key index), and only those
    // are rendered: with the texts and digests beside the pick, the planner may compute them for
    // every expired row before it sorts and limits. The version (xmin, a name no column can have)
    // crosses the subquery beside the row.
    return sql`SELECT ${keyTexts}, ${catalog.day} AS day, t.xmin::text AS version, v.* FROM (SELECT t.*, t.xmin FROM ${src} AS t WHERE ${predicate}${after} ORDER BY ${orderBy} LIMIT ${limit}) AS t CROSS JOIN LATERAL (SELECT ${values}) AS v ORDER BY ${orderBy}`;
  };

  const bound = (key: string[]) => tuple(key.map((value, i) => sql`${value}::${raw(catalog.keyTypes[i]!)}`));
  const remove = (keyValues: string[][], versions: string[], first: string[], last: string[]) => {
    const arrays = join([
      ...keyValues.map((column, i) => sql`${INTEGER_TYPES.has(catalog.keyTypes[i]!) ? digitsArray(column) : column}::text[]`),
      sql`${digitsArray(versions)}::text[]`,
    ]);
    const names = raw([...catalog.keyColumns.map((_, i) => `k${i}`), 'x'].join(', '));
    // Equal by the key's own operator (what the index finds), and the same text byte for byte
    // (COLLATE "C"): a key whose collation compares 'c' = 'C' may still hold both when its unique
    // index has another collation, and the batch wrote only one of them.
    const match = join(
      catalog.keyColumns.map((k, i) =>
        raw(`t.${quoteIdent(k)} = e.k${i}::${catalog.keyTypes[i]} AND t.${quoteIdent(k)}::text = e.k${i} COLLATE "C"`),
      ),
      ' AND ',
    );
    return sql`WITH gone AS (DELETE FROM ${src} AS t USING unnest(${arrays}) AS e(${names}) WHERE ${tuple(keys)} >= ${bound(first)} AND ${tuple(keys)} <= ${bound(last)} AND ${match} AND t.xmin = e.x::xid AND ${predicate} RETURNING 1) SELECT count(*)::int AS n FROM gone`;
  };
  return { pick, remove };
}
