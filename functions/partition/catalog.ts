import type pg from 'pg';
import { CatalogError } from '../../shared/errors';
import { displayName, type QualifiedName } from '../../shared/identifiers';
import { queryOne, TIME_COLUMN_TYPES, type TimeColumnType } from '../../shared/postgres';

export type PartitionKeyType = TimeColumnType;

/**
 * Bounds are in "key milliseconds": epoch ms for timestamptz; for timestamp and date, the wall
 * clock read as if it were UTC (those types carry no zone). null = MINVALUE / MAXVALUE.
 */
export interface ExistingPartition {
  name: QualifiedName;
  oid: number;
  from: number | null;
  to: number | null;
  detachPending: boolean;
}

export interface PartitionCatalog {
  parent: QualifiedName;
  keyColumn: string;
  keyType: PartitionKeyType;
  /** The parent's writable columns in order; used to move rows out of DEFAULT column by column. */
  columns: string[];
  partitions: ExistingPartition[];
  defaultPartition: QualifiedName | null;
  /** Relation names in the parent's schema that our naming scheme could produce, to refuse a taken one. */
  takenNames: Set<string>;
  /**
   * What moving a row out of DEFAULT (DELETE from DEFAULT, INSERT into the new table before it is
   * attached) would fire: foreign keys referencing the partition tree, enabled DELETE triggers
   * and DELETE rules on DEFAULT. Empty without a DEFAULT partition.
   */
  rescueHazards: string[];
  /** Retirements an earlier run recorded in housekeeping.partition_retirements and did not finish. */
  unfinishedRetirements: RecordedRetirement[];
}

interface RecordedRetirement {
  partition: QualifiedName;
  /** The oid the table had when the retirement was recorded: a table that reused the name is never touched. */
  oid: number;
  mode: 'drop' | 'detach';
  recordedAt: string;
  /** What the catalog holds under that name now. */
  currentOid: number | null;
  /** The table it is a partition of now (pending detach included), if any. */
  attachedTo: number | null;
}

const STRATEGIES: Record<string, string> = { r: 'RANGE', l: 'LIST', h: 'HASH' };

/**
 * For a DEFAULT partition `kid` of the parent `parent` (both oid columns of the query below):
 * everything a DELETE from DEFAULT fires. Foreign keys referencing any table of the tree (a key
 * declared on the parent has per-partition copies with conparentid set; the declared one is
 * named). DELETE triggers and rules on DEFAULT itself: the parent's row triggers are cloned onto
 * it, and statement triggers and rules of the parent do not fire for a DELETE aimed at a
 * partition. INSERT triggers never fire: the rows go into the new table before it is attached,
 * when it has no triggers at all (CREATE TABLE ... LIKE copies none).
 */
const RESCUE_HAZARDS = `ARRAY(
  SELECT format('foreign key %I on %s (ON DELETE %s) references %s', con.conname, con.conrelid::regclass,
                CASE con.confdeltype WHEN 'a' THEN 'NO ACTION' WHEN 'r' THEN 'RESTRICT' WHEN 'c' THEN 'CASCADE'
                                     WHEN 'n' THEN 'SET NULL' ELSE 'SET DEFAULT' END, con.confrelid::regclass)
  FROM pg_constraint con
  WHERE con.contype = 'f' AND con.conparentid = 0
    AND con.confrelid IN (SELECT relid FROM pg_partition_tree(parent.oid::regclass) UNION SELECT relid FROM pg_partition_ancestors(parent.oid::regclass))
  UNION ALL
  SELECT format('trigger %I on %s (fires on DELETE)', t.tgname,
                coalesce((SELECT p.tgrelid::regclass FROM pg_trigger p WHERE p.oid = t.tgparentid), t.tgrelid::regclass))
  FROM pg_trigger t
  WHERE t.tgrelid = kid.oid AND NOT t.tgisinternal AND t.tgenabled <> 'D' AND (t.tgtype & 8) <> 0
  UNION ALL
  SELECT format('rule %I on %s (ON DELETE)', r.rulename, r.ev_class::regclass)
  FROM pg_rewrite r
  WHERE r.ev_class = kid.oid AND r.ev_type = '4'
  ORDER BY 1)`;

interface RetirementRow {
  partition_schema: string;
  partition_name: string;
  partition_oid: string;
  mode: 'drop' | 'detach';
  recorded_at: string;
  current_oid: string | null;
  attached_to: string | null;
}

/** The parent's recorded, unfinished retirements (`input.shown` = parent as schema.table), with what the catalog holds under each name now. */
const UNFINISHED_RETIREMENTS = `(SELECT json_agg(json_build_object(
     'partition_schema', r.partition_schema, 'partition_name', r.partition_name, 'partition_oid', r.partition_oid::text,
     'mode', r.mode, 'recorded_at', r.recorded_at, 'current_oid', cur.oid::text, 'attached_to', inh.inhparent::text)
     ORDER BY r.recorded_at)
   FROM housekeeping.partition_retirements r
   LEFT JOIN pg_class cur ON cur.oid = to_regclass(format('%I.%I', r.partition_schema, r.partition_name))
   LEFT JOIN pg_inherits inh ON inh.inhrelid = cur.oid
   WHERE r.parent = input.shown)`;

