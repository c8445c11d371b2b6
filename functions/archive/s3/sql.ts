import { quoteIdent } from '../../../shared/identifiers';
import { join, qualified, raw, type Sql, sql, typed } from '../../../shared/sql';
import type { ArchiveCutoffs } from '../plan';
import type { S3Catalog } from './catalog';

/** The statements of one S3 archive target, with its cutoffs bound. */
export interface S3Statements {
  /**
   * Up to `limit` expired rows after `afterKey`, in key order, each as: its key columns' texts (one
   * field each), its day (days since 1970), its row version (xmin), then each column's value as
   * the writer takes it (`ColumnPlan.copySelect`). Read as binary COPY (copy.ts): every bind
   * value is cast to its type here, because COPY takes none and they arrive as settings' texts.
   */
  /** `excluded` keys are not picked; `through` bounds the keys from above (a batch written again over its first range). */
  pick(limit: number, afterKey: string[] | undefined, excluded?: ReadonlyArray<string[]>, through?: string[]): Sql;
  /**
   * Deletes the written rows, found by key (one array per key column), each only if it is still
   * the version written (same xmin: any UPDATE makes a new version) and still expired: a row
   * updated since the pick stays, and the batch is redone. Returns `n`, the rows deleted.
   * `first` and `last` are the batch's lowest and highest keys: the rows are looked up within that
   * range of the key index, not by scanning (and hashing) the whole table on every batch.
   */
  remove(keys: string[][], versions: number[], first: string[], last: string[]): Sql;
  /**
   * As `remove`, but each row only if no other session holds it (`FOR UPDATE SKIP LOCKED`):
   * returns the deleted rows' key texts (`k0`, `k1`...), so the caller sees which rows it could
   * not take. Only for a batch that already met a held row: the lock writes a WAL record per row.
   */
  removeUnheld(keys: string[][], versions: number[], first: string[], last: string[]): Sql;
}

const INTEGER_TYPES = new Set(['smallint', 'integer', 'bigint']);

/**
 * Texts of integers (xids, integer keys) as one array literal: they need no quoting, and the
 * driver would otherwise escape each of a batch's 100,000 elements on its own.
 */
