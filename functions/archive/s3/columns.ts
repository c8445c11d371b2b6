import type pg from 'pg';
import { CatalogError } from '../../../shared/errors';
import { displayName, type QualifiedName, quoteIdent } from '../../../shared/identifiers';

/**
 * How each Postgres column becomes a Parquet column, exactly. The writer (writer.ts) takes each
 * value in Postgres's binary form (`copySelect`), never through a JS float or Date: integers as
 * they are, numerics as their unscaled integer, dates as days since 1970-01-01, timestamps as
 * microseconds since 1970-01-01 00:00 (UTC for timestamptz, the wall clock for timestamp), texts
 * and bytea as their bytes, arrays as Parquet LISTs. Restore goes the other way through canonical
 * texts (`select` and `fromParquet`): what Postgres prints for a value, as SQL can compare it.
 */

/** A scalar kind; arrays are lists of one of the `ELEMENT_KINDS`. */
export type ScalarKind = 'int16' | 'int32' | 'int64' | 'decimal' | 'text' | 'bool' | 'date' | 'timestamp' | 'timestamptz' | 'uuid' | 'json' | 'bytea';

export interface ColumnPlan {
  name: string;
  /** format_type with the typmod, as an operator reads it. */
  pgType: string;
  kind: ScalarKind;
  array: boolean;
  /** NOT NULL in Postgres: REQUIRED in Parquet (no definition levels; readers know it has no NULLs). */
  notNull?: boolean;
  /** A stored generated column: archived with its value, but restore lets the table compute it. */
  generated?: boolean;
  precision?: number;
  scale?: number;
  /** SQL over alias `t` giving the canonical text (NULL for NULL). */
  select: string;
  /**
   * SQL over alias `t` giving the value as binary COPY sends it to the writer: the column itself,
   * or its text where the binary form is not the canonical text's (jsonb has a version byte,
   * char(n) keeps the padding its text drops; a `bpchar` without a length has no padding, only
   * the spaces it was given, which are its value and stay).
   */
  copySelect: string;
}

/** A value the writer cannot hold exactly (NaN, infinity, a multi-dimensional array): the batch is refused before anything moves. */
export class UnrepresentableValue extends Error {
  constructor(
    message: string,
    readonly column?: ColumnPlan,
  ) {
    super(message);
  }
}

const VARHDRSZ = 4;
/** Athena, Spark and most readers stop at 38 digits (Parquet's DECIMAL itself has no limit). */
export const MAX_DECIMAL_PRECISION = 38;

const SCALARS: Record<string, ScalarKind> = {
  smallint: 'int16',
  integer: 'int32',
  bigint: 'int64',
  numeric: 'decimal',
  text: 'text',
  'character varying': 'text',
  character: 'text',
  boolean: 'bool',
  date: 'date',
  'timestamp without time zone': 'timestamp',
  'timestamp with time zone': 'timestamptz',
  uuid: 'uuid',
  jsonb: 'json',
  json: 'json',
  bytea: 'bytea',
};
/** Array elements: each renders in Postgres's array text without a zone or date style. */
const ELEMENT_KINDS = new Set<ScalarKind>(['int16', 'int32', 'int64', 'decimal', 'text', 'bool', 'uuid']);

const SUPPORTED =
  'smallint, integer, bigint, numeric(p,s) with p <= 38 and s >= 0, text, varchar, char, boolean, date, timestamp, timestamptz, uuid, json, jsonb, bytea, ' +
  'and one-dimensional arrays of smallint, integer, bigint, numeric(p,s), text, varchar, char, boolean or uuid';

