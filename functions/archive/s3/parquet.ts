import { constants, deflateRawSync, gunzipSync, gzipSync } from 'node:zlib';
import { type ColumnData, type FileMetaData, parquetMetadata, parquetRead, type SchemaElement } from 'hyparquet';
import { ByteWriter, ParquetWriter } from 'hyparquet-writer';
import { type ColumnPlan, checksumRenderer, fromParquet, parquetConverter, RowChecksum, type ScalarKind, UnrepresentableValue } from './columns';

export type Compression = 'snappy' | 'gzip' | 'none';
const CODEC = { snappy: 'SNAPPY', gzip: 'GZIP', none: 'UNCOMPRESSED' } as const;

const PROBE_BYTES = 8192;
const LEVEL_1 = { level: 1 };
const HUFFMAN_ONLY = { level: 1, strategy: constants.Z_HUFFMAN_ONLY };

/**
 * gzip at level 1, or Huffman coding alone when string matching does not pay: high-entropy pages
 * (hashes, random ids, encrypted or already-compressed bytes) took level 1 three times as long
 * to come out a little larger. Which one is decided on the page's first 8 KB; both are plain
 * gzip to any reader, so the choice only costs or saves time and bytes.
 */
export function gzipPage(input: Uint8Array): Uint8Array {
  if (input.byteLength < 4 * PROBE_BYTES) return gzipSync(input, LEVEL_1);
  const probe = input.subarray(0, PROBE_BYTES);
  const matched = deflateRawSync(probe, LEVEL_1).byteLength;
  const huffman = deflateRawSync(probe, HUFFMAN_ONLY).byteLength;
  return gzipSync(input, huffman <= matched * 1.02 ? HUFFMAN_ONLY : LEVEL_1);
}

/** Minimal bytes of a two's-complement FIXED_LEN_BYTE_ARRAY holding `precision` decimal digits. */
function decimalBytes(precision: number): number {
  let bytes = 1;
  while (2n ** BigInt(8 * bytes - 1) - 1n < 10n ** BigInt(precision) - 1n) bytes++;
  return bytes;
}

function leaf(name: string, kind: ScalarKind, plan: ColumnPlan, repetition: 'OPTIONAL'): SchemaElement {
  const base = { name, repetition_type: repetition } as const;
  switch (kind) {
    case 'int16':
      // Only the legacy annotation: hyparquet-writer's INTEGER logical type does not read back in DuckDB.
      return { ...base, type: 'INT32', converted_type: 'INT_16' };
    case 'int32':
      return { ...base, type: 'INT32' };
    case 'int64':
      return { ...base, type: 'INT64' };
    case 'decimal': {
      const precision = plan.precision!;
      const scale = plan.scale!;
      const annotation = { converted_type: 'DECIMAL', precision, scale, logical_type: { type: 'DECIMAL', precision, scale } } as const;
      // INT64 up to 18 digits (INT32 decimals from hyparquet-writer do not read back in DuckDB).
      if (precision <= 18) return { ...base, type: 'INT64', ...annotation };
      return { ...base, type: 'FIXED_LEN_BYTE_ARRAY', type_length: decimalBytes(precision), ...annotation };
    }
    case 'bool':
      return { ...base, type: 'BOOLEAN' };
    case 'date':
      return { ...base, type: 'INT32', converted_type: 'DATE', logical_type: { type: 'DATE' } };
    case 'timestamp':
    case 'timestamptz':
      return { ...base, type: 'INT64', logical_type: { type: 'TIMESTAMP', isAdjustedToUTC: kind === 'timestamptz', unit: 'MICROS' } };
    case 'uuid':
      return { ...base, type: 'FIXED_LEN_BYTE_ARRAY', type_length: 16, logical_type: { type: 'UUID' } };
    case 'bytea':
      return { ...base, type: 'BYTE_ARRAY' };
    case 'text':
    case 'json':
      return { ...base, type: 'BYTE_ARRAY', converted_type: 'UTF8', logical_type: { type: 'STRING' } };
  }
}

