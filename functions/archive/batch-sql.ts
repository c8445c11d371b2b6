import { quoteIdent, quoteQualified, type QualifiedName } from '../../shared/identifiers';
import type { ArchiveTargetPolicy } from './policy';

export interface BatchOptions {
  /** Continue after this key (keyset pagination). */
  afterKey: boolean;
  /**
   * Skip keys already in the archive (ON CONFLICT DO NOTHING). Costs a speculative insert per
   * row, so it is the fallback: a batch first runs as a plain insert, and only if the archive's
   * unique key rejects it (the whole batch rolls back, nothing lost) is it rerun this way.
   */
  skipExisting: boolean;
  /**
   * Lock the picked rows FOR UPDATE SKIP LOCKED, leaving rows other sessions hold. Locking costs
   * a WAL record per row (about 40% of a batch), so it is the fallback too: a batch first runs
   * unlocked under a very short lock_timeout, and only when it meets a held row (the attempt
   * rolls back whole) is it rerun this way.
   */
  skipLocked: boolean;
}

export interface ArchiveSql {
  /** One batch: pick, (copy,) delete, as one statement. Returns moved, inserted, last_key. */
  batch(options: BatchOptions): string;
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
export function buildArchiveSql(
  source: QualifiedName,
  destination: QualifiedName | undefined,
  policy: ArchiveTargetPolicy,
  copyColumns: string[],
  sourceShape: { partitioned: boolean; integerKey: boolean },
): ArchiveSql {
  const src = quoteQualified(source);
  const key = quoteIdent(policy.key);
  const hasFallback = policy.ageFallbackColumn !== undefined;
  const predicate = (alias: string) =>
    hasFallback
      ? `(${alias}.${quoteIdent(policy.ageColumn)} < $1 OR (${alias}.${quoteIdent(policy.ageColumn)} IS NULL AND ${alias}.${quoteIdent(policy.ageFallbackColumn!)} < $2))`
      : `${alias}.${quoteIdent(policy.ageColumn)} < $1`;
  const limitParam = hasFallback ? '$3' : '$2';
  const afterParam = hasFallback ? '$4' : '$3';
  // Keyset pagination: each batch starts after the last key moved, so it never walks the dead
  // index entries the previous batches left at the head of the key index.
  const pick = (afterKey: boolean, extra = '') =>
    `SELECT s.${key}${extra} FROM ${src} AS s WHERE ${predicate('s')}${afterKey ? ` AND s.${key} > ${afterParam}` : ''} ORDER BY s.${key} LIMIT ${limitParam}`;
  // The delete finds the picked rows by their physical address (a TID scan, no index probe).
  // In a partitioned table a ctid is only unique within one partition, so there it goes by key.
  // Either way the age predicate is repeated: only rows the batch judged expired can go.
  const locate = sourceShape.partitioned
    ? { column: '', where: `t.${key} = ANY (ARRAY(SELECT ${key} FROM batch))` }
    : { column: ', s.ctid', where: `t.ctid = ANY (ARRAY(SELECT ctid FROM batch))` };

  const batch = ({ afterKey, skipExisting, skipLocked }: BatchOptions) => {
    // Unlocked, a row updated between pick and delete fails the delete's re-check (its ctid or
    // age changed) and simply stays in the source.
    const picked = `batch AS (${pick(afterKey, locate.column)}${skipLocked ? ' FOR UPDATE OF s SKIP LOCKED' : ''})`;
    const deleted = `DELETE FROM ${src} AS t WHERE ${locate.where} AND ${predicate('t')}`;
    const last = sourceShape.integerKey
      ? `(SELECT max(${key}) FROM batch)::text AS last_key`
      : `(SELECT ${key} FROM batch ORDER BY ${key} DESC LIMIT 1)::text AS last_key`;
    if (!destination) {
      return `WITH ${picked}, moved AS (${deleted} RETURNING 1) SELECT (SELECT count(*) FROM moved)::int AS moved, 0 AS inserted, ${last}`;
    }
    const columns = copyColumns.map(quoteIdent).join(', ');
    // One statement, so one transaction: rows leave the source and enter the archive together
    // or not at all.
    const insert = `INSERT INTO ${quoteQualified(destination)} (${columns}) OVERRIDING SYSTEM VALUE SELECT ${columns} FROM moved`;
    return skipExisting
      ? `WITH ${picked}, moved AS (${deleted} RETURNING t.*), inserted AS (${insert} ON CONFLICT (${key}) DO NOTHING RETURNING 1) ` +
          `SELECT (SELECT count(*) FROM moved)::int AS moved, (SELECT count(*) FROM inserted)::int AS inserted, ${last}`
      : `WITH ${picked}, moved AS (${deleted} RETURNING t.*), inserted AS (${insert}) ` +
          `SELECT count(*)::int AS moved, count(*)::int AS inserted, ${last} FROM moved`;
  };

  return {
    batch,
    count: `SELECT count(*)::bigint AS n FROM ${src} AS s WHERE ${predicate('s')}`,
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
