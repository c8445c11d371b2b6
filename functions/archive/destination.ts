import { HousekeeperError } from '../../shared/errors';
import type { BatchResult } from './sql';

/**
 * Where an archive target's rows go. The batch loop (apply.ts) is the same for every destination:
 * it asks for one batch at a time after the last key moved and stops on the budget, the row cap
 * or when nothing expired is left. A destination does four things:
 *
 * - prepare: refuse, before any row moves, whatever it cannot hold exactly (done when it is made);
 * - reconcile: finish or undo what a run that died left behind, before the first batch;
 * - write a batch: the picked rows into the destination, invisibly to its readers;
 * - commit with the delete: the rows leave the source in the same transaction that makes the
 *   written copy count, so every row ends in exactly one place whenever the process dies.
 *
 * The table destination (apply.ts) does the last two in one statement; the S3 destination
 * (s3/apply.ts) writes a pending object, reads it back, commits a manifest row with the delete,
 * then publishes.
 */
export interface ArchiveDestination {
  /** For logs and errors: `archive.orders`, `s3://bucket/prefix/table=public.orders`. */
  readonly name: string;
  /** Counts of what was reconciled (published, garbage removed); empty when there was nothing to do. */
  reconcile(): Promise<Record<string, number>>;
  /** Moves up to `limit` expired rows with keys after `afterKey` (key order); one transaction. */
  moveBatch(request: BatchRequest): Promise<BatchResult>;
  /**
   * Waits for what the batches left running (the S3 destination publishes a batch while the next
   * is written); throws what that failed with. Called once, after the last batch.
   */
  finish?(): Promise<void>;
  /** Counts the destination adds to the run summary (objects written, bytes...). */
  counts(): Record<string, number>;
}

export interface BatchRequest {
  limit: number;
  afterKey?: string[];
}

/** A batch found something that forbids moving its rows; it was rolled back whole. */
export class ArchiveBatchRefused extends HousekeeperError {}

/** What a batch that found nothing to pick reports. */
export const EMPTY_BATCH: Readonly<BatchResult> = {
  picked: 0,
  moved: 0,
  inserted: 0,
  identical: 0,
  altered: 0,
  collisions: [],
  collision_count: 0,
  last_key: null,
};
