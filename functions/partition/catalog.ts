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
 * For the DEFAULT partition's row of the children query (its oid is parsed.oid there, the parent's $1):
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
    AND con.confrelid IN (SELECT relid FROM pg_partition_tree($1::regclass) UNION SELECT relid FROM pg_partition_ancestors($1::regclass))
  UNION ALL
  SELECT format('trigger %I on %s (fires on DELETE)', t.tgname,
                coalesce((SELECT p.tgrelid::regclass FROM pg_trigger p WHERE p.oid = t.tgparentid), t.tgrelid::regclass))
  FROM pg_trigger t
  WHERE t.tgrelid = parsed.oid AND NOT t.tgisinternal AND t.tgenabled <> 'D' AND (t.tgtype & 8) <> 0
  UNION ALL
  SELECT format('rule %I on %s (ON DELETE)', r.rulename, r.ev_class::regclass)
  FROM pg_rewrite r
  WHERE r.ev_class = parsed.oid AND r.ev_type = '4'
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

/** The parent's recorded, unfinished retirements ($2 = parent as schema.table), with what the catalog holds under each name now. */
const UNFINISHED_RETIREMENTS = `(SELECT json_agg(json_build_object(
     'partition_schema', r.partition_schema, 'partition_name', r.partition_name, 'partition_oid', r.partition_oid::text,
     'mode', r.mode, 'recorded_at', r.recorded_at, 'current_oid', cur.oid::text, 'attached_to', inh.inhparent::text)
     ORDER BY r.recorded_at)
   FROM housekeeping.partition_retirements r
   LEFT JOIN pg_class cur ON cur.oid = to_regclass(format('%I.%I', r.partition_schema, r.partition_name))
   LEFT JOIN pg_inherits inh ON inh.inhrelid = cur.oid
   WHERE r.parent = $2)`;

/** Reads the truth about a partitioned table from the catalog. Bounds, not names, identify partitions. */
export async function readPartitionCatalog(client: pg.ClientBase, parent: QualifiedName): Promise<PartitionCatalog> {
  const shown = displayName(parent);
  const { rows } = await client.query<{
    oid: number;
    relkind: string;
    strategy: string | null;
    key_count: number | null;
    key_column: string | null;
    key_type: string | null;
    has_retirements: boolean;
  }>(
    `SELECT c.oid, c.relkind, p.partstrat AS strategy, p.partnatts AS key_count,
            a.attname AS key_column, format_type(a.atttypid, NULL) AS key_type,
            to_regclass('housekeeping.partition_retirements') IS NOT NULL AS has_retirements
     FROM pg_class c
     JOIN pg_namespace n ON n.oid = c.relnamespace
     LEFT JOIN pg_partitioned_table p ON p.partrelid = c.oid
     LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = p.partattrs[0]
     WHERE n.nspname = $1 AND c.relname = $2`,
    [parent.schema, parent.name],
  );
  const table = rows[0];
  if (!table) throw new CatalogError(shown, `table ${shown} does not exist`);
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

  // The bound literals are cast back to the key type in this same session (UTC, ISO), then to
  // key milliseconds; no parsing of Postgres's text format in JS.
  const epochOf = (literal: string) =>
    keyType === 'timestamptz'
      ? `extract(epoch FROM (${literal})::timestamptz)`
      : `extract(epoch FROM (${literal})::${keyType === 'date' ? 'date' : 'timestamp'})`;
  const children = await client.query<{
    oid: number;
    schema: string;
    name: string;
    is_default: boolean;
    detach_pending: boolean;
    from_epoch: string | null;
    to_epoch: string | null;
    rescue_hazards: string[] | null;
  }>(
    `WITH kids AS (
       SELECT c.oid, n.nspname AS schema, c.relname AS name, i.inhdetachpending AS detach_pending,
              pg_get_expr(c.relpartbound, c.oid) AS bound
       FROM pg_inherits i
       JOIN pg_class c ON c.oid = i.inhrelid
       JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE i.inhparent = $1),
     parsed AS (
       SELECT *, bound = 'DEFAULT' AS is_default,
              substring(bound FROM 'FROM \\((.*)\\) TO') AS from_text,
              substring(bound FROM 'TO \\((.*)\\)$') AS to_text
       FROM kids)
     SELECT oid, schema, name, is_default, detach_pending,
            CASE WHEN from_text IS NULL OR from_text = 'MINVALUE' THEN NULL ELSE ${epochOf("trim(both $$'$$ FROM from_text)")} END AS from_epoch,
            CASE WHEN to_text IS NULL OR to_text = 'MAXVALUE' THEN NULL ELSE ${epochOf("trim(both $$'$$ FROM to_text)")} END AS to_epoch,
            CASE WHEN is_default THEN ${RESCUE_HAZARDS} END AS rescue_hazards
     FROM parsed`,
    [table.oid],
  );
  const extra = await queryOne<{ columns: string[]; retirements: RetirementRow[] | null }>(
    client,
    // Stored generated columns cannot be written; the new partition computes them again.
    `SELECT ARRAY(SELECT attname::text FROM pg_attribute
                  WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped AND attgenerated = '' ORDER BY attnum) AS columns,
            ${table.has_retirements ? UNFINISHED_RETIREMENTS : 'NULL::json'} AS retirements`,
    table.has_retirements ? [table.oid, shown] : [table.oid],
  );
  // Only names our scheme could generate (<parent>_p...): a schema can hold tens of thousands of relations.
  const names = await client.query<{ relname: string }>(
    `SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = $1 AND c.relname LIKE $2`,
    [parent.schema, `${parent.name.replace(/[\\%_]/g, '\\$&')}\\_p%`],
  );

  const toMs = (epoch: string | null) => (epoch === null ? null : Math.round(Number(epoch) * 1000));
  const defaultRow = children.rows.find((row) => row.is_default);
  return {
    parent,
    keyColumn: table.key_column,
    keyType,
    columns: extra.columns,
    partitions: children.rows
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
    takenNames: new Set(names.rows.map((row) => row.relname)),
    rescueHazards: defaultRow?.rescue_hazards ?? [],
    unfinishedRetirements: (extra.retirements ?? []).map((row) => ({
      partition: { schema: row.partition_schema, name: row.partition_name },
      oid: Number(row.partition_oid),
      mode: row.mode,
      recordedAt: row.recorded_at,
      currentOid: row.current_oid === null ? null : Number(row.current_oid),
      attachedTo: row.attached_to === null ? null : Number(row.attached_to),
    })),
  };
}
