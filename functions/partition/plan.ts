import { DateTime } from 'luxon';
import { CalendarError, parseDuration, SHORTEST_PERIOD_MS, subtractDuration, type ZoneCalendar, zoneCalendar } from '../../shared/calendar';
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
  /** The uncovered part of a period an existing, non-aligned partition covers in part; named by its exact lower bound. */
  fill: boolean;
  /** Starts before the current period: a gap in the past, which inserts today do not need. */
  past: boolean;
}

export interface PlannedRetirement {
  partition: QualifiedName;
  oid: number;
  to: number | null;
  mode: 'drop' | 'detach';
  /** DETACH ... CONCURRENTLY is only allowed when the parent has no DEFAULT partition. */
  concurrently: boolean;
  /** A previous DETACH CONCURRENTLY was interrupted: FINALIZE it first. */
  finalizePending: boolean;
}

/** A retirement an earlier run recorded and did not finish, and what this run does about it. */
export interface UnfinishedRetirement {
  partition: QualifiedName;
  oid: number;
  mode: 'drop' | 'detach';
  /** drop: the detached table is still there, finish the drop. forget: nothing left to do, delete the record. */
  action: 'drop' | 'forget';
  /** Why, for the log (and a warning when the record is dropped without finishing). */
  reason: string;
  warn: boolean;
}

export interface PartitionPlan {
  create: PlannedPartition[];
  retire: PlannedRetirement[];
  /** Done before anything else: the interrupted retirements of earlier runs. */
  finish: UnfinishedRetirement[];
  warnings: string[];
  /** Current or future ranges the plan cannot create: each fails the target. */
  failures: string[];
  /** Key ms of the boundary below which partitions are retired, or null without retention. */
  cutoff: number | null;
  currentFrom: number;
  /** The database clock in key ms. */
  now: number;
  /** The boundaries of the current period and the `premake` after it (premake + 2 instants). */
  periods: number[];
}

/**
 * Arithmetic happens in a "key zone": the policy's zone for timestamptz; for timestamp and date
 * (which carry no zone) the wall clock itself, represented as UTC so no DST jump can occur in it.
 */
function keyZone(keyType: PartitionKeyType, timeZone: string): string {
  return keyType === 'timestamptz' ? timeZone : 'UTC';
}

/** The database clock in key ms: the instant for timestamptz, the wall clock in `timeZone` (as UTC) otherwise. */
function nowInKeyMs(dbNow: Date, keyType: PartitionKeyType, timeZone: string): number {
  if (keyType === 'timestamptz') return dbNow.getTime();
  return DateTime.fromJSDate(dbNow, { zone: timeZone }).setZone('UTC', { keepLocalTime: true }).toMillis();
}

const pad = (value: number, width = 2) => String(value).padStart(width, '0');

/** ISO week-year and week of a wall-clock date (weeks start on Monday; week 1 holds the year's first Thursday). */
function isoWeek(wall: Date): { year: number; week: number } {
  const day = Date.UTC(wall.getUTCFullYear(), wall.getUTCMonth(), wall.getUTCDate());
  const thursday = new Date(day + (3 - ((wall.getUTCDay() + 6) % 7)) * 86_400_000);
  const year = thursday.getUTCFullYear();
  const week = 1 + Math.floor((thursday.getTime() - Date.UTC(year, 0, 1)) / (7 * 86_400_000));
  return { year, week };
}

/**
 * Partition names: `<parent>_p<suffix>`, the suffix from the lower bound in the policy's zone:
 *   hour    p2026_11_23_1400  (UTC for timestamptz, so the repeated hour of a DST fall-back stays unique)
 *   day     p2026_11_23
 *   week    p2026w48          (ISO week-year and week; weeks start on Monday)
 *   month   p2026_11
 *   quarter p2026q4
 *   year    p2026
 * `fromMs` is the lower bound in key ms, `wallMs` its local date and time (see ZoneCalendar.wall).
 */
function partitionSuffix(fromMs: number, wallMs: number, interval: PartitionInterval): string {
  const wall = new Date(wallMs);
  const [year, month, date] = [wall.getUTCFullYear(), wall.getUTCMonth() + 1, wall.getUTCDate()];
  switch (interval) {
    case 'hour': {
      const utc = new Date(fromMs);
      return `p${pad(utc.getUTCFullYear(), 4)}_${pad(utc.getUTCMonth() + 1)}_${pad(utc.getUTCDate())}_${pad(utc.getUTCHours())}${pad(utc.getUTCMinutes())}`;
    }
    case 'day':
      return `p${pad(year, 4)}_${pad(month)}_${pad(date)}`;
    case 'week': {
      const iso = isoWeek(wall);
      return `p${pad(iso.year, 4)}w${pad(iso.week)}`;
    }
    case 'month':
      return `p${pad(year, 4)}_${pad(month)}`;
    case 'quarter':
      return `p${pad(year, 4)}q${Math.ceil(month / 3)}`;
    case 'year':
      return `p${pad(year, 4)}`;
  }
}

