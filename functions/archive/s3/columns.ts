import { isUtf8 } from 'node:buffer';
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { CatalogError } from '../../../shared/errors';
import { displayName, type QualifiedName, quoteIdent } from '../../../shared/identifiers';

/**
 * How each Postgres column becomes a Parquet column, exactly. Every value crosses as a canonical
 * text computed in SQL (`select`), never through a JS float or Date: integers and numerics as
 * their decimal text, dates as days since 1970-01-01, timestamps as microseconds since
 * 1970-01-01 00:00 (UTC for timestamptz, the wall clock for timestamp), bytea as hex, arrays as
 * Postgres's own array text. The same canonical texts, rendered back from the Parquet values read
 * out of the object, must give the same per-row digest Postgres computed: that is the read-back
 * check before any row is deleted, and the delete's proof that the row did not change since.
 */

/** A scalar kind; arrays are lists of one of the `ELEMENT_KINDS`. */
export type ScalarKind = 'int16' | 'int32' | 'int64' | 'decimal' | 'text' | 'bool' | 'date' | 'timestamp' | 'timestamptz' | 'uuid' | 'json' | 'bytea';

export interface ColumnPlan {
  name: string;
  /** format_type with the typmod, as an operator reads it. */
  pgType: string;
  kind: ScalarKind;
  array: boolean;
  precision?: number;
  scale?: number;
  /** SQL over alias `t` giving the canonical text (NULL for NULL). */
  select: string;
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
  }>(
    `SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, format_type(a.atttypid, NULL) AS base,
            CASE WHEN t.typcategory = 'A' THEN format_type(t.typelem, NULL) END AS element_base,
            a.atttypmod AS typmod, a.attndims AS ndims, t.typcategory = 'A' AS is_array
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
    const plan: ColumnPlan = { name: row.name, pgType: row.type, kind, array, select: array ? `${column}::text` : scalarSelect(kind, column) };
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
// Canonical text <-> Parquet values.

const V = 0x56;
const N = 0x4e;
const COLON = 0x3a;
const MINUS = 0x2d;
const DOT = 0x2e;
const NEWLINE = 0x0a;
const ZERO = 0x30;
const GATHER = 1 << 16;
/** 10^i for i = 0..16: every digit count of a safe integer (below 2^53, 16 digits). */
const POW10 = Array.from({ length: 17 }, (_, i) => 10 ** i);
const HEX = new TextEncoder().encode('0123456789abcdef');

/** Decimal text of a numeric(p,s) value (always s fraction digits) as its unscaled integer. */
export function unscaledDecimal(text: string, scale: number): bigint {
  const match = /^(-?)(\d+)(?:\.(\d+))?$/.exec(text);
  if (!match) throw new UnrepresentableValue(`${text} is not a finite decimal`);
  const fraction = match[3] ?? '';
  if (fraction.length !== scale) throw new UnrepresentableValue(`${text} does not have scale ${scale}`);
  return BigInt(`${match[1]}${match[2]}${fraction}`);
}

/** The numeric(p,s) text of an unscaled integer. */
export function decimalText(unscaled: bigint, scale: number): string {
  const negative = unscaled < 0n;
  const digits = (negative ? -unscaled : unscaled).toString().padStart(scale + 1, '0');
  const whole = scale === 0 ? digits : `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
  return negative ? `-${whole}` : whole;
}

