import type pg from 'pg';
import { CatalogError, SchemaDriftError } from '../../shared/errors';
import { displayName, type QualifiedName } from '../../shared/identifiers';
import { TIME_COLUMN_TYPES, type TimeColumnType } from '../../shared/postgres';

interface Column {
  name: string;
  typeId: number;
  typmod: number;
  /** format_type with the typmod: what an operator reads, e.g. numeric(12,2). */
  type: string;
  /** format_type without it: timestamp(3) with time zone is a timestamp with time zone. */
  baseType: string;
  /** pg_catalog name of the type (of the element, for arrays) whose typmod rules apply, else undefined. */
  builtin: string | undefined;
  notNull: boolean;
  /** The expression of a stored generated column. */
  generated: string | undefined;
}

interface UniqueIndex {
  name: string;
  columns: string[];
}

/** A unique index that does not prove its columns unique: partial, on an expression, or not valid. */
interface WeakUniqueIndex {
  name: string;
  definition: string;
  why: string;
}

interface TableShape {
  name: QualifiedName;
  oid: number;
  partitioned: boolean;
  /** Tables inheriting from this one (INHERITS): the parent's unique indexes do not cover them. */
  inheritors: string[];
  columns: Column[];
  /**
   * Key columns of each valid, non-partial unique index on plain columns (primary key included).
   * A deferrable one counts: committed rows, all a batch reads, always satisfy it.
   */
  uniqueKeys: UniqueIndex[];
  weakUniqueIndexes: WeakUniqueIndex[];
}

export interface ArchiveCatalog {
  /** Columns copied from source to destination, in source order. */
  copyColumns: string[];
  /** Every column both tables hold, compared byte for byte when a key is already archived. */
  compareColumns: string[];
  ageTypes: { primary: TimeColumnType; fallback?: TimeColumnType };
  /** The policy's key columns, in policy order: batches are ordered and paginated by them. */
  keyColumns: string[];
  /** Columns of the destination's unique index that finds an archived copy (a subset of the key). */
  destinationKey: string[];
  sourceIsPartitioned: boolean;
  /** A single smallint/integer/bigint key can take max(), cheaper than sorting the batch for its last key. */
  keyIsInteger: boolean;
  /** The destination has INSERT triggers the policy allowed: each batch then checks the archived copies. */
  destinationHasTriggers: boolean;
  /** What the policy allowed and will fire, for the log. */
  allowed: string[];
}

const TRIGGER_INSERT = 1 << 2;
const TRIGGER_DELETE = 1 << 3;

