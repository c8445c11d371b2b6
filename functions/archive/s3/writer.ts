import type { ColumnChunk, RowGroup, SchemaElement, Statistics } from 'hyparquet';
import { ByteWriter } from 'hyparquet-writer';
import { writePageHeader } from 'hyparquet-writer/src/datapage.js';
import { writeRleBitPackedHybrid } from 'hyparquet-writer/src/encoding.js';
import { writeMetadata } from 'hyparquet-writer/src/metadata.js';
import { snappyCompress } from 'hyparquet-writer/src/snappy.js';
import { SourceDigest } from './checksum';
import { type ColumnPlan, decimalBytes, UnrepresentableValue } from './columns';
import { type Compression, gzipPage, parquetSchema } from './parquet';
import { dayText } from './plan';

/**
 * A Parquet object built column by column straight from the values Postgres sends in binary COPY:
 * each value is decoded from its bytes once and written as its PLAIN encoding into its column's
 * page; no JS value per cell. Pages are
 * DATA_PAGE_V2 (levels RLE, values PLAIN, compressed page by page), a row group per `rowGroupRows`
 * rows, the footer by hyparquet-writer. The object's checksum (checksum.ts) is of each row's
 * fields as Postgres sent them, not of what was encoded: the read-back checks the encoding too.
 * Integer-like columns carry min/max statistics (readers skip row groups by them); byte arrays
 * only their null counts.
 */

const PAR1 = 0x31524150;
/** A page is closed at the first row boundary after this many bytes of values. */
const PAGE_BYTES = 1 << 20;
const TWO_32 = 4294967296;
/** Postgres counts dates and timestamps from 2000-01-01; Parquet from 1970-01-01. */
const DAYS_1970_TO_2000 = 10_957;
const MICROS_1970_TO_2000 = 946_684_800_000_000;
const OFFSET_HIGH = Math.floor(MICROS_1970_TO_2000 / TWO_32);
const OFFSET_LOW = MICROS_1970_TO_2000 - OFFSET_HIGH * TWO_32;
/** High words whose 64-bit value a double holds exactly (|value| < 2^53). */
const SAFE_HIGH = 0x200000;
const CODEC = { snappy: 'SNAPPY', gzip: 'GZIP', none: 'UNCOMPRESSED' } as const;
/** gzip runs on libuv's threads (zlib's async API), off the thread that reads and encodes rows; snappy is JavaScript. */
const COMPRESS: Record<Compression, (bytes: Uint8Array) => Promise<Uint8Array>> = {
  snappy: async (bytes) => snappyCompress(bytes),
  gzip: gzipPage,
  none: async (bytes) => bytes,
};

/** A closed page: its levels, and its values being compressed; laid out (header, offsets) when the object is finished. */
interface ClosedPage {
  entries: number;
  nulls: number;
  rows: number;
  levels: Uint8Array;
  definitionBytes: number;
  repetitionBytes: number;
  plainBytes: number;
  compressed: Promise<Uint8Array>;
}

/** A row group's column: its pages and what its chunk's metadata says, before the object's layout gives it offsets. */
interface ClosedChunk {
  pages: ClosedPage[];
  entries: number;
  statistics: Statistics;
}

/** A growable byte buffer. */
class Bytes {
  buffer = Buffer.allocUnsafe(1 << 16);
  length = 0;

  /**
   * Makes room for `bytes` more; returns where they go. It may replace `buffer`: read `buffer`
   * after calling it, never in the same expression before it (`buffer[reserve(1)]` writes into
   * the buffer it replaced, and the value is lost without an error).
   */
  reserve(bytes: number): number {
    const at = this.length;
    if (at + bytes > this.buffer.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.buffer.length * 2, at + bytes));
      this.buffer.copy(grown, 0, 0, at);
      this.buffer = grown;
    }
    this.length = at + bytes;
    return at;
  }

  view(): Uint8Array {
    return this.buffer.subarray(0, this.length);
  }
}

/** A value's bytes in a binary COPY row. */
type Encode = (column: ColumnBuilder, bytes: Buffer, at: number, length: number) => void;

/** The 64-bit big-endian integer at `at`, as a number when a double holds it exactly, else a bigint. */
function int64At(bytes: Buffer, at: number): number | bigint {
  const high = bytes.readInt32BE(at);
  if (high >= -SAFE_HIGH && high < SAFE_HIGH) return high * TWO_32 + bytes.readUInt32BE(at + 4);
  return bytes.readBigInt64BE(at);
}

