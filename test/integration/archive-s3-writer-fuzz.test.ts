import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { deserializeTCompactProtocol } from 'hyparquet/src/thrift.js';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { arrayText, type ColumnPlan, planColumns } from '../../functions/archive/s3/columns';
import { CopyReader, copyRows } from '../../functions/archive/s3/copy';
import { type Compression, canonicalRows, readBackChecksum } from '../../functions/archive/s3/parquet';
import { ObjectWriter } from '../../functions/archive/s3/writer';
import { raw, sql as statement } from '../../shared/sql';
import { runArchive } from '../support/archive';
import { createTestDatabase, type TestDatabase } from '../support/db';
import { duckdb, startTestS3 } from '../support/s3';

/**
 * Fuzz: random tables of every supported column type (NOT NULL and nullable, NULL densities 0,
 * 50 and 100%), edge and random values, written by ObjectWriter from Postgres's binary COPY;
 * read back by hyparquet (canonicalRows, readBackChecksum) and by DuckDB, and the footer's
 * statistics checked against the rows of each row group. Every value must be what Postgres
 * prints for it. FUZZ_HEAVY=1 adds the 20,000 to 200,000-row cases (about 5 minutes); FUZZ_ARCHIVE=1
 * a whole archive run of 50,000 rows of every kind to s3rver (about a minute).
 */

let db: TestDatabase;
let sql: pg.Client;
const dir = mkdtempSync(join(tmpdir(), 'fuzz-writer-'));
const HEAVY = process.env.FUZZ_HEAVY === '1';

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
  await sql.query(`DROP SCHEMA IF EXISTS f CASCADE; CREATE SCHEMA f`);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// ---------------------------------------------------------------------------------------------
// Value generators: SQL expressions (random() after setseed: reproducible), one non-NULL value each.

const oneOf = (values: string[]) =>
  values.length === 1 ? values[0]! : `(CASE floor(random() * ${values.length})::int ${values.map((v, i) => `WHEN ${i} THEN ${v}`).join(' ')} END)`;
const mix = (edges: string[], random: string[], edgeShare = 0.3) =>
  `(CASE WHEN random() < ${edgeShare} THEN ${oneOf(edges)} ELSE ${oneOf(random)} END)`;
const DIGITS = `translate(md5(random()::text) || md5(random()::text), 'abcdef', '012345')`;
const HEX64 = `('x' || lpad(to_hex((random() * 4294967295)::bigint), 8, '0') || lpad(to_hex((random() * 4294967295)::bigint), 8, '0'))::bit(64)::bigint`;
const UNICODE = (n: string) => `translate(repeat(md5(random()::text), ${n}), '0123456789abcdef', 'aé漢🚀 ,"\\{}bcdNxy')`;

function numericValue(p: number, s: number): string {
  const whole = p - s;
  const type = `numeric(${p},${s})`;
  const lit = (text: string) => `'${text}'::${type}`;
  const nines = `${whole > 0 ? '9'.repeat(whole) : '0'}${s > 0 ? `.${'9'.repeat(s)}` : ''}`;
  const edges = [
    lit(nines),
    lit(`-${nines}`),
    lit('0'),
    lit(s > 0 ? `0.${'0'.repeat(s - 1)}1` : '1'),
    lit(s > 0 ? `-0.${'0'.repeat(s - 1)}1` : '-1'),
  ];
  if (whole >= 1) edges.push(lit(`1${'0'.repeat(whole - 1)}`), lit(`-1${'0'.repeat(whole - 1)}`));
  for (const big of [
    '10000',
    '100000000',
    '1000000000000',
    '9007199254740991',
    '9007199254740992',
    '9007199254740993',
    '9223372036854775807',
    '9223372036854775808',
    '18446744073709551616',
  ]) {
    if (big.length <= whole) edges.push(lit(big), lit(`-${big}`));
    // The same digits as the unscaled integer.
    if (big.length <= p && s > 0) {
      const digits = big.padStart(s + 1, '0');
      const text = `${digits.slice(0, -s)}.${digits.slice(-s)}`;
      if (digits.length - s <= whole || /^0+$/.test(digits.slice(0, -s))) edges.push(lit(text), lit(`-${text}`));
    }
  }
  if (s >= 1 && whole >= 1) edges.push(lit('1.5'), lit('-0.5'), lit('12.1'));
  const sign = `CASE WHEN random() < 0.5 THEN '-' ELSE '' END`;
  const intPart = whole > 0 ? `substr(${DIGITS}, 1, 1 + floor(random() * ${whole})::int)` : `'0'`;
  const fracPart = s > 0 ? ` || '.' || substr(${DIGITS}, 1, floor(random() * ${s + 1})::int)` : '';
  const full = `(${sign} || ${intPart}${fracPart})::${type}`;
  // Few digits (the writer's fast path): small integers with up to s fraction digits.
  const small = `(${sign} || floor(random() * 10000)::text${s > 0 ? ` || '.' || substr(${DIGITS}, 1, floor(random() * ${Math.min(s, 4) + 1})::int)` : ''})`;
  const random = [full];
  if (whole >= 4) random.push(`${small}::${type}`);
  return mix(edges, random);
}

