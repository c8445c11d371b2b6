import { createHash } from 'node:crypto';
import type pg from 'pg';
import { CatalogError, errorMessage } from '../../../shared/errors';
import { displayName, quoteIdent, quoteLiteral, quoteQualified, type QualifiedName } from '../../../shared/identifiers';
import type { JobLogger } from '../../../shared/logger';
import { SQLSTATE, sqlState } from '../../../shared/postgres';
import type { BatchResult } from '../batch-sql';
import { ArchiveBatchRefused, type ArchiveDestination, type BatchRequest } from '../destination';
import type { ArchiveTargetPolicy, S3Destination } from '../policy';
import type { ArchiveTables } from '../tables';
import { digestSql, planColumns, UnrepresentableValue, type ColumnPlan } from './columns';
import { crashPoint } from './faults';
import { describeColumns, ObjectWriter, objectChecksum, readBackDigests } from './parquet';
import { openObjectStore, type ObjectStore } from './store';

/** Everything about a target's S3 archive that is fixed before the first batch. */
export interface S3Plan {
  source: QualifiedName;
  s3: S3Destination;
  columns: ColumnPlan[];
  keyColumns: string[];
  /** format_type of each key column, for the casts that find rows by key. */
  keyTypes: string[];
  /** SQL over alias `t`: the row's day (`YYYY-MM-DD`) by its age, or NULL. */
  dayExpression: string;
  ageColumn: string;
  ageFallbackColumn?: string;
}

/** How many times a batch whose rows changed (or were held) while it was written is redone before the target fails. */
export const BATCH_ATTEMPTS = 3;

// ---------------------------------------------------------------------------------------------
// Layout: <prefix>/table=<schema.table>/dt=<day>/part-<first key>-<last key>.parquet, and the
// pending copies under <prefix>/_pending/table=<schema.table>/<run id>/..., outside the table's
// folder (readers of the table never list it; Hive-style readers skip `_` paths anyway).

export function tableFolder(s3: Pick<S3Destination, 'prefix'>, source: QualifiedName): string {
  return `${s3.prefix}/table=${displayName(source)}`;
}

export function pendingFolder(s3: Pick<S3Destination, 'prefix'>, source: QualifiedName): string {
  return `${s3.prefix}/_pending/table=${displayName(source)}/`;
}

/** A key value as it appears in an object's name: integers as they are, anything else as a short hash (names must be safe, short and unique). */
function keyPart(key: string[]): string {
  return key.map((value) => (/^-?\d{1,20}$/.test(value) ? value : `k${createHash('sha256').update(value).digest('hex').slice(0, 16)}`)).join('_');
}

export function objectName(day: string, first: string[], last: string[]): string {
  return `dt=${day}/part-${keyPart(first)}-${keyPart(last)}.parquet`;
}

// ---------------------------------------------------------------------------------------------

/**
 * The refusals of an S3 destination, before anything moves: the database must be UTF-8 (Parquet
 * strings are), and every column must have an exact Parquet type (columns.ts names those that do not).
 */
