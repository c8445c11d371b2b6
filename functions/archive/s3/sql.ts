import { quoteIdent } from '../../../shared/identifiers';
import { join, param, qualified, raw, type Sql, sql } from '../../../shared/sql';
import type { ArchiveCutoffs } from '../plan';
import type { S3Catalog } from './catalog';
import { digestSql } from './columns';

/** The statements of one S3 archive target, with its cutoffs bound. */
export interface S3Statements {
  /**
   * Up to `limit` expired rows after `afterKey`, in key order, each as: its key (texts), its day,
   * the digest of its canonical texts, then the canonical texts (read with rowMode 'array').
   */
  pick(limit: number, afterKey: string[] | undefined): Sql;
  /**
   * Deletes the written rows, found by key, each only if it is still expired and its digest is
   * the one written (a row updated since the pick stays, and the batch is redone); returns `n`.
   */
  remove(keys: string[][], digests: string[]): Sql;
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
  const digest = raw(digestSql(catalog.columns.map((_, i) => `v.c${i}`)));
  const tuple = (parts: Sql[]) => (parts.length === 1 ? parts[0]! : sql`(${join(parts)})`);
  const keyTexts = join(keys.map((k) => sql`${k}::text`));
  const orderBy = join(keys);

  const pick = (limit: number, afterKey: string[] | undefined) => {
    const after = afterKey === undefined ? raw('') : sql` AND ${tuple(keys)} > ${tuple(afterKey.map((k) => sql`${k}`))}`;
    return sql`SELECT ARRAY[${keyTexts}] AS key, ${catalog.day} AS day, ${digest} AS digest, v.* FROM ${src} AS t CROSS JOIN LATERAL (SELECT ${values}) AS v WHERE ${predicate}${after} ORDER BY ${orderBy} LIMIT ${limit}`;
  };

  const remove = (keyValues: string[][], digests: string[]) => {
    const arrays = join([...keyValues.map((column) => sql`${column}::text[]`), sql`${digests}::text[]`]);
    const names = raw([...catalog.keyColumns.map((_, i) => `k${i}`), 'd'].join(', '));
    const match = join(
      catalog.keyColumns.map((k, i) => raw(`t.${quoteIdent(k)} = e.k${i}::${catalog.keyTypes[i]}`)),
      ' AND ',
    );
    return sql`WITH gone AS (DELETE FROM ${src} AS t USING unnest(${arrays}) AS e(${names}) WHERE ${match} AND ${predicate} AND e.d = (SELECT ${digest} FROM (SELECT ${values}) AS v) RETURNING 1) SELECT count(*)::int AS n FROM gone`;
  };
  return { pick, remove };
}
