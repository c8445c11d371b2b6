import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { parquetMetadata, parquetRead } from 'hyparquet';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { planColumns, UnrepresentableValue } from '../../functions/archive/s3/columns';
import { CopyReader, copyRows } from '../../functions/archive/s3/copy';
import { canonicalRows, gzipSections, inflateAhead, parquetSchema, readBackChecksum } from '../../functions/archive/s3/parquet';
import { ObjectWriter } from '../../functions/archive/s3/writer';
import { raw, sql as statement, typed } from '../../shared/sql';
import { createTestDatabase, type TestDatabase } from '../support/db';
import { duckdb } from '../support/s3';

/**
 * The writer takes Postgres's binary values; what a reader gets back must be what Postgres itself
 * prints for them (each column's canonical text, computed in SQL): the conversion from binary is
 * checked against Postgres, not against itself.
 */

let db: TestDatabase;
let sql: pg.Client;

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
  await sql.query(`
    DROP SCHEMA IF EXISTS w CASCADE; CREATE SCHEMA w;
    CREATE TABLE w.edges (
      id int PRIMARY KEY, i2 smallint, i4 integer, i8 bigint,
      d2 numeric(18, 2), d0 numeric(18, 0), wide numeric(38, 4), tiny numeric(3, 3),
      t text, c char(4), b boolean, day date, at timestamptz, local timestamp,
      u uuid, j jsonb, js json, raw bytea,
      tags text[], nums numeric(10, 1)[], flags boolean[], ids bigint[], us uuid[]
    );
    INSERT INTO w.edges VALUES
      (1, -32768, -2147483648, -9223372036854775808, -9999999999999999.99, -999999999999999999,
       -99999999999999999999999999999999.9999, -0.999,
       'é漢🚀 "q" \\ back', 'ab', true, '0001-01-01', '4713-11-24 00:00:00+00 BC', '294246-12-31 23:59:59.999999',
       'ffffffff-ffff-ffff-ffff-ffffffffffff', '{"a": [1, 2.50], "big": 123456789012345678901234567890}', '{ "spaced" :  1 }', '\\x00ff'::bytea,
       '{a,NULL,"b c","",",","\\"q\\""}', '{1.0,NULL,-0.1}', '{t,f,NULL}', '{9223372036854775807,-9223372036854775808}', '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'),
      (2, 32767, 2147483647, 9223372036854775807, 0.01, 9007199254740993, 0.0001, 0.001,
       '', 'abcd', false, '1969-12-31', '1970-01-01 00:00:00+00', '1969-12-31 23:59:59.999999',
       '00000000-0000-0000-0000-000000000000', '[]', 'null', '\\x'::bytea,
       '{}', '{}', '{}', '{}', '{}'),
      (3, 0, 0, 9007199254740991, -0.05, -9007199254740993, 12345678901234567890123456789012.3456, 0,
       repeat('x', 1200000), NULL, NULL, '5874897-12-31', '2262-04-11 23:47:16.854775+00', '2000-01-01 00:00:00',
       'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '"x"', '"y"', decode(repeat('ab', 3000), 'hex'),
       '{NULL}', '{NULL,NULL}', '{NULL}', '{0}', '{NULL}'),
      (4, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL),
      (5, 1, -1, -9007199254740991, 123456789012.34, 1, -0.0001, -0.001,
       'tail', 'x', true, '2400-02-29', '2038-01-19 03:14:08.123456+00', '1900-01-01 00:00:00.000001',
       'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', '{}', '{}', '\\x10'::bytea,
       '{z}', '{99999999.9}', '{t}', '{1,2,3}', '{00000000-0000-0000-0000-000000000001,NULL}');
  `);
});

afterAll(async () => {
  await sql?.end();
});