async function readShape(client: pg.ClientBase, name: QualifiedName, role: string): Promise<TableShape> {
  const shown = displayName(name);
  const { rows: found } = await client.query<{ oid: number; relkind: string; inheritors: string[] }>(
    `SELECT c.oid::int AS oid, c.relkind,
            ARRAY(SELECT i.inhrelid::regclass::text FROM pg_inherits i JOIN pg_class k ON k.oid = i.inhrelid
                  WHERE i.inhparent = c.oid AND NOT k.relispartition ORDER BY 1) AS inheritors
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`,
    [name.schema, name.name],
  );
  const table = found[0];
  if (!table) throw new CatalogError(shown, `${role} table ${shown} does not exist`);
  if (table.relkind !== 'r' && table.relkind !== 'p') throw new CatalogError(shown, `${role} ${shown} is not a table (relkind ${table.relkind})`);
  const columns = await client.query<{
    name: string;
    type_id: number;
    typmod: number;
    type: string;
    base_type: string;
    builtin: string | null;
    not_null: boolean;
    generated: string | null;
  }>(
    `SELECT a.attname AS name, a.atttypid::int AS type_id, a.atttypmod AS typmod, format_type(a.atttypid, a.atttypmod) AS type,
            format_type(a.atttypid, NULL) AS base_type,
            (SELECT b.typname::text FROM pg_type b WHERE b.typnamespace = 'pg_catalog'::regnamespace
               AND b.oid = CASE WHEN t.typcategory = 'A' AND t.typelem <> 0 THEN t.typelem ELSE t.oid END) AS builtin,
            a.attnotnull AS not_null,
            CASE WHEN a.attgenerated <> '' THEN pg_get_expr(d.adbin, d.adrelid) END AS generated
     FROM pg_attribute a
     JOIN pg_type t ON t.oid = a.atttypid
     LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
     WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
    [table.oid],
  );
  // Only the key part of an index counts (INCLUDE columns do not take part in uniqueness), and
  // only an index on plain columns, without a predicate, proves its columns
  // unique: UNIQUE (id, lower(note)) allows two rows with id 1.
  const indexes = await client.query<{ name: string; definition: string; columns: string[] | null; why: string | null }>(
    `SELECT x.relname AS name, pg_get_indexdef(i.indexrelid) AS definition,
            ARRAY(SELECT a.attname::text FROM unnest(i.indkey[0:i.indnkeyatts - 1]) WITH ORDINALITY AS k(attnum, ord)
                  JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum ORDER BY k.ord) AS columns,
            CASE WHEN i.indexprs IS NOT NULL THEN 'it is on an expression'
                 WHEN i.indpred IS NOT NULL THEN 'it is partial (WHERE ...), so rows outside its predicate may repeat'
                 WHEN NOT i.indisvalid THEN 'it is not valid (a failed CREATE INDEX CONCURRENTLY?)' END AS why
     FROM pg_index i JOIN pg_class x ON x.oid = i.indexrelid
     WHERE i.indrelid = $1 AND i.indisunique
     ORDER BY x.relname`,
    [table.oid],
  );
  return {
    name,
    oid: table.oid,
    partitioned: table.relkind === 'p',
    inheritors: table.inheritors,
    columns: columns.rows.map((c) => ({
      name: c.name,
      typeId: c.type_id,
      typmod: c.typmod,
      type: c.type,
      baseType: c.base_type,
      builtin: c.builtin ?? undefined,
      notNull: c.not_null,
      generated: c.generated ?? undefined,
    })),
    uniqueKeys: indexes.rows.filter((i) => i.why === null).map((i) => ({ name: i.name, columns: i.columns ?? [] })),
    weakUniqueIndexes: indexes.rows.filter((i) => i.why !== null).map((i) => ({ name: i.name, definition: i.definition, why: i.why! })),
  };
}

function ageType(shape: TableShape, column: string, field: string): TimeColumnType {
  const found = shape.columns.find((c) => c.name === column);
  const shown = displayName(shape.name);
  if (!found) throw new CatalogError(shown, `${field}: column ${column} does not exist in ${shown}`);
  const type = TIME_COLUMN_TYPES[found.baseType];
  if (!type) throw new CatalogError(shown, `${field}: ${shown}.${column} is ${found.type}; expected timestamptz, timestamp or date`);
  return type;
}

const VARHDRSZ = 4;

/** numeric's typmod packs precision and scale (scale may be negative since Postgres 15). */
function numericTypmod(typmod: number): { precision: number; scale: number } {
  const packed = typmod - VARHDRSZ;
  return { precision: (packed >> 16) & 0xffff, scale: ((packed & 0x7ff) ^ 1024) - 1024 };
}

/**
 * Why the destination column cannot hold every value of the source column exactly, or undefined
 * when it can. Same type, and a typmod that neither rounds, truncates nor pads: an insert into a
 * narrower column rounds silently (numeric(12,2) turns 12.345678 into 12.35), and a wider scale
 * or a longer char(n) changes the value's bytes (1.50 becomes 1.5000, 'ab' becomes 'ab   ').
 * Typmod -1 is the widest of every type.
 */
export function exactCopyProblem(
  source: Pick<Column, 'typeId' | 'typmod' | 'builtin'>,
  destination: Pick<Column, 'typeId' | 'typmod'>,
): string | undefined {
  if (source.typeId !== destination.typeId) return 'a different type';
  const from = source.typmod;
  const to = destination.typmod;
  if (from === to || to === -1) return undefined;
  switch (source.builtin) {
    case 'numeric': {
      if (from === -1) return 'the source holds any precision and scale, the archive would round to its own';
      const s = numericTypmod(from);
      const d = numericTypmod(to);
      if (d.scale !== s.scale) {
        return d.scale < s.scale
          ? `the archive's scale ${d.scale} would round the source's scale ${s.scale}`
          : `the archive's scale ${d.scale} would pad values of scale ${s.scale} (1.50 becomes 1.5000)`;
      }
      return d.precision - d.scale >= s.precision - s.scale
        ? undefined
        : `the archive's precision ${d.precision} holds fewer integer digits than the source's ${s.precision}`;
    }
    case 'varchar':
    case 'varbit':
      if (from === -1) return 'the source has no length limit, the archive has one';
      return to >= from ? undefined : 'the archive is shorter and would reject or truncate values';
    case 'timestamp':
    case 'timestamptz':
    case 'time':
    case 'timetz': {
      // -1 means microseconds, the most these types hold.
      const precision = (typmod: number) => (typmod === -1 ? 6 : typmod);
      return precision(to) >= precision(from)
        ? undefined
        : `the archive keeps ${precision(to)} fractional digits of the source's ${precision(from)} and would round`;
    }
    default:
      return 'the type modifiers differ (only an identical or unconstrained archive column is exact for this type)';
  }
}

