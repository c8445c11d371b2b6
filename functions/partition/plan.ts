import { DateTime } from 'luxon';
import { addUnits, floorTo, parseDuration, subtractDuration } from '../../shared/calendar';
import { CatalogError, ConfigError } from '../../shared/errors';
import { displayName, MAX_IDENTIFIER_BYTES, type QualifiedName } from '../../shared/identifiers';
import type { ExistingPartition, PartitionCatalog, PartitionKeyType } from './catalog';
import type { PartitionInterval, PartitionTargetPolicy } from './policy';

export interface PlannedPartition {
  name: QualifiedName;
  /** Key milliseconds (see catalog.ts). */
  from: number;
  to: number;
  /** SQL literal text for FOR VALUES FROM (...) TO (...), in the key's own type. */
  fromLiteral: string;
  toLiteral: string;
}

export interface PlannedRetirement {
  partition: QualifiedName;
  to: number | null;
  mode: 'drop' | 'detach';
  /** DETACH ... CONCURRENTLY is only allowed when the parent has no DEFAULT partition. */
  concurrently: boolean;
  /** A previous DETACH CONCURRENTLY was interrupted: FINALIZE it first. */
  finalizePending: boolean;
}

export interface PartitionPlan {
  create: PlannedPartition[];
  retire: PlannedRetirement[];
  warnings: string[];
  /** Key ms of the boundary below which partitions are retired, or null without retention. */
  cutoff: number | null;
  currentFrom: number;
  /** Existing partitions that start after the current one: how many intervals of inserts are safe today. */
  aheadBefore: number;
  /** Planned partitions that start after the current one. */
  aheadPlanned: Set<string>;
}

/**
 * Arithmetic happens in a "key zone": the policy's zone for timestamptz; for timestamp and date
 * (which carry no zone) the wall clock itself, represented as UTC so no DST jump can occur in it.
 */
function keyZone(keyType: PartitionKeyType, timeZone: string): string {
  return keyType === 'timestamptz' ? timeZone : 'UTC';
}

function nowInKeyZone(dbNow: Date, keyType: PartitionKeyType, timeZone: string): DateTime {
  const local = DateTime.fromJSDate(dbNow, { zone: timeZone });
  return keyType === 'timestamptz' ? local : local.setZone('UTC', { keepLocalTime: true });
}

/**
 * Partition names: `<parent>_p<suffix>`, the suffix from the lower bound in the policy's zone:
 *   hour    p2026_11_23_1400  (UTC for timestamptz, so the repeated hour of a DST fall-back stays unique)
 *   day     p2026_11_23
 *   week    p2026w48          (ISO week-year and week; weeks start on Monday)
 *   month   p2026_11
 *   quarter p2026q4
 *   year    p2026
 */
export function partitionSuffix(from: DateTime, interval: PartitionInterval): string {
  switch (interval) {
    case 'hour':
      return from.toUTC().toFormat("'p'yyyy_MM_dd_HHmm");
    case 'day':
      return from.toFormat("'p'yyyy_MM_dd");
    case 'week':
      return from.toFormat("'p'kkkk'w'WW");
    case 'month':
      return from.toFormat("'p'yyyy_MM");
    case 'quarter':
      return from.toFormat("'p'yyyy'q'q");
    case 'year':
      return from.toFormat("'p'yyyy");
  }
}

function boundLiteral(at: DateTime, keyType: PartitionKeyType): string {
  if (keyType === 'date') return at.toFormat('yyyy-MM-dd');
  if (keyType === 'timestamp') return at.toFormat('yyyy-MM-dd HH:mm:ss');
  return at.toFormat('yyyy-MM-dd HH:mm:ssZZ');
}

function retentionCutoff(policy: PartitionTargetPolicy, now: DateTime, current: DateTime): DateTime | null {
  const retention = policy.retention;
  if (!retention) return null;
  if (retention.keep !== undefined) return addUnits(current, policy.interval, -retention.keep);
  const duration = parseDuration(retention.duration ?? '');
  if (!duration) throw new ConfigError('retention.duration', `cannot parse ${JSON.stringify(retention.duration)}`);
  return subtractDuration(now, duration);
}

const lower = (p: ExistingPartition) => p.from ?? Number.NEGATIVE_INFINITY;
const upper = (p: ExistingPartition) => p.to ?? Number.POSITIVE_INFINITY;

/**
 * Pure: what the partition job would do to `catalog` at database time `dbNow`. Creates every
 * missing slot from the oldest existing partition (or the current slot) through current +
 * premake, skipping slots already expired and slots an existing partition overlaps; retires
 * partitions whose upper bound is at or before the retention cutoff, never DEFAULT.
 */
