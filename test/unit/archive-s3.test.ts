import { createHash, randomBytes } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { s3DestinationSchema } from '../../functions/archive/policy';
import type { S3Catalog } from '../../functions/archive/s3/catalog';
import {
  arrayText,
  type ColumnPlan,
  decimalText,
  fromParquetScalar,
  MAX_DECIMAL_PRECISION,
  parseArrayText,
  RowChecksum,
  safeIntegerText,
  toParquetScalar,
  UnrepresentableValue,
  unscaledDecimal,
} from '../../functions/archive/s3/columns';
import { canonicalRows, gzipPage, ObjectWriter, parquetSchema, readBackChecksum } from '../../functions/archive/s3/parquet';
import { objectKeys, objectName } from '../../functions/archive/s3/plan';
import { renderS3Sql } from '../../functions/archive/s3/sql';
import { copySource } from '../../functions/archive/s3/store';
import { sql } from '../../shared/sql';

/** Pure parts of the S3 destination: the canonical texts and their Parquet values, the layout, the statements. */
describe('S3 canonical values', () => {
  it('numeric(p,s) crosses as its unscaled integer, scale kept, sign and leading zeros exact', () => {
    for (const [text, scale, unscaled] of [
      ['12.30', 2, 1230n],
      ['-0.05', 2, -5n],
      ['0.00', 2, 0n],
      ['99999999999999999999999999999999999.999', 3, 99999999999999999999999999999999999999n],
      ['-7', 0, -7n],
    ] as const) {
      expect(unscaledDecimal(text, scale)).toBe(unscaled);
      expect(decimalText(unscaled, scale)).toBe(text === '-0.05' ? '-0.05' : text);
    }
    expect(() => unscaledDecimal('NaN', 2)).toThrow(UnrepresentableValue);
    expect(() => unscaledDecimal('1.5', 2)).toThrow('does not have scale 2');
    expect(MAX_DECIMAL_PRECISION).toBe(38);
  });

  it('one-dimensional array texts round-trip: NULL, quotes, backslashes, commas, braces, blanks', () => {
    for (const elements of [[], ['a', null, 'NULL', 'b c', 'x"y', 'back\\slash', 'a,b', '{}', ''], ['1', '-2', '3']]) {
      const text = arrayText(elements);
      expect(parseArrayText(text)).toEqual(elements);
    }
    expect(arrayText(['NULL', null])).toBe('{"NULL",NULL}');
    expect(() => parseArrayText('{{1,2},{3,4}}')).toThrow('not a one-dimensional array');
  });

  it('scalars to Parquet values and back, as Postgres prints them (booleans are t/f inside arrays)', () => {
    const plan = { scale: 2 };
    expect(fromParquetScalar('int64', toParquetScalar('int64', '-9223372036854775808', plan), plan)).toBe('-9223372036854775808');
    expect(fromParquetScalar('bool', toParquetScalar('bool', 'true', plan), plan)).toBe('true');
    expect(fromParquetScalar('bool', toParquetScalar('bool', 'f', plan), plan, true)).toBe('f');
    expect(fromParquetScalar('uuid', toParquetScalar('uuid', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', plan), plan)).toBe(
      'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
    );
    expect(fromParquetScalar('bytea', toParquetScalar('bytea', '00ff10', plan), plan)).toBe('00ff10');
    expect(() => toParquetScalar('timestamptz', 'infinity', plan)).toThrow('not a finite timestamp');
    expect(() => toParquetScalar('date', '-infinity', plan)).toThrow('not a finite date');
  });

  it('integer and decimal texts become the exact Parquet values, a double used only where it is exact', () => {
    for (const text of ['0', '-0', '7', '-7', '007', '9007199254740991', '-9007199254740991', '1700000000000000', '8999999999999999']) {
      expect(safeIntegerText(text), text).toBe(Number(text));
    }
    // Past 2^53 or 16 digits, or not -?\d+: no double; the exact way decides.
    for (const text of [
      '9007199254740992',
      '-9007199254740993',
      '10000000000000000',
      '9223372036854775807',
      '',
      '-',
      '+1',
      ' 1',
      '1 ',
      '1e5',
      '0x10',
      '1.0',
      '--1',
      'infinity',
    ]) {
      expect(safeIntegerText(text), text).toBeUndefined();
    }
    for (const kind of ['int64', 'timestamptz', 'timestamp'] as const) {
      for (const text of [
        '0',
        '-1',
        '9007199254740991',
        '9007199254740992',
        '9007199254740993',
        '-9007199254740993',
        '9223372036854775807',
        '-9223372036854775808',
        '9223372036854775806',
      ]) {
        expect(toParquetScalar(kind, text, {}), `${kind} ${text}`).toBe(BigInt(text));
      }
    }
    for (const text of ['infinity', '-infinity', '294277-01-01 00:00:00+00', '', '-', '0x10', ' 5']) {
      expect(() => toParquetScalar('timestamptz', text, {}), text).toThrow(UnrepresentableValue);
    }
    expect(toParquetScalar('date', '-719162', {})).toBe(-719162);
    for (const [text, scale, unscaled] of [
      ['0.00', 2, 0n],
      ['-0.05', 2, -5n],
      ['9999999999999.99', 2, 999999999999999n],
      ['-99999999999999.99', 2, -9999999999999999n],
      ['9999999999999999.99', 2, 999999999999999999n],
      ['-9999999999999999.99', 2, -999999999999999999n],
      ['99999999999999999.99', 2, 9999999999999999999n],
      ['123456789012345678901234567890.12345678', 8, 12345678901234567890123456789012345678n],
      ['999999999999999', 0, 999999999999999n],
      ['-9999999999999999', 0, -9999999999999999n],
      ['0.000000000000001', 15, 1n],
    ] as const) {
      expect(toParquetScalar('decimal', text, { scale }), text).toBe(unscaled);
    }
    for (const [text, scale] of [
      ['1.5', 2],
      ['1.500', 2],
      ['1.', 0],
      ['.50', 2],
      ['1,50', 2],
      ['-', 0],
      ['', 0],
      ['1e5', 0],
      ['NaN', 2],
      ['+1.00', 2],
      ['1.0a', 2],
    ] as const) {
      expect(() => toParquetScalar('decimal', text, { scale }), text).toThrow(UnrepresentableValue);
    }
  });

  it('the object checksum is length-prefixed per value and per row: moving a character between columns or rows, or NULL vs empty, changes it', () => {
    const checksum = (...rows: Array<Array<string | null>>) => {
      const hash = new RowChecksum();
      for (const row of rows) hash.add(row);
      return hash.digest();
    };
    expect(checksum(['ab', 'c'])).not.toBe(checksum(['a', 'bc']));
    expect(checksum([null])).not.toBe(checksum(['']));
    expect(checksum(['a'], ['b'])).not.toBe(checksum(['a', 'b']));
    expect(checksum(['é'])).toBe(checksum(['é']));
  });

  it('the object checksum is md5 over every value length-prefixed in UTF-8 bytes, rows newline-ended, however many rows (what manifests already hold)', () => {
    const rows = Array.from({ length: 5000 }, (_, i) => [String(i), i % 3 === 0 ? null : `é漢🚀 row ${i} `.repeat(i % 7), '']);
    const expected = createHash('md5');
    for (const row of rows) {
      for (const text of row) expected.update(text === null ? 'N' : `V${Buffer.byteLength(text, 'utf8')}:${text}`);
      expected.update('\n');
    }
    const checksum = new RowChecksum();
    for (const row of rows) checksum.add(row);
    expect(checksum.digest()).toBe(expected.digest('hex'));
  });

  it('numbers, stored UTF-8 and bytes written straight into the checksum are exactly their texts', () => {
    const same = (write: (sum: RowChecksum) => void, text: string) => {
      const direct = new RowChecksum();
      write(direct);
      direct.endRow();
      const viaText = new RowChecksum();
      viaText.add([text]);
      expect(direct.digest(), text.length > 60 ? `${text.slice(0, 60)}...` : text).toBe(viaText.digest());
    };
    const integers = [
      0,
      1,
      -1,
      9,
      10,
      -10,
      99_999_999,
      100_000_000,
      2 ** 30 - 1,
      2 ** 30,
      2 ** 31,
      2 ** 32 + 7,
      1_234_567_899_999_999,
      8_999_999_999_999_999,
      9_007_199_199_999_999,
      4_500_000_000_000_000,
    ];
    integers.push(Number.MAX_SAFE_INTEGER, Number.MIN_SAFE_INTEGER, ...Array.from({ length: 200 }, (_, i) => Math.floor(Math.sin(i + 1) * 2 ** 53)));
    for (const value of integers) {
      same((sum) => sum.integer(value), String(value));
      same((sum) => sum.integer(BigInt(value)), String(value));
    }
    // Past 2^53 (timestamps after year 2255 in microseconds, the int64 bounds): the text way, still exact.
    for (const value of [2n ** 53n, 2n ** 53n + 1n, -(2n ** 53n) - 1n, 9223372036854775807n, -9223372036854775808n, 8_000_000_000_000_000_123n]) {
      same((sum) => sum.integer(value), String(value));
    }
    for (const [unscaled, scale] of [
      [0n, 2],
      [-5n, 2],
      [1230n, 2],
      [-7n, 0],
      [5n, 15],
      [-123456789012345n, 15],
      [999_999_999_999_999_999n, 2],
      [-999_999_999_999_999_999n, 4],
      [9_007_199_254_740_991n, 2],
      [-9_007_199_254_740_991n, 6],
      [9_007_199_254_740_993n, 2],
      [12345n, 16],
      [-12345n, 30],
      [99999999999999999999999999999999999999n, 3],
    ] as const) {
      same((sum) => sum.decimal(unscaled, scale), decimalText(unscaled, scale));
      if (Number.isSafeInteger(Number(unscaled))) same((sum) => sum.decimal(Number(unscaled), scale), decimalText(unscaled, scale));
    }
    for (const text of ['', 'EUR', 'é', '\uFEFFbom', '漢🚀', 'a'.repeat(33), `${'x'.repeat(40)}é`, 'y'.repeat(100_000), `${'z'.repeat(70_000)}🚀`]) {
      same((sum) => sum.utf8(Buffer.from(text, 'utf8')), text);
      same((sum) => sum.text(text), text);
    }
    for (const bytes of [new Uint8Array(0), Uint8Array.of(0, 0xff, 0x10), randomBytes(40_000)])
      same((sum) => sum.hex(bytes), Buffer.from(bytes).toString('hex'));
    for (const invalid of [Uint8Array.of(0x61, 0xc3), Uint8Array.of(...Buffer.from('a'.repeat(40)), 0xff), new Uint8Array(70_000).fill(0x80)]) {
      expect(() => new RowChecksum().utf8(invalid)).toThrow(UnrepresentableValue);
    }
  });

  it('an object reads back to the texts written, each kind at its edges, checksum and all', async () => {
    const plan = (name: string, kind: ColumnPlan['kind'], extra: Partial<ColumnPlan> = {}): ColumnPlan => ({
      name,
      pgType: kind,
      kind,
      array: false,
      select: '',
      ...extra,
    });
    const plans = [
      plan('i16', 'int16'),
      plan('i32', 'int32'),
      plan('i64', 'int64'),
      plan('d2', 'decimal', { precision: 18, scale: 2 }),
      plan('d0', 'decimal', { precision: 18, scale: 0 }),
      plan('wide', 'decimal', { precision: 38, scale: 4 }),
      plan('t', 'text'),
      plan('b', 'bool'),
      plan('day', 'date'),
      plan('at', 'timestamptz'),
      plan('local', 'timestamp'),
      plan('u', 'uuid'),
      plan('j', 'json'),
      plan('raw', 'bytea'),
      plan('tags', 'text', { array: true }),
      plan('nums', 'decimal', { array: true, precision: 10, scale: 1 }),
    ];
    const rows: Array<Array<string | null>> = [
      [
        '-32768',
        '-2147483648',
        '-9223372036854775808',
        '-9999999999999999.99',
        '-999999999999999999',
        '-99999999999999999999999999999999.9999',
        '',
        'false',
        '-719162',
        '-210866803200000000',
        '-9223372036854775808',
        '00000000-0000-0000-0000-000000000000',
        '{}',
        '',
        '{}',
        '{-0.5,NULL}',
      ],
      [
        '32767',
        '2147483647',
        '9223372036854775807',
        '9999999999999999.99',
        '999999999999999999',
        '99999999999999999999999999999999.9999',
        'é漢🚀 "q"',
        'true',
        '2932896',
        '9223372036854775807',
        '9007199254740993',
        'ffffffff-ffff-ffff-ffff-ffffffffffff',
        '{"a": [1, 2]}',
        '00ff',
        '{a,NULL,"b c","",NULL}',
        '{1.0}',
      ],
      [
        '0',
        '0',
        '9007199254740991',
        '-0.05',
        '0',
        '0.0001',
        'x'.repeat(300),
        'true',
        '0',
        '-9007199254740993',
        '-9007199254740991',
        'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
        'null',
        'deadbeef',
        '{"\\\\"}',
        '{}',
      ],
      Array.from({ length: 16 }, () => null),
    ];
    const writer = new ObjectWriter(plans, 3, 'gzip', ['1'], []);
    for (const row of rows) writer.add(row, ['1'], '1');
    const bytes = writer.finish();
    expect(await canonicalRows(bytes, plans)).toEqual(rows);
    expect(await readBackChecksum(bytes, plans)).toEqual({ rows: rows.length, checksum: writer.checksum });
  });

  it('decimals up to 18 digits are INT64, wider ones fixed-length bytes just wide enough', () => {
    const decimal = (precision: number): ColumnPlan => ({
      name: 'n',
      pgType: `numeric(${precision},2)`,
      kind: 'decimal',
      array: false,
      precision,
      scale: 2,
      select: '',
    });
    const [, narrow] = parquetSchema([decimal(18)]);
    const [, wide] = parquetSchema([decimal(38)]);
    expect(narrow).toMatchObject({ type: 'INT64', logical_type: { type: 'DECIMAL', precision: 18, scale: 2 } });
    expect(wide).toMatchObject({ type: 'FIXED_LEN_BYTE_ARRAY', type_length: 16 });
  });
});

describe('S3 page compression', () => {
  it('pages are gzip either way: repetitive ones string-matched as level 1, high-entropy ones Huffman-coded and no larger', () => {
    const repetitive = Buffer.from('{"status":"shipped","items":[1,2,3]} '.repeat(4000));
    const random = Buffer.from(randomBytes(150_000).toString('hex'));
    const small = Buffer.from(randomBytes(1000).toString('hex'));
    for (const page of [repetitive, random, small, new Uint8Array(0)]) expect(Buffer.from(gunzipSync(gzipPage(page))).equals(page)).toBe(true);
    expect(gzipPage(repetitive).byteLength).toBe(gzipSync(repetitive, { level: 1 }).byteLength);
    expect(gzipPage(random).byteLength).toBeLessThanOrEqual(gzipSync(random, { level: 1 }).byteLength);
    expect(gzipPage(small).byteLength).toBe(gzipSync(small, { level: 1 }).byteLength);
  });
});

describe('S3 layout', () => {
  it('Hive-style by day, named by the first and last key; non-integer keys as short hashes', () => {
    expect(objectName('2025-10-31', ['17'], ['4242'])).toBe('dt=2025-10-31/part-17-4242.parquet');
    expect(objectName('2025-10-31', ['a b', '1'], ['c', '2'])).toMatch(/^dt=2025-10-31\/part-k[0-9a-f]{16}_1-k[0-9a-f]{16}_2\.parquet$/);
    expect(objectKeys({ prefix: 'pg/prod' }, { schema: 'public', name: 'orders' }, 'run-1', '2025-10-31', ['1'], ['9'])).toEqual({
      key: 'pg/prod/table=public.orders/dt=2025-10-31/part-1-9.parquet',
      pendingKey: 'pg/prod/_pending/table=public.orders/run-1/dt=2025-10-31/part-1-9.parquet',
    });
    expect(copySource('b', 'p/table=public.orders/dt=2025-10-31/part-1-9.parquet')).toBe('b/p/table=public.orders/dt=2025-10-31/part-1-9.parquet');
  });

  it('the destination block: defaults, and bucket and prefix names every reader takes as written', () => {
    expect(s3DestinationSchema.parse({ bucket: 'acme-archive', prefix: 'pg/prod' })).toEqual({
      bucket: 'acme-archive',
      prefix: 'pg/prod',
      format: 'parquet',
      compression: 'gzip',
      rowsPerObject: 100_000,
      rowGroupRows: 10_000,
    });
    expect(s3DestinationSchema.safeParse({ bucket: 'Acme', prefix: 'p' }).success).toBe(false);
    for (const prefix of ['/p', 'p/', 'a//b', 'a/_pending', 'a/../b', 'a b'])
      expect(s3DestinationSchema.safeParse({ bucket: 'acme', prefix }).success).toBe(false);
  });
});

describe('S3 statements', () => {
  const catalog: S3Catalog = {
    source: { schema: 'app', name: 'orders' },
    s3: s3DestinationSchema.parse({ bucket: 'hk-bucket', prefix: 'p' }),
    columns: [
      { name: 'id', pgType: 'bigint', kind: 'int64', array: false, select: 't."id"::text' },
      { name: 'note', pgType: 'text', kind: 'text', array: false, select: 't."note"::text' },
    ],
    keyColumns: ['id'],
    keyTypes: ['bigint'],
    day: sql`(t."completed_at" AT TIME ZONE ${'UTC'})::date`,
    ageColumn: 'completed_at',
  };
  const statements = renderS3Sql(catalog, { primary: '2026-01-01 00:00:00.000+00' });
  it('the pick: the rows first (by the key index), then their key, day, version and canonical texts; values bound', () => {
    const pick = statements.pick(100, ['41']);
    expect(pick.text).toBe(
      `SELECT t."id"::text AS k0, (t."completed_at" AT TIME ZONE $1)::date AS day, t.xmin::text AS version, v.* ` +
        `FROM (SELECT t.*, t.xmin FROM "app"."orders" AS t WHERE t."completed_at" < $2 AND t."id" > $3 ORDER BY t."id" LIMIT $4) AS t ` +
        `CROSS JOIN LATERAL (SELECT t."id"::text AS c0, t."note"::text AS c1) AS v ORDER BY t."id"`,
    );
    expect(pick.values).toEqual(['UTC', '2026-01-01 00:00:00.000+00', '41', 100]);
  });

  it('the delete: within the batch key range, by key (its operator and its text byte for byte), the version written (an updated row is another version), still expired; counts what it deleted', () => {
    const remove = statements.remove([['1', '2']], ['901', '902'], ['1'], ['2']);
    expect(remove.text).toBe(
      `WITH gone AS (DELETE FROM "app"."orders" AS t USING unnest($1::text[], $2::text[]) AS e(k0, x) WHERE t."id" >= $3::bigint AND t."id" <= $4::bigint ` +
        `AND t."id" = e.k0::bigint AND t."id"::text = e.k0 COLLATE "C" AND t.xmin = e.x::xid AND t."completed_at" < $5 RETURNING 1) SELECT count(*)::int AS n FROM gone`,
    );
    // Integer keys and xids go as one array literal each (no element needs quoting).
    expect(remove.values).toEqual(['{1,2}', '{901,902}', '1', '2', '2026-01-01 00:00:00.000+00']);
  });
});