const TEXT_EDGES = [
  `''`,
  `' '`,
  `'  two  '`,
  `'NULL'`,
  `'Null'`,
  `'a,b'`,
  `'{x}'`,
  `'"'`,
  `'\\'`,
  `'"q" \\ back'`,
  `E'tab\\there'`,
  `E'new\\nline'`,
  `E'\\v\\f\\r'`,
  `U&'\\00A0nbsp'`,
  `U&'\\FEFFbom'`,
  `'é漢🚀'`,
  `repeat('é', 32)`,
  `repeat('x', 64)`,
  `repeat('x', 65)`,
  `repeat('é', 33)`,
  `repeat('🚀', 17)`,
];

function textValue(): string {
  const random = [
    `md5(random()::text)`,
    UNICODE(`1 + floor(random() * 3)::int`),
    `repeat(md5(random()::text), floor(random() * 100)::int)`,
    `left(md5(random()::text), floor(random() * 8)::int)`,
  ];
  const edges = [...TEXT_EDGES];
  return mix(edges, random);
}

interface Kind {
  /** Column type. */
  type: string;
  /** A non-NULL value. */
  value: () => string;
  /** Usable as an array element (and its element value generator). */
  element?: () => string;
}

const int16 = () =>
  mix(
    ['(-32768)::smallint', '32767::smallint', '0::smallint', '(-1)::smallint', '1::smallint'],
    ['(floor(random() * 65536) - 32768)::smallint', '(floor(random() * 20) - 10)::smallint'],
  );
const int32 = () =>
  mix(
    ['(-2147483648)::int', '2147483647::int', '0', '-1', '65536', '-65537'],
    ['(floor(random() * 4294967296) - 2147483648)::int', '(floor(random() * 200) - 100)::int'],
  );
const int64 = () =>
  mix(
    [
      '(-9223372036854775808)::bigint',
      '9223372036854775807::bigint',
      '9007199254740991::bigint',
      '9007199254740992::bigint',
      '9007199254740993::bigint',
      '(-9007199254740991)::bigint',
      '(-9007199254740992)::bigint',
      '(-9007199254740993)::bigint',
      '4294967296::bigint',
      '4294967295::bigint',
      '(-4294967296)::bigint',
      '(-4294967297)::bigint',
      '0::bigint',
      '(-1)::bigint',
    ],
    [
      HEX64,
      '(floor(random() * 2000000) - 1000000)::bigint',
      '(9007199254740992 + floor(random() * 2000) - 1000)::bigint',
      '(-9007199254740992 + floor(random() * 2000) - 1000)::bigint',
    ],
  );
const bool = () => `(random() < 0.5)`;
const uuid = () =>
  mix(
    [`'00000000-0000-0000-0000-000000000000'::uuid`, `'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid`, `'80000000-0000-0000-0000-000000000001'::uuid`],
    ['gen_random_uuid()', 'md5(random()::text)::uuid'],
  );
const timestampValue = (type: 'timestamp' | 'timestamptz') => {
  const zone = type === 'timestamptz' ? '+00' : '';
  const lit = (text: string) => `'${text}${zone}'::${type}`;
  return mix(
    [
      `'4713-01-01 00:00:00${zone} BC'::${type}`,
      `'4713-01-01 00:00:00.000001${zone} BC'::${type}`,
      `'0001-12-31 23:59:59.999999${zone} BC'::${type}`,
      lit('0001-01-01 00:00:00'),
      lit('1900-01-01 00:00:00.000001'),
      lit('1969-12-31 23:59:59.999999'),
      lit('1970-01-01 00:00:00'),
      lit('1970-01-01 00:00:00.000001'),
      lit('1999-12-31 23:59:59.999999'),
      lit('2000-01-01 00:00:00'),
      lit('2000-01-01 00:00:00.000001'),
      lit('2038-01-19 03:14:08'),
      lit('2262-04-11 23:47:16.854775'),
      lit('2262-04-11 23:47:16.854776'),
      lit('9999-12-31 23:59:59.999999'),
      lit('294246-12-31 23:59:59.999999'),
      lit('294247-01-10 04:00:54.775806'),
      ...(type === 'timestamptz' ? [`'2025-06-01 12:00:00.5+05:30'::timestamptz`, `'1950-03-01 00:00:00-08'::timestamptz`] : []),
    ],
    [
      `${type} '2000-01-01 00:00:00${zone}' + make_interval(secs => (random() - 0.5) * 2e11)`,
      `${type} '1970-01-01 00:00:00${zone}' + make_interval(secs => (random() - 0.5) * 1000)`,
      `${type} '2000-01-01 00:00:00${zone}' + (floor(random() * 2000000) - 1000000) * interval '1 microsecond'`,
      `${type} '2025-01-01 00:00:00${zone}' + make_interval(secs => random() * 3e7)`,
    ],
  );
};
const dateValue = () =>
  mix(
    [
      `'4713-01-01 BC'::date`,
      `'0001-12-31 BC'::date`,
      `'0001-01-01'::date`,
      `'1969-12-31'::date`,
      `'1970-01-01'::date`,
      `'1999-12-31'::date`,
      `'2000-01-01'::date`,
      `'2000-02-29'::date`,
      `'294276-12-31'::date`,
      `'5874897-12-31'::date`,
    ],
    [`DATE '2000-01-01' + (floor(random() * 4000000) - 2000000)::int`, `DATE '1970-01-01' + (floor(random() * 200) - 100)::int`],
  );