/** Postgres's array text (array_out) of a one-dimensional array with lower bound 1, as element texts. */
export function parseArrayText(text: string): Array<string | null> {
  if (text === '{}') return [];
  if (!text.startsWith('{') || text.startsWith('{{') || !text.endsWith('}')) {
    throw new UnrepresentableValue(`${text.slice(0, 40)} is not a one-dimensional array starting at index 1`);
  }
  const out: Array<string | null> = [];
  let i = 1;
  const end = text.length - 1;
  while (i < end) {
    if (text[i] === '"') {
      let value = '';
      i++;
      while (text[i] !== '"') {
        if (text[i] === '\\') i++;
        value += text[i];
        i++;
      }
      i++;
      out.push(value);
    } else {
      let j = i;
      while (j < end && text[j] !== ',') j++;
      const raw = text.slice(i, j);
      out.push(raw === 'NULL' ? null : raw);
      i = j;
    }
    if (text[i] === ',') i++;
  }
  return out;
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

/** Bytes of a FIXED_LEN_BYTE_ARRAY decimal: big-endian two's complement. */
function bytesToBigInt(bytes: Uint8Array): bigint {
  let value = 0n;
  for (const byte of bytes) value = (value << 8n) | BigInt(byte);
  if (bytes.length > 0 && bytes[0]! & 0x80) value -= 1n << BigInt(bytes.length * 8);
  return value;
}

/**
 * The integer a text of the form -?\d+ holds, if a double holds it exactly (at most 16 digits and
 * within 2^53); undefined for any other text, which the exact (slower) way then takes or refuses.
 */
export function safeIntegerText(text: string): number | undefined {
  const length = text.length;
  const negative = text.charCodeAt(0) === MINUS;
  let i = negative ? 1 : 0;
  if (i === length || length - i > 16) return undefined;
  let value = 0;
  for (; i < length; i++) {
    const digit = text.charCodeAt(i) - ZERO;
    if (digit < 0 || digit > 9) return undefined;
    // Exact while the true value is below 2^53; one at or above it comes out at or above it too.
    value = value * 10 + digit;
  }
  if (value > Number.MAX_SAFE_INTEGER) return undefined;
  return negative ? -value : value;
}

/** `unscaledDecimal` for texts of at most 15 digits (a double holds them exactly); undefined for any other text. */
function smallUnscaledDecimal(text: string, scale: number): number | undefined {
  const length = text.length;
  const negative = text.charCodeAt(0) === MINUS;
  const first = negative ? 1 : 0;
  // numeric(p,s) text has exactly `scale` digits after the point, and at least one before it.
  const point = scale > 0 ? length - scale - 1 : length;
  if (point <= first || length - first - (scale > 0 ? 1 : 0) > 15) return undefined;
  if (scale > 0 && text.charCodeAt(point) !== DOT) return undefined;
  let value = 0;
  for (let i = first; i < length; i++) {
    if (i === point) continue;
    const digit = text.charCodeAt(i) - ZERO;
    if (digit < 0 || digit > 9) return undefined;
    value = value * 10 + digit;
  }
  return negative ? -value : value;
}

const exactBigInt = (text: string, refuse: () => string): bigint => {
  const value = safeIntegerText(text);
  if (value !== undefined) return BigInt(value);
  if (!/^-?\d+$/.test(text)) throw new UnrepresentableValue(refuse());
  return BigInt(text);
};

/**
 * Canonical text of one scalar → the value hyparquet-writer takes for its schema element, for one
 * column: the kind is switched on once, not per value.
 */
function scalarConverter(kind: ScalarKind, plan: Pick<ColumnPlan, 'scale'>): (text: string) => unknown {
  switch (kind) {
    case 'int16':
    case 'int32':
      return (text) => Number(text);
    case 'int64':
      return (text) => exactBigInt(text, () => `${text} is not an integer`);
    case 'decimal': {
      const scale = plan.scale!;
      return (text) => {
        const small = smallUnscaledDecimal(text, scale);
        if (small !== undefined) return BigInt(small);
        if (text === 'NaN') throw new UnrepresentableValue('NaN has no Parquet DECIMAL');
        return unscaledDecimal(text, scale);
      };
    }
    case 'bool':
      return (text) => text === 'true' || text === 't';
    case 'date':
      return (text) => {
        const days = safeIntegerText(text);
        if (days === undefined) throw new UnrepresentableValue(`${text} is not a finite date`);
        return days;
      };
    case 'timestamp':
    case 'timestamptz':
      return (text) => exactBigInt(text, () => `${text} is not a finite timestamp within INT64 microseconds since 1970`);
    case 'bytea':
      return (text) => Buffer.from(text, 'hex');
    case 'uuid':
      return (text) => Buffer.from(text.replace(/-/g, ''), 'hex');
    default:
      return (text) => text;
  }
}

/** Canonical text of one scalar → the value hyparquet-writer takes for its schema element. */
export function toParquetScalar(kind: ScalarKind, text: string, plan: Pick<ColumnPlan, 'scale'>): unknown {
  return scalarConverter(kind, plan)(text);
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

/** Canonical text of a column (scalar or array) → the Parquet value, for one column. */
export function parquetConverter(plan: ColumnPlan): (text: string | null) => unknown {
  const scalar = scalarConverter(plan.kind, plan);
  if (!plan.array) return (text) => (text === null ? null : scalar(text));
  // Array elements are array_out texts: booleans are t/f there.
  return (text) => (text === null ? null : parseArrayText(text).map((e) => (e === null ? null : scalar(e))));
}

/** A raw Parquet value read back → the canonical text Postgres gave for it. */
export function fromParquet(plan: ColumnPlan, value: unknown): string | null {
  if (value === null || value === undefined) return null;
  if (!plan.array) return fromParquetScalar(plan.kind, value, plan);
  return arrayText((value as unknown[]).map((e) => (e === null || e === undefined ? null : fromParquetScalar(plan.kind, e, plan, true))));
}

/**
 * What `fromParquet` renders, appended to a checksum: the same bytes, without a string per value
 * where the value's text can be written from it directly (numbers, stored UTF-8, bytes as hex).
 */
export function checksumRenderer(plan: ColumnPlan): (sum: RowChecksum, value: unknown) => void {
  const scale = plan.scale ?? 0;
  if (plan.array) {
    return (sum, value) => (value === null || value === undefined ? sum.null() : sum.text(fromParquet(plan, value)!));
  }
  switch (plan.kind) {
    case 'int16':
    case 'int32':
    case 'int64':
    case 'date':
    case 'timestamp':
    case 'timestamptz':
      return (sum, value) => (value === null || value === undefined ? sum.null() : sum.integer(value as number | bigint));
    case 'decimal':
      return (sum, value) => {
        if (value === null || value === undefined) sum.null();
        else if (value instanceof Uint8Array) sum.text(decimalText(bytesToBigInt(value), scale));
        else sum.decimal(value as number | bigint, scale);
      };
    case 'bool':
      return (sum, value) => (value === null || value === undefined ? sum.null() : sum.text(value ? 'true' : 'false'));
    case 'bytea':
      return (sum, value) => (value === null || value === undefined ? sum.null() : sum.hex(value as Uint8Array));
    case 'uuid':
      return (sum, value) => (value === null || value === undefined ? sum.null() : sum.text(uuidText(value as Uint8Array)));
    default:
      return (sum, value) => (value === null || value === undefined ? sum.null() : sum.utf8(value as Uint8Array));
  }
}

// ---------------------------------------------------------------------------------------------
// Row digests: md5 over the canonical texts, each length-prefixed (NULL as N): in SQL for restore's
// comparison, and as one checksum per object (its rows in order) for the read-back.

/** SQL: the digest of the row whose canonical texts are the columns `alias.c0, alias.c1...`. */
export function digestSql(columns: string[]): string {
  return `md5(concat(${columns.map((c) => `CASE WHEN ${c} IS NULL THEN 'N' ELSE 'V' || octet_length(${c}) || ':' || ${c} END`).join(', ')}))`;
}

/** Decimal digits of a non-negative safe integer. */
function digitCount(magnitude: number): number {
  let digits = 1;
  while (digits < 16 && magnitude >= POW10[digits]!) digits++;
  return digits;
}

/**
 * An object's checksum: md5 over its rows' canonical texts in order, each text length-prefixed
 * (NULL as N) and each row ended by a newline, so no two different rows (or rows split differently
 * into columns) feed it the same bytes. The bytes are gathered in one reused buffer and hashed 64 KB
 * at a time: one hash update per value, or a string built per row, cost more than the md5 itself.
 * Numbers and stored UTF-8 can be written as their texts' bytes directly (`integer`, `decimal`,
 * `utf8`), without a string per value; what they write is exactly what `text` writes for the text.
 */
export class RowChecksum {
  private readonly hash = createHash('md5');
  private buffer = Buffer.allocUnsafe(GATHER);
  private at = 0;

  /** Makes room for `bytes` more; false if they would not fit even in an empty buffer. */
  private room(bytes: number): boolean {
    if (this.at + bytes <= this.buffer.length) return true;
    this.hash.update(this.buffer.subarray(0, this.at));
    this.at = 0;
    return bytes <= this.buffer.length;
  }

  /** Writes `V<length>:` (length in bytes); room was made. */
  private prefix(length: number): void {
    const buffer = this.buffer;
    buffer[this.at++] = V;
    this.digits(length, digitCount(length));
    buffer[this.at++] = COLON;
  }

  /** Writes a non-negative safe integer's decimal digits, left-padded with zeros to `width`. */
  private digits(magnitude: number, width: number): void {
    const buffer = this.buffer;
    const start = this.at;
    let at = start + width;
    this.at = at;
    let small = magnitude;
    // Above 2^30 `%` and `/` on the double are slow (fmod): the low 8 digits are split off once, and
    // the rest is small-integer arithmetic. The floor is exact: the quotient is below 2^27, where
    // doubles are 2^-26 apart, and a true quotient short of an integer is short by at least 1e-8.
    if (magnitude >= 0x40000000) {
      const high = Math.floor(magnitude / 1e8);
      let low = magnitude - high * 1e8;
      for (let k = 0; k < 8; k++) {
        const rest = (low / 10) | 0;
        buffer[--at] = ZERO + low - rest * 10;
        low = rest;
      }
      small = high;
    }
    while (at > start) {
      const rest = (small / 10) | 0;
      buffer[--at] = ZERO + small - rest * 10;
      small = rest;
    }
  }

  text(text: string): void {
    const length = text.length;
    if (!this.room(3 * length + 16)) {
      this.hash.update(`V${Buffer.byteLength(text, 'utf8')}:`);
      this.hash.update(text, 'utf8');
      return;
    }
    const start = this.at;
    // Short texts (numbers, codes, timestamps) are copied here when ASCII: a call into
    // the Buffer bindings costs more than the copy.
    if (length <= 32) {
      this.prefix(length);
      const buffer = this.buffer;
      let at = this.at;
      let i = 0;
      for (; i < length; i++) {
        const code = text.charCodeAt(i);
        if (code > 0x7f) break;
        buffer[at++] = code;
      }
      if (i === length) {
        this.at = at;
        return;
      }
      this.at = start;
    }
    this.prefix(Buffer.byteLength(text, 'utf8'));
    this.at += this.buffer.write(text, this.at, 'utf8');
  }

  /** A text as the UTF-8 bytes stored for it; throws if they are not valid UTF-8 (no text has them). */
  utf8(bytes: Uint8Array): void {
    const length = bytes.length;
    if (!this.room(length + 16)) {
      if (!isUtf8(bytes)) throw new UnrepresentableValue('a text is not valid UTF-8');
      this.hash.update(`V${length}:`);
      this.hash.update(bytes);
      return;
    }
    this.prefix(length);
    // Short values are checked as they are copied (all ASCII is valid UTF-8); for longer ones one
    // native copy and one native check are cheaper.
    if (length > 32) {
      if (!isUtf8(bytes)) throw new UnrepresentableValue('a text is not valid UTF-8');
      this.buffer.set(bytes, this.at);
      this.at += length;
      return;
    }
    const buffer = this.buffer;
    let at = this.at;
    let ascii = 0;
    for (let i = 0; i < length; i++) {
      const byte = bytes[i]!;
      ascii |= byte;
      buffer[at++] = byte;
    }
    if (ascii > 0x7f && !isUtf8(bytes)) throw new UnrepresentableValue('a text is not valid UTF-8');
    this.at = at;
  }

  /** An integer's decimal text (what Postgres prints for it). */
  integer(value: number | bigint): void {
    this.decimal(value, 0);
  }

  /** The numeric(p,s) text of an unscaled integer (as `decimalText`). */
  decimal(unscaled: number | bigint, scale: number): void {
    const number = Number(unscaled);
    // Beyond 2^53 (or 10^scale) a double is not exact: those take the string way.
    if (!Number.isSafeInteger(number) || scale > 15) {
      this.text(decimalText(BigInt(unscaled), scale));
      return;
    }
    this.room(40 + scale);
    const negative = number < 0;
    const magnitude = negative ? -number : number;
    const width = Math.max(digitCount(magnitude), scale + 1);
    this.prefix(width + (negative ? 1 : 0) + (scale > 0 ? 1 : 0));
    const buffer = this.buffer;
    if (negative) buffer[this.at++] = MINUS;
    this.digits(magnitude, width);
    if (scale === 0) return;
    // The point goes before the last `scale` digits.
    let at = this.at;
    for (let k = 0; k < scale; k++, at--) buffer[at] = buffer[at - 1]!;
    buffer[at] = DOT;
    this.at++;
  }

  /** Bytes as their lowercase hex text (bytea). */
  hex(bytes: Uint8Array): void {
    const length = bytes.length;
    if (!this.room(2 * length + 16)) {
      this.text(Buffer.from(bytes.buffer, bytes.byteOffset, length).toString('hex'));
      return;
    }
    this.prefix(2 * length);
    const buffer = this.buffer;
    let at = this.at;
    for (let i = 0; i < length; i++) {
      buffer[at++] = HEX[bytes[i]! >> 4]!;
      buffer[at++] = HEX[bytes[i]! & 15]!;
    }
    this.at = at;
  }

  null(): void {
    this.room(1);
    this.buffer[this.at++] = N;
  }

  endRow(): void {
    this.room(1);
    this.buffer[this.at++] = NEWLINE;
  }

  add(texts: ReadonlyArray<string | null>): void {
    for (const text of texts) {
      if (text === null) this.null();
      else this.text(text);
    }
    this.endRow();
  }

  digest(): string {
    this.hash.update(this.buffer.subarray(0, this.at));
    this.at = 0;
    return this.hash.digest('hex');
  }
}