/** A timestamp's value (microseconds since 2000-01-01, as two words) as Postgres prints it in UTC: for a refusal. */
function timestampText(high: number, low: number, zoned: boolean): string {
  const day = 86_400_000_000n;
  const micros = (BigInt(high) << 32n) | BigInt(low);
  let days = micros / day;
  let rest = micros % day;
  if (rest < 0n) {
    rest += day;
    days -= 1n;
  }
  const seconds = Number(rest / 1_000_000n);
  const clock = [Math.floor(seconds / 3600), Math.floor(seconds / 60) % 60, seconds % 60].map((n) => String(n).padStart(2, '0')).join(':');
  return `${dayText(Number(days) + DAYS_1970_TO_2000)} ${clock}.${String(rest % 1_000_000n).padStart(6, '0')}${zoned ? '+00' : ''}`;
}

/** Copies `length` bytes: a call into the Buffer bindings costs more than copying a short value here. */
function copyBytes(from: Buffer, at: number, length: number, to: Buffer, toAt: number): void {
  if (length > 64) from.copy(to, toAt, at, at + length);
  else for (let i = 0; i < length; i++) to[toAt + i] = from[at + i]!;
}

/** Writes a 64-bit integer (number within 2^53, or bigint) little-endian. */
function writeInt64(column: ColumnBuilder, value: number | bigint): void {
  const values = column.values;
  const at = values.reserve(8);
  if (typeof value === 'bigint') {
    values.buffer.writeBigInt64LE(value, at);
    return;
  }
  const high = Math.floor(value / TWO_32);
  values.buffer.writeUInt32LE(value - high * TWO_32, at);
  values.buffer.writeInt32LE(high, at + 4);
}

/**
 * numeric's binary form (ndigits, weight, sign, dscale, then base-10000 digits) as the unscaled
 * integer of a numeric(p, scale): value · 10^scale, a number when a double holds it exactly.
 */
function numericUnscaled(bytes: Buffer, at: number, scale: number): number | bigint {
  const digits = bytes.readInt16BE(at);
  const weight = bytes.readInt16BE(at + 2);
  const sign = bytes.readUInt16BE(at + 4);
  if (sign === 0xc000) throw new UnrepresentableValue('NaN has no Parquet DECIMAL');
  if (sign === 0xd000 || sign === 0xf000) throw new UnrepresentableValue(`${sign === 0xf000 ? '-' : ''}Infinity has no Parquet DECIMAL`);
  const negative = sign === 0x4000;
  // The last base-10000 digit counts 10^exponent units of the unscaled integer.
  const exponent = 4 * (weight - digits + 1) + scale;
  if (digits <= 3 && exponent <= 3 && exponent >= -3) {
    let value = 0;
    for (let i = 0; i < digits; i++) value = value * 10000 + bytes.readInt16BE(at + 8 + 2 * i);
    if (exponent >= 0) value *= 10 ** exponent;
    else {
      const divisor = 10 ** -exponent;
      if (value % divisor !== 0) throw new UnrepresentableValue(`a value has more than ${scale} fraction digits`);
      value /= divisor;
    }
    return negative ? -value : value;
  }
  let value = 0n;
  for (let i = 0; i < digits; i++) value = value * 10000n + BigInt(bytes.readInt16BE(at + 8 + 2 * i));
  if (exponent >= 0) value *= 10n ** BigInt(exponent);
  else {
    const divisor = 10n ** BigInt(-exponent);
    if (value % divisor !== 0n) throw new UnrepresentableValue(`a value has more than ${scale} fraction digits`);
    value /= divisor;
  }
  if (negative) value = -value;
  return value >= -9007199254740991n && value <= 9007199254740991n ? Number(value) : value;
}