/** `oid` and, if it is partitioned, all its partitions (pg_partition_tree lists nothing for a plain table). */
const TREE = `SELECT $1::oid UNION SELECT relid FROM pg_partition_tree($1::oid)`;

async function referencingForeignKeys(client: pg.ClientBase, oid: number): Promise<string[]> {
  // A foreign key to a partitioned table is repeated for each partition (conparentid set): name it
  // once, by the key declared on the parent. A source that is itself a partition has only such
  // repeated keys pointing at it, and their actions fire as much as the declared key's.
  const { rows } = await client.query<{ text: string }>(
    `WITH RECURSIVE up AS (
       SELECT c.oid, c.conparentid FROM pg_constraint c WHERE c.contype = 'f' AND c.confrelid IN (${TREE})
       UNION
       SELECT p.oid, p.conparentid FROM pg_constraint p JOIN up ON p.oid = up.conparentid)
     SELECT DISTINCT format('%s on %s (ON DELETE %s)', c.conname, c.conrelid::regclass,
                   CASE c.confdeltype WHEN 'a' THEN 'NO ACTION' WHEN 'r' THEN 'RESTRICT' WHEN 'c' THEN 'CASCADE'
                                      WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT' END) AS text
     FROM up JOIN pg_constraint c ON c.oid = up.oid
     WHERE up.conparentid = 0
     ORDER BY 1`,
    [oid],
  );
  return rows.map((r) => r.text);
}

async function triggers(client: pg.ClientBase, oid: number, events: number): Promise<string[]> {
  // Internal triggers (foreign-key checks) are Postgres's own; a trigger cloned onto a partition
  // (tgparentid set) is named once, by the trigger declared on its parent. A table that is itself
  // a partition fires its clones of the parent's row triggers, so they count. Disabled triggers
  // never fire; replica-only ones could (session_replication_role), so they count.
  const { rows } = await client.query<{ text: string }>(
    `WITH RECURSIVE up AS (
       SELECT t.oid, t.tgparentid FROM pg_trigger t
       WHERE t.tgrelid IN (${TREE}) AND NOT t.tgisinternal AND t.tgenabled <> 'D' AND (t.tgtype & $2) <> 0
       UNION
       SELECT p.oid, p.tgparentid FROM pg_trigger p JOIN up ON p.oid = up.tgparentid)
     SELECT DISTINCT format('%s on %s', t.tgname, t.tgrelid::regclass) AS text
     FROM up JOIN pg_trigger t ON t.oid = up.oid
     WHERE up.tgparentid = 0
     ORDER BY 1`,
    [oid, events],
  );
  return rows.map((r) => r.text);
}

