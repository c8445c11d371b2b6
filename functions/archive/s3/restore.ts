import { createHash } from 'node:crypto';
import type pg from 'pg';
import { tryLockTarget, unlockTarget } from '../../../shared/advisory-lock';
import { inTransaction } from '../../../shared/db';
import { CatalogError, ConfigError, errorMessage } from '../../../shared/errors';
import { displayName, parseQualifiedName, type QualifiedName, quoteIdent, quoteQualified } from '../../../shared/identifiers';
import { CHECKSUM_KIND } from './checksum';
import { type ColumnPlan, digestSql, planColumns } from './columns';
import { crashPoint } from './faults';
import { canonicalRows, describeColumns, readBackChecksum } from './parquet';
import { tableFolder } from './plan';
import { type ObjectStore, openObjectStore } from './store';

const DAY = /^(\d{4})-(\d{2})-(\d{2})$/;

/** A day of the calendar as YYYY-MM-DD (2025-02-30 is not one). */
function isDay(text: string): boolean {
  const match = DAY.exec(text);
  if (!match) return false;
  const [year, month, day] = match.slice(1).map(Number) as [number, number, number];
  const date = new Date(Date.UTC(year, month - 1, day));
  return date.getUTCFullYear() === year && date.getUTCMonth() === month - 1 && date.getUTCDate() === day;
}

const RELATION_KINDS: Record<string, string> = {
  v: 'a view',
  m: 'a materialized view',
  f: 'a foreign table',
  S: 'a sequence',
  i: 'an index',
  I: 'an index',
  c: 'a composite type',
  t: 'a TOAST table',
};

/**
 * An object's checksum as the manifest's `checksum_kind` says it was computed, from what restore
 * read; undefined where it cannot be recomputed (size and row count are still checked). Rows
 * written before the kind was recorded: a 32-hex md5 over the rows' canonical texts (each `N`
 * for NULL or `V<bytes>:<text>`, each row ended by a newline), as the first writer computed it;
 * a 64-hex sha256 over an earlier writer's PLAIN values, which nothing computes any more.
 */
async function recomputedChecksum(
  object: { object_key: string; checksum: string; checksum_kind: string | null },
  bytes: Uint8Array,
  plans: ColumnPlan[],
  rows: Array<Array<string | null>>,
): Promise<string | undefined> {
  if (object.checksum_kind === CHECKSUM_KIND) {
    // The checksum does not depend on NOT NULL (a NULL is framed alike): `into` may declare one the source did not.
    return (
      await readBackChecksum(
        bytes,
        plans.map((plan) => ({ ...plan, notNull: false })),
      )
    ).checksum;
  }
  if (object.checksum_kind !== null) {
    throw new CatalogError(
      object.object_key,
      `${object.object_key} has a checksum of kind ${object.checksum_kind}, which this version does not know: restore with the version that archived it`,
    );
  }
  if (!/^[0-9a-f]{32}$/.test(object.checksum)) return undefined;
  const hash = createHash('md5');
  for (const row of rows) {
    for (const text of row) hash.update(text === null ? 'N' : `V${Buffer.byteLength(text)}:${text}`);
    hash.update('\n');
  }
  return hash.digest('hex');
}

/** SQL turning a canonical text (column `c`) back into the column's value: the inverse of `ColumnPlan.select`. */
function fromCanonical(plan: ColumnPlan, c: string): string {
  const type = plan.pgType;
  if (plan.array) return `${c}::${type}`;
  switch (plan.kind) {
    case 'date':
      return `(DATE '1970-01-01' + ${c}::integer)`;
    case 'timestamp':
      return `(TIMESTAMP '1970-01-01 00:00:00' + (${c} || ' microseconds')::interval)`;
    case 'timestamptz':
      return `(TIMESTAMPTZ '1970-01-01 00:00:00+00' + (${c} || ' microseconds')::interval)`;
    case 'bytea':
      return `decode(${c}, 'hex')`;
    default:
      return `${c}::${type}`;
  }
}

