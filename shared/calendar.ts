import { DateTime, type DurationLikeObject, FixedOffsetZone, IANAZone, type Zone } from 'luxon';
import { HousekeeperError } from './errors';

/** Calendar arithmetic in a time zone. Months clamp the day (Mar 31 − 1 month = last day of Feb). */

export type CalendarUnit = 'hour' | 'day' | 'week' | 'month' | 'quarter' | 'year';
type DurationUnit = 'hour' | 'day' | 'week' | 'month' | 'year';

export interface CalendarDuration {
  amount: number;
  unit: DurationUnit;
}

/** The calendar could not find the next or previous boundary: a bug or a zone rule we do not model, never a silent loop. */
export class CalendarError extends HousekeeperError {}

const DURATION = /^\s*(\d+)\s*(hour|day|week|month|year)s?\s*$/i;

export function parseDuration(text: string): CalendarDuration | undefined {
  const match = DURATION.exec(text);
  if (!match) return undefined;
  const amount = Number(match[1]);
  if (!Number.isSafeInteger(amount) || amount < 1) return undefined;
  return { amount, unit: match[2]!.toLowerCase() as DurationUnit };
}

function durationObject(unit: CalendarUnit | DurationUnit, amount: number): DurationLikeObject {
  return { [`${unit}s`]: amount };
}

export function subtractDuration(at: DateTime, duration: CalendarDuration): DateTime {
  return at.minus(durationObject(duration.unit, duration.amount));
}

const HOUR = 3_600_000;
const DAY = 86_400_000;
/** UTC offsets stay within ±16 h (local mean times reached ±15:56), so any instant whose clock reads `wall` is within 16 h of it. */
const REACH = 16 * HOUR;

/** Shortest length a period can plausibly have (a 30-minute hour at Lord Howe's DST change, a 23-hour day); bounds loops. */
export const SHORTEST_PERIOD_MS: Record<CalendarUnit, number> = {
  hour: HOUR / 4,
  day: DAY / 4,
  week: 6 * DAY,
  month: 27 * DAY,
  quarter: 88 * DAY,
  year: 364 * DAY,
};

const offsetFormats = new Map<string, Intl.DateTimeFormat>();
const GMT_OFFSET = /GMT(?:([+-])(\d\d):(\d\d)(?::(\d\d))?)?$/;

/**
 * The zone's UTC offset at `ms`, in ms. One Intl format call with the offset written out (about
 * ten times cheaper than Luxon's, which rebuilds the local date from parts); Luxon's as fallback.
 */
function zoneOffsetMs(zone: Zone, ms: number): number {
  let format = offsetFormats.get(zone.name);
  if (!format) {
    format = new Intl.DateTimeFormat('en-US', { timeZone: zone.name, timeZoneName: 'longOffset', year: 'numeric' });
    offsetFormats.set(zone.name, format);
  }
  const match = GMT_OFFSET.exec(format.format(ms));
  if (!match) return Math.round(zone.offset(ms) * 60_000);
  if (!match[1]) return 0;
  const seconds = Number(match[2]) * 3600 + Number(match[3]) * 60 + Number(match[4] ?? 0);
  return (match[1] === '-' ? -seconds : seconds) * 1000;
}

/**
 * Wall-clock times are plain numbers: the local date and time written as if it were UTC, so
 * arithmetic on them never meets a DST change.
 */
function wallFloor(wall: number, unit: CalendarUnit): number {
  switch (unit) {
    case 'hour':
      return Math.floor(wall / HOUR) * HOUR;
    case 'day':
      return Math.floor(wall / DAY) * DAY;
    case 'week': {
      const day = Math.floor(wall / DAY);
      return (day - ((((day + 3) % 7) + 7) % 7)) * DAY; // 1970-01-01 was a Thursday; ISO weeks start on Monday
    }
    default: {
      const date = new Date(wall);
      const month = date.getUTCMonth();
      const first = unit === 'month' ? month : unit === 'quarter' ? month - (month % 3) : 0;
      return Date.UTC(date.getUTCFullYear(), first, 1);
    }
  }
}

/** The wall-clock period start `count` units after the period start `wall`. */
function wallAdd(wall: number, unit: CalendarUnit, count: number): number {
  switch (unit) {
    case 'hour':
      return wall + count * HOUR;
    case 'day':
      return wall + count * DAY;
    case 'week':
      return wall + count * 7 * DAY;
    default: {
      const date = new Date(wall);
      const months = count * (unit === 'month' ? 1 : unit === 'quarter' ? 3 : 12);
      return Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + months, 1);
    }
  }
}

