import { randomBytes } from 'node:crypto';
import { gunzipSync, gzipSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';
import { s3DestinationSchema } from '../../functions/archive/policy';
import type { S3Catalog } from '../../functions/archive/s3/catalog';
import { arrayText, type ColumnPlan, decimalText, fromParquetScalar, MAX_DECIMAL_PRECISION } from '../../functions/archive/s3/columns';
import { gzipPage, parquetSchema } from '../../functions/archive/s3/parquet';
import { dayText, objectKeys, objectName } from '../../functions/archive/s3/plan';
import { renderS3Sql } from '../../functions/archive/s3/sql';
import { copySource } from '../../functions/archive/s3/store';
import { sql } from '../../shared/sql';

/** Pure parts of the S3 destination: the canonical texts and their Parquet values, the layout, the statements. */
describe('S3 values read back', () => {
  it('an unscaled decimal prints as numeric(p,s) does: scale kept, sign and leading zeros exact', () => {
    for (const [text, scale, unscaled] of [
      ['12.30', 2, 1230n],
      ['-0.05', 2, -5n],
      ['0.00', 2, 0n],
      ['99999999999999999999999999999999999.999', 3, 99999999999999999999999999999999999999n],
      ['-7', 0, -7n],
    ] as const) {
      expect(decimalText(unscaled, scale)).toBe(text);
    }
    expect(MAX_DECIMAL_PRECISION).toBe(38);
  });

  it('array elements print as array_out does: NULL, quotes, backslashes, commas, braces, blanks; booleans t/f', () => {
    expect(arrayText([])).toBe('{}');
    expect(arrayText(['a', null, 'NULL', 'b c', 'x"y', 'back\\slash', 'a,b', '{}', ''])).toBe(
      '{a,NULL,"NULL","b c","x\\"y","back\\\\slash","a,b","{}",""}',
    );
    expect(fromParquetScalar('bool', true, {}, true)).toBe('t');
    expect(fromParquetScalar('bool', false, {})).toBe('false');
    expect(fromParquetScalar('uuid', Buffer.from('a0eebc999c0b4ef8bb6d6bb9bd380a11', 'hex'), {})).toBe('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
    expect(fromParquetScalar('bytea', Buffer.from('00ff10', 'hex'), {})).toBe('00ff10');
    expect(fromParquetScalar('int64', -9223372036854775808n, {})).toBe('-9223372036854775808');
  });

  it("a dt= day from days since 1970, as to_char(d, 'YYYY-MM-DD') prints it, across leap rules and eras", () => {
    const utc = (days: number) => new Date(days * 86_400_000).toISOString().slice(0, 10);
    for (let days = -719_162; days <= 2_932_896; days += 997) expect(dayText(days), String(days)).toBe(utc(days));
    expect(dayText(0)).toBe('1970-01-01');
    expect(dayText(-719_162)).toBe('0001-01-01');
    expect(dayText(11_016)).toBe('2000-02-29');
    expect(dayText(2_932_896)).toBe('9999-12-31');
    expect(dayText(2_932_897)).toBe('10000-01-01');
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
      copySelect: '',
    });
    const [, narrow] = parquetSchema([decimal(18)]);
    const [, wide] = parquetSchema([decimal(38)]);
    expect(narrow).toMatchObject({ type: 'INT64', logical_type: { type: 'DECIMAL', precision: 18, scale: 2 } });
    expect(wide).toMatchObject({ type: 'FIXED_LEN_BYTE_ARRAY', type_length: 16 });
  });
});