/**
 * A bound literal as epoch seconds, cast back to the key type in this same session (UTC, ISO);
 * no parsing of Postgres's text format in JS. Other key types are refused before their bounds
 * are used, so they yield NULL here rather than a cast error.
 */
const epochOf = (literal: string) => `CASE parent.key_type
    WHEN 'timestamp with time zone' THEN extract(epoch FROM (${literal})::timestamptz)
    WHEN 'timestamp without time zone' THEN extract(epoch FROM (${literal})::timestamp)
    WHEN 'date' THEN extract(epoch FROM (${literal})::date) END`;

/**
 * Every parent's catalog in one statement (one row per parent, in input order): what used to be
 * four queries per table. The children's bounds come from pg_get_expr(relpartbound, 0) for every
 * partition of every parent at once.
 */
const catalogQuery = (withRetirements: boolean) => `
  WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) WITH ORDINALITY AS x(schema, name, shown, pattern, low, high, i)),
  parent AS (
    SELECT input.i, c.oid, c.relkind, p.partstrat AS strategy, p.partnatts AS key_count,
           a.attname AS key_column, format_type(a.atttypid, NULL) AS key_type
    FROM input
    JOIN pg_namespace n ON n.nspname = input.schema
    JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = input.name
    LEFT JOIN pg_partitioned_table p ON p.partrelid = c.oid
    LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = p.partattrs[0])
  SELECT input.i, parent.oid, parent.relkind, parent.strategy, parent.key_count, parent.key_column, parent.key_type, now() AS now,
    CASE WHEN parent.relkind = 'p' THEN (
      SELECT json_agg(json_build_object(
               'oid', kid.oid, 'schema', kid.schema, 'name', kid.name, 'is_default', kid.is_default, 'detach_pending', kid.detach_pending,
               'from_epoch', CASE WHEN kid.from_text IS NULL OR kid.from_text = 'MINVALUE' THEN NULL ELSE ${epochOf("trim(both $$'$$ FROM kid.from_text)")}::text END,
               'to_epoch', CASE WHEN kid.to_text IS NULL OR kid.to_text = 'MAXVALUE' THEN NULL ELSE ${epochOf("trim(both $$'$$ FROM kid.to_text)")}::text END,
               'rescue_hazards', CASE WHEN kid.is_default THEN ${RESCUE_HAZARDS} END))
      FROM (
        SELECT bounds.*, bound = 'DEFAULT' AS is_default,
               substring(bound FROM 'FROM \\((.*)\\) TO') AS from_text,
               substring(bound FROM 'TO \\((.*)\\)$') AS to_text
        FROM (
          -- OFFSET 0: deparse each bound once, not once per use above. A bound holds constants only,
          -- so it is deparsed without its relation (relid 0): no relcache entry built per partition,
          -- two to three times faster in a new session.
          SELECT c.oid, n.nspname AS schema, c.relname AS name, i.inhdetachpending AS detach_pending,
                 pg_get_expr(c.relpartbound, 0) AS bound
          FROM pg_inherits i
          JOIN pg_class c ON c.oid = i.inhrelid
          JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE i.inhparent = parent.oid
          OFFSET 0) AS bounds) AS kid) END AS children,
    -- Stored generated columns cannot be written; the new partition computes them again.
    ARRAY(SELECT attname::text FROM pg_attribute
          WHERE attrelid = parent.oid AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum) AS columns,
    ${withRetirements ? `CASE WHEN parent.relkind = 'p' THEN ${UNFINISHED_RETIREMENTS} END` : 'NULL::json'} AS retirements,
    -- Only names our scheme could generate (<parent>_p...): a schema can hold tens of thousands of
    -- relations. The range [<parent>_p, <parent>_q) lets the name index find them (LIKE alone with
    -- a pattern from a column scans every relation once per parent).
    ARRAY(SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE parent.relkind = 'p' AND n.nspname = input.schema
            AND c.relname >= input.low::name AND c.relname < input.high::name AND c.relname LIKE input.pattern) AS taken
  FROM input
  LEFT JOIN parent ON parent.i = input.i
  ORDER BY input.i`;

interface CatalogRow {
  oid: number | null;
  relkind: string | null;
  strategy: string | null;
  key_count: number | null;
  key_column: string | null;
  key_type: string | null;
  now: Date;
  children: Array<{
    oid: number;
    schema: string;
    name: string;
    is_default: boolean;
    detach_pending: boolean;
    from_epoch: string | null;
    to_epoch: string | null;
    rescue_hazards: string[] | null;
  }> | null;
  columns: string[];
  retirements: RetirementRow[] | null;
  taken: string[];
}

