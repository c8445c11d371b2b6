import type pg from 'pg';
import { inTransaction } from '../../../shared/db';
import { CatalogError, errorMessage } from '../../../shared/errors';
import { displayName } from '../../../shared/identifiers';
import type { TargetContext } from '../../../shared/job';
import { queryOne, SQLSTATE, sqlState } from '../../../shared/postgres';
import { sql } from '../../../shared/sql';
import { ROW_LOCK_PATIENCE_MS } from '../apply';
import { ArchiveBatchRefused, type ArchiveDestination, type BatchRequest, EMPTY_BATCH } from '../destination';
import type { ArchiveCutoffs } from '../plan';
import type { ArchiveEvent, ArchiveTargetPolicy } from '../policy';
import type { S3Catalog } from './catalog';
import { CHECKSUM_KIND } from './checksum';
import { UnrepresentableValue } from './columns';
import { CopyReader, copyRows } from './copy';
import { crashPoint } from './faults';
import { describeColumns, readBackChecksum } from './parquet';
import { dayText, objectKeys, pendingFolder, tableFolder } from './plan';
import { renderS3Sql } from './sql';
import { commonPrefix, keyOrder, type ObjectStore, openObjectStore } from './store';
import { ObjectWriter } from './writer';

/** How many times a batch whose rows changed (or were held) while it was written is redone before the target fails. */
const BATCH_ATTEMPTS = 3;
/** Retries of one batch that each left out rows they could not take (within its first range, so a handful at most ever happen: more means rows are being locked faster than it can step around them). */
const HELD_RETRIES = 5;

/** A batch written again over its first key range, without the rows its delete could not take. */
interface HeldRedo {
  /** The last key the batch first picked. */
  through: string[];
  excluded: string[][];
}

interface WrittenObject {
  day: string;
  writer: ObjectWriter;
  bytes: Uint8Array;
  checksum: string;
  key: string;
  pendingKey: string;
}

interface WrittenBatch {
  objects: WrittenObject[];
  picked: number;
  firstKey: string[] | undefined;
  lastKey: string[] | undefined;
}

class BatchConflict extends Error {
  constructor(
    message: string,
    /** The written rows the delete could not take (held by another session, changed or gone): left for a later run. */
    readonly left: string[][] = [],
    /** The delete waited out its lock patience on a row another session holds. */
    readonly held = false,
  ) {
    super(message);
  }
}

const sameKey = (a: string[] | undefined, b: string[] | undefined) =>
  a === b || (a !== undefined && b !== undefined && a.length === b.length && a.every((v, i) => v === b[i]));

/** S3 requests of one batch in flight at once (a batch writes one object per day it spans). */
const S3_CONCURRENCY = 8;
/** A batch's final keys are listed as one range while it holds at most this many keys per object (then one listing per key). */
const RANGE_LISTING_KEYS_PER_OBJECT = 4;

