import { promisify } from 'node:util';
import { constants, deflateRawSync, gunzip, gunzipSync } from 'node:zlib';
import { type ColumnData, type FileMetaData, parquetMetadata, parquetRead, type SchemaElement } from 'hyparquet';
import { parquetHeader } from 'hyparquet/src/column.js';
import { SourceDigest, sourceFieldWriter } from './checksum';
import { type ColumnPlan, decimalBytes, fromParquet, type ScalarKind } from './columns';
import { gzipMember } from './gzip-pool';

export type Compression = 'snappy' | 'gzip' | 'none';

const PROBE_BYTES = 8192;
const gunzipAsync = promisify(gunzip);
/**
 * zlib's async calls come back to this thread once per output chunk (16 KB unless told): one
 * chunk the size of the whole output makes a page one trip to libuv's threads and back.
 */
const wholeChunk = (outputBytes: number) => Math.max(1024, outputBytes + 1024);
const LEVEL_1 = { level: 1 };
const HUFFMAN_ONLY = { level: 1, strategy: constants.Z_HUFFMAN_ONLY };

/**
 * gzip at level 1, or Huffman coding alone when string matching does not pay: high-entropy pages
 * (hashes, random ids, encrypted or already-compressed bytes) took level 1 three times as long
 * to come out a little larger. Which one is decided on the page's first 8 KB; both are plain
 * gzip to any reader, so the choice only costs or saves time and bytes.
 */
export async function gzipPage(input: Uint8Array): Promise<Uint8Array> {
  if (input.byteLength < 4 * PROBE_BYTES) return gzipMember(input);
  const probe = input.subarray(0, PROBE_BYTES);
  const matched = deflateRawSync(probe, LEVEL_1).byteLength;
  const huffman = deflateRawSync(probe, HUFFMAN_ONLY).byteLength;
  return gzipMember(input, huffman <= matched * 1.02 ? constants.Z_HUFFMAN_ONLY : constants.Z_DEFAULT_STRATEGY);
}

