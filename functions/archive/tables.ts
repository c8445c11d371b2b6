import type pg from 'pg';
import { CatalogError, SchemaDriftError } from '../../shared/errors';
import { displayName, type QualifiedName } from '../../shared/identifiers';
import { TIME_COLUMN_TYPES } from '../../shared/postgres';
import type { AgeColumnType } from './cutoff';

interface Column {
  name: string;
  typeId: number;
  typmod: number;
  type: string;
  generated: boolean;
}

interface TableShape {
  name: QualifiedName;
  partitioned: boolean;
  columns: Column[];
  /** Columns of each valid, non-partial unique index (primary key included). */
  uniqueKeys: string[][];
}

export interface ArchiveTables {
  /** Columns copied from source to destination, in source order. */
  copyColumns: string[];
  ageTypes: { primary: AgeColumnType; fallback?: AgeColumnType };
  /** False for a partitioned source whose unique key only includes the key column: uniqueness is then assumed. */
  sourceKeyUnique: boolean;
  sourceIsPartitioned: boolean;
  /** smallint/integer/bigint keys can take max(), cheaper than sorting the batch for its last key. */
  keyIsInteger: boolean;
}


async function readShape(client: pg.ClientBase, name: QualifiedName, role: string): Promise<TableShape> {
  const shown = displayName(name);
  const { rows: found } = await client.query<{ oid: number; relkind: string }>(
    `SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2`,
    [name.schema, name.name],
  );
  const table = found[0];
  if (!table) throw new CatalogError(shown, `${role} table ${shown} does not exist`);
  if (table.relkind !== 'r' && table.relkind !== 'p') throw new CatalogError(shown, `${role} ${shown} is not a table (relkind ${table.relkind})`);
  const columns = await client.query<{ name: string; type_id: number; typmod: number; type: string; generated: boolean }>(
    `SELECT attname AS name, atttypid::int AS type_id, atttypmod AS typmod, format_type(atttypid, atttypmod) AS type,
            attgenerated <> '' AS generated
     FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum`,
    [table.oid],
  );
  const keys = await client.query<{ columns: string[] }>(
    `SELECT array_agg(a.attname ORDER BY k.ord)::text[] AS columns
     FROM pg_index i
     CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
     WHERE i.indrelid = $1 AND i.indisunique AND i.indisvalid AND i.indpred IS NULL AND i.indimmediate
     GROUP BY i.indexrelid`,
    [table.oid],
  );
  return {
    name,
    partitioned: table.relkind === 'p',
    columns: columns.rows.map((c) => ({ name: c.name, typeId: c.type_id, typmod: c.typmod, type: c.type, generated: c.generated })),
    uniqueKeys: keys.rows.map((k) => k.columns),
  };
}

function ageType(shape: TableShape, column: string, field: string): AgeColumnType {
  const found = shape.columns.find((c) => c.name === column);
  const shown = displayName(shape.name);
  if (!found) throw new CatalogError(shown, `${field}: column ${column} does not exist in ${shown}`);
  const type = TIME_COLUMN_TYPES[found.type];
  if (!type) throw new CatalogError(shown, `${field}: ${shown}.${column} is ${found.type}; expected timestamptz, timestamp or date`);
  return type;
}

/** A destination column can take the source's values: same type, and no narrower length/precision. */
function compatible(source: Column, destination: Column): boolean {
  return source.typeId === destination.typeId && (destination.typmod === -1 || destination.typmod >= source.typmod);
}

/**
 * Checks everything a move relies on before a single row moves: both tables exist, the key and
 * age columns exist with usable types, the columns match by name with compatible types, and the
 * destination has a unique key on the key column so no row can ever be archived twice.
 */
export async function checkArchiveTables(
  client: pg.ClientBase,
  source: QualifiedName,
  destination: QualifiedName | undefined,
  policy: { key: string; ageColumn: string; ageFallbackColumn?: string },
): Promise<ArchiveTables> {
  const from = await readShape(client, source, 'source');
  const shownSource = displayName(source);
  if (!from.columns.some((c) => c.name === policy.key)) {
    throw new CatalogError(shownSource, `key: column ${policy.key} does not exist in ${shownSource}`);
  }
  const ageTypes = {
    primary: ageType(from, policy.ageColumn, 'ageColumn'),
    ...(policy.ageFallbackColumn ? { fallback: ageType(from, policy.ageFallbackColumn, 'ageFallbackColumn') } : {}),
  };
  const sourceKeyUnique = from.uniqueKeys.some((k) => k.length === 1 && k[0] === policy.key);
  // A partitioned table's primary key must include its partition column, so (id, created_at) is
  // the usual best; anything weaker and "delete exactly those keys" could touch other rows.
  const partitionedKey = from.partitioned && from.uniqueKeys.some((k) => k.includes(policy.key));
  if (!sourceKeyUnique && !partitionedKey) {
    throw new CatalogError(
      shownSource,
      `key: ${shownSource} has no primary key or unique index on ${policy.key}; batches pick and delete rows by it, so it must be unique (nothing was moved)`,
    );
  }
  const sourceIsPartitioned = from.partitioned;
  const keyIsInteger = ['smallint', 'integer', 'bigint'].includes(from.columns.find((c) => c.name === policy.key)!.type);
  if (!destination) return { copyColumns: [], ageTypes, sourceKeyUnique, sourceIsPartitioned, keyIsInteger };

  const to = await readShape(client, destination, 'destination');
  const shownDestination = displayName(destination);
  const onlySource = from.columns.filter((c) => !to.columns.some((d) => d.name === c.name)).map((c) => c.name);
  const onlyDestination = to.columns.filter((d) => !from.columns.some((c) => c.name === d.name)).map((d) => d.name);
  const mismatched = from.columns.flatMap((c) => {
    const d = to.columns.find((x) => x.name === c.name);
    return d && !compatible(c, d) ? [`${c.name} (${shownSource}: ${c.type}, ${shownDestination}: ${d.type})`] : [];
  });
  const problems = [
    onlySource.length ? `only in ${shownSource}: ${onlySource.join(', ')}` : '',
    onlyDestination.length ? `only in ${shownDestination}: ${onlyDestination.join(', ')}` : '',
    mismatched.length ? `incompatible types: ${mismatched.join('; ')}` : '',
  ].filter(Boolean);
  if (problems.length > 0) {
    throw new SchemaDriftError(shownDestination, `${shownSource} and ${shownDestination} have drifted apart; nothing was moved. ${problems.join('. ')}`);
  }
  if (!to.uniqueKeys.some((k) => k.length === 1 && k[0] === policy.key)) {
    throw new SchemaDriftError(
      shownDestination,
      `${shownDestination} has no primary key or unique index on ${policy.key} alone; add one so no row can be archived twice (nothing was moved)`,
    );
  }
  // Generated columns in the destination compute their own values.
  const generatedInDestination = new Set(to.columns.filter((d) => d.generated).map((d) => d.name));
  return {
    copyColumns: from.columns.map((c) => c.name).filter((name) => !generatedInDestination.has(name)),
    ageTypes,
    sourceKeyUnique,
    sourceIsPartitioned,
    keyIsInteger,
  };
}