/** How one kind's binary value is decoded and written as PLAIN. */
function encoderFor(plan: ColumnPlan): Encode {
  const scale = plan.scale ?? 0;
  switch (plan.kind) {
    case 'int16':
    case 'int32':
      return (column, bytes, at, length) => {
        const value = length === 2 ? bytes.readInt16BE(at) : bytes.readInt32BE(at);
        const to = column.values.reserve(4);
        column.values.buffer.writeInt32LE(value, to);
        column.statistic(value);
      };
    case 'int64':
      return (column, bytes, at) => {
        const value = int64At(bytes, at);
        writeInt64(column, value);
        column.statistic(value);
      };
    case 'date':
      return (column, bytes, at) => {
        const days = bytes.readInt32BE(at);
        if (days === 0x7fffffff || days === -0x80000000) throw new UnrepresentableValue(`${days > 0 ? '' : '-'}infinity is not a finite date`);
        const value = days + DAYS_1970_TO_2000;
        if (value > 0x7fffffff) throw new UnrepresentableValue('a date this late is beyond INT32 days since 1970');
        const to = column.values.reserve(4);
        column.values.buffer.writeInt32LE(value, to);
        column.statistic(value);
      };
    case 'timestamp':
    case 'timestamptz':
      return (column, bytes, at) => {
        const high = bytes.readInt32BE(at);
        const low = bytes.readUInt32BE(at + 4);
        if ((high === 0x7fffffff && low === 0xffffffff) || (high === -0x80000000 && low === 0)) {
          throw new UnrepresentableValue(`${high > 0 ? '' : '-'}infinity is not a finite timestamp within INT64 microseconds since 1970`);
        }
        // Microseconds since 2000 plus the offset to 1970, in two 32-bit words (no bigint per value).
        let sumLow = low + OFFSET_LOW;
        let sumHigh = high + OFFSET_HIGH;
        if (sumLow >= TWO_32) {
          sumLow -= TWO_32;
          sumHigh++;
        }
        if (sumHigh > 0x7fffffff) {
          throw new UnrepresentableValue(
            `${timestampText(high, low, plan.kind === 'timestamptz')} is past year 294246, not within INT64 microseconds since 1970`,
          );
        }
        // INT64's last microsecond is how DuckDB (and so readers built on it) store infinity.
        if (sumHigh === 0x7fffffff && sumLow === 0xffffffff) {
          throw new UnrepresentableValue(
            `${timestampText(high, low, plan.kind === 'timestamptz')} is INT64's last microsecond since 1970, which DuckDB reads as infinity`,
          );
        }
        const values = column.values;
        const to = values.reserve(8);
        values.buffer.writeUInt32LE(sumLow, to);
        values.buffer.writeInt32LE(sumHigh, to + 4);
        const value = sumHigh >= -SAFE_HIGH && sumHigh < SAFE_HIGH ? sumHigh * TWO_32 + sumLow : (BigInt(sumHigh) << 32n) | BigInt(sumLow);
        column.statistic(value);
      };
    case 'decimal': {
      if (plan.precision! <= 18) {
        return (column, bytes, at) => {
          const value = numericUnscaled(bytes, at, scale);
          writeInt64(column, value);
          column.statistic(value);
        };
      }
      const width = decimalBytes(plan.precision!);
      return (column, bytes, at) => {
        const value = numericUnscaled(bytes, at, scale);
        // Big-endian two's complement, `width` bytes.
        let rest = BigInt(value);
        const values = column.values;
        const to = values.reserve(width);
        for (let i = width - 1; i >= 0; i--) {
          values.buffer[to + i] = Number(rest & 0xffn);
          rest >>= 8n;
        }
        column.noStatistics();
      };
    }
    case 'bool':
      return (column, bytes, at) => {
        const value = bytes[at] !== 0;
        const to = column.values.reserve(1);
        column.values.buffer[to] = value ? 1 : 0;
      };
    case 'uuid':
      return (column, bytes, at) => {
        const to = column.values.reserve(16);
        copyBytes(bytes, at, 16, column.values.buffer, to);
      };
    case 'bytea':
    case 'text':
    case 'json':
      return (column, bytes, at, length) => {
        const values = column.values;
        const to = values.reserve(4 + length);
        values.buffer.writeUInt32LE(length, to);
        copyBytes(bytes, at, length, values.buffer, to + 4);
      };
  }
}

/** One column of the object being written: its row group's pages so far, and the page being filled. */
class ColumnBuilder {
  readonly values = new Bytes();
  private definitions = new Uint8Array(1024);
  private repetitions: Uint8Array;
  /** Level entries (values and nulls) in the page being filled. */
  private entries = 0;
  private pageRows = 0;
  private pageNulls = 0;
  private pages: ClosedPage[] = [];
  private chunkEntries = 0;
  private chunkNulls = 0;
  private min = Number.POSITIVE_INFINITY;
  private max = Number.NEGATIVE_INFINITY;
  private exactStatistics = true;
  private readonly encode: Encode;
  /** Definition levels: a NULL list (OPTIONAL columns only), then an empty list, a NULL element, a value. */
  private readonly base: number;
  private readonly maxDefinition: number;
  readonly leaf: SchemaElement;