/**
 * The suffix of a partition that fills part of a period (`p20261127_000000`): the exact lower
 * bound in key ms (UTC for timestamptz), to the millisecond when it has one. No regular suffix
 * has eight digits after the `p`, so the two schemes never collide.
 */
function fillSuffix(fromKeyMs: number): string {
  const at = new Date(fromKeyMs);
  const ms = at.getUTCMilliseconds();
  return (
    `p${pad(at.getUTCFullYear(), 4)}${pad(at.getUTCMonth() + 1)}${pad(at.getUTCDate())}_` +
    `${pad(at.getUTCHours())}${pad(at.getUTCMinutes())}${pad(at.getUTCSeconds())}${ms === 0 ? '' : pad(ms, 3)}`
  );
}

/** A bound as a literal of the key type; timestamptz with the zone's offset, or in UTC when that offset has seconds (local mean time). */
function boundLiteral(ms: number, offsetMs: number, keyType: PartitionKeyType): string {
  const withSeconds = offsetMs % 60_000 !== 0;
  const offset = keyType === 'timestamptz' && !withSeconds ? offsetMs : 0;
  const wall = new Date(ms + offset);
  const date = `${pad(wall.getUTCFullYear(), 4)}-${pad(wall.getUTCMonth() + 1)}-${pad(wall.getUTCDate())}`;
  if (keyType === 'date') return date;
  const millis = wall.getUTCMilliseconds();
  const time = `${pad(wall.getUTCHours())}:${pad(wall.getUTCMinutes())}:${pad(wall.getUTCSeconds())}${millis === 0 ? '' : `.${pad(millis, 3)}`}`;
  if (keyType === 'timestamp') return `${date} ${time}`;
  const minutes = Math.abs(offset) / 60_000;
  return `${date} ${time}${offset < 0 ? '-' : '+'}${pad(Math.floor(minutes / 60))}:${pad(minutes % 60)}`;
}

const lower = (p: ExistingPartition) => p.from ?? Number.NEGATIVE_INFINITY;
const upper = (p: ExistingPartition) => p.to ?? Number.POSITIVE_INFINITY;

function retentionCutoff(policy: PartitionTargetPolicy, calendar: ZoneCalendar, now: number, current: number): number | null {
  const retention = policy.retention;
  if (!retention) return null;
  if (retention.keep !== undefined) return calendar.add(current, -retention.keep);
  const duration = parseDuration(retention.duration ?? '');
  if (!duration) throw new ConfigError('retention.duration', `cannot parse ${JSON.stringify(retention.duration)}`);
  return subtractDuration(calendar.dateTime(now), duration).toMillis();
}

/**
 * What an earlier run recorded and did not finish. Only a standalone table with the recorded oid
 * is dropped: a name reused by another table, or a table attached again, is left alone.
 */
function unfinishedRetirements(catalog: PartitionCatalog, retire: PlannedRetirement[]): UnfinishedRetirement[] {
  const retiring = new Set(retire.map((r) => r.oid));
  const out: UnfinishedRetirement[] = [];
  for (const recorded of catalog.unfinishedRetirements) {
    const shown = displayName(recorded.partition);
    const base = { partition: recorded.partition, oid: recorded.oid, mode: recorded.mode };
    if (recorded.currentOid === null) {
      out.push({ ...base, action: 'forget', reason: `${shown} no longer exists`, warn: false });
    } else if (recorded.currentOid !== recorded.oid) {
      out.push({
        ...base,
        action: 'forget',
        reason: `${shown} is now a different table (oid ${recorded.currentOid}, recorded ${recorded.oid}); left alone`,
        warn: true,
      });
    } else if (retiring.has(recorded.oid)) {
      // Still attached (or pending detach) and due: this run's own retirement records and finishes it.
    } else if (recorded.attachedTo !== null) {
      out.push({ ...base, action: 'forget', reason: `${shown} is attached to a table again and not due for retirement; left alone`, warn: true });
    } else if (recorded.mode === 'drop') {
      out.push({ ...base, action: 'drop', reason: `${shown} was detached by a run that did not finish dropping it`, warn: false });
    } else {
      out.push({ ...base, action: 'forget', reason: `${shown} was detached`, warn: false });
    }
  }
  return out;
}