/**
 * The boundaries of `unit` periods in a zone, as epoch milliseconds. A boundary is the first
 * instant of a local period: the instant the local clock first reads the period's start, or, when
 * a clock change skips that reading (midnight in a zone that springs forward at midnight, Samoa's
 * lost 2011-12-30), the instant of the jump. A local day, week, month... is one period however
 * long DST makes it (23 or 25 hours). For hours only, a clock set back exactly onto the start of
 * an hour begins a period of its own, so the repeated hour of a fall-back gets its own partition
 * (hour names carry the UTC time, so both stay unique); a clock set back to the middle of an
 * hour (Lord Howe's 30-minute fall-back) continues the hour it interrupted (90 minutes long).
 *
 * Every step moves to a strictly later (or earlier) instant or throws: no caller can loop.
 */
export class ZoneCalendar {
  readonly zone: Zone;
  private readonly fixedOffset: number | null;
  private readonly readingsMemo = new Map<number, number[]>();
  /** Planning asks for the same instants again and again (a boundary is found, then named, then written). */
  private readonly offsetMemo = new Map<number, number>();

  constructor(
    readonly zoneName: string,
    readonly unit: CalendarUnit,
  ) {
    const zone = zoneName === 'UTC' ? FixedOffsetZone.utcInstance : IANAZone.create(zoneName);
    if (!zone.isValid) throw new CalendarError(`${JSON.stringify(zoneName)} is not an IANA time zone`);
    this.zone = zone;
    this.fixedOffset = zone.isUniversal ? zone.offset(0) * 60_000 : null;
  }

  /** The zone's UTC offset at `ms`, in ms. */
  offset(ms: number): number {
    if (this.fixedOffset !== null) return this.fixedOffset;
    let offset = this.offsetMemo.get(ms);
    if (offset === undefined) {
      if (this.offsetMemo.size > 10_000) this.offsetMemo.clear();
      offset = zoneOffsetMs(this.zone, ms);
      this.offsetMemo.set(ms, offset);
    }
    return offset;
  }

  /** The local date and time at `ms`, written as if it were UTC (read it with getUTC* methods). */
  wall(ms: number): number {
    return ms + this.offset(ms);
  }

  /** Instants at which the local clock reads exactly `wall`, ascending (two in a fall-back's repeated time, none in a gap). */
  private readings(wall: number): number[] {
    const memo = this.readingsMemo.get(wall);
    if (memo) return memo;
    let found: number[];
    if (this.readingsMemo.size > 10_000) this.readingsMemo.clear();
    if (this.fixedOffset !== null) found = [wall - this.fixedOffset];
    else {
      // Every offset in force within REACH of `wall`: those at both ends, and any the candidates reveal.
      const offsets = new Set([this.offset(wall - REACH), this.offset(wall + REACH)]);
      const valid = new Set<number>();
      let tried = 0;
      for (const offset of offsets) {
        if (++tried > 6) break;
        const candidate = wall - offset;
        const actual = this.offset(candidate);
        if (actual === offset) valid.add(candidate);
        else offsets.add(actual);
      }
      found = [...valid].sort((a, b) => a - b);
    }
    this.readingsMemo.set(wall, found);
    return found;
  }

