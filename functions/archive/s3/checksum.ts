import { createHash, type Hash } from 'node:crypto';

/**
 * An object's content checksum: what the writer encoded, and what an independent reader decodes
 * from the stored object, must give the same one before any row is deleted. Per column, three
 * streams in row order: the definition levels (one byte each), the repetition levels (lists only),
 * and the non-null values in Parquet's PLAIN encoding (INT32 and INT64 little-endian, byte arrays
 * as a 4-byte length and their bytes, fixed-length ones as their bytes; booleans one byte each,
 * not bit-packed). The checksum is sha256 over the row count and every stream's own sha256, in
 * column order. Pages and row groups do not enter it: the same rows give the same checksum however
 * they are split.
 */
export class ObjectDigest {
  private readonly streams: Array<{ definitions: Hash; repetitions: Hash; values: Hash }>;

  constructor(columns: number) {
    this.streams = Array.from({ length: columns }, () => ({
      definitions: createHash('sha256'),
      repetitions: createHash('sha256'),
      values: createHash('sha256'),
    }));
  }

  column(index: number): { definitions: Hash; repetitions: Hash; values: Hash } {
    return this.streams[index]!;
  }

  digest(rows: number): string {
    const total = createHash('sha256').update(`${rows}\n`);
    for (const stream of this.streams) {
      total.update(stream.definitions.digest());
      total.update(stream.repetitions.digest());
      total.update(stream.values.digest());
    }
    return total.digest('hex');
  }
}

export const GATHER = 1 << 16;

/**
 * Bytes gathered and hashed 64 KB at a time: one hash update per value costs more than the hash.
 * `scratch` is where they gather: a caller that hashes one column at a time, start to end without
 * awaiting, lends the same buffer to every column (a fresh 64 KB per stream was a quarter of the
 * read-back's allocations).
 */
export class GatheredHash {
  private buffer: Buffer;
  private at = 0;

  constructor(
    private readonly hash: Hash,
    scratch: Buffer = Buffer.allocUnsafe(GATHER),
  ) {
    this.buffer = scratch;
  }

  /** Room for `bytes` more; returns where they go. It may replace `bytes`: read that after calling it. */
  reserve(bytes: number): number {
    if (this.at + bytes > this.buffer.length) {
      this.hash.update(this.buffer.subarray(0, this.at));
      this.at = 0;
      if (bytes > this.buffer.length) this.buffer = Buffer.allocUnsafe(bytes);
    }
    const at = this.at;
    this.at += bytes;
    return at;
  }

  get bytes(): Buffer {
    return this.buffer;
  }

  byte(value: number): void {
    const at = this.reserve(1);
    this.buffer[at] = value;
  }

  end(): void {
    this.hash.update(this.buffer.subarray(0, this.at));
    this.at = 0;
  }
}
