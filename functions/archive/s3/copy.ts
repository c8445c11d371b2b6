import type pg from 'pg';
import { to as copyTo } from 'pg-copy-streams';
import { Param, type Sql } from '../../../shared/sql';

/**
 * A query's rows as Postgres's binary COPY: every value in its binary form (integers, timestamps,
 * numerics as their digits, texts as their bytes), read as one buffer, no JS value per field. COPY
 * takes no bind parameters, so each value goes first into a setting, itself a bind parameter of
 * set_config, and the query reads it back with current_setting, cast to the type the statement
 * gave it (`typed`: a setting is text). No value is ever part of the COPY's text. The settings
 * are the transaction's own (BEGIN, set_config local, COPY, COMMIT): nothing stays on the
 * session, and a pooler that hands transactions to different server connections (RDS Proxy,
 * PgBouncer in transaction mode) keeps them on one. Never called inside a transaction, nor while
 * another query runs on the connection.
 */
export async function copyRows(client: pg.ClientBase, statement: Sql): Promise<Buffer> {
  const { text, settings } = copyStatement(statement);
  // One statement at a time: node-postgres runs a connection's queries one after another anyway,
  // and queueing a second while one runs is deprecated (pg 9 refuses it).
  await client.query('BEGIN');
  try {
    if (settings.length > 0) {
      await client.query(`SELECT ${settings.map((_, i) => `set_config('pg_housekeeper.copy_${i + 1}', $${i + 1}, true)`).join(', ')}`, settings);
    }
    // The stream made here is the one read, whatever client.query returns: a wrapper of query (an
    // instrumentation agent's, a test's) may return a promise of it instead. Left unread, a COPY
    // holds the connection forever.
    const stream = copyTo(`COPY (${text}) TO STDOUT (FORMAT binary)`);
    const submitted: unknown = client.query(stream);
    if (submitted instanceof Promise) submitted.catch(() => {});
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    await client.query('COMMIT');
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  } catch (error) {
    // The connection is idle again for the next pick (a broken one fails that pick with its own error).
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}

/**
 * The statement with each bind value read from a setting instead (`settings[i]` goes
 * into pg_housekeeper.copy_<i+1>), each in a subquery: run once for the statement. Bare, the
 * setting's lookup and its cast (a timestamptz parsed from text) would run again for every row a
 * filter looks at.
 */
export function copyStatement(statement: Sql): { text: string; settings: string[] } {
  const numbers = new Map<Param, number>();
  const settings: string[] = [];
  let text = '';
  for (const piece of statement.pieces) {
    if (!(piece instanceof Param)) {
      text += piece;
      continue;
    }
    let number = numbers.get(piece);
    if (number === undefined) {
      settings.push(settingText(piece.value));
      number = settings.length;
      numbers.set(piece, number);
    }
    text += `(SELECT current_setting('pg_housekeeper.copy_${number}')${piece.type ? `::${piece.type}` : ''})`;
  }
  return { text, settings };
}

function settingText(value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' && Number.isFinite(value)) return String(value);
  throw new Error(`a COPY parameter must be a text or a finite number, not ${typeof value}`);
}

const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');

/**
 * Walks a binary COPY buffer: the 19-byte header (signature, flags, extension length), then each
 * row as a field count and its fields (a length, -1 for NULL, then that many bytes), then -1.
 */
export class CopyReader {
  private at: number;
  /** Where each row starts, found by one pass over the lengths. */
  readonly rowStarts: number[] = [];
  /** After `row(i)`: each field's start and length (-1 for NULL). */
  readonly starts: Int32Array;
  readonly lengths: Int32Array;

  constructor(
    readonly bytes: Buffer,
    readonly fields: number,
  ) {
    if (bytes.length < 21 || !bytes.subarray(0, SIGNATURE.length).equals(SIGNATURE)) throw new Error('not a binary COPY stream');
    this.at = SIGNATURE.length + 8 + bytes.readUInt32BE(SIGNATURE.length + 4);
    this.starts = new Int32Array(fields);
    this.lengths = new Int32Array(fields);
    let at = this.at;
    for (;;) {
      const count = bytes.readInt16BE(at);
      if (count === -1) break;
      if (count !== fields) throw new Error(`a COPY row has ${count} fields, ${fields} expected`);
      this.rowStarts.push(at);
      at += 2;
      for (let i = 0; i < count; i++) {
        const length = bytes.readInt32BE(at);
        at += 4 + (length > 0 ? length : 0);
      }
    }
  }

  get rows(): number {
    return this.rowStarts.length;
  }

  /** Reads row `index`'s fields into `starts` and `lengths`. */
  row(index: number): void {
    const bytes = this.bytes;
    let at = this.rowStarts[index]! + 2;
    for (let i = 0; i < this.fields; i++) {
      const length = bytes.readInt32BE(at);
      at += 4;
      this.starts[i] = at;
      this.lengths[i] = length;
      if (length > 0) at += length;
    }
  }

  /** Field `i` of the current row as text (key texts), or null. */
  text(i: number): string | null {
    const length = this.lengths[i]!;
    return length < 0 ? null : this.bytes.toString('utf8', this.starts[i]!, this.starts[i]! + length);
  }
}