export function planPartitions(catalog: PartitionCatalog, policy: PartitionTargetPolicy, dbNow: Date): PartitionPlan {
  const parentName = displayName(catalog.parent);
  if (policy.interval === 'hour' && catalog.keyType === 'date') {
    throw new ConfigError('interval', `hour partitions need a timestamp key, but ${parentName}.${catalog.keyColumn} is a date`);
  }
  const zone = keyZone(catalog.keyType, policy.timeZone);
  const at = (ms: number) => DateTime.fromMillis(ms, { zone });
  const now = nowInKeyZone(dbNow, catalog.keyType, policy.timeZone);
  const current = floorTo(now, policy.interval);
  const horizon = addUnits(current, policy.interval, policy.premake + 1);
  const cutoff = retentionCutoff(policy, now, current);
  const cutoffMs = cutoff?.toMillis() ?? null;
  const warnings: string[] = [];

  const live = catalog.partitions.filter((p) => !p.detachPending);
  const oldestFinite = live.find((p) => p.from !== null);
  let slot = current;
  if (oldestFinite && oldestFinite.from! < current.toMillis()) slot = floorTo(at(oldestFinite.from!), policy.interval);
  if (cutoff && slot < cutoff) slot = floorTo(cutoff, policy.interval);

  const future: PlannedPartition[] = [];
  const past: PlannedPartition[] = [];
  const reportedOverlaps = new Set<string>();
  let cursor = 0; // live partitions are sorted and disjoint, so one forward sweep finds overlaps
  for (; slot < horizon; slot = addUnits(slot, policy.interval, 1)) {
    const next = addUnits(slot, policy.interval, 1);
    const from = slot.toMillis();
    const to = next.toMillis();
    if (cutoffMs !== null && to <= cutoffMs) continue;
    while (cursor < live.length && upper(live[cursor]!) <= from) cursor++;
    const overlapping = cursor < live.length && lower(live[cursor]!) < to ? live[cursor]! : undefined;
    if (overlapping) {
      const exact = overlapping.from === from && overlapping.to === to;
      const key = displayName(overlapping.name);
      if (!exact && !reportedOverlaps.has(key)) {
        reportedOverlaps.add(key);
        warnings.push(`${key} covers a range not aligned to ${policy.interval} boundaries in ${policy.timeZone}; slots it overlaps are left to it`);
      }
      continue;
    }
    const name = `${catalog.parent.name}_${partitionSuffix(slot, policy.interval)}`;
    if (Buffer.byteLength(name, 'utf8') > MAX_IDENTIFIER_BYTES) {
      throw new ConfigError('table', `partition name ${name} is over ${MAX_IDENTIFIER_BYTES} bytes; Postgres would truncate it`);
    }
    if (catalog.takenNames.has(name)) {
      throw new CatalogError(
        `${catalog.parent.schema}.${name}`,
        `cannot create partition ${catalog.parent.schema}.${name} for [${boundLiteral(slot, catalog.keyType)}, ${boundLiteral(next, catalog.keyType)}): ` +
          `a relation with that name already exists and is not a partition of ${parentName} covering that range; rename or drop it`,
      );
    }
    const planned = {
      name: { schema: catalog.parent.schema, name },
      from,
      to,
      fromLiteral: boundLiteral(slot, catalog.keyType),
      toLiteral: boundLiteral(next, catalog.keyType),
    };
    (from >= current.toMillis() ? future : past).push(planned);
  }

  const retire: PlannedRetirement[] = [];
  for (const partition of catalog.partitions) {
    const expired = cutoffMs !== null && partition.to !== null && partition.to <= cutoffMs;
    // An interrupted DETACH CONCURRENTLY blocks further detaches on the parent: always finish it.
    if (!expired && !partition.detachPending) continue;
    retire.push({
      partition: partition.name,
      to: partition.to,
      mode: expired ? (policy.retention?.mode ?? 'drop') : 'detach',
      concurrently: catalog.defaultPartition === null,
      finalizePending: partition.detachPending,
    });
  }

  // A pending detach makes every other detach on the parent fail until it is finalized.
  retire.sort((a, b) => Number(b.finalizePending) - Number(a.finalizePending));

  const nextFrom = addUnits(current, policy.interval, 1).toMillis();
  return {
    // The current and future partitions first: they are what keeps inserts working if the
    // budget runs out during a long catch-up. Then past gaps, newest first.
    create: [...future, ...past.reverse()],
    retire,
    warnings,
    cutoff: cutoffMs,
    currentFrom: current.toMillis(),
    aheadBefore: live.filter((p) => lower(p) >= nextFrom).length,
    aheadPlanned: new Set(future.filter((p) => p.from >= nextFrom).map((p) => displayName(p.name))),
  };
}

/** A key-ms value as the SQL literal of the key type (for messages and dry-run output). */
export function describeKeyMs(ms: number | null, keyType: PartitionKeyType, timeZone: string): string {
  if (ms === null) return 'unbounded';
  return boundLiteral(DateTime.fromMillis(ms, { zone: keyZone(keyType, timeZone) }), keyType);
}
