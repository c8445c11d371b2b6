import { DateTime, IANAZone } from 'luxon';
import { parseDuration, subtractDuration } from '../../shared/calendar';
import { ConfigError } from '../../shared/errors';
import type { StopReason } from '../../shared/job';
import type { TimeColumnType } from '../../shared/postgres';

/**
 * Pure: what an archive run moves and when it stops. The cutoff comes from the database clock
 * (passed in), the policy's retention and zone, and the age columns' types; the batch plan from
 * what the run has moved so far and its budget.
 */

export interface ArchiveCutoff {
  /** The instant a timestamptz age is compared with, in the policy zone. */
  instant: DateTime;
  /**
   * The wall-clock time in the policy zone that timestamp and date ages are compared with, held
   * as a UTC DateTime whose fields are that wall clock. It may be a time the zone skipped.
   */
  wallClock: DateTime;
}

const MINUTE_MS = 60_000;
const HOUR_MS = 60 * MINUTE_MS;
const DAY_MS = 24 * HOUR_MS;

/**
 * The earliest instant whose wall clock in `zone` reads `wall`; if the zone skipped that time (a
 * DST gap), the first instant after the gap. Luxon instead moves a skipped time forward by the
 * gap's length (02:30 becomes 03:30), which would make the cutoff later than every row stamped
 * 03:00–03:30 and retire them a little too young; and it picks the later of a repeated time.
 * Both choices here keep every row that is younger than the retention by any reading.
 */
function resolveWallClock(wall: DateTime, zone: IANAZone): DateTime {
  const w = wall.toMillis();
  const local = (t: number) => t + zone.offset(t) * MINUTE_MS;
  // No zone changes its offset twice within two days, so these are every offset w can have.
  const offsets = [...new Set([zone.offset(w - DAY_MS), zone.offset(w + DAY_MS)])];
  const exact = offsets.map((o) => w - o * MINUTE_MS).filter((t) => local(t) === w);
  if (exact.length > 0) return DateTime.fromMillis(Math.min(...exact), { zone });
  // In a gap: local time jumps over w somewhere between these two, where the offset grows.
  let lo = w - Math.max(...offsets) * MINUTE_MS;
  let hi = w - Math.min(...offsets) * MINUTE_MS;
  if (!(local(lo) < w && local(hi) >= w)) return DateTime.fromMillis(w, { zone: 'UTC' }).setZone(zone, { keepLocalTime: true });
  while (hi - lo > 1) {
    const mid = Math.floor((lo + hi) / 2);
    if (local(mid) >= w) hi = mid;
    else lo = mid;
  }
  return DateTime.fromMillis(hi, { zone });
}

/**
 * The archive cutoff: database now minus the retention, in calendar terms in `timeZone`.
 * Hours are elapsed time. Days, weeks, months and years are calendar arithmetic on the zone's
 * wall clock, the day clamped (13 months before 2027-03-31 is 2026-02-28; 1 day before a
 * 25-hour day is the same wall time), resolved to an instant as `resolveWallClock` says.
 * Only instants and the zone enter the arithmetic, never the process's own zone.
 */
export function archiveCutoff(dbNow: Date, retention: string, timeZone: string): ArchiveCutoff {
  const duration = parseDuration(retention);
  if (!duration) throw new ConfigError('retention', `cannot parse ${JSON.stringify(retention)}`);
  const zone = IANAZone.create(timeZone);
  if (!zone.isValid) throw new ConfigError('timeZone', `${JSON.stringify(timeZone)} is not an IANA time zone`);
  const now = dbNow.getTime();
  // A wall clock is held as a UTC DateTime with its fields: in UTC every wall time exists once,
  // so calendar arithmetic on it is exact.
  const wallOf = (t: number) => DateTime.fromMillis(t + zone.offset(t) * MINUTE_MS, { zone: 'UTC' });
  if (duration.unit === 'hour') {
    const instant = now - duration.amount * HOUR_MS;
    return { instant: DateTime.fromMillis(instant, { zone }), wallClock: wallOf(instant) };
  }
  const wallClock = subtractDuration(wallOf(now), duration);
  return { instant: resolveWallClock(wallClock, zone), wallClock };
}

/** The cutoff as a literal of the column's own type; a zone-less column compares on wall-clock time. */
export function cutoffLiteral(cutoff: ArchiveCutoff, columnType: TimeColumnType): string {
  if (columnType === 'date') return cutoff.wallClock.toFormat('yyyy-MM-dd');
  if (columnType === 'timestamp') return cutoff.wallClock.toFormat('yyyy-MM-dd HH:mm:ss.SSS');
  return cutoff.instant.toFormat('yyyy-MM-dd HH:mm:ss.SSSZZ');
}

/** The cutoff as literals of the age columns' own types (a fallback column may have another type). */
export interface ArchiveCutoffs {
  primary: string;
  fallback?: string;
}

export function planCutoffs(
  dbNow: Date,
  policy: { retention: string; timeZone: string },
  ageTypes: { primary: TimeColumnType; fallback?: TimeColumnType },
): ArchiveCutoffs {
  const cutoff = archiveCutoff(dbNow, policy.retention, policy.timeZone);
  return {
    primary: cutoffLiteral(cutoff, ageTypes.primary),
    ...(ageTypes.fallback ? { fallback: cutoffLiteral(cutoff, ageTypes.fallback) } : {}),
  };
}

/** A batch is never started with less time than this left, however quick the batches so far. */
const MIN_BATCH_ALLOWANCE_MS = 1_000;

/**
 * Before each batch: stop, and why, or pick up to `limit` rows. A batch starts only if one as
 * slow as the slowest so far (twice over, at least a second) and the pause after it still fit in
 * the budget.
 */
export function nextBatch(
  progress: { moved: number; longestBatchMs: number },
  policy: { batchSize: number; maxRowsPerRun?: number; pauseMs: number },
  budget: { allows(ms: number): boolean },
): { stop: StopReason } | { limit: number } {
  if (policy.maxRowsPerRun !== undefined && progress.moved >= policy.maxRowsPerRun) return { stop: 'max rows reached' };
  if (!budget.allows(Math.max(MIN_BATCH_ALLOWANCE_MS, progress.longestBatchMs * 2) + policy.pauseMs)) return { stop: 'time budget nearly spent' };
  return { limit: Math.min(policy.batchSize, (policy.maxRowsPerRun ?? Number.POSITIVE_INFINITY) - progress.moved) };
}