const JSON_EDGES = [
  `'{}'`,
  `'[]'`,
  `'null'`,
  `'"x"'`,
  `'0'`,
  `'-0'`,
  `'1.000'`,
  `'12345678901234567890.123456789000'`,
  `'{ "a" :  [1, 2.50], "b": {"c": "é漢🚀"} }'`,
  `'"q\\"uote \\\\ back"'`,
  `'"\\u00e9"'`,
  `'{"b": 1, "a": 2, "a": 3}'`,
];
const jsonValue = (type: 'json' | 'jsonb') =>
  mix(
    JSON_EDGES.map((e) => `${e}::${type}`),
    [
      `${type === 'json' ? 'json' : 'jsonb'}_build_object('k', md5(random()::text), 'n', random(), 'a', ${type === 'json' ? 'json' : 'jsonb'}_build_array(floor(random() * 1e6), ${UNICODE('1')}, NULL, true))`,
      `to_${type}(${UNICODE('1 + floor(random() * 5)::int')})`,
    ],
  );
const byteaValue = () =>
  mix(
    [`'\\x'::bytea`, `'\\x00'::bytea`, `'\\xff'::bytea`, `decode(repeat('00', 65), 'hex')`],
    [
      `decode(md5(random()::text), 'hex')`,
      `decode(repeat(md5(random()::text), floor(random() * 10)::int), 'hex')`,
      `decode(left(md5(random()::text), 2 * floor(random() * 16)::int), 'hex')`,
    ],
  );

const charValue = (n: number) =>
  `left(${mix([`''`, `' '`, `'a'`, `' a '`, `'${'z'.repeat(n)}'`, `'é'`, `'🚀'`, `'a  b'`], [`left(${UNICODE('1')}, floor(random() * ${n + 1})::int)`])}, ${n})`;

const KINDS: Kind[] = [
  { type: 'smallint', value: int16, element: int16 },
  { type: 'integer', value: int32, element: int32 },
  { type: 'bigint', value: int64, element: int64 },
  { type: 'numeric(18,2)', value: () => numericValue(18, 2), element: () => numericValue(18, 2) },
  { type: 'numeric(18,0)', value: () => numericValue(18, 0) },
  { type: 'numeric(1,0)', value: () => numericValue(1, 0) },
  { type: 'numeric(3,3)', value: () => numericValue(3, 3) },
  { type: 'numeric(10,1)', value: () => numericValue(10, 1), element: () => numericValue(10, 1) },
  { type: 'numeric(15,15)', value: () => numericValue(15, 15) },
  { type: 'numeric(16,4)', value: () => numericValue(16, 4) },
  { type: 'numeric(19,0)', value: () => numericValue(19, 0) },
  { type: 'numeric(20,6)', value: () => numericValue(20, 6), element: () => numericValue(20, 6) },
  { type: 'numeric(25,5)', value: () => numericValue(25, 5) },
  { type: 'numeric(38,10)', value: () => numericValue(38, 10), element: () => numericValue(38, 10) },
  { type: 'numeric(38,0)', value: () => numericValue(38, 0) },
  { type: 'numeric(38,38)', value: () => numericValue(38, 38) },
  { type: 'text', value: textValue, element: () => textValue() },
  { type: 'varchar(7)', value: () => `left(${textValue()}, 7)`, element: () => `left(${textValue()}, 7)` },
  { type: 'varchar', value: textValue, element: () => textValue() },
  { type: 'char(4)', value: () => charValue(4), element: () => charValue(4) },
  { type: 'char', value: () => charValue(1), element: () => charValue(1) },
  { type: 'bpchar', value: () => charValue(6), element: () => charValue(6) },
  { type: 'boolean', value: bool, element: bool },
  { type: 'date', value: dateValue },
  { type: 'timestamp', value: () => timestampValue('timestamp') },
  { type: 'timestamptz', value: () => timestampValue('timestamptz') },
  { type: 'uuid', value: uuid, element: uuid },
  { type: 'json', value: () => jsonValue('json') },
  { type: 'jsonb', value: () => jsonValue('jsonb') },
  { type: 'bytea', value: byteaValue },
];