/** One parent's catalog, or the CatalogError that says why the job cannot work with it; and the database clock when it was read. */
export type CatalogReading = { catalog: PartitionCatalog; error?: undefined; now: Date } | { catalog?: undefined; error: CatalogError; now: Date };

/**
 * Reads the truth about many partitioned tables from the catalog in one round trip. Bounds, not
 * names, identify partitions. A table the job cannot work with yields its CatalogError, in its
 * place: one bad table does not stop the others.
 */
export async function readPartitionCatalogs(client: pg.ClientBase, parents: readonly QualifiedName[]): Promise<CatalogReading[]> {
  if (parents.length === 0) return [];
  const has = await hasRetirementsTable(client);
  const { rows } = await client.query<CatalogRow>(catalogQuery(has), [
    parents.map((p) => p.schema),
    parents.map((p) => p.name),
    parents.map((p) => displayName(p)),
    parents.map((p) => `${p.name.replace(/[\\%_]/g, '\\$&')}\\_p%`),
    parents.map((p) => `${p.name}_p`),
    parents.map((p) => `${p.name}_q`),
  ]);
  return parents.map((parent, i) => {
    const row = rows[i]!;
    try {
      return { catalog: toCatalog(parent, row), now: row.now };
    } catch (error) {
      if (error instanceof CatalogError) return { error, now: row.now };
      throw error;
    }
  });
}

/** Sessions that have seen housekeeping.partition_retirements: once migrated, it stays for the run. */
const withRetirements = new WeakSet<pg.ClientBase>();

/** Whether the retirements table exists (not before the first migration: a dry run of a new database). */
async function hasRetirementsTable(client: pg.ClientBase): Promise<boolean> {
  if (withRetirements.has(client)) return true;
  const { has } = await queryOne<{ has: boolean }>(client, `SELECT to_regclass('housekeeping.partition_retirements') IS NOT NULL AS has`);
  if (has) withRetirements.add(client);
  return has;
}

/** Reads the truth about one partitioned table from the catalog (see readPartitionCatalogs). */
export async function readPartitionCatalog(client: pg.ClientBase, parent: QualifiedName): Promise<PartitionCatalog> {
  const [reading] = await readPartitionCatalogs(client, [parent]);
  if (reading!.error) throw reading!.error;
  return reading!.catalog!;
}

function toCatalog(parent: QualifiedName, table: CatalogRow): PartitionCatalog {
  const shown = displayName(parent);
  if (table.oid === null) throw new CatalogError(shown, `table ${shown} does not exist`);
  if (table.relkind !== 'p') {
    throw new CatalogError(shown, `${shown} is not a partitioned table; create it with PARTITION BY RANGE (a timestamptz, timestamp or date column)`);
  }
  if (table.strategy !== 'r') {
    throw new CatalogError(shown, `${shown} is ${STRATEGIES[table.strategy ?? ''] ?? 'not RANGE'}-partitioned; only RANGE partitioning is supported`);
  }
  if (table.key_count !== 1) {
    throw new CatalogError(shown, `${shown} is partitioned on ${table.key_count} columns; only a single-column key is supported`);
  }
  if (!table.key_column) throw new CatalogError(shown, `${shown} is partitioned on an expression; only a plain column key is supported`);
  const keyType = TIME_COLUMN_TYPES[table.key_type ?? ''];
  if (!keyType) {
    throw new CatalogError(
      shown,
      `${shown} is partitioned on ${table.key_column} of type ${table.key_type}; the key must be timestamptz, timestamp or date`,
    );
  }
  const children = table.children ?? [];
  // '-infinity' and 'infinity' bounds read as unbounded, like MINVALUE and MAXVALUE: no finite key ms.
  const toMs = (epoch: string | null) => (epoch === null || !Number.isFinite(Number(epoch)) ? null : Math.round(Number(epoch) * 1000));
  const defaultRow = children.find((row) => row.is_default);
  return {
    parent,
    keyColumn: table.key_column,
    keyType,
    columns: table.columns,
    partitions: children
      .filter((row) => !row.is_default)
      .map((row) => ({
        name: { schema: row.schema, name: row.name },
        oid: row.oid,
        from: toMs(row.from_epoch),
        to: toMs(row.to_epoch),
        detachPending: row.detach_pending,
      }))
      .sort((a, b) => (a.from ?? -Infinity) - (b.from ?? -Infinity)),
    defaultPartition: defaultRow ? { schema: defaultRow.schema, name: defaultRow.name } : null,
    takenNames: new Set(table.taken),
    rescueHazards: defaultRow?.rescue_hazards ?? [],
    unfinishedRetirements: (table.retirements ?? []).map((row) => ({
      partition: { schema: row.partition_schema, name: row.partition_name },
      oid: Number(row.partition_oid),
      mode: row.mode,
      recordedAt: row.recorded_at,
      currentOid: row.current_oid === null ? null : Number(row.current_oid),
      attachedTo: row.attached_to === null ? null : Number(row.attached_to),
    })),
  };
}