export interface RestoreSummary {
  source: string;
  into: string;
  objects: number;
  rowsInserted: number;
  rowsAlreadyPresent: number;
}

/**
 * Puts the rows of every published object of `source` whose day is in [from, to] into `into`,
 * one object per transaction: rows whose key `into` lacks are inserted; rows already there must
 * be identical (a different row under the same key is refused, naming the keys, and nothing of
 * that object is inserted). Each object restored is recorded in housekeeping.archive_restores.
 * Twice is once: a second restore finds every row present and inserts nothing.
 *
 * `into` must not be the archive's source: the next archive run would take the rows again into
 * new objects beside the ones they came from.
 */
export async function restoreArchived(
  client: pg.Client,
  options: {
    source: string;
    bucket: string;
    /** The destination's prefix: the range's dt= folders are listed too. */
    prefix: string;
    kmsKeyId?: string;
    keyColumns: string[];
    into: string;
    from: string;
    to: string;
    store?: ObjectStore;
  },
): Promise<RestoreSummary> {
  for (const [option, day] of [
    ['--from', options.from],
    ['--to', options.to],
  ] as const) {
    if (!isDay(day)) throw new ConfigError(option, `expected a day of the calendar as YYYY-MM-DD, got ${JSON.stringify(day)}`);
  }
  if (options.from > options.to) throw new ConfigError('--from', `${options.from} is after --to ${options.to}`);
  const source = parseQualifiedName(options.source, 'source');
  const into: QualifiedName = parseQualifiedName(options.into, '--into');
  const shown = displayName(into);
  if (displayName(source) === shown) {
    throw new ConfigError(
      '--into',
      `${shown} is the archive's source: its next run would archive the restored rows again into new objects beside the ones they came from. ` +
        `Restore into another table with the same columns (CREATE TABLE ... (LIKE ${shown} INCLUDING ALL))`,
    );
  }
  // By storage, not only by name: a table that inherits from the source (a partition, or a child
  // by INHERITS), or that the source inherits from, is read as the source or holds its rows, and a
  // view's insert lands in its table. `root` is the top of `into`'s inheritance tree: restores into
  // a table and into its partition write the same rows.
  const { rows: relations } = await client.query<{ kind: string | null; source_tree: boolean; root: string; has_parent: boolean }>(
    `WITH RECURSIVE ancestors (relid) AS (
       SELECT to_regclass($1)
       UNION SELECT i.inhparent FROM pg_inherits AS i JOIN ancestors AS a ON i.inhrelid = a.relid),
     descendants (relid) AS (
       SELECT to_regclass($1)
       UNION SELECT i.inhrelid FROM pg_inherits AS i JOIN descendants AS d ON i.inhparent = d.relid)
     SELECT c.relkind::text AS kind,
            EXISTS (SELECT 1 FROM ancestors WHERE relid = to_regclass($2)) OR EXISTS (SELECT 1 FROM descendants WHERE relid = to_regclass($2)) AS source_tree,
            (SELECT quote_ident(n.nspname) || '.' || quote_ident(t.relname) FROM ancestors AS a JOIN pg_class AS t ON t.oid = a.relid JOIN pg_namespace AS n ON n.oid = t.relnamespace
             WHERE NOT EXISTS (SELECT 1 FROM pg_inherits AS i WHERE i.inhrelid = a.relid) LIMIT 1) AS root,
            EXISTS (SELECT 1 FROM pg_inherits AS i WHERE i.inhrelid = to_regclass($1)) AS has_parent
     FROM (SELECT to_regclass($1) AS oid) AS r LEFT JOIN pg_class AS c ON c.oid = r.oid`,
    [quoteQualified(into), quoteQualified(source)],
  );
  const relation = relations[0]!;
  if (relation.kind === null)
    throw new CatalogError(
      shown,
      `${shown} does not exist; create it with the source's columns (CREATE TABLE ${shown} (LIKE ${displayName(source)} INCLUDING ALL))`,
    );
  if (relation.kind !== 'r' && relation.kind !== 'p') {
    throw new ConfigError(
      '--into',
      `${shown} is ${RELATION_KINDS[relation.kind] ?? `a relation of kind ${relation.kind}`}, not a table: restore into a table`,
    );
  }
  if (relation.source_tree) {
    throw new ConfigError(
      '--into',
      `${shown} shares its storage with the archive's source ${displayName(source)} (one is a partition or an inheriting child of the other): the restored rows would be the source's again, ` +
        `and its next run would archive them into new objects. Restore into another table (CREATE TABLE ... (LIKE ${displayName(source)} INCLUDING ALL))`,
    );
  }
  const plans = await planColumns(client, into);

  const { rows: pending } = await client.query<{ n: number }>(
    `SELECT count(*)::int AS n FROM housekeeping.archive_objects WHERE source = $1 AND bucket = $2 AND state = 'committed' AND dt BETWEEN $3::date AND $4::date`,
    [displayName(source), options.bucket, options.from, options.to],
  );
  if (pending[0]!.n > 0) {
    throw new CatalogError(
      displayName(source),
      `${pending[0]!.n} object(s) of ${displayName(source)} in that range are committed but not yet published (a run died); run the archive once to publish them, then restore`,
    );
  }
  const { rows: objects } = await client.query<{
    id: string;
    object_key: string;
    row_count: string;
    size_bytes: string;
    checksum: string;
    checksum_kind: string | null;
    columns: Array<{ name: string; postgres: string; parquet: string }>;
  }>(
    `SELECT id::text, object_key, row_count::text, size_bytes::text, checksum, checksum_kind, columns FROM housekeeping.archive_objects
     WHERE source = $1 AND bucket = $2 AND state = 'published' AND dt BETWEEN $3::date AND $4::date ORDER BY dt, id`,
    [displayName(source), options.bucket, options.from, options.to],
  );
  const store = options.store ?? (await openObjectStore({ bucket: options.bucket, ...(options.kmsKeyId ? { kmsKeyId: options.kmsKeyId } : {}) }));
  const summary: RestoreSummary = { source: displayName(source), into: shown, objects: 0, rowsInserted: 0, rowsAlreadyPresent: 0 };

  const keyIndexes = options.keyColumns.map((k) => plans.findIndex((p) => p.name === k));
  if (keyIndexes.some((i) => i < 0)) throw new CatalogError(shown, `${shown} lacks a key column (${options.keyColumns.join(', ')})`);
  // A stored generated column is computed by `into` itself (it refuses any other value); what it
  // computes must still equal the archived value, which the digest comparison below checks.
  const inserted = plans.flatMap((p, i) => (p.generated ? [] : [i]));
  const cols = inserted.map((i) => quoteIdent(plans[i]!.name)).join(', ');
  const unnest = `unnest(${plans.map((_, i) => `$${i + 1}::text[]`).join(', ')}) AS v(${plans.map((_, i) => `c${i}`).join(', ')})`;
  // Equal by the key's own operator (what an index finds), and the same canonical text byte for
  // byte: under a non-deterministic collation 'c' = 'C', and a table unique on the bytes holds both.
  // Over alias `t` (`into`), as ColumnPlan.select is.
  const keyMatch = options.keyColumns
    .map((k, i) => {
      const plan = plans[keyIndexes[i]!]!;
      const value = `v.c${keyIndexes[i]}`;
      return `t.${quoteIdent(k)} = ${fromCanonical(plan, value)} AND ${plan.select} = ${value} COLLATE "C"`;
    })
    .join(' AND ');
  const insert =
    `INSERT INTO ${quoteQualified(into)} (${cols}) OVERRIDING SYSTEM VALUE SELECT ${inserted.map((i) => fromCanonical(plans[i]!, `v.c${i}`)).join(', ')} FROM ${unnest} ` +
    `WHERE NOT EXISTS (SELECT 1 FROM ${quoteQualified(into)} AS t WHERE ${keyMatch}) ON CONFLICT DO NOTHING`;
  // Rows of `into` under the object's keys whose canonical digest differs from the object's row.
  const canonical = plans.map((p, i) => `${p.select} AS c${i}`).join(', ');
  const differing =
    `SELECT ${options.keyColumns.map((_, i) => `v.c${keyIndexes[i]}`).join(` || ', ' || `)} AS key FROM ${unnest} JOIN ${quoteQualified(into)} AS t ON ${keyMatch} ` +
    `WHERE ${digestSql(plans.map((_, i) => `v.c${i}`))} <> (SELECT ${digestSql(plans.map((_, i) => `w.c${i}`))} FROM (SELECT ${canonical}) AS w) ORDER BY 1 LIMIT 11`;
  // Rows of the object whose key `into` still lacks after the insert: another unique constraint of
  // `into` (or a concurrent writer) kept them out. Counting them present would lose them silently.
  const missing =
    `SELECT ${options.keyColumns.map((_, i) => `v.c${keyIndexes[i]}`).join(` || ', ' || `)} AS key FROM ${unnest} ` +
    `WHERE NOT EXISTS (SELECT 1 FROM ${quoteQualified(into)} AS t WHERE ${keyMatch}) ORDER BY 1 LIMIT 11`;

  // Every object's columns before anything is restored: values are decoded by `into`'s column
  // types, so an object written with other types (another numeric scale, timestamp vs
  // timestamptz, a narrower varchar whose cast would cut the values) is refused, naming them.
  const wanted = describeColumns(plans);
  for (const object of objects) {
    const names = object.columns.map((c) => c.name);
    if (names.join(',') !== plans.map((p) => p.name).join(',')) {
      throw new CatalogError(
        shown,
        `${object.object_key} holds columns ${names.join(', ')}; ${shown} has ${plans.map((p) => p.name).join(', ')} (nothing was restored)`,
      );
    }
    const changed = object.columns.filter((c, i) => c.postgres !== wanted[i]!.postgres || c.parquet !== wanted[i]!.parquet);
    if (changed.length > 0) {
      throw new CatalogError(
        shown,
        `${object.object_key} was written with column types ${shown} does not have: ${changed
          .map((c) => `${c.name} (${c.postgres} in the object, ${wanted[object.columns.indexOf(c)]!.postgres} in ${shown})`)
          .join('; ')}. Restore into a table with the archived types, then convert. Nothing was restored`,
      );
    }
  }
  // What the range's folders hold beyond the manifest: rows this database did not archive, or
  // archived after the copy of it restore reads (a snapshot) was taken. Restore reads only what
  // the manifest vouches for (row count, checksum), so it says so instead of leaving them out.
  const folder = tableFolder(options, source);
  const manifestKeys = new Set(objects.map((object) => object.object_key));
  const UNLISTED_SHOWN = 10;
  const inFolders = await store.listRange(
    `${folder}/`,
    // '0' sorts just after '/': every key of the last day's folder, none of the next day's.
    { from: `${folder}/dt=${options.from}/`, to: `${folder}/dt=${options.to}0` },
    objects.length + UNLISTED_SHOWN,
  );
  const unlisted = inFolders?.filter((key) => !manifestKeys.has(key));
  if (unlisted === undefined || unlisted.length > 0) {
    throw new CatalogError(
      shown,
      `${unlisted === undefined ? `more than ${UNLISTED_SHOWN}` : unlisted.length} object(s) in the dt= folders of ${options.from} to ${options.to} are not in this database's manifest` +
        `${unlisted?.length ? ` (${unlisted.slice(0, UNLISTED_SHOWN).join(', ')})` : ''}: this database did not archive them, or archived them after the copy restore reads was made. ` +
        `Restore reads what the manifest vouches for (each object's row count and checksum): restore from the database that archived them. Nothing was restored`,
    );
  }
  // One restore into a table (and its partitions or children) at a time: another one's rows, not
  // yet committed, are invisible to this one's check of what is already there (a table without a
  // unique key would get both). Keyed by the top of the tree (`into` itself, without a parent).
  const lockedTree = relation.root;
  if (!(await tryLockTarget(client, 'restore', lockedTree))) {
    throw new CatalogError(
      shown,
      `another restore into ${relation.has_parent ? lockedTree : shown} or a table of its tree is running; run this one when it has finished (nothing was restored)`,
    );
  }
  try {
    for (const object of objects) {
      const bytes = await store.get(object.object_key);
      if (!bytes) throw new CatalogError(object.object_key, `s3://${options.bucket}/${object.object_key} is listed as published but missing`);
      // The object must be the one archived: its size, rows and checksum as the manifest recorded them.
      const notArchived = (what: string) =>
        new CatalogError(
          object.object_key,
          `s3://${options.bucket}/${object.object_key} is not the object archived (${what}); nothing of it was restored (objects before it in the range were). ` +
            `Restore its archived version from the bucket's versions, then run restore again`,
        );
      if (bytes.byteLength !== Number(object.size_bytes)) throw notArchived(`${bytes.byteLength} bytes, the manifest says ${object.size_bytes}`);
      let rows: Array<Array<string | null>>;
      let checksum: string | undefined;
      try {
        rows = await canonicalRows(bytes, plans);
        checksum = await recomputedChecksum(object, bytes, plans, rows);
      } catch (error) {
        if (error instanceof CatalogError) throw error;
        throw notArchived(`it does not read as Parquet: ${errorMessage(error)}`);
      }
      if (rows.length !== Number(object.row_count)) throw notArchived(`${rows.length} rows, the manifest says ${object.row_count}`);
      if (checksum !== undefined && checksum !== object.checksum)
        throw notArchived(`its values' checksum is ${checksum}, the manifest's ${object.checksum}`);
      const columns = plans.map((_, i) => rows.map((r) => r[i]!));
      const inserted = await inTransaction(client, async () => {
        const count = (await client.query(insert, columns)).rowCount ?? 0;
        crashPoint('restore-after-insert');
        const { rows: different } = await client.query<{ key: string }>(differing, columns);
        if (different.length > 0) {
          throw new CatalogError(
            shown,
            `${shown} already holds ${different.length > 10 ? 'more than 10' : different.length} row(s) of ${object.object_key} with different contents under the same key (${options.keyColumns.join(', ')} = ${different
              .slice(0, 10)
              .map((d) => d.key)
              .join('; ')}); nothing of that object was restored`,
          );
        }
        const { rows: absent } = await client.query<{ key: string }>(missing, columns);
        if (absent.length > 0) {
          throw new CatalogError(
            shown,
            `${shown} refused ${absent.length > 10 ? 'more than 10' : absent.length} row(s) of ${object.object_key} (${options.keyColumns.join(', ')} = ${absent
              .slice(0, 10)
              .map((d) => d.key)
              .join('; ')}): another unique constraint holds a row with the same values under another key; nothing of that object was restored`,
          );
        }
        await client.query(
          `INSERT INTO housekeeping.archive_restores (object_id, into_table, rows_inserted, rows_present) VALUES ($1, $2, $3, $4) ON CONFLICT (object_id, into_table) DO NOTHING`,
          [object.id, shown, count, rows.length - count],
        );
        return count;
      });
      summary.objects++;
      summary.rowsInserted += inserted;
      summary.rowsAlreadyPresent += rows.length - inserted;
    }
  } finally {
    await unlockTarget(client, 'restore', lockedTree);
  }
  return summary;
}