function digitsArray(texts: ReadonlyArray<string | number>): string {
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
  const primary = typed(cutoffs.primary, catalog.ageTypes.primary);
  const predicate =
    catalog.ageFallbackColumn === undefined
      ? sql`${age} < ${primary}`
      : sql`(${age} < ${primary} OR (${age} IS NULL AND ${raw(`t.${quoteIdent(catalog.ageFallbackColumn)}`)} < ${typed(cutoffs.fallback ?? cutoffs.primary, catalog.ageTypes.fallback ?? catalog.ageTypes.primary)}))`;
  const values = raw(catalog.columns.map((c, i) => `${c.copySelect} AS c${i}`).join(', '));
  const tuple = (parts: Sql[]) => (parts.length === 1 ? parts[0]! : sql`(${join(parts)})`);
  const keyTexts = join(keys.map((k, i) => sql`${k}::text AS ${raw(`k${i}`)}`));
  const orderBy = join(keys);

  const bound = (key: string[]) => tuple(key.map((value, i) => sql`${typed(value, catalog.keyTypes[i]!)}`));
  // Equal by the key's own operator (what the index finds), and the same text byte for byte
  // (COLLATE "C"): a key whose collation compares 'c' = 'C' may still hold both when its unique
  // index has another collation, and the batch wrote only one of them.
  // An integer key written as an integer array is compared as one: its text is the same whenever
  // its value is, and the delete then takes no text of a batch's 100,000 rows.
  const sameKey = (text: (i: number) => string, integersTyped = false) =>
    raw(
      catalog.keyColumns
        .map((k, i) =>
          integersTyped && INTEGER_TYPES.has(catalog.keyTypes[i]!)
            ? `t.${quoteIdent(k)} = ${text(i)}`
            : `t.${quoteIdent(k)} = ${text(i)}::${catalog.keyTypes[i]} AND t.${quoteIdent(k)}::text = ${text(i)} COLLATE "C"`,
        )
        .join(' AND '),
    );
  const pick = (limit: number, afterKey: string[] | undefined, excluded: ReadonlyArray<string[]> = [], through?: string[]) => {
    let after = afterKey === undefined ? raw('') : sql` AND ${tuple(keys)} > ${bound(afterKey)}`;
    if (through !== undefined) after = sql`${after} AND ${tuple(keys)} <= ${bound(through)}`;
    // Rows this batch left because another session held them: one JSON array of keys (COPY takes
    // values only as settings' texts), absent from the statement when there are none.
    if (excluded.length > 0) {
      after = sql`${after} AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(${typed(JSON.stringify(excluded), 'jsonb')}) AS x(k) WHERE ${sameKey((i) => `(x.k->>${i})`)})`;
    }
    // The rows are picked first (a subquery with the limit, so by the key index), then their values
    // are selected. The version (xmin) and the age's date cross the subquery beside the row, under
    // system columns' names no column can have: the date once per row (a zone's conversion is
    // the pick's dearest part), then checked. An age before year 1 or infinite has no dt= folder:
    // its day is NULL, and the batch is refused naming the row.
    const date = raw('t.xmax');
    const day = sql`CASE WHEN isfinite(${date}) AND ${date} >= DATE '0001-01-01' THEN ${date} - DATE '1970-01-01' END`;
    return sql`SELECT ${keyTexts}, ${day} AS day, t.xmin AS version, ${values} FROM (SELECT t.*, t.xmin, ${catalog.ageDate} AS xmax FROM ${src} AS t WHERE ${predicate}${after} ORDER BY ${orderBy} LIMIT ${typed(limit, 'bigint')}) AS t ORDER BY ${orderBy}`;
  };

  /** The written rows as a relation `e` (k0..., x: the version), how a source row `t` matches one, and the batch's key range. */
  const written = (keyValues: string[][], versions: number[], first: string[], last: string[]) => {
    const arrays = join([
      ...keyValues.map((column, i) => {
        const type = catalog.keyTypes[i]!;
        return INTEGER_TYPES.has(type) ? sql`${digitsArray(column)}::${raw(type)}[]` : sql`${column}::text[]`;
      }),
      sql`${digitsArray(versions)}::xid[]`,
    ]);
    const names = raw([...catalog.keyColumns.map((_, i) => `k${i}`), 'x'].join(', '));
    const match = sameKey((i) => `e.k${i}`, true);
    const within = sql`${tuple(keys)} >= ${bound(first)} AND ${tuple(keys)} <= ${bound(last)}`;
    return { rows: sql`unnest(${arrays}) AS e(${names})`, match, within };
  };
  const remove = (keyValues: string[][], versions: number[], first: string[], last: string[]) => {
    const { rows, match, within } = written(keyValues, versions, first, last);
    return sql`WITH gone AS (DELETE FROM ${src} AS t USING ${rows} WHERE ${within} AND ${match} AND t.xmin = e.x AND ${predicate} RETURNING 1) SELECT count(*)::int AS n FROM gone`;
  };
  const removeUnheld = (keyValues: string[][], versions: number[], first: string[], last: string[]) => {
    const { rows, match, within } = written(keyValues, versions, first, last);
    // The rows are locked first, skipping any another session holds, then deleted by their
    // address (tableoid too: in a partitioned source a ctid is unique only within its partition).
    return sql`WITH free AS (SELECT t.tableoid AS rel, t.ctid AS address FROM ${src} AS t JOIN ${rows} ON ${match} AND t.xmin = e.x WHERE ${within} AND ${predicate} FOR UPDATE OF t SKIP LOCKED),
      gone AS (DELETE FROM ${src} AS t USING free WHERE t.tableoid = free.rel AND t.ctid = free.address RETURNING ${keyTexts})
      SELECT * FROM gone`;
  };
  return { pick, remove, removeUnheld };
}