/** Values over 1 MB (a page's size) alone. */
const LONG: Record<string, string> = {
  text: `repeat('é漢🚀' || md5(random()::text), 30000)`,
  varchar: `repeat(md5(random()::text) || ',"', 40000)`,
  bytea: `decode(repeat(md5(random()::text), 80000), 'hex')`,
  jsonb: `to_jsonb(repeat('é' || md5(random()::text), 40000))`,
  json: `to_json(repeat('"\\' || md5(random()::text), 40000))`,
  'text[]': `ARRAY[repeat('x', 1100000), NULL, '', repeat('🚀', 300000)]`,
};

interface ColumnSpec {
  name: string;
  type: string;
  notNull: boolean;
  nullRate: number;
  value: string;
}

/** A 1-D array value: a random length up to `max`, elements NULL at `elementNulls`; sometimes '{}' or '{NULL}'. */
function arrayValue(kind: Kind, max: number, elementNulls: number): string {
  const element = kind.element!();
  const maybeNull = elementNulls > 0 ? `CASE WHEN random() < ${elementNulls} THEN NULL ELSE ${element} END` : element;
  // Correlated on the row (f.i) so the subquery runs for each row.
  const array = `ARRAY(SELECT ${maybeNull} FROM generate_series(1, floor(random() * ${max + 1})::int + 0 * f.i))`;
  return `(CASE WHEN random() < 0.1 THEN '{}'::${kind.type}[] WHEN random() < 0.05 THEN '{NULL}'::${kind.type}[] ELSE ${array}::${kind.type}[] END)`;
}

/** A seeded generator for the choices made in TS (which columns, which NULL densities). */
function rng(seed: number) {
  let state = seed >>> 0 || 1;
  const next = () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return (state >>> 0) / 4294967296;
  };
  return { next, pick: <T>(list: readonly T[]) => list[Math.floor(next() * list.length)]! };
}

interface CaseOptions {
  seed: number;
  rows: number;
  rowGroupRows: number;
  compression: Compression;
  /** Which kinds (all by default). */
  kinds?: Kind[];
  arrays?: boolean;
  arrayMax?: number;
  /** Rows (1 in this many) that get the over-1 MB values. */
  longEvery?: number;
  /** Extra flush() calls at random rows (as apply does when a batch spans days). */
  randomFlushes?: number;
}

function columnsFor(options: CaseOptions): ColumnSpec[] {
  const r = rng(options.seed);
  const columns: ColumnSpec[] = [];
  let n = 0;
  for (const kind of options.kinds ?? KINDS) {
    for (const notNull of [false, true]) {
      const nullRate = notNull ? 0 : r.pick([0, 0.5, 1, 0.5, 0.02]);
      columns.push({ name: `c${n++}`, type: kind.type, notNull, nullRate, value: kind.value() });
    }
  }
  if (options.arrays !== false) {
    for (const kind of (options.kinds ?? KINDS).filter((k) => k.element)) {
      for (const notNull of [false, true]) {
        const nullRate = notNull ? 0 : r.pick([0, 0.5, 1, 0.2]);
        const elementNulls = r.pick([0, 0.3, 1, 0.05]);
        columns.push({ name: `a${n++}`, type: `${kind.type}[]`, notNull, nullRate, value: arrayValue(kind, options.arrayMax ?? 6, elementNulls) });
      }
    }
  }
  return columns;
}

async function createTable(table: string, options: CaseOptions, columns: ColumnSpec[]) {
  await sql.query(`DROP TABLE IF EXISTS f.${table}`);
  await sql.query(
    `CREATE TABLE f.${table} (id int PRIMARY KEY, ${columns.map((c) => `${c.name} ${c.type}${c.notNull ? ' NOT NULL' : ''}`).join(', ')})`,
  );
  await sql.query(`SELECT setseed(${((options.seed % 1000) / 1000).toFixed(3)})`);
  const values = columns.map((c) => {
    if (c.nullRate >= 1) return `NULL::${c.type}`;
    let value = c.value;
    const long = LONG[c.type];
    // Over 1 MB every `longEvery` rows.
    if (options.longEvery && long) value = `CASE WHEN f.i % ${options.longEvery} = 0 THEN ${long} ELSE ${value} END`;
    return c.nullRate > 0 ? `CASE WHEN random() < ${c.nullRate} THEN NULL ELSE ${value} END` : value;
  });
  // In slices: one INSERT of 200,000 rows with over-1 MB values holds them all at once.
  const slice = 50_000;
  for (let from = 1; from <= options.rows; from += slice) {
    const to = Math.min(options.rows, from + slice - 1);
    await sql.query(`INSERT INTO f.${table} SELECT f.i, ${values.join(', ')} FROM generate_series(${from}, ${to}) AS f(i)`);
  }
}

