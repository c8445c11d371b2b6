import { IANAZone } from 'luxon';
import { beforeAll, describe, expect, it } from 'vitest';
import { archiveCutoff, cutoffLiteral } from '../../functions/archive/plan';

/**
 * Every zone the runtime knows, with "now" swept across each DST (or other offset) transition of
 * the two years either side of a fixed anchor, and placed so that the cutoff itself lands inside a
 * skipped or a repeated hour. Runs under three process zones (vitest.config.ts): nothing here may
 * depend on the zone of the process.
 */
const ANCHOR = Date.UTC(2026, 0, 1);
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const SPAN = 2 * 366 * DAY;

type Unit = 'hour' | 'day' | 'week' | 'month' | 'year';
const RETENTIONS: Array<[string, number, Unit]> = [
  ['1 day', 1, 'day'],
  ['7 days', 7, 'day'],
  ['30 days', 30, 'day'],
  ['2 weeks', 2, 'week'],
  ['1 month', 1, 'month'],
  ['13 months', 13, 'month'],
  ['1 year', 1, 'year'],
  ['48 hours', 48, 'hour'],
];

/** A zone's offsets over a window, looked up without asking Intl each time (the sweep makes ~10^5 lookups). */
interface OffsetTable {
  zone: IANAZone;
  /** Instants where the offset changes, each the first instant of the new offset. */
  changes: number[];
  /** offsets[i] holds before changes[i]; the last one after the last change. */
  offsets: number[];
  from: number;
  to: number;
}

function offsetTable(zone: IANAZone, from: number, to: number): OffsetTable {
  const changes: number[] = [];
  const offsets = [zone.offset(from)];
  const step = 7 * DAY; // no zone changes its offset twice within a week
  let next = offsets[0]!;
  for (let t = from; t < to; t += step) {
    const previous = next;
    next = zone.offset(t + step);
    if (previous === next) continue;
    let lo = t;
    let hi = t + step;
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (zone.offset(mid) === previous) lo = mid;
      else hi = mid;
    }
    changes.push(hi);
    offsets.push(zone.offset(hi));
  }
  return { zone, changes, offsets, from, to };
}

function offsetAt(table: OffsetTable, t: number): number {
  if (t < table.from || t >= table.to) return table.zone.offset(t);
  let lo = 0;
  let hi = table.changes.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (table.changes[mid]! <= t) lo = mid + 1;
    else hi = mid;
  }
  return table.offsets[lo]!;
}

/** Wall clock of `t` in the zone, as milliseconds of a UTC calendar. */
const wall = (table: OffsetTable, t: number) => t + offsetAt(table, t) * 60_000;

/** Plain calendar arithmetic on a wall clock held as UTC milliseconds: months clamp the day. */
function calendarMinus(wallMs: number, amount: number, unit: Unit): number {
  const d = new Date(wallMs);
  const [y, m, day] = [d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate()];
  const timeOfDay = wallMs - Date.UTC(y, m, day);
  if (unit === 'day' || unit === 'week') return Date.UTC(y, m, day - amount * (unit === 'week' ? 7 : 1)) + timeOfDay;
  const months = unit === 'year' ? amount * 12 : amount;
  const target = new Date(Date.UTC(y, m - months, 1));
  const lastDay = new Date(Date.UTC(target.getUTCFullYear(), target.getUTCMonth() + 1, 0)).getUTCDate();
  return Date.UTC(target.getUTCFullYear(), target.getUTCMonth(), Math.min(day, lastDay)) + timeOfDay;
}

/** Every cutoff property; returns a description of the first one broken, or undefined. */
function problem(zone: OffsetTable, now: number, retention: string, amount: number, unit: Unit, literals: boolean): string | undefined {
  const cutoff = archiveCutoff(new Date(now), retention, zone.zone.name);
  const instant = cutoff.instant.toMillis();
  if (!cutoff.instant.isValid || !Number.isFinite(instant)) return 'not a valid instant';
  if (instant >= now) return 'not before now';
  const w = cutoff.wallClock.toMillis();
  if (literals) {
    if (cutoffLiteral(cutoff, 'timestamp') !== new Date(w).toISOString().slice(0, 23).replace('T', ' '))
      return 'timestamp literal is not the wall clock';
    if (cutoffLiteral(cutoff, 'date') !== new Date(w).toISOString().slice(0, 10)) return 'date literal is not the wall date';
    const literal = cutoffLiteral(cutoff, 'timestamptz');
    if (Date.parse(literal.replace(' ', 'T')) !== instant) return `timestamptz literal ${literal} is not the instant`;
  }
  if (unit === 'hour') {
    if (now - instant !== amount * HOUR) return 'hours are not elapsed time';
    return w === wall(zone, instant) ? undefined : 'wall clock is not the instant read in the zone';
  }
  if (w !== calendarMinus(wall(zone, now), amount, unit))
    return `wall clock ${new Date(w).toISOString()} is not now minus ${retention} on the calendar`;
  if (wall(zone, instant) === w) {
    // The same wall time; when it happens twice (clocks set back), the earlier of the two.
    for (const other of [offsetAt(zone, instant - DAY), offsetAt(zone, instant - 3 * HOUR), offsetAt(zone, instant + DAY)]) {
      const earlier = w - other * 60_000;
      if (earlier < instant && wall(zone, earlier) === w) return 'a repeated wall time resolved to its later instant';
    }
    return undefined;
  }
  // The wall time was skipped (clocks set forward): the first instant after the gap.
  if (!(wall(zone, instant) > w && wall(zone, instant - 1) < w))
    return `instant ${new Date(instant).toISOString()} is neither the wall time nor the first instant after a gap`;
  return undefined;
}