/** The Parquet schema of the planned columns: every column optional; arrays as standard three-level LISTs. */
export function parquetSchema(plans: ColumnPlan[]): SchemaElement[] {
  const elements: SchemaElement[] = [{ name: 'schema', num_children: plans.length }];
  for (const plan of plans) {
    if (!plan.array) {
      elements.push(leaf(plan.name, plan.kind, plan, 'OPTIONAL'));
      continue;
    }
    elements.push(
      { name: plan.name, repetition_type: 'OPTIONAL', converted_type: 'LIST', logical_type: { type: 'LIST' }, num_children: 1 },
      { name: 'list', repetition_type: 'REPEATED', num_children: 1 },
      leaf('element', plan.kind, plan, 'OPTIONAL'),
    );
  }
  return elements;
}

/** One Parquet type per column, as the manifest records it. */
export function describeColumns(plans: ColumnPlan[]): Array<{ name: string; postgres: string; parquet: string }> {
  return plans.map((plan) => {
    const element = leaf(plan.name, plan.kind, plan, 'OPTIONAL');
    const logical = element.logical_type ? ` ${JSON.stringify(element.logical_type)}` : '';
    const parquet = `${element.type}${element.type_length ? `(${element.type_length})` : ''}${logical}`;
    return { name: plan.name, postgres: plan.pgType, parquet: plan.array ? `LIST<${parquet}>` : parquet };
  });
}

/**
 * One object being written: rows are added one at a time as canonical texts, buffered per column
 * up to `rowGroupRows`, then encoded as a row group; only the encoded bytes of the object stay in
 * memory (objects are at most rowsPerObject rows).
 */
export class ObjectWriter {
  private readonly writer = new ByteWriter();
  private readonly parquet: ParquetWriter;
  private columns: unknown[][];
  /** Rows added and not yet encoded into a row group. */
  buffered = 0;
  rows = 0;
  private readonly hash = new RowChecksum();
  private readonly converters: Array<(text: string | null) => unknown>;
  readonly keys: string[][] = [];
  /** Each row's version (xmin) as picked: the delete takes a row only if it is still that version. */
  readonly versions: string[] = [];
  readonly firstKey: string[];
  lastKey: string[];

  constructor(
    private readonly plans: ColumnPlan[],
    private readonly rowGroupRows: number,
    compression: Compression,
    firstKey: string[],
    metadata: Array<{ key: string; value: string }>,
  ) {
    this.parquet = new ParquetWriter({
      writer: this.writer,
      schema: parquetSchema(plans),
      codec: CODEC[compression],
      compressors: { GZIP: gzipPage },
      kvMetadata: metadata,
      createdBy: 'pg-housekeeper',
    });
    this.columns = plans.map(() => []);
    this.converters = plans.map(parquetConverter);
    this.firstKey = firstKey;
    this.lastKey = firstKey;
  }

  /** Adds one row (its canonical texts in plan order); throws UnrepresentableValue naming the column (the caller names the key). */
  add(texts: Array<string | null>, key: string[], version: string): void {
    for (let i = 0; i < this.plans.length; i++) {
      try {
        this.columns[i]!.push(this.converters[i]!(texts[i]!));
      } catch (error) {
        if (error instanceof UnrepresentableValue) throw new UnrepresentableValue(error.message, this.plans[i]);
        throw error;
      }
    }
    this.hash.add(texts);
    this.keys.push(key);
    this.versions.push(version);
    this.lastKey = key;
    this.rows++;
    if (++this.buffered >= this.rowGroupRows) this.flush();
  }