describe('S3 page compression', () => {
  it('pages are gzip either way: repetitive ones string-matched as level 1, high-entropy ones Huffman-coded and no larger', async () => {
    const repetitive = Buffer.from('{"status":"shipped","items":[1,2,3]} '.repeat(4000));
    const random = Buffer.from(randomBytes(150_000).toString('hex'));
    const small = Buffer.from(randomBytes(1000).toString('hex'));
    for (const page of [repetitive, random, small, new Uint8Array(0)]) expect(Buffer.from(gunzipSync(await gzipPage(page))).equals(page)).toBe(true);
    expect((await gzipPage(repetitive)).byteLength).toBe(gzipSync(repetitive, { level: 1 }).byteLength);
    expect((await gzipPage(random)).byteLength).toBeLessThanOrEqual(gzipSync(random, { level: 1 }).byteLength);
    expect((await gzipPage(small)).byteLength).toBe(gzipSync(small, { level: 1 }).byteLength);
  });

  it('many pages at once, more than the reused streams, each come back as its own whole gzip member', async () => {
    // Sizes around the streams' 64 KB output chunks and past them, empty ones, both strategies.
    const pages = Array.from({ length: 60 }, (_, i) => {
      const size = [0, 1, 65_535, 65_536, 200_000, 1_100_000][i % 6]!;
      return i % 2 === 0 ? randomBytes(size) : Buffer.from(`row ${i};`.repeat(size / 7 + 1).slice(0, size));
    });
    const members = await Promise.all(pages.map((page) => gzipPage(page)));
    members.forEach((member, i) => {
      expect(Buffer.from(member.subarray(0, 2)).toString('hex'), `page ${i} starts a gzip member`).toBe('1f8b');
      expect(Buffer.from(gunzipSync(member)).equals(pages[i]!), `page ${i} comes back as itself`).toBe(true);
    });
    // The streams are reset between pages: the same page gives the same member again.
    expect(Buffer.from(await gzipPage(pages[3]!)).equals(Buffer.from(members[3]!))).toBe(true);
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
      { name: 'id', pgType: 'bigint', kind: 'int64', array: false, select: 't."id"::text', copySelect: 't."id"' },
      { name: 'note', pgType: 'text', kind: 'text', array: false, select: 't."note"::text', copySelect: 't."note"' },
    ],
    keyColumns: ['id'],
    keyTypes: ['bigint'],
    ageDate: sql`(t."completed_at" AT TIME ZONE ${'UTC'})::date`,
    ageTypes: { primary: 'timestamptz' },
    ageColumn: 'completed_at',
  };
  const statements = renderS3Sql(catalog, { primary: '2026-01-01 00:00:00.000+00' });
  it('the pick: the rows first (by the key index), then their key, day, version and values; every value bound and cast to its type (COPY reads them as texts)', () => {
    const pick = statements.pick(100, ['41']);
    expect(pick.text).toBe(
      `SELECT t."id"::text AS k0, CASE WHEN isfinite(t.xmax) AND t.xmax >= DATE '0001-01-01' THEN t.xmax - DATE '1970-01-01' END AS day, t.xmin AS version, t."id" AS c0, t."note" AS c1 ` +
        `FROM (SELECT t.*, t.xmin, (t."completed_at" AT TIME ZONE $1)::date AS xmax FROM "app"."orders" AS t WHERE t."completed_at" < $2::timestamptz AND t."id" > $3::bigint ORDER BY t."id" LIMIT $4::bigint) AS t ORDER BY t."id"`,
    );
    expect(pick.values).toEqual(['UTC', '2026-01-01 00:00:00.000+00', '41', 100]);
  });

  it('the delete: within the batch key range, by key (an integer key as an integer), the version written (an updated row is another version), still expired; counts what it deleted', () => {
    const remove = statements.remove([['1', '2']], [901, 902], ['1'], ['2']);
    expect(remove.text).toBe(
      `WITH gone AS (DELETE FROM "app"."orders" AS t USING unnest($1::bigint[], $2::xid[]) AS e(k0, x) WHERE t."id" >= $3::bigint AND t."id" <= $4::bigint ` +
        `AND t."id" = e.k0 AND t.xmin = e.x AND t."completed_at" < $5::timestamptz RETURNING 1) SELECT count(*)::int AS n FROM gone`,
    );
    // Integer keys and xids go as one array literal each (no element needs quoting).
    expect(remove.values).toEqual(['{1,2}', '{901,902}', '1', '2', '2026-01-01 00:00:00.000+00']);
  });

  it('the delete by any other key: by its operator and its text byte for byte (a case-insensitive key may hold both of two spellings)', () => {
    const byCode = renderS3Sql(
      { ...catalog, keyColumns: ['code', 'id'], keyTypes: ['citext', 'integer'] },
      { primary: '2026-01-01 00:00:00.000+00' },
    );
    const remove = byCode.remove(
      [
        ['a', 'B'],
        ['1', '2'],
      ],
      [901, 902],
      ['a', '1'],
      ['B', '2'],
    );
    expect(remove.text).toContain(
      `unnest($1::text[], $2::integer[], $3::xid[]) AS e(k0, k1, x) WHERE (t."code", t."id") >= ($4::citext, $5::integer) AND (t."code", t."id") <= ($6::citext, $7::integer) ` +
        `AND t."code" = e.k0::citext AND t."code"::text = e.k0 COLLATE "C" AND t."id" = e.k1 AND t.xmin = e.x AND`,
    );
    expect(remove.values.slice(0, 3)).toEqual([['a', 'B'], '{1,2}', '{901,902}']);
  });
});
