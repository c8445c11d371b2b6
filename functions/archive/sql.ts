import { type QualifiedName, quoteIdent, quoteQualified } from '../../shared/identifiers';
import { join, param, raw, type Sql, sql } from '../../shared/sql';
import type { ArchiveCatalog } from './catalog';
import type { ArchiveCutoffs } from './plan';

interface BatchOptions {
  /** Up to this many rows. */
  limit: number;
  /** Continue after this key, one text per key column (keyset pagination). */
  afterKey?: string[];
  /**
   * Some picked keys are already in the archive. Costs a lookup and a byte-for-byte comparison
   * per row, so it is the fallback: a batch first runs as a plain insert, and only if the
   * archive's unique key rejects it (the whole batch rolls back, nothing lost) is it rerun this
   * way. A row then leaves the source only if it is inserted, or if the archive already holds a
   * byte-identical copy; a key archived with other contents stays and is reported.
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

/** What one batch statement reports. */
export interface BatchResult {
  /** Expired rows the batch picked; rows that changed since (re-check) or collide stay. */
  picked: number;
  /** Rows deleted from the source. */
  moved: number;
  /** Rows inserted into the archive. */
  inserted: number;
  /** Rows deleted because the archive already held a byte-identical copy. */
  identical: number;
  /** Archived copies that differ from the row deleted (only counted when the archive has triggers). */
  altered: number;
  /** Keys (as text, at most 10) of picked rows whose key the archive holds with other contents. */
  collisions: string[];
  collision_count: number;
  /** The last picked key, one text per key column: the next batch starts after it. */
  last_key: string[] | null;
}

/** The statements of one archive target, with its cutoffs bound. */
export interface ArchiveStatements {
  /** One batch: pick, (copy,) delete, as one statement. */
  batch(options: BatchOptions): Sql;
  /** Expired rows, for dry run and the estimate of what remains. */
  count: Sql;
  /** The batch's key pick, without locking, for EXPLAIN. */
  explainPick(limit: number): Sql;
}

const MAX_COLLISIONS_NAMED = 10;

export type ArchiveShape = Pick<
  ArchiveCatalog,
  'keyColumns' | 'copyColumns' | 'compareColumns' | 'destinationKey' | 'sourceIsPartitioned' | 'keyIsInteger' | 'destinationHasTriggers'
>;

/**
 * Pure: the SQL of an archive target. Only the cutoffs, the limit and the last key are values
 * (bind parameters); everything else is identifiers the catalog check has vouched for, quoted.
 *
 * The age predicate is written as two branches, not COALESCE(primary, fallback) < cutoff, so
 * each branch can use its own index (a BitmapOr), which a COALESCE expression never can.
 */
export function renderArchiveSql(
  source: QualifiedName,
  destination: QualifiedName | undefined,
  policy: { ageColumn: string; ageFallbackColumn?: string },
  catalog: ArchiveShape,
  cutoffs: ArchiveCutoffs,
): ArchiveStatements {
  const src = raw(quoteQualified(source));
  const keys = catalog.keyColumns.map(quoteIdent);
  // Identifiers only (quoted above): spliced as text.
  const on = (alias: string, columns = keys) => raw(columns.map((k) => `${alias}.${k}`).join(', '));
  const tuple = (alias: string, columns = keys) => (columns.length === 1 ? raw(`${alias}.${columns[0]}`) : sql`(${on(alias, columns)})`);
  const column = (alias: string, name: string) => raw(`${alias}.${quoteIdent(name)}`);
  const primary = param(cutoffs.primary);
  const fallback = param(cutoffs.fallback ?? cutoffs.primary);
  const predicate = (alias: string): Sql =>
    policy.ageFallbackColumn === undefined
      ? sql`${column(alias, policy.ageColumn)} < ${primary}`
      : sql`(${column(alias, policy.ageColumn)} < ${primary} OR (${column(alias, policy.ageColumn)} IS NULL AND ${column(alias, policy.ageFallbackColumn)} < ${fallback}))`;
  // Keyset pagination: each batch starts after the last key picked, so it never walks the dead
  // index entries the previous batches left at the head of the key index.
  const pick = (limit: number, afterKey?: string[], extra = raw('')) => {
    const after =
      afterKey === undefined
        ? raw('')
        : sql` AND ${tuple('s')} > ${afterKey.length === 1 ? sql`${afterKey[0]}` : sql`(${join(afterKey.map((k) => sql`${k}`))})`}`;
    return sql`SELECT ${on('s')}${extra} FROM ${src} AS s WHERE ${predicate('s')}${after} ORDER BY ${on('s')} LIMIT ${limit}`;
  };
  // The delete finds the picked rows by their physical address (a TID scan, no index probe),
  // which is also the re-check: a row updated since the pick has a new address and stays. In a
  // partitioned table a ctid is only unique within one partition, so there it goes by the whole
  // key (an index probe per partition on its first column). Either way the age predicate is
  // repeated: only rows still expired when deleted can go.
  const firstKey = keys[0]!;
  const locate = (alias: string) =>
    raw(
      !catalog.sourceIsPartitioned
        ? `${alias}.ctid = ANY (ARRAY(SELECT ctid FROM batch))`
        : keys.length === 1
          ? `${alias}.${firstKey} = ANY (ARRAY(SELECT ${firstKey} FROM batch))`
          : `${alias}.${firstKey} = ANY (ARRAY(SELECT ${firstKey} FROM batch)) AND (${keys.map((k) => `${alias}.${k}`).join(', ')}) IN (SELECT ${keys.join(', ')} FROM batch)`,
    );
  const pickExtra = raw(catalog.sourceIsPartitioned ? '' : ', s.ctid');
  // An aggregate over the batch (it is one pass with the count); max() needs no sort.
  const last = catalog.keyIsInteger
    ? `ARRAY[max(${firstKey})::text]`
    : `(SELECT ARRAY[${keys.map((k) => `l.${k}::text`).join(', ')}] FROM batch AS l ORDER BY ${keys.map((k) => `l.${k} DESC`).join(', ')} LIMIT 1)`;

  // The archived copy of a key, and whether it is byte for byte the source row: record image
  // equality (*=) compares stored bytes, so 1.50 differs from 1.5 and 'a' from 'A' whatever the
  // collation, and NULL matches NULL.
  const destinationKey = catalog.destinationKey.map(quoteIdent);
  const archivedCopy = (alias: string) =>
    `SELECT 1 FROM ${destination ? quoteQualified(destination) : ''} AS d WHERE ${destinationKey.map((k) => `d.${k} = ${alias}.${k}`).join(' AND ')}`;
  const compare = catalog.compareColumns.map(quoteIdent);
  const sameBytes = (a: string, b: string) =>
    `ROW(${compare.map((k) => `${a}.${k}`).join(', ')})::record *= ROW(${compare.map((k) => `${b}.${k}`).join(', ')})::record`;
  const keyText = (alias: string) =>
    keys.length === 1 ? `${alias}.${firstKey}::text` : `format('(%s)', concat_ws(', ', ${keys.map((k) => `${alias}.${k}::text`).join(', ')}))`;

  // One pass over each CTE where it can be: on the fast path every scan of 5,000 rows shows.
  const report = (fields: { inserted: string; identical?: string; altered?: string; collided?: boolean }) =>
    raw(
      `SELECT b.picked, m.moved, ${fields.inserted}::int AS inserted, ` +
        `${fields.identical ?? '0'}::int AS identical, ${fields.altered ?? '0'}::int AS altered, ` +
        (fields.collided
          ? `ARRAY(SELECT k FROM collided ORDER BY k LIMIT ${MAX_COLLISIONS_NAMED}) AS collisions, (SELECT count(*) FROM collided)::int AS collision_count, `
          : `'{}'::text[] AS collisions, 0 AS collision_count, `) +
        `b.last_key\nFROM (SELECT count(*)::int AS picked, ${last} AS last_key FROM batch) AS b, (SELECT count(*)::int AS moved FROM moved) AS m`,
    );

  const batch = ({ limit, afterKey, skipExisting, skipLocked }: BatchOptions): Sql => {
    // Unlocked, a row updated between pick and delete fails the delete's re-check and simply
    // stays in the source.
    const picked = sql`batch AS (${pick(limit, afterKey, pickExtra)}${raw(skipLocked ? ' FOR UPDATE OF s SKIP LOCKED' : '')})`;
    const deleted = sql`DELETE FROM ${src} AS t WHERE ${locate('t')} AND ${predicate('t')}`;
    if (!destination) {
      return sql`WITH ${picked},\nmoved AS (${deleted} RETURNING 1)\n${report({ inserted: '0' })}`;
    }
    const columns = catalog.copyColumns.map(quoteIdent).join(', ');
    const into = `INSERT INTO ${quoteQualified(destination)} (${columns}) OVERRIDING SYSTEM VALUE SELECT ${columns} FROM moved AS m`;
    // With triggers on the archive (allowed by the policy), each batch checks that every row it
    // deleted arrived unchanged: a BEFORE trigger may skip or rewrite rows.
    const returning = catalog.destinationHasTriggers ? `RETURNING ${compare.join(', ')}` : 'RETURNING 1';
    const altered = (alsoWhere = '') =>
      catalog.destinationHasTriggers
        ? `(SELECT count(*) FROM moved AS m WHERE ${alsoWhere}NOT EXISTS (SELECT 1 FROM inserted AS i WHERE ${keys.map((k) => `i.${k} = m.${k}`).join(' AND ')} AND ${sameBytes('i', 'm')}))`
        : '0';
    if (!skipExisting) {
      // One statement, so one transaction: rows leave the source and enter the archive together
      // or not at all. A key already archived makes the insert fail, and the batch reruns below.
      // Without triggers on the archive the insert takes every row it is given or fails, so it
      // returns nothing (a tuple per row saved on the fast path) and counts as the rows deleted.
      const moved = sql`moved AS (${deleted} RETURNING t.*)`;
      return catalog.destinationHasTriggers
        ? sql`WITH ${picked},\n${moved},\ninserted AS (${raw(`${into} ${returning}`)})\n${report({ inserted: '(SELECT count(*) FROM inserted)', altered: altered() })}`
        : sql`WITH ${picked},\n${moved},\ninserted AS (${raw(into)})\n${report({ inserted: 'm.moved' })}`;
    }
    // A row leaves only if the archive lacks its key (it is inserted) or holds a byte-identical
    // copy (it was archived before: a run that committed but never reported, or a restore).
    // The archive is read as of the statement's start; a key archived concurrently makes the
    // insert fail and the whole batch roll back.
    const differs = (alias: string) => raw(`EXISTS (${archivedCopy(alias)} AND NOT (${sameBytes('d', alias)}))`);
    const moved = sql`moved AS (${deleted} AND NOT ${differs('t')} RETURNING t.*)`;
    const inserted = raw(`inserted AS (${into} WHERE NOT EXISTS (${archivedCopy('m')}) ${returning})`);
    const collided = sql`collided AS (SELECT ${raw(keyText('t'))} AS k FROM ${src} AS t WHERE ${locate('t')} AND ${predicate('t')} AND ${differs('t')})`;
    const summary = report({
      inserted: '(SELECT count(*) FROM inserted)',
      identical: `(SELECT count(*) FROM moved AS m WHERE EXISTS (${archivedCopy('m')}))`,
      altered: altered(`NOT EXISTS (${archivedCopy('m')}) AND `),
      collided: true,
    });
    return sql`WITH ${picked},\n${moved},\n${inserted},\n${collided}\n${summary}`;
  };

  return {
    batch,
    count: sql`SELECT count(*)::bigint AS n FROM ${src} AS s WHERE ${predicate('s')}`,
    explainPick: (limit) => pick(limit),
  };
}