  constructor(
    readonly plan: ColumnPlan,
    private readonly compression: Compression,
  ) {
    this.encode = encoderFor(plan);
    this.base = plan.notNull ? 0 : 1;
    this.maxDefinition = plan.array ? this.base + 2 : this.base;
    this.repetitions = new Uint8Array(plan.array ? 1024 : 0);
    const schema = parquetSchema([plan]);
    this.leaf = schema[schema.length - 1]!;
  }

  private level(definition: number, repetition: number): void {
    if (this.entries === this.definitions.length) {
      const grown = new Uint8Array(this.definitions.length * 2);
      grown.set(this.definitions);
      this.definitions = grown;
      if (this.plan.array) {
        const repeated = new Uint8Array(grown.length);
        repeated.set(this.repetitions);
        this.repetitions = repeated;
      }
    }
    this.definitions[this.entries] = definition;
    if (this.plan.array) this.repetitions[this.entries] = repetition;
    if (definition < this.maxDefinition) this.pageNulls++;
    this.entries++;
  }

  /** Integer-like values keep min/max while every value is a number (a double holds it exactly). */
  statistic(value: number | bigint): void {
    if (typeof value === 'bigint') {
      this.exactStatistics = false;
      return;
    }
    if (value < this.min) this.min = value;
    if (value > this.max) this.max = value;
  }

  noStatistics(): void {
    this.exactStatistics = false;
  }

  private startRow(): void {
    if (this.values.length >= PAGE_BYTES) this.closePage();
    this.pageRows++;
  }

  null(): void {
    if (this.plan.notNull) throw new UnrepresentableValue('a NULL in a column declared NOT NULL');
    this.startRow();
    this.level(0, 0);
  }

  /** A non-NULL value: `length` bytes at `at`. */
  add(bytes: Buffer, at: number, length: number): void {
    this.startRow();
    if (!this.plan.array) {
      this.level(this.maxDefinition, 0);
      this.encode(this, bytes, at, length);
      return;
    }
    // Binary array: dimensions, has-nulls flag, element type, then (size, lower bound) per
    // dimension, then each element as length and bytes.
    const dimensions = bytes.readInt32BE(at);
    if (dimensions === 0) {
      this.level(this.base, 0);
      return;
    }
    const lower = bytes.readInt32BE(at + 16);
    if (dimensions !== 1 || lower !== 1) {
      throw new UnrepresentableValue(
        dimensions !== 1
          ? `an array of ${dimensions} dimensions is not a one-dimensional array starting at index 1`
          : `an array starting at index ${lower} is not a one-dimensional array starting at index 1`,
      );
    }
    const count = bytes.readInt32BE(at + 12);
    let next = at + 20;
    for (let i = 0; i < count; i++) {
      const elementLength = bytes.readInt32BE(next);
      next += 4;
      if (elementLength < 0) {
        this.level(this.base + 1, i === 0 ? 0 : 1);
        continue;
      }
      this.level(this.base + 2, i === 0 ? 0 : 1);
      this.encode(this, bytes, next, elementLength);
      next += elementLength;
    }
  }

  private closePage(): void {
    if (this.entries === 0) return;
    // A REQUIRED column that is not a list has no definition levels (all would be 0).
    const definitions = this.maxDefinition > 0 ? this.definitions.subarray(0, this.entries) : undefined;
    const levels = new ByteWriter();
    const repetitionBytes = this.plan.array ? writeRleBitPackedHybrid(levels, this.repetitions.subarray(0, this.entries), 1) : 0;
    const definitionBytes = definitions ? writeRleBitPackedHybrid(levels, definitions, Math.ceil(Math.log2(this.maxDefinition + 1))) : 0;
    // The values buffer is filled again while the page compresses: compress a copy.
    const plain = this.plan.kind === 'bool' ? packBooleans(this.values.view()) : Uint8Array.prototype.slice.call(this.values.view());
    const compressed = COMPRESS[this.compression](plain);
    // Awaited when the object is finished; a batch let go before that never awaits it.
    compressed.catch(() => {});
    this.pages.push({
      entries: this.entries,
      nulls: this.pageNulls,
      rows: this.pageRows,
      levels: levels.getBytes(),
      definitionBytes,
      repetitionBytes,
      plainBytes: plain.length,
      compressed,
    });
    this.chunkEntries += this.entries;
    this.chunkNulls += this.pageNulls;
    this.entries = 0;
    this.pageRows = 0;
    this.pageNulls = 0;
    this.values.length = 0;
  }