/**
 * Pure: what the partition job would do to `catalog` at database time `dbNow`. Creates every
 * missing period from the oldest existing partition (or the current period) through current +
 * premake, skipping periods already expired; where an existing partition covers a period only in
 * part, the uncovered pieces get partitions of their own. Retires partitions whose upper bound is
 * at or before the retention cutoff, never DEFAULT.
 */
export function planPartitions(catalog: PartitionCatalog, policy: PartitionTargetPolicy, dbNow: Date): PartitionPlan {
  const parentName = displayName(catalog.parent);
  if (policy.interval === 'hour' && catalog.keyType === 'date') {
    throw new ConfigError('interval', `hour partitions need a timestamp key, but ${parentName}.${catalog.keyColumn} is a date`);
  }
  const zone = keyZone(catalog.keyType, policy.timeZone);
  try {
    return plan(catalog, policy, dbNow, zoneCalendar(zone, policy.interval));
  } catch (error) {
    if (!(error instanceof CalendarError)) throw error;
    throw new CalendarError(`planning ${parentName} (interval ${policy.interval}, zone ${policy.timeZone}): ${error.message}`);
  }
}

function plan(catalog: PartitionCatalog, policy: PartitionTargetPolicy, dbNow: Date, calendar: ZoneCalendar): PartitionPlan {
  const parentName = displayName(catalog.parent);
  const iso = (ms: number) => boundLiteral(ms, calendar.offset(ms), catalog.keyType);
  // ZoneCalendar promises strictly later boundaries; checked here too, since a step that stands
  // still would not loop forever below (the bound stops it) but silently shorten the plan.
  const next = (ms: number) => {
    const following = calendar.next(ms);
    if (!(following > ms)) throw new CalendarError(`the ${policy.interval} boundary after ${iso(ms)} is not later than it`);
    return following;
  };
  const now = nowInKeyMs(dbNow, catalog.keyType, policy.timeZone);
  const current = calendar.floor(now);
  const periods = [current];
  for (let i = 0; i <= policy.premake; i++) periods.push(next(periods[periods.length - 1]!));
  const horizon = periods[periods.length - 1]!;
  const cutoff = retentionCutoff(policy, calendar, now, current);
  const warnings: string[] = [];
  const failures: string[] = [];

  const live = catalog.partitions.filter((p) => !p.detachPending);
  const oldestFinite = live.find((p) => p.from !== null);
  let start = current;
  if (oldestFinite && oldestFinite.from! < current) start = calendar.floor(oldestFinite.from!);
  if (cutoff !== null && start < cutoff) start = calendar.floor(cutoff);

  const future: PlannedPartition[] = [];
  const past: PlannedPartition[] = [];
  const planned = new Set<string>();
  const reportedOverlaps = new Set<string>();
  const addPiece = (from: number, to: number, fill: boolean) => {
    const name = `${catalog.parent.name}_${fill ? fillSuffix(from) : partitionSuffix(from, calendar.wall(from), policy.interval)}`;
    const range = `[${iso(from)}, ${iso(to)})`;
    if (Buffer.byteLength(name, 'utf8') > MAX_IDENTIFIER_BYTES) {
      if (!fill) throw new ConfigError('table', `partition name ${name} is over ${MAX_IDENTIFIER_BYTES} bytes; Postgres would truncate it`);
      const message = `cannot fill ${range} of ${parentName}: its name ${name} would be over ${MAX_IDENTIFIER_BYTES} bytes; create a partition for it by hand`;
      (from < current ? warnings : failures).push(message);
      return;
    }
    if (catalog.takenNames.has(name)) {
      throw new CatalogError(
        `${catalog.parent.schema}.${name}`,
        `cannot create partition ${catalog.parent.schema}.${name} for ${range}: ` +
          `a relation with that name already exists and is not a partition of ${parentName} covering that range; rename or drop it`,
      );
    }
    // Two periods never share a name; if a zone rule ever made them, refuse rather than plan a collision.
    if (planned.has(name)) throw new CalendarError(`two ranges would both be named ${name} (the second ${range})`);
    planned.add(name);
    const entry: PlannedPartition = {
      name: { schema: catalog.parent.schema, name },
      from,
      to,
      fromLiteral: boundLiteral(from, calendar.offset(from), catalog.keyType),
      toLiteral: boundLiteral(to, calendar.offset(to), catalog.keyType),
      fill,
      past: from < current,
    };
    (entry.past ? past : future).push(entry);
  };

  // Every step moves strictly forward (ZoneCalendar guarantees it); the bound turns any
  // surprise into an error naming the target instead of a run that never returns.
  const maxSteps = Math.ceil((horizon - start) / SHORTEST_PERIOD_MS[policy.interval]) + 16;
  let cursor = 0; // live partitions are sorted and disjoint, so one forward sweep finds overlaps
  let steps = 0;
  for (let slot = start; slot < horizon; ) {
    if (++steps > maxSteps) {
      throw new CalendarError(`no ${policy.interval} boundary reached ${iso(horizon)} within ${maxSteps} steps from ${iso(start)}`);
    }
    const end = next(slot);
    if (cutoff === null || end > cutoff) {
      while (cursor < live.length && upper(live[cursor]!) <= slot) cursor++;
      let covered = slot;
      let whole = true;
      for (let i = cursor; i < live.length && lower(live[i]!) < end; i++) {
        const existing = live[i]!;
        whole = false;
        const exact = existing.from === slot && existing.to === end;
        const key = displayName(existing.name);
        if (!exact && !reportedOverlaps.has(key)) {
          reportedOverlaps.add(key);
          warnings.push(
            `${key} covers a range not aligned to ${policy.interval} boundaries in ${policy.timeZone}; ` +
              'the parts of the periods it overlaps that no partition covers get partitions of their own',
          );
        }
        if (lower(existing) > covered) addPiece(covered, lower(existing), true);
        covered = Math.max(covered, upper(existing));
      }
      if (whole) addPiece(slot, end, false);
      else if (covered < end) addPiece(covered, end, true);
    }
    slot = end;
  }

  const retire: PlannedRetirement[] = [];
  for (const partition of catalog.partitions) {
    const expired = cutoff !== null && partition.to !== null && partition.to <= cutoff;
    // An interrupted DETACH CONCURRENTLY blocks further detaches on the parent: always finish it.
    if (!expired && !partition.detachPending) continue;
    retire.push({
      partition: partition.name,
      oid: partition.oid,
      to: partition.to,
      mode: expired ? (policy.retention?.mode ?? 'drop') : 'detach',
      concurrently: catalog.defaultPartition === null,
      finalizePending: partition.detachPending,
    });
  }

  // A pending detach makes every other detach on the parent fail until it is finalized.
  retire.sort((a, b) => Number(b.finalizePending) - Number(a.finalizePending));

  const finish = unfinishedRetirements(catalog, retire);
  for (const unfinished of finish) if (unfinished.warn) warnings.push(`recorded retirement: ${unfinished.reason}`);

  return {
    // The current and future partitions first: they are what keeps inserts working if the
    // budget runs out during a long catch-up. Then past gaps, newest first.
    create: [...future, ...past.reverse()],
    retire,
    finish,
    warnings,
    failures,
    cutoff,
    currentFrom: current,
    now,
    periods,
  };
}