function scalarSelect(kind: ScalarKind, column: string): string {
  switch (kind) {
    case 'date':
      return `CASE WHEN isfinite(${column}) THEN (${column} - DATE '1970-01-01')::text ELSE ${column}::text END`;
    case 'timestamp':
    case 'timestamptz':
      // extract(epoch) is numeric (exact) since Postgres 14. Past year 294246 the microseconds leave
      // INT64: the value's own text then (like infinity), which the writer refuses naming column and row.
      return `CASE WHEN isfinite(${column}) AND extract(epoch FROM ${column}) * 1000000 <= 9223372036854775807 THEN (extract(epoch FROM ${column}) * 1000000)::bigint::text ELSE ${column}::text END`;
    case 'bytea':
      return `encode(${column}, 'hex')`;
    default:
      return `${column}::text`;
  }
}

/**
 * The source's columns, each mapped, or a refusal naming every column that cannot be archived
 * exactly (before anything moves).
 */
export async function planColumns(client: pg.ClientBase, source: QualifiedName): Promise<ColumnPlan[]> {
  const shown = displayName(source);
  const { rows } = await client.query<{
    name: string;
    type: string;
    base: string;
    element_base: string | null;
    typmod: number;
    ndims: number;
    is_array: boolean;
    not_null: boolean;
    generated: boolean;
  }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, format_type(a.atttypid, NULL) AS base,
            CASE WHEN t.typcategory = 'A' THEN format_type(t.typelem, NULL) END AS element_base,
            a.atttypmod AS typmod, a.attndims AS ndims, t.typcategory = 'A' AS is_array, a.attnotnull AS not_null,
            a.attgenerated <> '' AS generated
     FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
     WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
    [`${quoteIdent(source.schema)}.${quoteIdent(source.name)}`],
  );
  const problems: string[] = [];
  const plans: ColumnPlan[] = [];
  for (const row of rows) {
    const array = row.is_array;
    const kind = SCALARS[(array ? row.element_base : row.base) ?? ''];
    const column = `t.${quoteIdent(row.name)}`;
    if (!kind || (array && !ELEMENT_KINDS.has(kind))) {
      problems.push(`${row.name} (${row.type}): no exact Parquet type`);
      continue;
    }
    // char(n) pads to n, and its text (what readers get) drops the padding. A bpchar without a
    // length pads nothing: trailing spaces are part of the value, which ::text would drop too;
    // concat() prints them, as the output function does.
    const padded = !array && row.base === 'character' && row.typmod !== -1;
    const spaced = !array && row.base === 'character' && row.typmod === -1;
    const plan: ColumnPlan = {
      name: row.name,
      pgType: row.type,
      kind,
      array,
      notNull: row.not_null,
      ...(row.generated ? { generated: true } : {}),
      select: array ? `${column}::text` : spaced ? `CASE WHEN ${column} IS NOT NULL THEN concat(${column}) END` : scalarSelect(kind, column),
      copySelect: !array && (kind === 'json' || padded) ? `${column}::text` : column,
    };
    if (kind === 'decimal') {
      if (row.typmod === -1) {
        problems.push(
          `${row.name} (${row.type}): numeric without precision and scale holds any scale, NaN and infinity; Parquet's DECIMAL has one fixed scale. Give it one (ALTER COLUMN ... TYPE numeric(p,s)) or archive it to a table`,
        );
        continue;
      }
      const packed = row.typmod - VARHDRSZ;
      plan.precision = (packed >> 16) & 0xffff;
      plan.scale = ((packed & 0x7ff) ^ 1024) - 1024;
      if (plan.scale < 0 || plan.scale > plan.precision) {
        problems.push(`${row.name} (${row.type}): a negative scale or one above the precision has no Parquet DECIMAL`);
        continue;
      }
      if (plan.precision > MAX_DECIMAL_PRECISION) {
        problems.push(`${row.name} (${row.type}): more than ${MAX_DECIMAL_PRECISION} digits, which Athena and most Parquet readers cannot read`);
        continue;
      }
    }
    plans.push(plan);
  }
  if (problems.length > 0) {
    throw new CatalogError(
      shown,
      `${shown} has columns the S3 destination cannot write to Parquet exactly: ${problems.join('; ')}. Nothing was moved. Supported: ${SUPPORTED}`,
    );
  }
  return plans;
}