// ---------------------------------------------------------------------------------------------
// Writing and reading back.

async function write(table: string, options: CaseOptions) {
  const plans = await planColumns(sql, { schema: 'f', name: table });
  const bytes = await copyRows(sql, statement`SELECT ${raw(plans.map((p) => p.copySelect).join(', '))} FROM ${raw(`f.${table}`)} AS t ORDER BY t.id`);
  const reader = new CopyReader(bytes, plans.length);
  const writer = new ObjectWriter(plans, options.rowGroupRows, options.compression, ['1'], []);
  const r = rng(options.seed * 7 + 1);
  const flushAt = new Set(Array.from({ length: options.randomFlushes ?? 0 }, () => Math.floor(r.next() * reader.rows)));
  for (let row = 0; row < reader.rows; row++) {
    reader.row(row);
    writer.add(reader.bytes, reader.starts, reader.lengths, { text: () => String(row) }, row);
    if (flushAt.has(row)) writer.flush();
  }
  const object = await writer.finish();
  return { plans, writer, object };
}

/** DuckDB's reading of each column, rendered as the plan's canonical text. */
function duckExpression(plan: ColumnPlan): string {
  const q = `"${plan.name}"`;
  // Texts as the hex of their UTF-8 (@duckdb/node-api's own decoding drops a leading U+FEFF).
  if (plan.array) return plan.kind === 'text' ? `list_transform(${q}, x -> hex(encode(x)))` : `CAST(${q} AS VARCHAR[])`;
  switch (plan.kind) {
    case 'text':
    case 'json':
      return `hex(encode(${q}))`;
    case 'date':
      return `CAST(date_diff('day', DATE '1970-01-01', ${q}) AS VARCHAR)`;
    case 'timestamp':
    case 'timestamptz':
      return `CAST(epoch_us(${q}) AS VARCHAR)`;
    case 'bytea':
      return `lower(hex(${q}))`;
    default:
      return `CAST(${q} AS VARCHAR)`;
  }
}

function duckText(plan: ColumnPlan, value: unknown): string | null {
  if (value === null || value === undefined) return null;
  const utf8 = (hex: string) => Buffer.from(hex, 'hex').toString('utf8');
  // DuckDB prints a DECIMAL(p,p) without its leading zero (.5); Postgres 0.5.
  const decimal = (text: string) => text.replace(/^(-?)\./, '$10.');
  if (!plan.array)
    return plan.kind === 'text' || plan.kind === 'json' ? utf8(String(value)) : plan.kind === 'decimal' ? decimal(String(value)) : String(value);
  const elements = value as Array<string | null>;
  return arrayText(
    elements.map((e) =>
      e === null
        ? null
        : plan.kind === 'bool'
          ? e === 'true'
            ? 't'
            : 'f'
          : plan.kind === 'text'
            ? utf8(e)
            : plan.kind === 'decimal'
              ? decimal(e)
              : e,
    ),
  );
}

const short = (value: unknown) => {
  const text = value === null || value === undefined ? String(value) : String(value);
  return text.length > 120 ? `${text.slice(0, 60)}…(${text.length} chars)…${text.slice(-40)}` : text;
};

interface Mismatch {
  reader: string;
  row: number;
  column: string;
  type: string;
  expected: string;
  got: string;
}

function compare(reader: string, plans: ColumnPlan[], expected: unknown[][], got: unknown[][], out: Mismatch[]) {
  if (got.length !== expected.length) {
    out.push({ reader, row: -1, column: '*', type: '', expected: `${expected.length} rows`, got: `${got.length} rows` });
  }
  for (let row = 0; row < Math.min(got.length, expected.length); row++) {
    for (let i = 0; i < plans.length; i++) {
      const e = expected[row]![i] ?? null;
      const g = got[row]![i] ?? null;
      if (e !== g) out.push({ reader, row: row + 1, column: plans[i]!.name, type: plans[i]!.pgType, expected: short(e), got: short(g) });
    }
  }
}