export async function planS3Archive(
  client: pg.ClientBase,
  source: QualifiedName,
  tables: Pick<ArchiveTables, 'keyColumns' | 'ageTypes'>,
  s3: S3Destination,
  policy: Pick<ArchiveTargetPolicy, 'ageColumn' | 'ageFallbackColumn' | 'timeZone'>,
): Promise<S3Plan> {
  const shown = displayName(source);
  const { rows: encoding } = await client.query<{ encoding: string }>(`SELECT current_setting('server_encoding') AS encoding`);
  if (encoding[0]!.encoding !== 'UTF8') {
    throw new CatalogError(shown, `the database's encoding is ${encoding[0]!.encoding}; Parquet strings are UTF-8, so the S3 destination needs a UTF8 database (nothing was moved)`);
  }
  const columns = await planColumns(client, source);
  const { rows: keyTypes } = await client.query<{ type: string }>(
    `SELECT format_type(a.atttypid, NULL) AS type FROM unnest($2::text[]) WITH ORDINALITY AS k(name, ord)
     JOIN pg_attribute a ON a.attrelid = to_regclass($1) AND a.attname = k.name ORDER BY k.ord`,
    [quoteQualified(source), tables.keyColumns],
  );
  const dayOf = (column: string, type: 'timestamptz' | 'timestamp' | 'date') => {
    const c = `t.${quoteIdent(column)}`;
    // The zone is a validated IANA name (policy schema); literals keep the statement's parameters the table path's.
    return type === 'timestamptz' ? `(${c} AT TIME ZONE ${quoteLiteral(policy.timeZone)})::date` : `${c}::date`;
  };
  const day = policy.ageFallbackColumn
    ? `COALESCE(${dayOf(policy.ageColumn, tables.ageTypes.primary)}, ${dayOf(policy.ageFallbackColumn, tables.ageTypes.fallback!)})`
    : dayOf(policy.ageColumn, tables.ageTypes.primary);
  return {
    source,
    s3,
    columns,
    keyColumns: tables.keyColumns,
    keyTypes: keyTypes.map((k) => k.type),
    // Days before year 1 or infinite ages have no dt= folder: NULL, and the batch is refused naming the row.
    dayExpression: `(SELECT CASE WHEN isfinite(d) AND d >= DATE '0001-01-01' THEN to_char(d, 'YYYY-MM-DD') END FROM (SELECT ${day} AS d) AS day)`,
    ageColumn: policy.ageColumn,
    ...(policy.ageFallbackColumn ? { ageFallbackColumn: policy.ageFallbackColumn } : {}),
  };
}

/** The statements of one target: the pick (a chunk of expired rows with their canonical texts and digests) and the checked delete. */
export function s3ArchiveSql(plan: S3Plan) {
  const src = quoteQualified(plan.source);
  const keys = plan.keyColumns.map(quoteIdent);
  const hasFallback = plan.ageFallbackColumn !== undefined;
  const predicate = hasFallback
    ? `(t.${quoteIdent(plan.ageColumn)} < $1 OR (t.${quoteIdent(plan.ageColumn)} IS NULL AND t.${quoteIdent(plan.ageFallbackColumn!)} < $2))`
    : `t.${quoteIdent(plan.ageColumn)} < $1`;
  const first = hasFallback ? 3 : 2;
  const values = plan.columns.map((c, i) => `${c.select} AS c${i}`).join(', ');
  const digest = digestSql(plan.columns.map((_, i) => `v.c${i}`));
  const afterParams = keys.map((_, i) => `$${first + 1 + i}`);
  const tuple = (columns: string[]) => (columns.length === 1 ? columns[0]! : `(${columns.join(', ')})`);
  const pick = (afterKey: boolean) =>
    `SELECT ARRAY[${keys.map((k) => `t.${k}::text`).join(', ')}] AS key, ${plan.dayExpression} AS day, ${digest} AS digest, v.* ` +
    `FROM ${src} AS t CROSS JOIN LATERAL (SELECT ${values}) AS v ` +
    `WHERE ${predicate}${afterKey ? ` AND ${tuple(keys.map((k) => `t.${k}`))} > ${tuple(afterParams)}` : ''} ` +
    `ORDER BY ${keys.map((k) => `t.${k}`).join(', ')} LIMIT $${first}`;
  // The delete finds each written row by key and deletes it only if it is still expired and its
  // digest is the one written: a row updated since the pick stays (and the batch is redone).
  const keyArrays = keys.map((_, i) => `$${first + i}::text[]`);
  const digestParam = `$${first + keys.length}`;
  const remove =
    `WITH gone AS (DELETE FROM ${src} AS t USING unnest(${[...keyArrays, `${digestParam}::text[]`].join(', ')}) AS e(${[...keys.map((_, i) => `k${i}`), 'd'].join(', ')}) ` +
    `WHERE ${keys.map((k, i) => `t.${k} = e.k${i}::${plan.keyTypes[i]}`).join(' AND ')} AND ${predicate} ` +
    `AND e.d = (SELECT ${digest} FROM (SELECT ${values}) AS v) RETURNING 1) SELECT count(*)::int AS n FROM gone`;
  return { pick, remove, ageParamCount: first - 1 };
}

