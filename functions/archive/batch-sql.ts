import { quoteIdent, quoteQualified, type QualifiedName } from '../../shared/identifiers';
import type { ArchiveTargetPolicy } from './policy';

export interface ArchiveSql {
  /** One batch: pick, (copy,) delete. $-numbering depends on the fallback: use `params()`. */
  batch(afterKey: boolean): string;
  /** Expired rows, for dry run. */
  count: string;
  /** The batch's key pick, without locking, for EXPLAIN. */
  explainPick: string;
  /** Bind values of the age predicate alone ($1, and $2 with a fallback column). */
  ageParams(cutoffs: { primary: string; fallback?: string }): unknown[];
  params(cutoffs: { primary: string; fallback?: string }, limit: number, afterKey?: string): unknown[];
}

/**
 * The age predicate is written as two branches, not COALESCE(primary, fallback) < cutoff, so
 * each branch can use its own index (a BitmapOr), which a COALESCE expression never can.
 */
export function buildArchiveSql(source: QualifiedName, destination: QualifiedName | undefined, policy: ArchiveTargetPolicy, copyColumns: string[]): ArchiveSql {
  const src = quoteQualified(source);
  const key = quoteIdent(policy.key);
  const primary = `s.${quoteIdent(policy.ageColumn)}`;
  const hasFallback = policy.ageFallbackColumn !== undefined;
  const predicate = hasFallback
    ? `(${primary} < $1 OR (${primary} IS NULL AND s.${quoteIdent(policy.ageFallbackColumn!)} < $2))`
    : `${primary} < $1`;
  const limitParam = hasFallback ? '$3' : '$2';
  const afterParam = hasFallback ? '$4' : '$3';
  // Keyset pagination: each batch starts after the last key moved, so it never walks the dead
  // index entries the previous batches left at the head of the key index.
  const pick = (afterKey: boolean) =>
    `SELECT s.${key} FROM ${src} AS s WHERE ${predicate}${afterKey ? ` AND s.${key} > ${afterParam}` : ''} ORDER BY s.${key} LIMIT ${limitParam}`;

  const batch = (afterKey: boolean) => {
    // SKIP LOCKED: a row another session holds is left for a later run instead of making us wait.
    const picked = `batch AS (${pick(afterKey)} FOR UPDATE OF s SKIP LOCKED)`;
    // = ANY(ARRAY(...)) makes the delete probe the key index; a join against the batch CTE is
    // planned as a hash join over a sequential scan of the whole source, every batch. The age
    // predicate is repeated so only the rows the batch judged expired can ever be deleted.
    const deleteWhere = `t.${key} = ANY (ARRAY(SELECT ${key} FROM batch)) AND ${predicate.replace(/\bs\./g, 't.')}`;
    const last = `(SELECT ${key} FROM moved ORDER BY ${key} DESC LIMIT 1)::text AS last_key`;
    if (!destination) {
      return (
        `WITH ${picked}, moved AS (DELETE FROM ${src} AS t WHERE ${deleteWhere} RETURNING t.${key}) ` +
        `SELECT (SELECT count(*) FROM moved)::int AS moved, 0 AS inserted, ${last}`
      );
    }
    const columns = copyColumns.map(quoteIdent).join(', ');
    // One statement, so one transaction: the rows leave the source and enter the archive
    // together or not at all. Keys already archived are skipped, never duplicated.
    return (
      `WITH ${picked}, moved AS (DELETE FROM ${src} AS t WHERE ${deleteWhere} RETURNING t.*), ` +
      `inserted AS (INSERT INTO ${quoteQualified(destination)} (${columns}) OVERRIDING SYSTEM VALUE ` +
      `SELECT ${columns} FROM moved ON CONFLICT (${key}) DO NOTHING RETURNING 1) ` +
      `SELECT (SELECT count(*) FROM moved)::int AS moved, (SELECT count(*) FROM inserted)::int AS inserted, ${last}`
    );
  };

  return {
    batch,
    count: `SELECT count(*)::bigint AS n FROM ${src} AS s WHERE ${predicate}`,
    explainPick: pick(false),
    ageParams(cutoffs) {
      return hasFallback ? [cutoffs.primary, cutoffs.fallback ?? cutoffs.primary] : [cutoffs.primary];
    },
    params(cutoffs, limit, afterKey) {
      const ages = this.ageParams(cutoffs);
      return afterKey === undefined ? [...ages, limit] : [...ages, limit, afterKey];
    },
  };
}