/** The footer's statistics, raw, per row group and column: checked against the rows each group holds. */
function checkStatistics(object: Uint8Array, plans: ColumnPlan[], expected: Array<Array<string | null>>, out: Mismatch[]) {
  const view = new DataView(object.buffer, object.byteOffset, object.byteLength);
  const length = view.getUint32(object.byteLength - 8, true);
  const footer = deserializeTCompactProtocol({ view, offset: object.byteLength - 8 - length });
  let start = 0;
  for (const [g, group] of (footer.field_4 as Array<Record<string, any>>).entries()) {
    const rows = Number(group.field_3);
    let leaf = 0;
    for (const [i, plan] of plans.entries()) {
      const chunk = group.field_1[leaf++]!.field_3;
      const stats = chunk.field_12;
      if (plan.array) continue;
      const values = expected.slice(start, start + rows).map((r) => r[i] ?? null);
      const nulls = values.filter((v) => v === null).length;
      const where = { reader: `statistics (row group ${g + 1})`, row: start + 1, column: plan.name, type: plan.pgType };
      if (stats?.field_3 !== undefined && Number(stats.field_3) !== nulls)
        out.push({ ...where, expected: `null_count ${nulls}`, got: `null_count ${stats.field_3}` });
      if (!stats?.field_5 && !stats?.field_6) continue;
      const decode = (bytes: Uint8Array) => {
        const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
        return bytes.byteLength === 4 ? BigInt(v.getInt32(0, true)) : v.getBigInt64(0, true);
      };
      const unscaled = (text: string) => (plan.kind === 'decimal' ? BigInt(text.replace('.', '')) : BigInt(text));
      const present = values.filter((v): v is string => v !== null).map(unscaled);
      if (present.length === 0) {
        out.push({ ...where, expected: 'no min/max (all NULL)', got: `min ${decode(stats.field_6)} max ${decode(stats.field_5)}` });
        continue;
      }
      const min = present.reduce((a, b) => (b < a ? b : a));
      const max = present.reduce((a, b) => (b > a ? b : a));
      const gotMin = decode(stats.field_6);
      const gotMax = decode(stats.field_5);
      if (gotMin !== min || gotMax !== max) out.push({ ...where, expected: `min ${min} max ${max}`, got: `min ${gotMin} max ${gotMax}` });
    }
    start += rows;
  }
}

async function runCase(
  label: string,
  options: CaseOptions,
  withDuck = true,
): Promise<{ mismatches: Mismatch[]; ms: number; bytes: number; rowGroups: number }> {
  const started = performance.now();
  const table = `t${options.seed}`;
  const columns = columnsFor(options);
  await createTable(table, options, columns);
  const mismatches: Mismatch[] = [];
  let result: Awaited<ReturnType<typeof write>>;
  try {
    result = await write(table, options);
  } catch (error) {
    mismatches.push({ reader: 'writer', row: 0, column: '*', type: '', expected: 'written', got: `threw: ${(error as Error).message}` });
    return { mismatches, ms: performance.now() - started, bytes: 0, rowGroups: 0 };
  }
  const { plans, writer, object } = result;
  const { rows: printed } = await sql.query({
    text: `SELECT ${plans.map((p) => p.select).join(', ')} FROM f.${table} AS t ORDER BY t.id`,
    rowMode: 'array',
  });
  compare('hyparquet', plans, printed, await canonicalRows(object, plans), mismatches);
  const read = await readBackChecksum(object, plans);
  if (read.checksum !== writer.checksum || read.rows !== printed.length) {
    mismatches.push({
      reader: 'checksum',
      row: 0,
      column: '*',
      type: '',
      expected: `${printed.length} ${writer.checksum}`,
      got: `${read.rows} ${read.checksum}`,
    });
  }
  checkStatistics(object, plans, printed, mismatches);
  const view = new DataView(object.buffer, object.byteOffset, object.byteLength);
  const footer = deserializeTCompactProtocol({ view, offset: object.byteLength - 8 - view.getUint32(object.byteLength - 8, true) });
  if (withDuck) {
    const file = join(dir, `${table}.parquet`);
    writeFileSync(file, object);
    const duckRows = await duckdb(
      `SELECT ${plans.map((p, i) => `${duckExpression(p)} AS v${i}`).join(', ')} FROM read_parquet('${file}', file_row_number = true) ORDER BY file_row_number`,
    );
    compare(
      'duckdb',
      plans,
      printed,
      duckRows.map((r) => plans.map((p, i) => duckText(p, r[`v${i}`]))),
      mismatches,
    );
    rmSync(file);
  }
  await sql.query(`DROP TABLE f.${table}`);
  const ms = performance.now() - started;
  console.log(
    `${label}: ${options.rows} rows, ${plans.length} columns, rowGroupRows ${options.rowGroupRows}, ${options.compression}: ${(object.byteLength / 1e6).toFixed(1)} MB, ${footer.field_4.length} row groups, ${mismatches.length} mismatches, ${ms.toFixed(0)} ms`,
  );
  return { mismatches, ms, bytes: object.byteLength, rowGroups: footer.field_4.length };
}

function report(mismatches: Mismatch[]) {
  // One line per (reader, column, expected-got) shape, first row shown.
  const seen = new Map<string, Mismatch & { count: number }>();
  for (const m of mismatches) {
    const key = `${m.reader}|${m.column}`;
    const had = seen.get(key);
    if (had) had.count++;
    else seen.set(key, { ...m, count: 1 });
  }
  return [...seen.values()].map((m) => `${m.reader} ${m.column} (${m.type}) row ${m.row} [${m.count}x]: expected ${m.expected}, got ${m.got}`);
}