interface WrittenObject {
  day: string;
  writer: ObjectWriter;
  bytes: Uint8Array;
  checksum: string;
  key: string;
  pendingKey: string;
}

class BatchConflict extends Error {}

export async function s3ArchiveDestination(options: {
  client: pg.Client;
  policy: ArchiveTargetPolicy;
  plan: S3Plan;
  cutoffs: { primary: string; fallback?: string };
  runId: string;
  logger: JobLogger;
  store?: ObjectStore;
}): Promise<ArchiveDestination> {
  const { client, plan, cutoffs, runId, logger } = options;
  const { s3, source } = plan;
  const store = options.store ?? (await openObjectStore({ bucket: s3.bucket, ...(s3.kmsKeyId ? { kmsKeyId: s3.kmsKeyId } : {}) }));
  const sql = s3ArchiveSql(plan);
  const ageParams = sql.ageParamCount === 2 ? [cutoffs.primary, cutoffs.fallback ?? cutoffs.primary] : [cutoffs.primary];
  const shown = displayName(source);
  const name = `s3://${s3.bucket}/${tableFolder(s3, source)}`;
  const columnsJson = JSON.stringify(describeColumns(plan.columns));
  const stats = { objectsWritten: 0, bytesWritten: 0, batchesRedone: 0 };

  /** Streams up to `limit` rows into one writer per day; nothing is uploaded yet. */
  const write = async ({ limit, afterKey }: BatchRequest) => {
    const writers = new Map<string, ObjectWriter>();
    let picked = 0;
    let after = afterKey;
    let lastKey: string[] | undefined;
    while (picked < limit) {
      const chunk = Math.min(s3.rowGroupRows, limit - picked);
      const params = after === undefined ? [...ageParams, chunk] : [...ageParams, chunk, ...after];
      const { rows } = await client.query<unknown[]>({ text: sql.pick(after !== undefined), values: params, rowMode: 'array' });
      for (const row of rows) {
        const [key, day, digest, ...texts] = row as [string[], string | null, string, ...Array<string | null>];
        const keyText = key.join(', ');
        if (day === null) {
          throw new ArchiveBatchRefused(shown, `row ${plan.keyColumns.join(', ')} = ${keyText} of ${shown} has an age before year 1 or infinite; it has no dt= folder. Nothing of this batch was moved`);
        }
        let writer = writers.get(day);
        if (!writer) {
          writer = new ObjectWriter(plan.columns, s3.rowGroupRows, s3.compression, key, [
            { key: 'pg-housekeeper.source', value: shown },
            { key: 'pg-housekeeper.columns', value: columnsJson },
          ]);
          writers.set(day, writer);
        }
        try {
          writer.add(texts, digest, key);
        } catch (error) {
          if (!(error instanceof UnrepresentableValue)) throw error;
          const column = error.column;
          throw new ArchiveBatchRefused(
            shown,
            `column ${column?.name ?? '?'} (${column?.pgType ?? '?'}) of row ${plan.keyColumns.join(', ')} = ${keyText} in ${shown} holds a value Parquet cannot represent exactly: ${error.message}. Nothing of this batch was moved`,
          );
        }
      }
      picked += rows.length;
      if (rows.length > 0) after = lastKey = (rows[rows.length - 1] as [string[]])[0];
      if (rows.length < chunk) break;
    }
    return { writers, picked, lastKey };
  };

  const removePending = async (objects: WrittenObject[]) => {
    for (const object of objects) await store.delete(object.pendingKey).catch(() => {});
  };

  /** Uploads each object under the pending prefix, then reads it back: row count and every row's digest must be what Postgres computed. */
  const upload = async (writers: Map<string, ObjectWriter>): Promise<WrittenObject[]> => {
    const objects: WrittenObject[] = [];
    for (const [day, writer] of writers) {
      const bytes = writer.finish();
      const objectKey = `${tableFolder(s3, source)}/${objectName(day, writer.firstKey, writer.lastKey)}`;
      const pendingKey = `${pendingFolder(s3, source)}${runId}/${objectName(day, writer.firstKey, writer.lastKey)}`;
      const checksum = objectChecksum(writer.digests);
      await store.put(pendingKey, bytes, { rows: String(writer.rows), checksum });
      objects.push({ day, writer, bytes, checksum, key: objectKey, pendingKey });
    }
    crashPoint('after-upload');
    for (const object of objects) {
      const problem = await verify(object);
      if (problem) {
        await removePending(objects);
        throw new ArchiveBatchRefused(name, `object ${object.pendingKey} did not read back as written (${problem}); its pending copies were deleted and nothing of this batch was moved`);
      }
    }
    crashPoint('after-verify');
    return objects;
  };

  const verify = async (object: WrittenObject): Promise<string | undefined> => {
    const stored = await store.get(object.pendingKey);
    if (!stored) return 'it is missing';
    if (stored.byteLength !== object.bytes.byteLength) return `${stored.byteLength} bytes stored, ${object.bytes.byteLength} written`;
    let read: { rows: number; digests: string[] };
    try {
      read = await readBackDigests(stored, plan.columns);
    } catch (error) {
      return `it does not parse: ${errorMessage(error)}`;
    }
    if (read.rows !== object.writer.rows || read.digests.length !== object.writer.rows) return `${read.rows} rows read, ${object.writer.rows} written`;
    if (objectChecksum(read.digests) !== object.checksum) {
      const at = read.digests.findIndex((d, i) => d !== object.writer.digests[i]);
      return `row ${at + 1}'s values differ from the source's`;
    }
    return undefined;
  };

  /** One transaction: a manifest row per object (state committed) and the delete of exactly the rows written, unchanged. */
  const commit = async (objects: WrittenObject[], picked: number) => {
    const keyArrays = plan.keyColumns.map(() => [] as string[]);
    const digests: string[] = [];
    // Rows by key: one entry per row of every object (objects hold disjoint rows).
    for (const object of objects) {
      object.writer.digests.forEach((digest, row) => {
        object.writer.keys[row]!.forEach((value, i) => keyArrays[i]!.push(value));
        digests.push(digest);
      });
    }
    await client.query('BEGIN');
    try {
      for (const object of objects) {
        await client.query(
          `INSERT INTO housekeeping.archive_objects
             (source, bucket, object_key, pending_key, dt, state, run_id, key_columns, first_key, last_key, row_count, checksum, size_bytes, columns)
           VALUES ($1, $2, $3, $4, $5::date, 'committed', $6, $7, $8, $9, $10, $11, $12, $13::jsonb)`,
          [shown, s3.bucket, object.key, object.pendingKey, object.day, runId, plan.keyColumns, object.writer.firstKey, object.writer.lastKey, object.writer.rows, object.checksum, object.bytes.byteLength, columnsJson],
        );
      }
      const { rows: deleted } = await client.query<{ n: number }>(sql.remove, [...ageParams, ...keyArrays, digests]);
      if (deleted[0]!.n !== picked) throw new BatchConflict(`${picked - deleted[0]!.n} of ${picked} row(s) changed, went or were no longer expired since they were written`);
      await client.query('COMMIT');
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      if (sqlState(error) === SQLSTATE.lockNotAvailable) throw new BatchConflict('another session holds some of its rows');
      if (sqlState(error) === SQLSTATE.uniqueViolation) {
        throw new ArchiveBatchRefused(name, `an object of this batch already exists in the manifest (${errorMessage(error)}): rows with these keys were archived before (restored and archived again?). Nothing of this batch was moved`);
      }
      throw error;
    }
    crashPoint('after-commit');
  };

  /** Copies each committed object to its final key, marks it published, then deletes its pending copy. */
  const publish = async (objects: Array<{ id?: string; key: string; pendingKey: string }>, ids: string[]) => {
    for (const object of objects) await store.copy(object.pendingKey, object.key);
    crashPoint('after-copy');
    await client.query(`UPDATE housekeeping.archive_objects SET state = 'published', published_at = now() WHERE id = ANY ($1::bigint[]) AND state = 'committed'`, [ids]);
    crashPoint('after-publish');
    for (const object of objects) await store.delete(object.pendingKey);
  };

  return {
    name,
    async reconcile() {
      const counts: Record<string, number> = {};
      const { rows: committed } = await client.query<{ id: string; object_key: string; pending_key: string; size_bytes: string; checksum: string }>(
        `SELECT id::text, object_key, pending_key, size_bytes::text, checksum FROM housekeeping.archive_objects
         WHERE source = $1 AND bucket = $2 AND state = 'committed' ORDER BY id`,
        [shown, s3.bucket],
      );
      if (committed.length > 0) {
        for (const object of committed) {
          const pending = await store.head(object.pending_key);
          if (pending) continue;
          // Only reconcile deletes pending copies, and only once published: a committed row without one must already have its final object.
          const final = await store.head(object.object_key);
          if (!final || final.size !== Number(object.size_bytes) || final.metadata.checksum !== object.checksum) {
            throw new CatalogError(
              name,
              `manifest row ${object.id} (${object.object_key}) committed its rows' delete, but neither its pending copy ${object.pending_key} nor a matching final object exists. ` +
                `Restore the pending copy from the bucket's versions, then run again`,
            );
          }
        }
        const withPending = [];
        for (const object of committed) if (await store.head(object.pending_key)) withPending.push({ key: object.object_key, pendingKey: object.pending_key });
        await publish(withPending, committed.map((o) => o.id));
        counts.objectsPublished = committed.length;
        logger.warn('published objects an earlier run committed but did not publish', { objects: committed.map((o) => o.object_key) });
      }
      // Anything left under the table's pending folder is garbage now: no committed manifest row
      // names it (its rows are still in the source), or it was published and not yet deleted.
      const leftovers = await store.list(pendingFolder(s3, source));
      for (const key of leftovers) await store.delete(key);
      if (leftovers.length > 0) counts.pendingObjectsRemoved = leftovers.length;
      return counts;
    },
    async moveBatch(request) {
      for (let attempt = 1; ; attempt++) {
        const { writers, picked, lastKey } = await write(request);
        if (picked === 0) return emptyBatch();
        const objects = await upload(writers);
        try {
          await commit(objects, picked);
        } catch (error) {
          await removePending(objects);
          if (!(error instanceof BatchConflict)) throw error;
          stats.batchesRedone++;
          if (attempt >= BATCH_ATTEMPTS) {
            throw new ArchiveBatchRefused(
              shown,
              `a batch of ${shown} was redone ${BATCH_ATTEMPTS} times and each time ${error.message}; nothing of it was moved (batches before it stay moved). The next run tries again`,
            );
          }
          logger.info('archive batch redone: its rows changed while it was written', { attempt, reason: error.message });
          continue;
        }
        const { rows: ids } = await client.query<{ id: string }>(
          `SELECT id::text FROM housekeeping.archive_objects WHERE bucket = $1 AND object_key = ANY ($2::text[]) AND state = 'committed'`,
          [s3.bucket, objects.map((o) => o.key)],
        );
        await publish(objects, ids.map((r) => r.id));
        stats.objectsWritten += objects.length;
        stats.bytesWritten += objects.reduce((n, o) => n + o.bytes.byteLength, 0);
        return { picked, moved: picked, inserted: picked, identical: 0, altered: 0, collisions: [], collision_count: 0, last_key: lastKey ?? null };
      }
    },
    counts: () => ({ ...stats }),
  };
}

function emptyBatch(): BatchResult {
  return { picked: 0, moved: 0, inserted: 0, identical: 0, altered: 0, collisions: [], collision_count: 0, last_key: null };
}