  /** Encodes the buffered rows as one row group (what bounds the JS values a batch holds). */
  flush(): void {
    if (this.buffered === 0) return;
    const columnData = this.plans.map((plan, i) => ({ name: plan.name, data: this.columns[i]! as never[] }));
    void this.parquet.write({ columnData, rowGroupSize: this.buffered });
    this.columns = this.plans.map(() => []);
    this.buffered = 0;
  }

  /** md5 over the rows' canonical texts in order (what the manifest keeps and the read-back must match); after finish(). */
  checksum = '';

  /** The finished object. */
  finish(): Uint8Array {
    this.checksum = this.hash.digest();
    this.flush();
    void this.parquet.finish();
    return new Uint8Array(this.writer.getBuffer());
  }
}

/**
 * Decodes an object with hyparquet, each column's values as stored (no logical-type conversion:
 * decimals as their unscaled integers, timestamps as microseconds, texts as their UTF-8 bytes), in
 * plan order, column by column: one array per column, not one object per row. Every planned column
 * must cover exactly the footer's rows, in order.
 */
async function storedColumns(bytes: Uint8Array, plans: ColumnPlan[]): Promise<{ rows: number; columns: unknown[][] }> {
  const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  const metadata = parquetMetadata(file);
  const raw: FileMetaData = {
    ...metadata,
    // Leaves without their annotations read as their physical values; LIST groups keep theirs.
    schema: metadata.schema.map((element) => (element.num_children ? element : { ...element, converted_type: undefined, logical_type: undefined })),
  };
  const chunks = new Map<string, ColumnData[]>(plans.map((plan) => [plan.name, []]));
  await parquetRead({
    file,
    metadata: raw,
    columns: plans.map((plan) => plan.name),
    utf8: false,
    compressors: { GZIP: (input: Uint8Array) => new Uint8Array(gunzipSync(input)) },
    onChunk: (chunk) => chunks.get(chunk.columnName)?.push(chunk),
  });
  const rows = Number(metadata.num_rows);
  const columns = plans.map((plan) => {
    const parts = chunks.get(plan.name)!.sort((a, b) => a.rowStart - b.rowStart);
    let covered = 0;
    for (const part of parts) {
      if (part.rowStart !== covered) throw new Error(`column ${plan.name}: rows ${covered} to ${part.rowStart} not decoded`);
      covered = part.rowEnd;
    }
    if (covered !== rows) throw new Error(`column ${plan.name}: ${covered} rows decoded, the footer says ${rows}`);
    if (parts.length === 1 && Array.isArray(parts[0]!.columnData)) return parts[0]!.columnData as unknown[];
    const values: unknown[] = new Array(rows);
    let at = 0;
    for (const part of parts) for (let i = 0; i < part.columnData.length; i++) values[at++] = part.columnData[i];
    return values;
  });
  return { rows, columns };
}

/**
 * Reads an object and renders each row's canonical texts, in plan order: what restore inserts.
 */
export async function canonicalRows(bytes: Uint8Array, plans: ColumnPlan[]): Promise<Array<Array<string | null>>> {
  const { rows, columns } = await storedColumns(bytes, plans);
  const out: Array<Array<string | null>> = new Array(rows);
  for (let row = 0; row < rows; row++) out[row] = plans.map((plan, i) => fromParquet(plan, columns[i]![row]));
  return out;
}

/**
 * The object read back: its row count and the checksum of its rows' canonical texts, to compare
 * with those Postgres gave. Each value is rendered straight into the checksum (what
 * `canonicalRows` would give, without a string per value).
 */
export async function readBackChecksum(bytes: Uint8Array, plans: ColumnPlan[]): Promise<{ rows: number; checksum: string }> {
  const { rows, columns } = await storedColumns(bytes, plans);
  const renderers = plans.map(checksumRenderer);
  const hash = new RowChecksum();
  const width = plans.length;
  for (let row = 0; row < rows; row++) {
    for (let i = 0; i < width; i++) renderers[i]!(hash, columns[i]![row]);
    hash.endRow();
  }
  return { rows, checksum: hash.digest() };
}