function leaf(name: string, kind: ScalarKind, plan: ColumnPlan, repetition: 'OPTIONAL' | 'REQUIRED'): SchemaElement {
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

/**
 * The Parquet schema of the planned columns: NOT NULL columns REQUIRED, the others OPTIONAL;
 * arrays as standard three-level LISTs (their elements optional).
 */
export function parquetSchema(plans: ColumnPlan[]): SchemaElement[] {
  const elements: SchemaElement[] = [{ name: 'schema', num_children: plans.length }];
  for (const plan of plans) {
    const repetition = plan.notNull ? 'REQUIRED' : 'OPTIONAL';
    if (!plan.array) {
      elements.push(leaf(plan.name, plan.kind, plan, repetition));
      continue;
    }
    elements.push(
      { name: plan.name, repetition_type: repetition, converted_type: 'LIST', logical_type: { type: 'LIST' }, num_children: 1 },
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
 * Decodes an object with hyparquet, each column's values as stored (no logical-type conversion:
 * decimals as their unscaled integers, timestamps as microseconds, texts as their UTF-8 bytes), in
 * plan order, column by column: one array per column, not one object per row. Every planned column
 * must cover exactly the footer's rows, in order.
 */
async function storedColumns(bytes: Uint8Array, plans: ColumnPlan[]): Promise<{ rows: number; columns: ArrayLike<unknown>[][] }> {
  const file = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  const metadata = parquetMetadata(file);
  const raw: FileMetaData = {
    ...metadata,
    // Leaves without their annotations read as their physical values; LIST groups keep theirs.
    schema: metadata.schema.map((element) => (element.num_children ? element : { ...element, converted_type: undefined, logical_type: undefined })),
  };
  const chunks = new Map<string, ColumnData[]>(plans.map((plan) => [plan.name, []]));
  const inflated = await inflateAhead(file, metadata);
  await parquetRead({
    file,
    metadata: raw,
    columns: plans.map((plan) => plan.name),
    utf8: false,
    compressors: { GZIP: (input: Uint8Array) => new Uint8Array(inflated.take(input) ?? gunzipSync(input)) },
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
    // Parts as decoded (a typed array for a REQUIRED number column): not copied into one array.
    return parts.map((part) => part.columnData as ArrayLike<unknown>);
  });
  return { rows, columns };
}

/**
 * Where each gzip-compressed page section of an object lies (a V2 data page's values, after its
 * levels; a V1 or dictionary page's whole body), found by reading the footer and each page header.
 * Stops at anything it cannot make out: what it leaves, hyparquet inflates as it reads.
 */
export function gzipSections(file: ArrayBuffer, metadata: FileMetaData): Array<{ input: Uint8Array; outputBytes: number }> {
  const sections: Array<{ input: Uint8Array; outputBytes: number }> = [];
  const view = new DataView(file);
  try {
    for (const group of metadata.row_groups) {
      for (const { meta_data: chunk } of group.columns) {
        if (chunk?.codec !== 'GZIP') continue;
        let at = Number(chunk.dictionary_page_offset ?? chunk.data_page_offset);
        const end = at + Number(chunk.total_compressed_size);
        while (at < end) {
          const reader = { view, offset: at };
          const header = parquetHeader(reader);
          const levels = header.data_page_header_v2;
          const skip = levels ? levels.definition_levels_byte_length + levels.repetition_levels_byte_length : 0;
          const next = reader.offset + header.compressed_page_size;
          if (!(header.compressed_page_size >= skip && next <= end)) return sections;
          if (levels?.is_compressed !== false) {
            sections.push({
              input: new Uint8Array(file, reader.offset + skip, header.compressed_page_size - skip),
              outputBytes: header.uncompressed_page_size - skip,
            });
          }
          at = next;
        }
      }
    }
  } catch {
    // A page header this walk cannot read: hyparquet reads it, and says what is wrong.
  }
  return sections;
}

/**
 * The object's gzip page sections, inflated on libuv's threads (zlib's async API) before hyparquet
 * reads the object, whose decompression callback must answer at once: the inflating is off the
 * thread that encodes the next batch. hyparquet still finds and parses every page itself; it is
 * handed an inflated section only for input bytes equal to the ones inflated (once), and inflates
 * anything else as it would have.
 */
export async function inflateAhead(file: ArrayBuffer, metadata: FileMetaData): Promise<{ take(input: Uint8Array): Uint8Array | undefined }> {
  const byLength = new Map<number, Array<{ input: Uint8Array; output: Uint8Array }>>();
  await Promise.all(
    gzipSections(file, metadata).map(({ input, outputBytes }) =>
      gunzipAsync(input, { chunkSize: wholeChunk(outputBytes) }).then(
        (output) => {
          const same = byLength.get(input.length) ?? [];
          same.push({ input, output });
          byLength.set(input.length, same);
        },
        () => {}, // hyparquet inflates it again and reports what is wrong with it
      ),
    ),
  );
  return {
    take(input) {
      const same = byLength.get(input.length);
      const found = same?.findIndex((candidate) =>
        Buffer.from(candidate.input.buffer, candidate.input.byteOffset, candidate.input.length).equals(input),
      );
      if (!same || found === undefined || found < 0) return undefined;
      return same.splice(found, 1)[0]!.output;
    },
  };
}

/**
 * Reads an object and renders each row's canonical texts, in plan order: what restore inserts.
 */
export async function canonicalRows(bytes: Uint8Array, plans: ColumnPlan[]): Promise<Array<Array<string | null>>> {
  const { rows, columns } = await storedColumns(bytes, plans);
  const values = columns.map((parts) => parts.flatMap((part) => Array.from(part)));
  const out: Array<Array<string | null>> = new Array(rows);
  for (let row = 0; row < rows; row++) out[row] = plans.map((plan, i) => fromParquet(plan, values[i]![row]));
  return out;
}

/**
 * The object read back by an independent reader (hyparquet): its row count and its content
 * checksum (checksum.ts), each decoded value turned back into the field Postgres sent for it, to
 * compare with the checksum of the source's own fields. Any value encoded wrongly, decoded
 * differently, moved, lost or added changes it.
 */
export async function readBackChecksum(bytes: Uint8Array, plans: ColumnPlan[]): Promise<{ rows: number; checksum: string }> {
  const { rows, columns } = await storedColumns(bytes, plans);
  const digest = new SourceDigest();
  const out = digest.fields;
  const writers = plans.map(sourceFieldWriter);
  // Row by row, as the writer hashed them; each column's decoded parts walked in turn.
  const cursors = columns.map((parts) => ({ parts, part: 0, values: parts[0] ?? [], at: 0 }));
  for (let row = 0; row < rows; row++) {
    for (let c = 0; c < writers.length; c++) {
      const cursor = cursors[c]!;
      while (cursor.at === cursor.values.length) {
        cursor.values = cursor.parts[++cursor.part]!;
        cursor.at = 0;
      }
      writers[c]!(out, cursor.values[cursor.at++]);
    }
  }
  return { rows, checksum: digest.digest(rows) };
}