/**
 * How many whole periods after the current one inserts can use without a gap: the coverage of
 * `covered` (attached partitions, DEFAULT excluded) that is contiguous from now, counted in the
 * policy's periods up to premake. 0 when now itself has no partition.
 */
export function partitionsAhead(plan: PartitionPlan, covered: Array<{ from: number | null; to: number | null }>): number {
  const ranges = covered.map((r) => [r.from ?? Number.NEGATIVE_INFINITY, r.to ?? Number.POSITIVE_INFINITY] as const).sort((a, b) => a[0] - b[0]);
  let end: number | undefined;
  for (const [from, to] of ranges) {
    if (end === undefined) {
      if (from <= plan.now && plan.now < to) end = to;
    } else if (from <= end) end = Math.max(end, to);
    else break;
  }
  if (end === undefined) return 0;
  let ahead = 0;
  for (let k = 2; k < plan.periods.length && plan.periods[k]! <= end; k++) ahead++;
  return ahead;
}

/** A key-ms value as the SQL literal of the key type (for messages and dry-run output). */
export function describeKeyMs(ms: number | null, keyType: PartitionKeyType, timeZone: string): string {
  if (ms === null) return 'unbounded';
  return boundLiteral(ms, zoneCalendar(keyZone(keyType, timeZone), 'day').offset(ms), keyType);
}