/** `work` on every item, at most `limit` at a time; the results in item order. */
async function eachAtMost<T, R>(limit: number, items: readonly T[], work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

/**
 * The S3 destination: each batch streams its rows into one Parquet object per day (row group by
 * row group), uploads them under the pending folder, reads each back (row count and every row's
 * digest), then in one transaction records them in housekeeping.archive_objects (`committed`)
 * and deletes exactly the rows written, unchanged; then copies each to its final key and marks
 * it `published`. Reconcile, before the first batch, publishes what a run that died committed
 * and deletes what it left pending uncommitted (those rows are still in the source).
 */
export async function s3Destination(options: {
  context: TargetContext<ArchiveTargetPolicy, ArchiveEvent>;
  catalog: S3Catalog;
  cutoffs: ArchiveCutoffs;
  store?: ObjectStore;
}): Promise<ArchiveDestination> {
  const { client, runId, logger } = options.context;
  /**
   * Batches are picked on a session of their own, so the next batch is read and encoded while this
   * one's delete commits on the job's session. Reads need none of the target's locks, and nothing
   * depends on which session read a row: the delete still takes only the rows written, by key and
   * version. Opened at the first pick, with the batches' lock patience; closed by finish().
   */
  let reader: Promise<pg.Client> | undefined;
  const readerSession = () => {
    reader ??= (async () => {
      const session = await options.context.connect();
      try {
        await session.query(`SELECT set_config('lock_timeout', $1, false)`, [`${ROW_LOCK_PATIENCE_MS}ms`]);
      } catch (error) {
        await session.end().catch(() => {});
        throw error;
      }
      return session;
    })();
    return reader;
  };
  const catalog = options.catalog;
  const { s3, source } = catalog;
  const store = options.store ?? (await openObjectStore({ bucket: s3.bucket, ...(s3.kmsKeyId ? { kmsKeyId: s3.kmsKeyId } : {}) }));
  const statements = renderS3Sql(catalog, options.cutoffs);
  const shown = displayName(source);
  const name = `s3://${s3.bucket}/${tableFolder(s3, source)}`;
  const columnsJson = JSON.stringify(describeColumns(catalog.columns));
  const stats = { objectsWritten: 0, bytesWritten: 0, batchesRedone: 0, lockedRowBatches: 0 };
  /**
   * Milliseconds in each stage, summed over the batches: where an S3 run spends its time, in its
   * summary. Stages of consecutive batches overlap (the next batch is picked and encoded while
   * this one travels to S3 and back, and published while the next is written), so they may add up
   * to more than the run's duration.
   */
  const stageMs = { pickWaitMs: 0, encodeMs: 0, uploadMs: 0, verifyMs: 0, commitMs: 0, publishMs: 0 };
  const timed = async <T>(stage: keyof typeof stageMs, work: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    try {
      return await work();
    } finally {
      stageMs[stage] += performance.now() - started;
    }
  };

  const keyWidth = catalog.keyColumns.length;
  /** Fields of a picked row: the key's texts, the day, the version, then the columns. */
  const fields = keyWidth + 2 + catalog.columns.length;
  /** The current row's key (its first fields; a key column is never NULL). */
  const keyOf = (reader: CopyReader) => {
    const key: string[] = new Array(keyWidth);
    for (let i = 0; i < keyWidth; i++) key[i] = reader.text(i)!;
    return key;
  };
  const dayTexts = new Map<number, string>();

  /** Streams up to `limit` rows into one object per day, encoded and checksummed; nothing is uploaded yet. */
  const write = async ({ limit, afterKey, through, excluded }: BatchRequest & Partial<HeldRedo>): Promise<WrittenBatch> => {
    const started = performance.now();
    let waited = 0;
    const writers = new Map<string, ObjectWriter>();
    let picked = 0;
    let after = afterKey;
    let firstKey: string[] | undefined;
    let lastKey: string[] | undefined;
    const fetch = async (chunk: number, from: string[] | undefined) => ({
      chunk,
      reader: new CopyReader(await copyRows(await readerSession(), statements.pick(chunk, from, excluded, through)), fields),
    });
    // The next chunk is fetched while this one is encoded: Postgres reads while node writes.
    let pending: ReturnType<typeof fetch> | undefined = fetch(Math.min(s3.rowGroupRows, limit), after);
    try {
      await streamChunks();
    } catch (error) {
      // A refused row ends the batch; the chunk already asked for is let go.
      pending?.catch(() => {});
      throw error;
    }
    const objects: WrittenObject[] = await Promise.all(
      [...writers].map(async ([day, writer]) => {
        const bytes = await writer.finish();
        const { key, pendingKey } = objectKeys(s3, source, runId, day, writer.firstKey, writer.lastKey);
        return { day, writer, bytes, checksum: writer.checksum, key, pendingKey };
      }),
    );
    stageMs.pickWaitMs += waited;
    stageMs.encodeMs += performance.now() - started - waited;
    return { objects, picked, firstKey, lastKey };

    async function streamChunks() {
      // The row's day and its writer, while the rows (in key order) stay on one day.
      let lastDayNumber = Number.NaN;
      let writer: ObjectWriter | undefined;
      while (pending) {
        const waitStarted = performance.now();
        const { chunk, reader } = await pending;
        waited += performance.now() - waitStarted;
        pending = undefined;
        const rows = reader.rows;
        if (rows > 0) {
          reader.row(rows - 1);
          after = keyOf(reader);
        }
        const more = limit - picked - rows;
        if (rows === chunk && more > 0) pending = fetch(Math.min(s3.rowGroupRows, more), after);
        // The values' fields, as views the reader refills for every row.
        const columnStarts = reader.starts.subarray(keyWidth + 2);
        const columnLengths = reader.lengths.subarray(keyWidth + 2);
        for (let row = 0; row < rows; row++) {
          reader.row(row);
          firstKey ??= keyOf(reader);
          const dayLength = reader.lengths[keyWidth]!;
          if (dayLength < 0) {
            throw new ArchiveBatchRefused(
              `row ${catalog.keyColumns.join(', ')} = ${keyOf(reader).join(', ')} of ${shown} has an age before year 1 or infinite; it has no dt= folder. Nothing of this batch was moved`,
            );
          }
          const dayNumber = reader.bytes.readInt32BE(reader.starts[keyWidth]!);
          const version = reader.bytes.readUInt32BE(reader.starts[keyWidth + 1]!);
          if (dayNumber !== lastDayNumber || writer === undefined) {
            let day = dayTexts.get(dayNumber);
            if (day === undefined) {
              day = dayText(dayNumber);
              dayTexts.set(dayNumber, day);
            }
            writer = writers.get(day);
            if (!writer) {
              writer = new ObjectWriter(catalog.columns, s3.rowGroupRows, s3.compression, keyOf(reader), [
                { key: 'pg-housekeeper.source', value: shown },
                { key: 'pg-housekeeper.columns', value: columnsJson },
              ]);
              writers.set(day, writer);
            }
            lastDayNumber = dayNumber;
          }
          try {
            writer.add(reader.bytes, columnStarts, columnLengths, reader, version);
          } catch (error) {
            if (!(error instanceof UnrepresentableValue)) throw error;
            const column = error.column;
            throw new ArchiveBatchRefused(
              `column ${column?.name ?? '?'} (${column?.pgType ?? '?'}) of row ${catalog.keyColumns.join(', ')} = ${keyOf(reader).join(', ')} in ${shown} holds a value Parquet cannot represent exactly: ${error.message}. Nothing of this batch was moved`,
            );
          }
        }
        picked += rows;
        if (rows > 0) lastKey = after;
        // Rows not yet in a row group stay under about two row groups whatever the batch spans: a
        // batch over many days fills each day's row group slowly, so the fullest is written early.
        let buffered = [...writers.values()].reduce((n, w) => n + w.buffered, 0);
        while (buffered > s3.rowGroupRows) {
          const fullest = [...writers.values()].reduce((a, b) => (b.buffered > a.buffered ? b : a));
          buffered -= fullest.buffered;
          fullest.flush();
        }
      }
    }
  };

  const removePending = async (objects: WrittenObject[]) => {
    await store.deleteMany(objects.map((object) => object.pendingKey)).catch(() => {});
  };

  /** Uploads each object under the pending prefix, then reads it back: row count and every row's digest must be those of the texts Postgres gave. */
  const upload = async (objects: WrittenObject[]): Promise<void> => {
    await timed('uploadMs', () =>
      eachAtMost(S3_CONCURRENCY, objects, (object) =>
        store.put(object.pendingKey, object.bytes, { rows: String(object.writer.rows), checksum: object.checksum }),
      ),
    );
    crashPoint('after-upload');
    const problems = await timed('verifyMs', () => eachAtMost(S3_CONCURRENCY, objects, verify));
    const failed = problems.findIndex((problem) => problem !== undefined);
    if (failed >= 0) {
      await removePending(objects);
      throw new ArchiveBatchRefused(
        `object ${objects[failed]!.pendingKey} did not read back as written (${problems[failed]}); its pending copies were deleted and nothing of this batch was moved`,
      );
    }
    crashPoint('after-verify');
  };

  const verify = async (object: WrittenObject): Promise<string | undefined> => {
    const stored = await store.get(object.pendingKey);
    if (!stored) return 'it is missing';
    if (stored.byteLength !== object.bytes.byteLength) return `${stored.byteLength} bytes stored, ${object.bytes.byteLength} written`;
    let read: { rows: number; checksum: string };
    try {
      read = await readBackChecksum(stored, catalog.columns);
    } catch (error) {
      return `it does not parse: ${errorMessage(error)}`;
    }
    if (read.rows !== object.writer.rows) return `${read.rows} rows read, ${object.writer.rows} written`;
    if (read.checksum !== object.checksum) return `its values differ from the source's (checksum ${read.checksum}, written ${object.checksum})`;
    return undefined;
  };

  /**
   * One transaction: a manifest row per object (state committed; one INSERT for all) and the
   * delete of exactly the rows written, unchanged. Returns the manifest rows' ids.
   */
  const commit = async (objects: WrittenObject[], picked: number, first: string[], last: string[], skipHeld: boolean): Promise<string[]> => {
    // Rows by key and version: one entry per row of every object (objects hold disjoint rows).
    const keyArrays = catalog.keyColumns.map((_, i) => ([] as string[]).concat(...objects.map(({ writer }) => writer.keyColumns[i]!)));
    const versions = ([] as number[]).concat(...objects.map(({ writer }) => writer.versions));
    const manifest = JSON.stringify(
      objects.map(({ writer, key, pendingKey, day, checksum, bytes }) => ({
        object_key: key,
        pending_key: pendingKey,
        dt: day,
        first_key: writer.firstKey,
        last_key: writer.lastKey,
        row_count: writer.rows,
        checksum,
        size_bytes: bytes.byteLength,
      })),
    );
    try {
      const ids = await inTransaction(client, async () => {
        const { rows } = await client.query<{ id: string }>(
          sql`INSERT INTO housekeeping.archive_objects
             (source, bucket, object_key, pending_key, dt, state, run_id, key_columns, first_key, last_key, row_count, checksum, checksum_kind, size_bytes, columns)
           SELECT ${shown}, ${s3.bucket}, o.object_key, o.pending_key, o.dt, 'committed', ${runId}, ${catalog.keyColumns},
                  ARRAY(SELECT jsonb_array_elements_text(o.first_key)), ARRAY(SELECT jsonb_array_elements_text(o.last_key)),
                  o.row_count, o.checksum, ${CHECKSUM_KIND}, o.size_bytes, ${columnsJson}::jsonb
           FROM jsonb_to_recordset(${manifest}::jsonb) AS o(object_key text, pending_key text, dt date, first_key jsonb, last_key jsonb, row_count bigint, checksum text, size_bytes bigint)
           RETURNING id::text`,
        );
        if (skipHeld) {
          const { rows: gone } = await client.query<Record<string, string>>(statements.removeUnheld(keyArrays, versions, first, last));
          if (gone.length !== picked) {
            const taken = new Set(gone.map((row) => JSON.stringify(keyArrays.map((_, i) => row[`k${i}`]))));
            const left: string[][] = [];
            for (let row = 0; row < picked; row++) {
              const key = keyArrays.map((column) => column[row]!);
              if (!taken.has(JSON.stringify(key))) left.push(key);
            }
            throw new BatchConflict(
              `${picked - gone.length} of ${picked} row(s) were held by another session, changed or went since they were written`,
              left,
            );
          }
          return rows.map((r) => r.id);
        }
        const { n } = await queryOne<{ n: number }>(client, statements.remove(keyArrays, versions, first, last));
        if (n !== picked)
          throw new BatchConflict(`${picked - n} of ${picked} row(s) changed, went or were no longer expired since they were written`);
        return rows.map((r) => r.id);
      });
      crashPoint('after-commit');
      return ids;
    } catch (error) {
      if (sqlState(error) === SQLSTATE.lockNotAvailable) throw new BatchConflict('another session holds some of its rows', [], true);
      if (sqlState(error) === SQLSTATE.uniqueViolation) {
        throw new ArchiveBatchRefused(
          `an object of this batch already exists in the manifest (${errorMessage(error)}): rows with these keys were archived before (restored and archived again?). Nothing of this batch was moved`,
        );
      }
      throw error;
    }
  };

  /**
   * Copies each committed object to its final key, marks it published, then deletes its pending
   * copy. A final object already there is kept: it is this object if its size and checksum match
   * (a run died after the copy); otherwise it holds other rows (another database archiving a table
   * of the same name into this prefix) and is never overwritten: the target fails, and this
   * object's rows stay in its pending copy, committed.
   */
  const publish = async (objects: Array<{ key: string; pendingKey: string; size: number; checksum: string }>, ids: string[]) => {
    // Listed, not HEADed: without ListBucket on a key, S3 answers a HEAD of a missing object 403,
    // not 404. One listing over the batch's keys, not one per object (a batch over 30 days has
    // 30), unless other objects crowd the range (a key unrelated to the age spreads a batch over
    // the whole retention): then one listing per key, as the range would cost more.
    const finals = objects.map((object) => object.key).sort(keyOrder);
    const ranged =
      finals.length > 1
        ? await store.listRange(
            commonPrefix(finals[0]!, finals.at(-1)!),
            { from: finals[0]!, to: finals.at(-1)! },
            RANGE_LISTING_KEYS_PER_OBJECT * finals.length,
          )
        : undefined;
    const listed = new Set(ranged ?? []);
    const isListed = async (key: string) => (ranged ? listed.has(key) : (await store.list(key)).includes(key));
    await eachAtMost(S3_CONCURRENCY, objects, async (object) => {
      const keepFinal = async () => {
        const final = await store.head(object.key);
        if (final && final.size === object.size && final.metadata.checksum === object.checksum) return;
        throw new CatalogError(
          name,
          `${object.key} already exists with other contents (${final?.size} bytes, checksum ${final?.metadata.checksum ?? 'none'}; this object: ${object.size} bytes, checksum ${object.checksum}), ` +
            `so it was not overwritten. Is another database archiving a table of the same name into this prefix? The rows stay in ${object.pendingKey}, committed in the manifest`,
        );
      };
      if (await isListed(object.key)) return keepFinal();
      // The copy itself refuses to overwrite (If-None-Match) where the store supports it, as S3
      // does: an object written there since the listing is kept, and judged like a listed one.
      if ((await store.copy(object.pendingKey, object.key)) === 'exists') return keepFinal();
    });
    crashPoint('after-copy');
    await client.query(
      sql`UPDATE housekeeping.archive_objects SET state = 'published', published_at = now() WHERE id = ANY (${ids}::bigint[]) AND state = 'committed'`,
    );
    crashPoint('after-publish');
    await store.deleteMany(objects.map((object) => object.pendingKey));
  };

  /**
   * A batch on its way: written (picked and encoded), then uploaded and read back. The next batch
   * is started while this one uploads: it is picked and encoded meanwhile, and its own upload
   * starts as soon as it is written, so it travels to S3 and back while this one commits.
   */
  interface BatchInFlight {
    request: BatchRequest;
    written: Promise<WrittenBatch>;
    uploaded: Promise<WrittenBatch>;
  }
  /**
   * Pending copies of batches dropped after their upload, being deleted. Every upload waits for
   * them first: a batch picked again may land on the same pending key, and a late delete of the
   * dropped copy would then take the new one, whose rows may be committed by then.
   */
  let removals: Promise<void> = Promise.resolve();
  const start = (request: BatchRequest, after: Promise<unknown> = Promise.resolve()): BatchInFlight => {
    // The removals begun before this batch, taken now: a batch dropped while it is still being
    // read adds its own removal, which waits for its upload; awaiting that would wait for itself.
    const removedBefore = removals;
    const written = after.then(() => write(request));
    const uploaded = written.then(async (batch) => {
      await removedBefore;
      if (batch.picked > 0) await upload(batch.objects);
      return batch;
    });
    written.catch(() => {});
    uploaded.catch(() => {});
    return { request, written, uploaded };
  };
  /** The next batch, started ahead; taken only by the request it was started for. */
  let prefetched: BatchInFlight | undefined;
  /** A batch started ahead and dropped: its picks may still be running. */
  let droppedPicks: Promise<unknown> | undefined;
  const discardPrefetch = () => {
    const ahead = prefetched;
    prefetched = undefined;
    if (!ahead) return;
    droppedPicks = ahead.written.then(
      () => undefined,
      () => undefined,
    );
    // Only the pending keys are kept: the batch itself (its encoded objects) is let go at once.
    const keys = ahead.uploaded.then(
      (batch) => batch.objects.map((object) => object.pendingKey),
      () => [] as string[],
    );
    const previous = removals;
    removals = keys.then(async (pendingKeys) => {
      await previous;
      await store.deleteMany(pendingKeys).catch(() => {});
    });
  };
  const takeBatch = (request: BatchRequest): BatchInFlight => {
    const ahead = prefetched;
    if (ahead && ahead.request.limit === request.limit && sameKey(ahead.request.afterKey, request.afterKey)) {
      prefetched = undefined;
      return ahead;
    }
    // A batch started ahead for another request (the loop asked for fewer rows, or from another
    // key) is dropped; its refusal, if it had one, is not this request's. Its picks end before
    // this request's start (one connection).
    discardPrefetch();
    return start(request, droppedPicks);
  };
  const prefetch = (request: BatchRequest) => {
    prefetched = start(request);
  };
  /** Waits until no pick of a batch started ahead, kept or dropped, is running (whatever it ended with). */
  const prefetchSettled = async () => {
    await Promise.all([prefetched?.written.catch(() => undefined), droppedPicks]);
    droppedPicks = undefined;
  };

  /** The publishing of the last committed batch, still running; its failure fails the next batch (or the run's end). */
  let publishing: Promise<void> | undefined;
  /**
   * Publishes a committed batch in the background. Made here, not in moveBatch, so that what runs
   * on holds only the objects' keys: a closure in moveBatch would keep the batch's encoded objects
   * (everything moveBatch's closures share) until it ended, a third batch in memory beside the one
   * uploading and the one written ahead.
   */
  const publishInBackground = (objects: Array<{ key: string; pendingKey: string; size: number; checksum: string }>, ids: string[]) => {
    publishing = timed('publishMs', () => publish(objects, ids));
    publishing.catch(() => {});
  };
  const publishingDone = async () => {
    const running = publishing;
    publishing = undefined;
    await running;
  };

  return {
    name,
    async reconcile() {
      const counts: Record<string, number> = {};
      const { rows: committed } = await client.query<{ id: string; object_key: string; pending_key: string; size_bytes: string; checksum: string }>(
        sql`SELECT id::text, object_key, pending_key, size_bytes::text, checksum FROM housekeeping.archive_objects
         WHERE source = ${shown} AND bucket = ${s3.bucket} AND state = 'committed' ORDER BY id`,
      );
      if (committed.length > 0) {
        const withPending = [];
        for (const object of committed) {
          if (await store.head(object.pending_key)) {
            withPending.push({ key: object.object_key, pendingKey: object.pending_key, size: Number(object.size_bytes), checksum: object.checksum });
            continue;
          }
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
        await publish(
          withPending,
          committed.map((o) => o.id),
        );
        counts.objectsPublished = committed.length;
        logger.warn('published objects an earlier run committed but did not publish', { objects: committed.map((o) => o.object_key) });
      }
      // What this database's runs left under the table's pending folder is garbage now: no
      // committed manifest row names it (its rows are still in the source), or it was published
      // and not yet deleted. A run folder this database's ledger does not know is another's (two
      // databases sharing a prefix): its copies may hold committed rows, so it is left alone.
      const folder = pendingFolder(s3, source);
      const found = await store.list(folder);
      const runOf = (key: string) => key.slice(folder.length).split('/')[0]!;
      const runIds = [...new Set(found.map(runOf))].filter((id) => /^[0-9a-f-]{36}$/.test(id));
      const { rows: known } = await client.query<{ run_id: string }>(
        sql`SELECT DISTINCT run_id::text FROM housekeeping.job_runs WHERE run_id = ANY (${runIds}::uuid[])`,
      );
      const ours = new Set(known.map((r) => r.run_id));
      const leftovers = found.filter((key) => ours.has(runOf(key)));
      await store.deleteMany(leftovers);
      if (leftovers.length > 0) counts.pendingObjectsRemoved = leftovers.length;
      if (leftovers.length < found.length) {
        const foreign = found.filter((key) => !ours.has(runOf(key)));
        counts.pendingObjectsNotOurs = foreign.length;
        logger.warn('pending objects of runs this database does not know were left alone (another database archiving into this prefix?)', {
          objects: foreign.slice(0, 10),
        });
      }
      return counts;
    },
    async moveBatch(request) {
      // After a held row, the batch's delete skips held rows (and reports them), and the batch is
      // written again without them, over the same key range: however many rows another session
      // keeps, and for however long, the batch moves the others and the run goes on after it.
      let skipHeld = false;
      let redo: HeldRedo | undefined;
      let redos = 0;
      for (let attempt = 1; ; attempt++) {
        const inFlight = takeBatch(redo ? { ...request, ...redo } : request);
        const batch = await inFlight.written;
        if (batch.picked === 0) {
          // Every row of the range was left: the run goes on after it.
          return redo ? { ...EMPTY_BATCH, picked: redo.excluded.length, last_key: redo.through } : { ...EMPTY_BATCH };
        }
        const { objects, picked, firstKey, lastKey } = batch;
        // The next batch (the rows after this one's last key) is picked and encoded while this one
        // travels to S3 and back, then travels itself while this one commits. Until its own turn it
        // is only rows in memory and uncommitted pending copies: dropped, it leaves nothing.
        if (picked === request.limit && !redo) prefetch({ limit: request.limit, afterKey: lastKey! });
        await inFlight.uploaded;
        // The publishing of the batch before (its UPDATE) ends before this one commits: never inside its transaction.
        await publishingDone();
        let ids: string[];
        try {
          ids = await timed('commitMs', () => commit(objects, picked, firstKey!, lastKey!, skipHeld));
        } catch (error) {
          // Only a batch known to have rolled back may lose its pending copies. Any other error may
          // have come from a COMMIT that succeeded on the server (the client saw the connection
          // drop): its copies then hold rows that left the source. Reconcile decides by the manifest.
          if (!(error instanceof BatchConflict)) throw error;
          // The batch is picked again and may end elsewhere: what was read after it no longer follows it.
          discardPrefetch();
          await removePending(objects);
          // The batch written ahead may still be uploading: it is gone before the redo starts, so a
          // run holds two batches at most.
          await removals;
          stats.batchesRedone++;
          redos++;
          if (!skipHeld && error.held) {
            skipHeld = true;
            stats.lockedRowBatches++;
          }
          // A retry that left rows out made progress (its range has that many rows fewer to take):
          // it does not count against the batch's tries.
          if (error.left.length > 0) {
            redo = { through: redo?.through ?? lastKey!, excluded: [...(redo?.excluded ?? []), ...error.left] };
            attempt--;
          }
          if (attempt >= BATCH_ATTEMPTS || redos > BATCH_ATTEMPTS + HELD_RETRIES) {
            throw new ArchiveBatchRefused(
              `a batch of ${shown} was redone ${redos} times, the last time because ${error.message}; nothing of it was moved (batches before it stay moved). The next run tries again`,
            );
          }
          logger.info(
            error.left.length > 0
              ? 'archive batch redone without the rows it could not take'
              : 'archive batch redone: its rows changed while it was written',
            {
              attempt,
              reason: error.message,
              ...(error.left.length > 0 ? { rowsLeft: error.left.length } : {}),
            },
          );
          continue;
        }
        stats.objectsWritten += objects.length;
        stats.bytesWritten += objects.reduce((n, o) => n + o.bytes.byteLength, 0);
        // Its rows left the source with the commit; publishing runs on while the next batch is
        // written. A run that dies first leaves them committed, and the next run publishes them.
        publishInBackground(
          objects.map((o) => ({ key: o.key, pendingKey: o.pendingKey, size: o.bytes.byteLength, checksum: o.checksum })),
          ids,
        );
        // A batch written again without rows it left ends where it first ended: the rows it left
        // are not picked again by this run.
        return {
          picked,
          moved: picked,
          inserted: picked,
          identical: 0,
          altered: 0,
          collisions: [],
          collision_count: 0,
          last_key: redo?.through ?? lastKey ?? null,
        };
      }
    },
    async finish() {
      discardPrefetch();
      await prefetchSettled();
      const session = await reader?.catch(() => undefined);
      await session?.end().catch(() => {});
      await removals;
      await publishingDone();
    },
    counts: () => ({ ...stats, ...Object.fromEntries(Object.entries(stageMs).map(([k, v]) => [k, Math.round(v)])) }),
  };
}
