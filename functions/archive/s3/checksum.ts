import { createHash, type Hash } from 'node:crypto';
import { endianness } from 'node:os';
import { bytesToBigInt, type ColumnPlan, type ScalarKind } from './columns';

/**
 * An object's content checksum, of the source's values themselves: sha256 over the row count and,
 * row by row, each column's value as Postgres's binary COPY sent it to the writer, framed as COPY
 * frames it (a 4-byte big-endian length, -1 for NULL, then the bytes; an array without its
 * has-nulls flag and element type, which no reader gets back and the rest decides). The writer
 * hashes each row's fields as they arrive, apart from encoding them; the read-back turns every
 * value an independent reader decodes from the stored object back into that form. The same
 * checksum means the object holds the source's values, whatever the writer's encoders did with
 * them; pages and row groups do not enter it.
 */
/** The manifest's name for this definition (housekeeping.archive_objects.checksum_kind): restore recomputes by it. */
export const CHECKSUM_KIND = 'source-fields-sha256';

export class SourceDigest {
  private readonly hash = createHash('sha256');
  readonly fields = new GatheredHash(this.hash);

  digest(rows: number): string {
    this.fields.end();
    return createHash('sha256').update(`${rows}\n`).update(this.hash.digest()).digest('hex');
  }
}

const GATHER = 1 << 16;

/** Bytes gathered and hashed 64 KB at a time: one hash update per value costs more than the hash. */
export class GatheredHash {
  private buffer = Buffer.allocUnsafe(GATHER);
  private at = 0;

  constructor(private readonly hash: Hash) {}

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

  end(): void {
    this.hash.update(this.buffer.subarray(0, this.at));
    this.at = 0;
  }
}

// ---------------------------------------------------------------------------------------------
// The read-back's side: a value an independent reader decoded (as stored: no logical-type
// conversion) back into the field COPY sent for it. Written from Postgres's binary formats, not
// from the writer's encoders, which go the other way.

/** Where a value's bytes go: the hash's gathering buffer, or an array's elements before they are framed. */
interface FieldBytes {
  reserve(bytes: number): number;
  readonly bytes: Buffer;
}

/** A growing buffer for one array's elements. */
class ElementBytes implements FieldBytes {
  bytes = Buffer.allocUnsafe(1024);
  at = 0;

  reserve(bytes: number): number {
    if (this.at + bytes > this.bytes.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.bytes.length * 2, this.at + bytes));
      this.bytes.copy(grown, 0, 0, this.at);
      this.bytes = grown;
    }
    const at = this.at;
    this.at += bytes;
    return at;
  }
}

type FieldWriter = (out: FieldBytes, value: unknown) => void;

const DAYS_1970_TO_2000 = 10_957;
const MICROS_1970_TO_2000 = 946_684_800_000_000n;
const NUMERIC_NEGATIVE = 0x4000;
/** Below this a numeric's unscaled integer, times up to 1,000, stays exact in a double. */
const SAFE_UNSCALED = 9_007_199_254_740;

const int64 = new BigInt64Array(1);
const int64Bytes = new Uint8Array(int64.buffer);
const BIG_ENDIAN_HOST = endianness() === 'BE';

function putInt64(out: FieldBytes, value: bigint): void {
  const at = out.reserve(12);
  const bytes = out.bytes;
  bytes.writeInt32BE(8, at);
  int64[0] = value;
  for (let i = 0; i < 8; i++) bytes[at + 4 + i] = int64Bytes[BIG_ENDIAN_HOST ? i : 7 - i]!;
}

function putBytes(out: FieldBytes, value: Uint8Array): void {
  const length = value.length;
  const at = out.reserve(4 + length);
  const bytes = out.bytes;
  bytes.writeInt32BE(length, at);
  if (length > 32) bytes.set(value, at + 4);
  else for (let i = 0; i < length; i++) bytes[at + 4 + i] = value[i]!;
}

/**
 * numeric's binary form as numeric_send gives it for a value of scale `scale`: digit count,
 * weight, sign, display scale, then base-10000 digits, most significant first, without leading or
 * trailing zero digits (as Postgres stores a numeric); zero has no digits, weight 0 and sign +.
 */