async function write(table: string, rowGroupRows: number) {
  const source = { schema: 'w', name: table };
  const plans = await planColumns(sql, source);
  const bytes = await copyRows(sql, statement`SELECT ${raw(plans.map((p) => p.copySelect).join(', '))} FROM ${raw(`w.${table}`)} AS t ORDER BY t.id`);
  const reader = new CopyReader(bytes, plans.length);
  const writer = new ObjectWriter(plans, rowGroupRows, 'gzip', ['1'], []);
  for (let row = 0; row < reader.rows; row++) {
    reader.row(row);
    writer.add(reader.bytes, reader.starts, reader.lengths, { text: () => String(row) }, row);
  }
  const object = await writer.finish();
  return { plans, writer, object };
}

describe('S3 writer: Postgres binary values to Parquet', () => {
  it('reads back as the texts Postgres prints for every kind at its edges, across row groups and pages; checksum and all', async () => {
    const { plans, writer, object } = await write('edges', 2);
    const { rows: printed } = await sql.query({
      text: `SELECT ${plans.map((p) => p.select).join(', ')} FROM w.edges AS t ORDER BY t.id`,
      rowMode: 'array',
    });
    expect(printed).toHaveLength(5);
    expect(await canonicalRows(object, plans)).toEqual(printed);
    expect(await readBackChecksum(object, plans)).toEqual({ rows: 5, checksum: writer.checksum });
    // The checksum is of the rows, not of how they were split into row groups and pages.
    const whole = await write('edges', 1000);
    expect(whole.writer.checksum).toBe(writer.checksum);
    expect(whole.object.byteLength).not.toBe(object.byteLength);
  });

  it('the checksum is of the fields Postgres sent, not of what the writer encoded: a wrong value encoded reads back as another checksum', async () => {
    await sql.query(`CREATE TABLE w.encoded (id int PRIMARY KEY, n integer, tags integer[], note text);
      INSERT INTO w.encoded VALUES (1, 7, '{1,NULL}', 'a'), (2, 424242, '{}', NULL), (3, NULL, NULL, 'c')`);
    const honest = await write('encoded', 10);
    // From Postgres's COPY fields alone: each framed by its length (-1 for NULL), an array without
    // its has-nulls flag and element type; row by row.
    const plans = honest.plans;
    const copied = new CopyReader(
      await copyRows(sql, statement`SELECT ${raw(plans.map((p) => p.copySelect).join(', '))} FROM w.encoded AS t ORDER BY t.id`),
      plans.length,
    );
    const fields: Buffer[] = [];
    for (let row = 0; row < copied.rows; row++) {
      copied.row(row);
      plans.forEach((plan, i) => {
        const [start, length] = [copied.starts[i]!, copied.lengths[i]!];
        const field = length < 0 ? Buffer.alloc(0) : copied.bytes.subarray(start, start + length);
        const kept = plan.array && length >= 0 ? Buffer.concat([field.subarray(0, 4), field.subarray(12)]) : field;
        const framed = Buffer.alloc(4);
        framed.writeInt32BE(length < 0 ? -1 : kept.length);
        fields.push(framed, kept);
      });
    }
    const sha256 = (...parts: Array<string | Buffer>) => parts.reduce((hash, part) => hash.update(part), createHash('sha256'));
    const expected = sha256('3\n', sha256(Buffer.concat(fields)).digest()).digest('hex');
    expect(honest.writer.checksum).toBe(expected);
    expect(await readBackChecksum(honest.object, plans)).toEqual({ rows: 3, checksum: expected });

    // An encoder that writes a wrong integer: the object is well-formed and reads back, as 424243.
    const writeInt32LE = Buffer.prototype.writeInt32LE;
    const planted = vi.spyOn(Buffer.prototype, 'writeInt32LE').mockImplementation(function (this: Buffer, ...args: unknown[]) {
      const [value, offset] = args as [number, number | undefined];
      return writeInt32LE.call(this, value === 424242 ? 424243 : value, offset);
    });
    let broken: Awaited<ReturnType<typeof write>>;
    try {
      broken = await write('encoded', 10);
    } finally {
      planted.mockRestore();
    }
    expect((await canonicalRows(broken.object, plans))[1]).toEqual(['2', '424243', '{}', null]);
    expect(broken.writer.checksum).toBe(expected);
    expect((await readBackChecksum(broken.object, plans)).checksum).not.toBe(expected);
  });

  it('values past the first 64 KB of a page (its buffer grows under them) read back as Postgres prints them: every fixed-width kind and its lists', async () => {
    // 17,000 rows in one row group: uuids pass 64 KB at row 4,097, integers and dates at 16,385
    // (values or list elements), booleans at 65,537 list elements; the uuid lists pass a page's 1 MB too.
    await sql.query(`CREATE TABLE w.wide (id int PRIMARY KEY, i2 smallint, i4 integer, d date, b boolean, u uuid,
        i2s smallint[], i4s integer[], bs boolean[], us uuid[]);
      INSERT INTO w.wide
      SELECT i, (i % 65536 - 32768)::smallint, (i::bigint * 214013 % 2147483647)::int, DATE '2000-01-01' + i, i % 3 = 0, md5(i::text)::uuid,
             ARRAY[i % 32768, -(i % 32768), 7, 8, 9, 10, 11, 12]::smallint[], ARRAY[i, -i, i * 3, 4, 5, 6, 7, i % 17]::int[],
             ARRAY[i % 2 = 0, i % 3 = 0, i % 5 = 0, true, false, NULL, i % 7 = 0, i % 11 = 0],
             ARRAY[md5((i * 2)::text)::uuid, md5((i * 3)::text)::uuid, NULL, md5((i * 5)::text)::uuid, md5((i * 7)::text)::uuid,
                   md5((i * 11)::text)::uuid, md5((i * 13)::text)::uuid, md5((i * 17)::text)::uuid]
      FROM generate_series(1, 17000) AS i`);
    const { plans, writer, object } = await write('wide', 20_000);
    const { rows: printed } = await sql.query({
      text: `SELECT ${plans.map((p) => p.select).join(', ')} FROM w.wide AS t ORDER BY t.id`,
      rowMode: 'array',
    });
    expect(printed).toHaveLength(17_000);
    const read = await canonicalRows(object, plans);
    for (const row of [4095, 4096, 4097, 16384, 16385, 16999]) expect(read[row], `row ${row + 1}`).toEqual(printed[row]);
    expect(read).toEqual(printed);
    expect(await readBackChecksum(object, plans)).toEqual({ rows: 17_000, checksum: writer.checksum });
  });

  it('the read-back inflates ahead exactly the page sections hyparquet asks for, and hands one over only for the same bytes', async () => {
    // Three row groups, and a text over a page's 1 MB: pages of every kind the writer makes.
    const { plans, object } = await write('edges', 2);
    const file = object.buffer.slice(object.byteOffset, object.byteOffset + object.byteLength) as ArrayBuffer;
    const metadata = parquetMetadata(file);
    const asked: Uint8Array[] = [];
    await parquetRead({
      file,
      columns: plans.map((plan) => plan.name),
      compressors: {
        GZIP: (input: Uint8Array) => {
          asked.push(input.slice());
          return new Uint8Array(gunzipSync(input));
        },
      },
    });
    const sections = gzipSections(file, metadata);
    expect(asked.length).toBeGreaterThan(3 * plans.length);
    expect(sections.map(({ input }) => Buffer.from(input).toString('hex'))).toEqual(asked.map((input) => Buffer.from(input).toString('hex')));
    const inflated = await inflateAhead(file, metadata);
    const longest = asked.reduce((a, b) => (b.length > a.length ? b : a));
    const lookalike = longest.slice();
    lookalike[lookalike.length >> 1]! ^= 1;
    expect(inflated.take(lookalike)).toBeUndefined();
    expect(Buffer.from(inflated.take(longest)!).equals(gunzipSync(longest))).toBe(true);
    expect(inflated.take(longest), 'each inflated section is handed over once').toBeUndefined();
    // A walk that cannot make out the pages inflates nothing ahead; the read-back is hyparquet's alone, and still right.
    expect(
      gzipSections(file, {
        ...metadata,
        row_groups: metadata.row_groups.map((g) => ({
          ...g,
          columns: g.columns.map((c) => ({ ...c, meta_data: { ...c.meta_data!, data_page_offset: c.meta_data!.data_page_offset + 1n } })),
        })),
      }),
    ).toEqual([]);
  });

  it('NOT NULL columns are REQUIRED (no definition levels), lists too, and read back the same; a NULL there is refused', async () => {
    await sql.query(`CREATE TABLE w.required (id int PRIMARY KEY, n bigint NOT NULL, at timestamptz NOT NULL, t text NOT NULL,
        b boolean NOT NULL, d numeric(38, 2) NOT NULL, tags text[] NOT NULL, maybe int);
      INSERT INTO w.required VALUES
        (1, -9223372036854775808, '2025-01-01 00:00:00.000001+00', '', false, -1.5, '{}', NULL),
        (2, 9007199254740993, '1969-12-31 23:59:59+00', 'é', true, 99999999999999999999999999999999999.99, '{NULL,a}', 1),
        (3, 0, '2262-04-11 23:47:16.854775+00', repeat('y', 300), true, 0, '{NULL}', NULL)`);
    for (const rowGroupRows of [1, 1000]) {
      const { plans, writer, object } = await write('required', rowGroupRows);
      expect(plans.filter((p) => p.notNull).map((p) => p.name)).toEqual(['id', 'n', 'at', 't', 'b', 'd', 'tags']);
      const { rows: printed } = await sql.query({
        text: `SELECT ${plans.map((p) => p.select).join(', ')} FROM w.required AS t ORDER BY t.id`,
        rowMode: 'array',
      });
      expect(await canonicalRows(object, plans)).toEqual(printed);
      expect(await readBackChecksum(object, plans)).toEqual({ rows: 3, checksum: writer.checksum });
      const repetition = new Map(parquetSchema(plans).map((element) => [element.name, element.repetition_type]));
      expect(repetition.get('n')).toBe('REQUIRED');
      expect(repetition.get('tags')).toBe('REQUIRED');
      expect(repetition.get('element')).toBe('OPTIONAL');
      expect(repetition.get('maybe')).toBe('OPTIONAL');
    }
    // A NOT NULL a reader would take at its word: a NULL there (which Postgres does not let in) is refused.
    const plans = await planColumns(sql, { schema: 'w', name: 'required' });
    const writer = new ObjectWriter(plans, 10, 'gzip', ['1'], []);
    const lengths = new Int32Array(plans.length).fill(-1);
    expect(() => writer.add(Buffer.alloc(0), new Int32Array(plans.length), lengths, { text: () => '1' }, 1)).toThrow(
      'a NULL in a column declared NOT NULL',
    );
  });

  it('the checksum changes with any value, NULL against empty, and where a value sits', async () => {
    const { writer: base } = await write('edges', 1000);
    const checksums = new Set([base.checksum]);
    for (const change of [
      `UPDATE w.edges SET t = 'tail ' WHERE id = 5`,
      `UPDATE w.edges SET t = '' WHERE id = 4`,
      `UPDATE w.edges SET t = NULL WHERE id = 2`,
      `UPDATE w.edges SET tags = '{}' WHERE id = 4`,
      `UPDATE w.edges SET tags = '{NULL}' WHERE id = 2`,
      `UPDATE w.edges SET at = at + interval '1 microsecond' WHERE id = 2`,
      `UPDATE w.edges SET i2 = 2, i4 = -1 WHERE id = 5`,
    ]) {
      await sql.query('BEGIN');
      await sql.query(change);
      const { writer } = await write('edges', 1000);
      await sql.query('ROLLBACK');
      expect(checksums.has(writer.checksum), change).toBe(false);
      checksums.add(writer.checksum);
    }
  });

  it("a COPY leaves nothing on the session: its values were its transaction's own, and a failed one leaves the connection idle", async () => {
    const rows = new CopyReader(await copyRows(sql, statement`SELECT t.id FROM w.edges AS t WHERE t.id > ${typed(2, 'int')} ORDER BY t.id`), 1);
    expect(rows.rows).toBe(3);
    const left = async () => (await sql.query(`SELECT current_setting('pg_housekeeper.copy_1', true) AS value`)).rows[0].value;
    expect([null, '']).toContain(await left());
    await expect(copyRows(sql, statement`SELECT 1 / (t.id - ${typed(3, 'int')}) FROM w.edges AS t`)).rejects.toThrow('division by zero');
    expect([null, '']).toContain(await left());
    // Not in a transaction any more (an aborted one would refuse this, an open one would keep now() fixed).
    const { rows: clock } = await sql.query(`SELECT now() = statement_timestamp() AS outside`);
    expect(clock[0].outside).toBe(true);
  });

  it('refuses what Parquet cannot hold exactly, naming the column: infinities, NaN, arrays not one-dimensional from index 1', async () => {
    await sql.query(`CREATE TABLE w.odd (id int PRIMARY KEY, at timestamptz, day date, n numeric(5, 2), a int[], late timestamp)`);
    for (const [values, column, message] of [
      [`'infinity', NULL, NULL, NULL, NULL`, 'at', 'infinity is not a finite timestamp'],
      [`NULL, '-infinity', NULL, NULL, NULL`, 'day', '-infinity is not a finite date'],
      [`NULL, NULL, 'NaN', NULL, NULL`, 'n', 'NaN has no Parquet DECIMAL'],
      [`NULL, NULL, NULL, '{{1,2},{3,4}}', NULL`, 'a', 'an array of 2 dimensions is not a one-dimensional array starting at index 1'],
      [`NULL, NULL, NULL, '[0:1]={1,2}', NULL`, 'a', 'an array starting at index 0 is not a one-dimensional array starting at index 1'],
      [`NULL, NULL, NULL, NULL, '294247-01-10 04:00:54.775808'`, 'late', '294247-01-10 04:00:54.775808 is past year 294246'],
      [
        `NULL, NULL, NULL, NULL, '294247-01-10 04:00:54.775807'`,
        'late',
        "294247-01-10 04:00:54.775807 is INT64's last microsecond since 1970, which DuckDB reads as infinity",
      ],
      [`'294247-01-10 04:00:54.775807+00', NULL, NULL, NULL, NULL`, 'at', "294247-01-10 04:00:54.775807+00 is INT64's last microsecond"],
    ] as const) {
      await sql.query(`TRUNCATE w.odd; INSERT INTO w.odd VALUES (1, ${values})`);
      const refusal = await write('odd', 10).then(
        () => undefined,
        (error: unknown) => error,
      );
      expect(refusal, values).toBeInstanceOf(UnrepresentableValue);
      expect((refusal as UnrepresentableValue).column?.name).toBe(column);
      expect((refusal as Error).message).toContain(message);
    }
    // The microsecond before it is kept, exactly (Postgres's own extract(epoch) rounds it), and DuckDB reads it as that instant.
    await sql.query(`TRUNCATE w.odd; INSERT INTO w.odd (id, late) VALUES (1, '294247-01-10 04:00:54.775806')`);
    const { plans, object } = await write('odd', 10);
    expect((await canonicalRows(object, plans))[0]![5]).toBe('9223372036854775806');
    const folder = mkdtempSync(join(tmpdir(), 'hk-writer-'));
    try {
      writeFileSync(join(folder, 'late.parquet'), object);
      const [read] = await duckdb(
        `SELECT isinf(late) AS infinite, epoch_us(late)::text AS micros FROM read_parquet('${join(folder, 'late.parquet')}')`,
      );
      expect(read).toEqual({ infinite: false, micros: '9223372036854775806' });
    } finally {
      rmSync(folder, { recursive: true, force: true });
    }
  });
});