// ---------------------------------------------------------------------------------------------
// Parquet values read back -> canonical texts (what restore inserts).

/** The numeric(p,s) text of an unscaled integer. */
export function decimalText(unscaled: bigint, scale: number): string {
  const negative = unscaled < 0n;
  const digits = (negative ? -unscaled : unscaled).toString().padStart(scale + 1, '0');
  const whole = scale === 0 ? digits : `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
  return negative ? `-${whole}` : whole;
}

// array_out quotes the empty string, NULL, the delimiter, quotes, braces, backslashes and only the six
// ASCII spaces (array_isspace); JS's \s also matches no-break and other Unicode spaces, which it does not quote.
const NEEDS_QUOTES = /^$|^null$|["\\{}, \t\n\r\v\f]/i;
/** array_out for one-dimensional arrays: what `column::text` gives. */
export function arrayText(elements: Array<string | null>): string {
  return `{${elements.map((e) => (e === null ? 'NULL' : NEEDS_QUOTES.test(e) ? `"${e.replace(/["\\]/g, '\\$&')}"` : e)).join(',')}}`;
}

const uuidText = (bytes: Uint8Array) => {
  const hex = Buffer.from(bytes).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
};
// ignoreBOM: a text starting with U+FEFF keeps it (the default decoder drops a leading BOM).
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** Minimal bytes of a two's-complement FIXED_LEN_BYTE_ARRAY holding `precision` decimal digits. */
export function decimalBytes(precision: number): number {
  let bytes = 1;
  while (2n ** BigInt(8 * bytes - 1) - 1n < 10n ** BigInt(precision) - 1n) bytes++;
  return bytes;
}

/** Bytes of a FIXED_LEN_BYTE_ARRAY decimal: big-endian two's complement. */
export function bytesToBigInt(bytes: Uint8Array): bigint {
  let value = 0n;
  for (const byte of bytes) value = (value << 8n) | BigInt(byte);
  if (bytes.length > 0 && bytes[0]! & 0x80) value -= 1n << BigInt(bytes.length * 8);
  return value;
}

/** A raw Parquet value read back (no logical-type conversion) → the canonical text of the scalar. */
export function fromParquetScalar(kind: ScalarKind, value: unknown, plan: Pick<ColumnPlan, 'scale'>, inArray = false): string {
  switch (kind) {
    case 'int16':
    case 'int32':
    case 'int64':
    case 'date':
    case 'timestamp':
    case 'timestamptz':
      return String(value);
    case 'decimal': {
      const unscaled = value instanceof Uint8Array ? bytesToBigInt(value) : BigInt(value as number | bigint);
      return decimalText(unscaled, plan.scale!);
    }
    case 'bool':
      return inArray ? (value ? 't' : 'f') : value ? 'true' : 'false';
    case 'bytea':
      return Buffer.from(value as Uint8Array).toString('hex');
    case 'uuid':
      return uuidText(value as Uint8Array);
    default:
      return utf8.decode(value as Uint8Array);
  }
}

/** A raw Parquet value read back → the canonical text Postgres gave for it. */
export function fromParquet(plan: ColumnPlan, value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (!plan.array) return fromParquetScalar(plan.kind, value, plan);
  return arrayText((value as unknown[]).map((e) => (e === null || e === undefined ? null : fromParquetScalar(plan.kind, e, plan, true))));
}

// ---------------------------------------------------------------------------------------------
// Row digests: md5 over the canonical texts, each length-prefixed (NULL as N), in SQL: restore
// compares the rows it would insert with those already there by them.

/** SQL: the digest of the row whose canonical texts are the columns `alias.c0, alias.c1...`. */
export function digestSql(columns: string[]): string {
  return `md5(concat(${columns.map((c) => `CASE WHEN ${c} IS NULL THEN 'N' ELSE 'V' || octet_length(${c}) || ':' || ${c} END`).join(', ')}))`;
}