/** pg_rewrite.ev_type of the statements a batch runs. */
const RULE_EVENT = { INSERT: '3', DELETE: '4' } as const;

/** A rule rewrites the statement itself: no batch could say what it moved. No opt-in. */
async function refuseRules(client: pg.ClientBase, table: TableShape, event: keyof typeof RULE_EVENT): Promise<void> {
  const { rows } = await client.query<{ text: string }>(
    `SELECT format('%s on %s', r.rulename, r.ev_class::regclass) AS text
     FROM pg_rewrite r WHERE r.ev_class IN (${TREE}) AND r.ev_type = $2 AND r.ev_enabled <> 'D' ORDER BY 1`,
    [table.oid, RULE_EVENT[event]],
  );
  if (rows.length === 0) return;
  const shown = displayName(table.name);
  throw new CatalogError(
    shown,
    `${shown} has ${event} rules (${listed(rows.map((r) => r.text))}): a rule rewrites each batch's ${event} into something else. Drop the rule (nothing was moved)`,
  );
}

const listed = (items: string[]) => (items.length <= 5 ? items.join('; ') : `${items.slice(0, 5).join('; ')}; and ${items.length - 5} more`);
const columnList = (columns: string[]) => (columns.length === 1 ? columns[0]! : `(${columns.join(', ')})`);

function checkSourceKey(from: TableShape, key: string[]): void {
  const shown = displayName(from.name);
  for (const column of key) {
    const found = from.columns.find((c) => c.name === column);
    if (!found) throw new CatalogError(shown, `key: column ${column} does not exist in ${shown}`);
    if (!found.notNull) {
      throw new CatalogError(
        shown,
        `key: ${shown}.${column} may be NULL; batches page through the source by key and would never reach rows whose key is NULL. Make it NOT NULL (nothing was moved)`,
      );
    }
  }
  if (from.inheritors.length > 0) {
    throw new CatalogError(
      shown,
      `${shown} has tables that inherit from it (${listed(from.inheritors)}); a DELETE on it reaches their rows too, and its unique indexes do not cover them, so ${columnList(key)} cannot be proven unique. Archive each table on its own (nothing was moved)`,
    );
  }
  if (from.uniqueKeys.some((u) => u.columns.every((c) => key.includes(c)))) return;

  const hints: string[] = [];
  const wider = from.uniqueKeys.filter((u) => key.every((c) => u.columns.includes(c)));
  if (wider.length > 0) {
    const index = wider[0]!;
    hints.push(
      from.partitioned
        ? `its unique index ${index.name} is on ${columnList(index.columns)}: a partitioned table's unique index must include the partition column, so ${columnList(key)} alone is not unique across partitions (two partitions may hold the same ${columnList(key)}). Set key to ${JSON.stringify(index.columns)} to move rows by the whole key (the archive then needs a unique index on those columns or a subset)`
        : `its unique index ${index.name} is on ${columnList(index.columns)}, which does not make ${columnList(key)} unique on its own. Set key to ${JSON.stringify(index.columns)}, or add a unique index on ${columnList(key)}`,
    );
  }
  for (const weak of from.weakUniqueIndexes) hints.push(`unique index ${weak.name} does not count: ${weak.why} (${weak.definition})`);
  throw new CatalogError(
    shown,
    `key: ${shown} has no primary key or unique index on ${columnList(key)}; batches pick and delete rows by it, so it must be unique (nothing was moved)` +
      (hints.length > 0 ? `. ${hints.join('. ')}` : ''),
  );
}

/**
 * Triggers, rules and foreign keys that make a DELETE from the source (or an INSERT into the
 * archive) change something besides the rows the policy names.
 */