const FIXED = KINDS.filter((k) =>
  ['smallint', 'integer', 'bigint', 'boolean', 'uuid', 'date', 'timestamptz', 'numeric(18,2)', 'numeric(38,10)'].includes(k.type),
);
const VARIABLE = KINDS.filter((k) => ['text', 'bytea', 'jsonb', 'char(4)', 'numeric(20,6)', 'varchar(7)'].includes(k.type));

describe('fuzz: every column kind, edges and random values, read back by hyparquet and DuckDB as Postgres prints them', () => {
  it('small tables, row groups of 1 and 7 and 1000, every codec, random extra flushes', async () => {
    const all: string[] = [];
    const cases: Array<[string, CaseOptions]> = [
      ['rg1', { seed: 11, rows: 30, rowGroupRows: 1, compression: 'gzip' }],
      ['rg7', { seed: 12, rows: 400, rowGroupRows: 7, compression: 'snappy' }],
      ['rg1000', { seed: 13, rows: 3000, rowGroupRows: 1000, compression: 'none', randomFlushes: 5 }],
      ['long', { seed: 15, rows: 40, rowGroupRows: 7, compression: 'gzip', longEvery: 9, arrayMax: 3 }],
    ];
    for (const [label, options] of cases) all.push(...report((await runCase(label, options)).mismatches).map((line) => `${label}: ${line}`));
    expect(all).toEqual([]);
  });

  it('buffers past 64 KB ... 1 MB and pages past 1 MB: 17,000 rows of fixed kinds, 8,000 of variable ones, in one row group', async () => {
    const all: string[] = [];
    for (const [label, options] of [
      ['fixed-17k', { seed: 21, rows: 17_000, rowGroupRows: 20_000, compression: 'gzip', kinds: FIXED, arrayMax: 12 }],
      ['variable-8k', { seed: 22, rows: 8000, rowGroupRows: 100_000, compression: 'snappy', kinds: VARIABLE, arrayMax: 8, longEvery: 4000 }],
    ] as Array<[string, CaseOptions]>) {
      all.push(...report((await runCase(label, options)).mismatches).map((line) => `${label}: ${line}`));
    }
    expect(all).toEqual([]);
  });

  it.runIf(HEAVY)(
    'heavy: every kind at 20,000 rows; 200,000 rows in row groups of 100,000; long values on many pages',
    async () => {
      const all: string[] = [];
      for (const [label, options] of [
        ['all-20k', { seed: 31, rows: 20_000, rowGroupRows: 1000, compression: 'gzip', arrayMax: 8 }],
        ['all-20k-one-group', { seed: 32, rows: 20_000, rowGroupRows: 20_000, compression: 'snappy', arrayMax: 8 }],
        ['fixed-200k', { seed: 33, rows: 200_000, rowGroupRows: 100_000, compression: 'gzip', kinds: FIXED, arrayMax: 12 }],
        ['variable-200k', { seed: 34, rows: 200_000, rowGroupRows: 100_000, compression: 'gzip', kinds: VARIABLE, arrayMax: 6, longEvery: 20_000 }],
        ['fixed-200k-none', { seed: 35, rows: 200_000, rowGroupRows: 100_000, compression: 'none', kinds: FIXED, arrayMax: 4, randomFlushes: 3 }],
        ['all-rg7', { seed: 36, rows: 3000, rowGroupRows: 7, compression: 'gzip', arrayMax: 5 }],
      ] as Array<[string, CaseOptions]>) {
        all.push(...report((await runCase(label, options)).mismatches).map((line) => `${label}: ${line}`));
      }
      expect(all).toEqual([]);
    },
    900_000,
  );
});

describe('fuzz: probes of names', () => {
  it('columns with odd names read back by both readers', async () => {
    await sql.query(`DROP TABLE IF EXISTS f.names; CREATE TABLE f.names (id int PRIMARY KEY, "Mixed Case" int, "with.dot" text, "quote""d" bigint,
        "élan" boolean, list int[], element text, "a" int, "A" int, "schema" int, "t" text[], "list.element" int, "tags" text[], "tags.list.element" text)`);
    await sql.query(
      `INSERT INTO f.names SELECT i, i, 'x' || i, -i, i % 2 = 0, ARRAY[i, NULL], 'e' || i, i * 10, i * 100, i, ARRAY['a', NULL], i + 7, ARRAY['t' || i], 'tle' || i FROM generate_series(1, 50) AS i`,
    );
    const plans = await planColumns(sql, { schema: 'f', name: 'names' });
    const bytes = await copyRows(sql, statement`SELECT ${raw(plans.map((p) => p.copySelect).join(', '))} FROM f.names AS t ORDER BY t.id`);
    const reader = new CopyReader(bytes, plans.length);
    const writer = new ObjectWriter(plans, 7, 'gzip', ['1'], []);
    for (let row = 0; row < reader.rows; row++) {
      reader.row(row);
      writer.add(reader.bytes, reader.starts, reader.lengths, { text: () => String(row) }, row);
    }
    const object = await writer.finish();
    const { rows: printed } = await sql.query({
      text: `SELECT ${plans.map((p) => p.select).join(', ')} FROM f.names AS t ORDER BY t.id`,
      rowMode: 'array',
    });
    const mismatches: Mismatch[] = [];
    compare('hyparquet', plans, printed, await canonicalRows(object, plans), mismatches);
    expect(await readBackChecksum(object, plans)).toEqual({ rows: 50, checksum: writer.checksum });
    const file = join(dir, 'names.parquet');
    writeFileSync(file, object);
    const duckRows = await duckdb(`SELECT * FROM read_parquet('${file}') LIMIT 1`);
    expect(duckRows[0]).toMatchObject({ 'with.dot': 'x1', 'quote"d': '-1', 'list.element': 8, 'tags.list.element': 'tle1', A_1: 100 });
    expect(report(mismatches)).toEqual([]);
  });
});