function putNumeric(out: FieldBytes, unscaled: bigint | number, scale: number): void {
  const negative = unscaled < 0;
  const fractionGroups = Math.ceil(scale / 4);
  const align = fractionGroups * 4 - scale;
  const groups: number[] = []; // least significant first
  const small = typeof unscaled === 'number' ? unscaled : unscaled >= -SAFE_UNSCALED && unscaled <= SAFE_UNSCALED ? Number(unscaled) : undefined;
  if (small !== undefined) {
    let magnitude = Math.abs(small) * 10 ** align;
    while (magnitude > 0) {
      groups.push(magnitude % 10000);
      magnitude = Math.floor(magnitude / 10000);
    }
  } else {
    let magnitude = (negative ? -(unscaled as bigint) : (unscaled as bigint)) * 10n ** BigInt(align);
    while (magnitude > 0n) {
      groups.push(Number(magnitude % 10000n));
      magnitude /= 10000n;
    }
  }
  let lowest = 0;
  while (lowest < groups.length && groups[lowest] === 0) lowest++;
  const digits = groups.length - lowest;
  const at = out.reserve(12 + 2 * digits);
  const bytes = out.bytes;
  bytes.writeInt32BE(8 + 2 * digits, at);
  bytes.writeInt16BE(digits, at + 4);
  bytes.writeInt16BE(digits === 0 ? 0 : groups.length - 1 - fractionGroups, at + 6);
  bytes.writeUInt16BE(digits > 0 && negative ? NUMERIC_NEGATIVE : 0, at + 8);
  bytes.writeUInt16BE(scale, at + 10);
  for (let i = 0; i < digits; i++) bytes.writeInt16BE(groups[groups.length - 1 - i]!, at + 12 + 2 * i);
}

function scalarField(kind: ScalarKind, scale: number): FieldWriter {
  switch (kind) {
    case 'int16':
      return (out, value) => {
        const at = out.reserve(6);
        out.bytes.writeInt32BE(2, at);
        out.bytes.writeInt16BE(value as number, at + 4);
      };
    case 'int32':
      return (out, value) => {
        const at = out.reserve(8);
        out.bytes.writeInt32BE(4, at);
        out.bytes.writeInt32BE(value as number, at + 4);
      };
    case 'date':
      return (out, value) => {
        const at = out.reserve(8);
        out.bytes.writeInt32BE(4, at);
        out.bytes.writeInt32BE((value as number) - DAYS_1970_TO_2000, at + 4);
      };
    case 'int64':
      return (out, value) => putInt64(out, BigInt(value as bigint | number));
    case 'timestamp':
    case 'timestamptz':
      return (out, value) => putInt64(out, BigInt(value as bigint | number) - MICROS_1970_TO_2000);
    case 'decimal':
      return (out, value) => putNumeric(out, value instanceof Uint8Array ? bytesToBigInt(value) : (value as bigint | number), scale);
    case 'bool':
      return (out, value) => {
        const at = out.reserve(5);
        out.bytes.writeInt32BE(1, at);
        out.bytes[at + 4] = value ? 1 : 0;
      };
    case 'uuid':
    case 'bytea':
    case 'text':
    case 'json':
      return (out, value) => putBytes(out, value as Uint8Array);
  }
}

/**
 * How a column's decoded values go back into their COPY fields: NULL as length -1; an array as
 * its dimensions (0 when empty; else 1, its size and lower bound 1), then its elements framed.
 */
export function sourceFieldWriter(plan: ColumnPlan): (out: GatheredHash, value: unknown) => void {
  const scalar = scalarField(plan.kind, plan.scale ?? 0);
  const nonNull: FieldWriter = !plan.array
    ? scalar
    : (() => {
        const elements = new ElementBytes();
        return (out, value) => {
          const list = value as unknown[];
          if (list.length === 0) {
            const at = out.reserve(8);
            out.bytes.writeInt32BE(4, at);
            out.bytes.writeInt32BE(0, at + 4);
            return;
          }
          elements.at = 0;
          for (const element of list) {
            if (element === null || element === undefined) {
              const at = elements.reserve(4);
              elements.bytes.writeInt32BE(-1, at);
            } else scalar(elements, element);
          }
          const at = out.reserve(16 + elements.at);
          const bytes = out.bytes;
          bytes.writeInt32BE(12 + elements.at, at);
          bytes.writeInt32BE(1, at + 4);
          bytes.writeInt32BE(list.length, at + 8);
          bytes.writeInt32BE(1, at + 12);
          elements.bytes.copy(bytes, at + 16, 0, elements.at);
        };
      })();
  return (out, value) => {
    if (value === null || value === undefined) {
      if (plan.notNull) throw new Error(`column ${plan.name} is REQUIRED and holds a NULL`);
      const at = out.reserve(4);
      out.bytes.writeInt32BE(-1, at);
      return;
    }
    nonNull(out, value);
  };
}