  /** Closes the row group's column chunk (its pages, compressing); starts the next. */
  closeChunk(): ClosedChunk {
    this.closePage();
    const statistics: Statistics = { null_count: BigInt(this.chunkNulls) };
    if (this.exactStatistics && this.min <= this.max && !this.plan.array) {
      const decimal = this.plan.kind === 'decimal';
      statistics.min_value = decimal ? BigInt(this.min) : this.min;
      statistics.max_value = decimal ? BigInt(this.max) : this.max;
    }
    const chunk = { pages: this.pages, entries: this.chunkEntries, statistics };
    this.pages = [];
    this.chunkEntries = 0;
    this.chunkNulls = 0;
    this.min = Number.POSITIVE_INFINITY;
    this.max = Number.NEGATIVE_INFINITY;
    this.exactStatistics = true;
    return chunk;
  }

  /** The chunk's pages, compressed, appended to `out` from `offset` on; its metadata. */
  async layOut(chunk: ClosedChunk, out: Uint8Array[], offset: number): Promise<ColumnChunk> {
    let at = offset;
    let uncompressed = 0;
    for (const page of chunk.pages) {
      const compressed = await page.compressed;
      const header = new ByteWriter(64);
      writePageHeader(header, {
        type: 'DATA_PAGE_V2',
        uncompressed_page_size: page.levels.length + page.plainBytes,
        compressed_page_size: page.levels.length + compressed.length,
        data_page_header_v2: {
          num_values: page.entries,
          num_nulls: page.nulls,
          num_rows: page.rows,
          encoding: 'PLAIN',
          definition_levels_byte_length: page.definitionBytes,
          repetition_levels_byte_length: page.repetitionBytes,
          is_compressed: this.compression !== 'none',
        },
      });
      out.push(header.getBytes(), page.levels, compressed);
      at += header.offset + page.levels.length + compressed.length;
      uncompressed += header.offset + page.levels.length + page.plainBytes;
    }
    return {
      file_offset: BigInt(offset),
      meta_data: {
        type: this.leaf.type!,
        encodings: ['PLAIN', 'RLE'],
        path_in_schema: this.plan.array ? [this.plan.name, 'list', 'element'] : [this.plan.name],
        codec: CODEC[this.compression],
        num_values: BigInt(chunk.entries),
        total_uncompressed_size: BigInt(uncompressed),
        total_compressed_size: BigInt(at - offset),
        data_page_offset: BigInt(offset),
        statistics: chunk.statistics,
      },
    };
  }
}

/** PLAIN booleans: one bit each, least significant first. */
function packBooleans(values: Uint8Array): Uint8Array {
  const packed = new Uint8Array(Math.ceil(values.length / 8));
  for (let i = 0; i < values.length; i++) if (values[i]) packed[i >> 3]! |= 1 << (i & 7);
  return packed;
}

/**
 * One object being written: rows are added one at a time as their fields in a binary COPY buffer,
 * written into per-column pages, a row group every `rowGroupRows` rows; only the encoded bytes
 * stay in memory (objects are at most rowsPerObject rows).
 */
export class ObjectWriter {
  private readonly columns: ColumnBuilder[];
  private readonly rowGroups: Array<{ rows: number; chunks: ClosedChunk[] }> = [];
  /** Rows added and not yet in a written row group. */
  buffered = 0;
  rows = 0;
  private readonly digest = new SourceDigest();
  /** No array column: a row's value fields, one after another in the COPY row, are hashed as they lie. */
  private readonly contiguous: boolean;
  /** The rows' keys, one array per key column (not an array per row). */
  readonly keyColumns: string[][];
  /** Each row's version (xmin) as picked: the delete takes a row only if it is still that version. */
  readonly versions: number[] = [];
  readonly firstKey: string[];
  /** The object's content checksum (checksum.ts: of the source's values; what the manifest keeps and the read-back must match); after finish(). */
  checksum = '';

  constructor(
    private readonly plans: ColumnPlan[],
    private readonly rowGroupRows: number,
    compression: Compression,
    firstKey: string[],
    private readonly metadata: Array<{ key: string; value: string }>,
  ) {
    this.columns = plans.map((plan) => new ColumnBuilder(plan, compression));
    this.contiguous = plans.every((plan) => !plan.array);
    this.firstKey = firstKey;
    this.keyColumns = firstKey.map(() => []);
  }