describe('archive cutoff in every time zone, across every transition', () => {
  // Cutoffs reach 13 months behind the swept window: the offset tables cover that too.
  let tables: OffsetTable[] = [];
  // About a second of Intl calls on an idle machine; the timeouts leave room for a busy one.
  beforeAll(() => {
    tables = Intl.supportedValuesOf('timeZone').map((name) => offsetTable(IANAZone.create(name), ANCHOR - SPAN - 400 * DAY, ANCHOR + SPAN + 2 * DAY));
  }, 60_000);
  const inWindow = (t: number) => t >= ANCHOR - SPAN && t < ANCHOR + SPAN;
  // Zones sharing one offset history behave the same in every cutoff: each history gets the
  // full sweep once, and every zone a lighter one, by its own name.
  const history = (table: OffsetTable) => `${table.offsets[0]}|${table.changes.map((t, i) => `${t}:${table.offsets[i + 1]}`).join(',')}`;
  const firstOfHistory = new Set<string>();

  it('knows every zone of the runtime and hundreds of transitions', () => {
    expect(tables.length).toBeGreaterThan(300);
    expect(tables.every((t) => t.zone.isValid)).toBe(true);
    expect(tables.reduce((n, t) => n + t.changes.filter(inWindow).length, 0)).toBeGreaterThan(500);
  });

  it('is a valid instant before now, the same wall time N calendar units back (day clamped) or the first instant after a gap', () => {
    const failures: string[] = [];
    let checked = 0;
    let gapsHit = 0;
    let overlapsHit = 0;
    const check = (table: OffsetTable, now: number, retention: [string, number, Unit]) => {
      checked++;
      // Formatting the literals costs more than the cutoff itself: every fourth check does it.
      const found = problem(table, now, ...retention, checked % 4 === 0);
      if (found && failures.length < 20) failures.push(`${table.zone.name} now=${new Date(now).toISOString()} ${retention[0]}: ${found}`);
    };
    for (const table of tables) {
      const full = !firstOfHistory.has(history(table));
      firstOfHistory.add(history(table));
      const retentions = full ? RETENTIONS : RETENTIONS.filter(([text]) => text === '1 day' || text === '1 month');
      for (const t of table.changes.filter(inWindow)) {
        // Now itself right around the change.
        for (const now of full ? [t - 1, t, t + HOUR] : [t]) for (const r of retentions) check(table, now, r);
        // Now placed so that the cutoff's wall time falls in the middle of the skipped or repeated span.
        const before = wall(table, t - 1) + 1;
        const after = wall(table, t);
        const middle = Math.floor((before + after) / 2);
        if (after > before) gapsHit++;
        else overlapsHit++;
        for (const r of retentions) {
          if (r[2] === 'hour') continue;
          const nowWall = calendarMinus(middle, -r[1], r[2]); // forward by the retention
          const candidates = [nowWall - offsetAt(table, nowWall) * 60_000, nowWall - offsetAt(table, nowWall - DAY) * 60_000];
          check(table, candidates[0]!, r);
          if (full && candidates[1] !== candidates[0]) check(table, candidates[1]!, r);
        }
      }
      // Month ends (the day clamps: March 31 minus a month is the last day of February), a leap
      // day, and an ordinary day, at noon UTC.
      const days = full
        ? [
            [2026, 2, 31],
            [2028, 2, 31],
            [2026, 4, 31],
            [2028, 1, 29],
          ]
        : [[2026, 2, 31]];
      for (const [y, m, d] of days as Array<[number, number, number]>) for (const r of retentions) check(table, Date.UTC(y, m, d, 12), r);
    }
    expect(failures).toEqual([]);
    expect(gapsHit).toBeGreaterThan(100);
    expect(overlapsHit).toBeGreaterThan(100);
    expect(checked).toBeGreaterThan(8_000);
  }, 60_000);
});