describe.runIf(process.env.FUZZ_ARCHIVE === '1')('fuzz: a whole archive run to s3rver', () => {
  it('50,000 rows of every kind on three interleaved days: every published row reads back (hyparquet and DuckDB) as the copy taken before', async () => {
    const s3 = await startTestS3();
    const options: CaseOptions = { seed: 41, rows: 50_000, rowGroupRows: 0, compression: 'gzip', arrayMax: 4, longEvery: 12_345 };
    const columns = columnsFor(options);
    await createTable('src', options, columns);
    // Days interleaved in key order (a batch spans all three, and its writers are flushed by the fullest); a dropped column; 1% not expired.
    await sql.query(`ALTER TABLE f.src ADD COLUMN gone int, ADD COLUMN created_at timestamptz;
      UPDATE f.src SET created_at = CASE WHEN id % 100 = 0 THEN now() ELSE TIMESTAMPTZ '2025-03-01 00:00:00+00' + (id % 3) * interval '1 day' + (id % 86400) * interval '1 second' END;
      ALTER TABLE f.src ALTER COLUMN created_at SET NOT NULL, DROP COLUMN gone;
      CREATE INDEX ON f.src (created_at); ANALYZE f.src;
      CREATE TABLE f.src_copy AS SELECT * FROM f.src`);
    const plans = await planColumns(sql, { schema: 'f', name: 'src' });
    const summary = await runArchive(db.url, {
      targets: [
        {
          source: 'f.src',
          destination: { s3: { bucket: 'hk-archive', prefix: 'fz', rowsPerObject: 20_000, rowGroupRows: 3000, compression: 'gzip' } },
          ageColumn: 'created_at',
          retention: '30 days',
        },
      ],
    });
    expect(summary.targets[0]!.detail).toBeUndefined();
    expect(summary.targets[0]!.state).toBe('succeeded');
    const keys = (await s3.keys('fz/')).filter((k) => k.endsWith('.parquet'));
    const local = await s3.download('fz/');
    const { rows: expectedRows } = await sql.query({
      text: `SELECT ${plans.map((p) => p.select).join(', ')} FROM f.src_copy AS t ORDER BY t.id`,
      rowMode: 'array',
    });
    const byId = new Map(expectedRows.map((r) => [r[0] as string, r]));
    const seen = new Set<string>();
    const mismatches: Mismatch[] = [];
    for (const key of keys) {
      const object = new Uint8Array(readFileSync(join(local, key)));
      const read = await canonicalRows(object, plans);
      const duckRows = await duckdb(
        `SELECT ${plans.map((p, i) => `${duckExpression(p)} AS v${i}`).join(', ')} FROM read_parquet('${join(local, key)}', file_row_number = true) ORDER BY file_row_number`,
      );
      const expected = read.map((r) => byId.get(r[0]!) ?? plans.map(() => 'MISSING'));
      for (const r of read) {
        if (seen.has(r[0]!)) mismatches.push({ reader: 'layout', row: Number(r[0]), column: 'id', type: '', expected: 'once', got: 'twice' });
        seen.add(r[0]!);
      }
      compare(`hyparquet ${key}`, plans, expected, read, mismatches);
      compare(
        `duckdb ${key}`,
        plans,
        expected,
        duckRows.map((r) => plans.map((p, i) => duckText(p, r[`v${i}`]))),
        mismatches,
      );
    }
    const { rows: left } = await sql.query(`SELECT id::text AS id FROM f.src`);
    const expired = expectedRows.filter((r) => Number(r[0]) % 100 !== 0).map((r) => r[0] as string);
    expect(seen.size).toBe(expired.length);
    expect(expired.every((id) => seen.has(id))).toBe(true);
    expect(left.map((r) => r.id).sort()).toEqual(
      expectedRows
        .filter((r) => Number(r[0]) % 100 === 0)
        .map((r) => r[0] as string)
        .sort(),
    );
    expect(report(mismatches)).toEqual([]);
  }, 600_000);
});