async function checkSideEffects(
  client: pg.ClientBase,
  from: TableShape,
  to: TableShape | undefined,
  policy: { allowReferencingForeignKeys: boolean; allowTriggers: boolean },
): Promise<{ destinationHasTriggers: boolean; allowed: string[] }> {
  const shownSource = displayName(from.name);
  await refuseRules(client, from, 'DELETE');
  if (to) await refuseRules(client, to, 'INSERT');
  const allowed: string[] = [];
  const foreignKeys = await referencingForeignKeys(client, from.oid);
  if (foreignKeys.length > 0 && !policy.allowReferencingForeignKeys) {
    throw new CatalogError(
      shownSource,
      `${shownSource} is referenced by foreign keys: ${listed(foreignKeys)}. Deleting its expired rows would fire their ON DELETE actions (CASCADE deletes child rows the policy never named, SET NULL changes them, NO ACTION/RESTRICT fails). ` +
        `Archive or purge the referencing tables first and drop the foreign key, or set allowReferencingForeignKeys: true to accept those actions (nothing was moved)`,
    );
  }
  if (foreignKeys.length > 0) allowed.push(`foreign keys whose ON DELETE actions fire: ${listed(foreignKeys)}`);

  const sourceTriggers = await triggers(client, from.oid, TRIGGER_DELETE);
  const destinationTriggers = to ? await triggers(client, to.oid, TRIGGER_INSERT) : [];
  const all = [...sourceTriggers.map((t) => `${t} (DELETE)`), ...destinationTriggers.map((t) => `${t} (INSERT)`)];
  if (all.length > 0 && !policy.allowTriggers) {
    const object = sourceTriggers.length > 0 ? shownSource : displayName(to!.name);
    throw new CatalogError(
      object,
      `user triggers would fire on every batch: ${listed(all)}. A trigger can write to other tables (an audit log) or change the rows it sees. ` +
        `Disable or drop them, or set allowTriggers: true to let them fire (nothing was moved)`,
    );
  }
  if (all.length > 0) allowed.push(`triggers that fire: ${listed(all)}`);
  return { destinationHasTriggers: destinationTriggers.length > 0, allowed };
}

/**
 * Checks everything a move relies on before a single row moves: both tables exist, the key is
 * provably unique in the source, the age columns have usable types, the archive can hold every
 * value exactly and has a unique index within the key (so no row is archived twice), and no
 * trigger, rule or foreign key would change rows the policy does not name.
 */