  /**
   * Adds one row: column i's value is `lengths[i]` bytes at `starts[i]` of `bytes` (length -1 for
   * NULL); `key.text(i)` is its key column i's text. Throws UnrepresentableValue naming the column (the caller names the key).
   */
  add(bytes: Buffer, starts: Int32Array, lengths: Int32Array, key: { text(column: number): string | null }, version: number): void {
    for (let i = 0; i < this.columns.length; i++) {
      const length = lengths[i]!;
      try {
        if (length < 0) this.columns[i]!.null();
        else this.columns[i]!.add(bytes, starts[i]!, length);
      } catch (error) {
        if (error instanceof UnrepresentableValue) throw new UnrepresentableValue(error.message, this.plans[i]);
        throw error;
      }
    }
    this.hashFields(bytes, starts, lengths);
    for (let i = 0; i < this.keyColumns.length; i++) this.keyColumns[i]!.push(key.text(i)!);
    this.versions.push(version);
    this.rows++;
    if (++this.buffered >= this.rowGroupRows) this.flush();
  }

  /** The row's fields as COPY framed them, into the checksum (checksum.ts): from the source's bytes, not from what was encoded. */
  private hashFields(bytes: Buffer, starts: Int32Array, lengths: Int32Array): void {
    const fields = this.digest.fields;
    const last = starts.length - 1;
    if (this.contiguous) {
      const from = starts[0]! - 4;
      const to = starts[last]! + Math.max(0, lengths[last]!);
      const at = fields.reserve(to - from);
      copyBytes(bytes, from, to - from, fields.bytes, at);
      return;
    }
    for (let i = 0; i <= last; i++) {
      const start = starts[i]!;
      const length = lengths[i]!;
      if (length >= 0 && this.plans[i]!.array) {
        // Dimensions, then (skipping the has-nulls flag and element type) sizes, bounds and elements.
        const at = fields.reserve(length - 4);
        const gathered = fields.bytes;
        gathered.writeInt32BE(length - 8, at);
        copyBytes(bytes, start, 4, gathered, at + 4);
        copyBytes(bytes, start + 12, length - 12, gathered, at + 8);
      } else {
        const framed = 4 + Math.max(0, length);
        const at = fields.reserve(framed);
        copyBytes(bytes, start - 4, framed, fields.bytes, at);
      }
    }
  }

  get lastKey(): string[] {
    return this.keyColumns.map((column) => column[column.length - 1]!);
  }

  /** Closes the buffered rows' row group (its pages compress meanwhile). */
  flush(): void {
    if (this.buffered === 0) return;
    this.rowGroups.push({ rows: this.buffered, chunks: this.columns.map((column) => column.closeChunk()) });
    this.buffered = 0;
  }

  /** The finished object: its row groups laid out once their pages are compressed, then the footer. */
  async finish(): Promise<Uint8Array> {
    this.flush();
    this.checksum = this.digest.digest(this.rows);
    const magic = new Uint8Array(new Uint32Array([PAR1]).buffer);
    const out: Uint8Array[] = [magic];
    let offset = magic.length;
    const rowGroups: RowGroup[] = [];
    for (const group of this.rowGroups) {
      const start = offset;
      const chunks: ColumnChunk[] = [];
      for (let i = 0; i < this.columns.length; i++) {
        const chunk = await this.columns[i]!.layOut(group.chunks[i]!, out, offset);
        chunks.push(chunk);
        offset += Number(chunk.meta_data!.total_compressed_size);
      }
      rowGroups.push({
        columns: chunks,
        total_byte_size: chunks.reduce((n, c) => n + c.meta_data!.total_uncompressed_size, 0n),
        num_rows: BigInt(group.rows),
        file_offset: BigInt(start),
        total_compressed_size: BigInt(offset - start),
      });
    }
    this.rowGroups.length = 0;
    const footer = new ByteWriter(1 << 14);
    writeMetadata(footer, {
      version: 2,
      created_by: 'pg-housekeeper',
      schema: parquetSchema(this.plans),
      num_rows: BigInt(this.rows),
      row_groups: rowGroups,
      key_value_metadata: this.metadata,
      metadata_length: 0,
    });
    footer.appendUint32(PAR1);
    out.push(footer.getBytes());
    // One copy into an object of its exact size.
    const object = new Uint8Array(offset + footer.offset);
    let at = 0;
    for (const part of out) {
      object.set(part, at);
      at += part.length;
    }
    return object;
  }
}