  /** The clock jumps over `wall`: the instant of the jump (the first instant that reads later than `wall`). */
  private jumpOver(wall: number): number {
    const before = this.offset(wall - REACH);
    const after = this.offset(wall + REACH);
    let lo = wall - after; // reads wall - after + before < wall: still before the jump
    let hi = wall - before; // reads wall - before + after > wall: after it
    if (after <= before || this.offset(lo) !== before || this.offset(hi) !== after) {
      throw new CalendarError(`${this.zoneName}: no instant reads ${new Date(wall).toISOString().slice(0, 19)} and no single clock change skips it`);
    }
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (this.offset(mid) === before) lo = mid;
      else hi = mid;
    }
    return hi;
  }

  /** The first instant of the local period starting at `wall`. */
  private firstReach(wall: number): number {
    const readings = this.readings(wall);
    return readings.length > 0 ? readings[0]! : this.jumpOver(wall);
  }

  /**
   * Hours only: a clock set back exactly onto the start of an hour, within (lo, hi]. Set-backs of
   * up to two hours exist (Antarctica/Troll), so the landing need not repeat the current hour.
   */
  private hourLanding(lo: number, hi: number): number | undefined {
    if (this.unit !== 'hour' || this.fixedOffset !== null) return undefined;
    const before = this.offset(lo);
    if (this.offset(hi) === before) return undefined;
    let low = lo;
    let high = hi;
    while (high - low > 1) {
      const mid = Math.floor((low + high) / 2);
      if (this.offset(mid) === before) low = mid;
      else high = mid;
    }
    const wall = this.wall(high);
    return wall < this.wall(high - 1) && wallFloor(wall, 'hour') === wall ? high : undefined;
  }

  /** The boundary at or before `ms`: the first instant of the period containing it. */
  floor(ms: number): number {
    const start = wallFloor(this.wall(ms), this.unit);
    const candidates = [this.firstReach(start)].filter((at) => at <= ms);
    // A clock set back after the next period had begun (a change at 00:01, say) leaves us in that next period.
    const next = this.firstReach(wallAdd(start, this.unit, 1));
    if (next <= ms) candidates.push(next);
    const landing = this.hourLanding(ms - 4 * HOUR, ms);
    if (landing !== undefined) candidates.push(landing);
    if (candidates.length === 0) throw new CalendarError(`${this.zoneName}: no ${this.unit} boundary at or before ${new Date(ms).toISOString()}`);
    return Math.max(...candidates);
  }

  /** The first boundary strictly after `ms`. */
  next(ms: number): number {
    const start = wallFloor(this.wall(ms), this.unit);
    const candidates: number[] = [];
    const landing = this.hourLanding(ms, ms + 4 * HOUR);
    if (landing !== undefined) candidates.push(landing);
    // The next period's first instant; if the clock reached it before `ms` and was set back, the one after.
    let following = wallAdd(start, this.unit, 1);
    for (let i = 0; i < 4; i++, following = wallAdd(following, this.unit, 1)) {
      const first = this.firstReach(following);
      if (first > ms) {
        candidates.push(first);
        break;
      }
    }
    if (candidates.length === 0) throw new CalendarError(`${this.zoneName}: no ${this.unit} boundary after ${new Date(ms).toISOString()}`);
    return Math.min(...candidates);
  }

  /** The last boundary strictly before the boundary `ms`. */
  previous(ms: number): number {
    const previous = this.floor(ms - 1);
    if (previous >= ms) throw new CalendarError(`${this.zoneName}: no ${this.unit} boundary before ${new Date(ms).toISOString()}`);
    return previous;
  }

  /**
   * The boundary `count` periods after (or before) the boundary `ms`, one period at a time. Past
   * 1000 periods (long retention of hourly tables) it counts on the wall clock instead, which
   * differs from stepping only by repeated hours.
   */
  add(ms: number, count: number): number {
    if (Math.abs(count) > 1000) {
      return this.floor(this.firstReach(wallAdd(wallFloor(this.wall(ms), this.unit), this.unit, count)));
    }
    let at = ms;
    for (let i = 0; i < Math.abs(count); i++) at = count > 0 ? this.next(at) : this.previous(at);
    return at;
  }

  /** `ms` as a Luxon DateTime in this calendar's zone (names, SQL literals). */
  dateTime(ms: number): DateTime {
    return DateTime.fromMillis(ms, { zone: this.zone });
  }
}

/**
 * The zone's name as Postgres must be given it to read the zone Node reads. Node's Intl (and so
 * Luxon: every cutoff and boundary we compute) reads a name as its canonical IANA zone ("IST" is
 * Asia/Calcutta, "CET" Europe/Brussels, "US/Pacific-New" America/Los_Angeles), but Postgres's AT
 * TIME ZONE reads a name in its `timezone_abbreviations` list as that fixed offset first ("IST"
 * +02:00, "CET" +01:00 all year; "EST" +10:00 under the Australia set), and knows no zone its
 * time zone data dropped. The canonical name of a region has a slash, which no abbreviation has;
 * UTC is Etc/UTC. Callers still check that Postgres knows the name (its data may be older).
 */
export function postgresZoneName(zone: string): string {
  const canonical = new Intl.DateTimeFormat('en-US', { timeZone: zone }).resolvedOptions().timeZone;
  return canonical === 'UTC' ? 'Etc/UTC' : canonical;
}

const calendars = new Map<string, ZoneCalendar>();

/**
 * One calendar per zone and unit for the life of the process: a run plans many targets in the
 * same zone and interval, and each calendar remembers the offsets and readings it computed (a
 * bounded memo). Calendars are pure functions of (zone, unit), so sharing them changes no result.
 */
export function zoneCalendar(zoneName: string, unit: CalendarUnit): ZoneCalendar {
  const key = `${zoneName}\u0000${unit}`;
  let calendar = calendars.get(key);
  if (!calendar) {
    calendar = new ZoneCalendar(zoneName, unit);
    if (calendars.size > 1_000) calendars.clear();
    calendars.set(key, calendar);
  }
  return calendar;
}

/** The boundary `count` periods after the boundary `at` (before it when negative); strictly later for count ≥ 1. */
export function addUnits(at: DateTime, unit: CalendarUnit, count: number): DateTime {
  const calendar = new ZoneCalendar(at.zoneName ?? 'UTC', unit);
  return calendar.dateTime(calendar.add(calendar.floor(at.toMillis()), count));
}