export async function readArchiveCatalog(
  client: pg.ClientBase,
  source: QualifiedName,
  destination: QualifiedName | undefined,
  policy: { key: string[]; ageColumn: string; ageFallbackColumn?: string; allowReferencingForeignKeys: boolean; allowTriggers: boolean },
): Promise<ArchiveCatalog> {
  const from = await readShape(client, source, 'source');
  const shownSource = displayName(source);
  const key = policy.key;
  checkSourceKey(from, key);
  const ageTypes = {
    primary: ageType(from, policy.ageColumn, 'ageColumn'),
    ...(policy.ageFallbackColumn ? { fallback: ageType(from, policy.ageFallbackColumn, 'ageFallbackColumn') } : {}),
  };
  const keyIsInteger = key.length === 1 && ['smallint', 'integer', 'bigint'].includes(from.columns.find((c) => c.name === key[0])!.baseType);
  const common = { ageTypes, keyColumns: key, sourceIsPartitioned: from.partitioned, keyIsInteger };
  if (!destination) {
    const effects = await checkSideEffects(client, from, undefined, policy);
    return { ...common, copyColumns: [], compareColumns: [], destinationKey: [], ...effects };
  }

  const to = await readShape(client, destination, 'destination');
  const shownDestination = displayName(destination);
  // A read of the archive must see the archive's rows only: whether a key is already archived
  // decides whether a source row may go. Rows of a table inheriting from it (the source itself,
  // if the source inherits from the archive) would count as archived and be deleted uncopied.
  if (to.inheritors.length > 0) {
    throw new SchemaDriftError(
      shownDestination,
      `${shownDestination} has tables that inherit from it (${listed(to.inheritors)}); a read of it sees their rows as archived, and its unique indexes do not cover them. Archive into a table without children (nothing was moved)`,
    );
  }
  const { rows: overlap } = await client.query<{ shared: string }>(
    `SELECT relid::regclass::text AS shared FROM (${TREE.replaceAll('$1', '$2')}) AS d(relid)
     WHERE relid IN (${TREE}) ORDER BY 1`,
    [from.oid, to.oid],
  );
  if (overlap.length > 0) {
    throw new SchemaDriftError(
      shownDestination,
      `${shownSource} and ${shownDestination} share ${listed(overlap.map((r) => r.shared))}: one is a partition of the other, so the rows moved would land in the source again. Archive into a separate table (nothing was moved)`,
    );
  }
  const onlySource = from.columns.filter((c) => !to.columns.some((d) => d.name === c.name)).map((c) => c.name);
  const onlyDestination = to.columns.filter((d) => !from.columns.some((c) => c.name === d.name)).map((d) => d.name);
  const mismatched = from.columns.flatMap((c) => {
    const d = to.columns.find((x) => x.name === c.name);
    if (!d) return [];
    const problem = exactCopyProblem(c, d);
    if (problem) return [`${c.name} (${shownSource}: ${c.type}, ${shownDestination}: ${d.type}: ${problem})`];
    // A generated archive column computes its own value, which must be the one the source holds.
    if (d.generated !== undefined && d.generated !== c.generated) {
      return [
        `${c.name} (generated in ${shownDestination} as ${d.generated}${c.generated ? `, in ${shownSource} as ${c.generated}` : `, a stored value in ${shownSource}`}: the archive would compute another value)`,
      ];
    }
    return [];
  });
  const problems = [
    onlySource.length ? `only in ${shownSource}: ${onlySource.join(', ')}` : '',
    onlyDestination.length ? `only in ${shownDestination}: ${onlyDestination.join(', ')}` : '',
    mismatched.length ? `incompatible types: ${mismatched.join('; ')}` : '',
  ].filter(Boolean);
  if (problems.length > 0) {
    throw new SchemaDriftError(
      shownDestination,
      `${shownSource} and ${shownDestination} have drifted apart; nothing was moved. ${problems.join('. ')}. Give the archive the same columns, each able to hold every source value exactly (same type; same or wider length and precision, same numeric scale, or no modifier)`,
    );
  }
  // The smallest unique index within the key finds an archived copy; with one, no key of the
  // source is archived twice. The source must be unique on it too, or two of its rows could
  // claim one archived key.
  const withinKey = to.uniqueKeys.filter((u) => u.columns.length > 0 && u.columns.every((c) => key.includes(c)));
  const sourceUniqueOn = (columns: string[]) => from.uniqueKeys.some((s) => s.columns.every((c) => columns.includes(c)));
  const destinationKey = withinKey.filter((u) => sourceUniqueOn(u.columns)).sort((a, b) => a.columns.length - b.columns.length)[0]?.columns;
  if (!destinationKey) {
    const narrower = withinKey[0];
    throw new SchemaDriftError(
      shownDestination,
      narrower
        ? `${shownDestination}'s unique index ${narrower.name} is on ${columnList(narrower.columns)}, but ${shownSource} is unique only on ${columnList(key)}: two of its rows could claim one archived key. Give the archive a unique index on ${columnList(key)} (nothing was moved)`
        : `${shownDestination} has no primary key or unique index on ${columnList(key)}${key.length > 1 ? ' or a subset of those columns' : ' alone'}; add one so no row can be archived twice (nothing was moved)`,
    );
  }
  const effects = await checkSideEffects(client, from, to, policy);
  // Generated columns in the destination compute their own values (checked equal above).
  const generatedInDestination = new Set(to.columns.filter((d) => d.generated !== undefined).map((d) => d.name));
  return {
    ...common,
    copyColumns: from.columns.map((c) => c.name).filter((name) => !generatedInDestination.has(name)),
    compareColumns: from.columns.map((c) => c.name),
    destinationKey,
    ...effects,
  };
}
