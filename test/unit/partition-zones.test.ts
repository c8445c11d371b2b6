import { describe, expect, it } from 'vitest';
import type { PartitionCatalog } from '../../functions/partition/catalog';
import { type PartitionPlan, planPartitions } from '../../functions/partition/plan';
import { PARTITION_INTERVALS, type PartitionInterval, type PartitionTargetPolicy } from '../../functions/partition/policy';

/**
 * The planner against every IANA zone this runtime knows, every interval, with `now` placed just
 * before and at each clock change of the two years either side of today, plus historical
 * oddities. The expected boundaries come from an independent oracle that knows only the zone's
 * UTC offsets (read from Intl's formatted local time, not from the code under test) and the
 * definition of a period's first instant:
 *
 *   a period begins when the local clock first shows a date/time inside it (reading its start,
 *   or jumping past it); for hours, a clock set back exactly onto the start of an hour also
 *   begins a period (the repeated hour is a partition of its own, named by its UTC time).
 */

const HOUR = 3_600_000;
const DAY = 86_400_000;
const YEAR = 365 * DAY;
const LONGEST: Record<PartitionInterval, number> = {
  hour: 3 * HOUR,
  day: 3 * DAY,
  week: 9 * DAY,
  month: 33 * DAY,
  quarter: 94 * DAY,
  year: 368 * DAY,
};
const PREMAKE: Record<PartitionInterval, number> = { hour: 4, day: 3, week: 2, month: 2, quarter: 1, year: 1 };

/** Offset (ms) of `zone` at an instant, from the local date and time Intl writes out. */
function offsetsOf(zone: string): (ms: number) => number {
  const format = new Intl.DateTimeFormat('en-US', {
    timeZone: zone,
    hourCycle: 'h23',
    year: 'numeric',
    month: 'numeric',
    day: 'numeric',
    hour: 'numeric',
    minute: 'numeric',
    second: 'numeric',
  });
  const memo = new Map<number, number>();
  return (ms) => {
    let offset = memo.get(ms);
    if (offset === undefined) {
      const [m, d, y, h, mi, s] = format.format(ms).match(/\d+/g)!.map(Number) as [number, number, number, number, number, number];
      offset = Date.UTC(y, m - 1, d, h, mi, s) - Math.floor(ms / 1000) * 1000;
      memo.set(ms, offset);
    }
    return offset;
  };
}

/** Every instant in [from, to) where the offset changes (sampled every 14 days, then bisected to the millisecond). */
function transitions(offset: (ms: number) => number, from: number, to: number): number[] {
  const found: number[] = [];
  let at = from;
  let before = offset(at);
  while (at < to) {
    const next = at + 14 * DAY;
    const after = offset(next);
    if (after === before) {
      at = next;
      continue;
    }
    let lo = at;
    let hi = next;
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (offset(mid) === before) lo = mid;
      else hi = mid;
    }
    found.push(hi);
    at = hi;
    before = offset(hi);
  }
  return found;
}

/** The oracle's own wall-clock arithmetic, on UTC Date fields. */
function periodStart(wall: number, unit: PartitionInterval): number {
  const d = new Date(wall);
  const [y, m, day, h] = [d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate(), d.getUTCHours()];
  const at = (year: number, month: number, date = 1, hour = 0) => Date.UTC(year, month, date, hour);
  switch (unit) {
    case 'hour':
      return at(y, m, day, h);
    case 'day':
      return at(y, m, day);
    case 'week':
      return at(y, m, day - ((d.getUTCDay() + 6) % 7));
    case 'month':
      return at(y, m);
    case 'quarter':
      return at(y, m - (m % 3));
    case 'year':
      return at(y, 0);
  }
}

function followingStart(start: number, unit: PartitionInterval): number {
  if (unit === 'hour') return start + HOUR;
  if (unit === 'day') return periodStart(start + 36 * HOUR, unit);
  if (unit === 'week') return periodStart(start + 8 * DAY, unit);
  return periodStart(start + (unit === 'month' ? 32 : unit === 'quarter' ? 93 : 367) * DAY, unit);
}

/** Every period boundary in [lo, hi], by walking the stretches of constant offset between transitions. */
function oracleBoundaries(offset: (ms: number) => number, changes: number[], unit: PartitionInterval, lo: number, hi: number): number[] {
  const start = lo - LONGEST[unit];
  const points = [start, ...changes.filter((t) => t > start && t <= hi)];
  let reached = periodStart(start + offset(start), unit); // latest period the clock has shown so far
  const out: number[] = [];
  for (let i = 0; i < points.length; i++) {
    const from = points[i]!;
    const end = points[i + 1] ?? hi + 1;
    const off = offset(from);
    const wall = from + off;
    if (i > 0) {
      const period = periodStart(wall, unit);
      const wallBefore = from - 1 + offset(from - 1);
      if (period > reached) {
        out.push(from);
        reached = period;
      } else if (unit === 'hour' && wall === period && wall < wallBefore) out.push(from);
    }
    for (let next = followingStart(periodStart(wall, unit), unit); next - off < end && next - off <= hi; next = followingStart(next, unit)) {
      if (next > reached) {
        out.push(next - off);
        reached = next;
      }
    }
  }
  return out.filter((b) => b >= lo && b <= hi);
}

/** A timestamptz literal as the planner writes it ('2026-11-23 00:00:00+01:00', '... 00:00:00.250+05:45'). */
function literalMs(literal: string): number {
  const match = /^(\d{4})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{3}))?([+-])(\d\d):(\d\d)$/.exec(literal);
  if (!match) throw new Error(`unexpected literal ${literal}`);
  const [, y, mo, d, h, mi, s, ms, sign, oh, om] = match;
  const local = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s), Number(ms ?? 0));
  return local - (Number(oh) * 60 + Number(om)) * 60_000 * (sign === '-' ? -1 : 1);
}

const emptyCatalog: PartitionCatalog = {
  parent: { schema: 'public', name: 'events' },
  keyColumn: 'created_at',
  keyType: 'timestamptz',
  columns: ['created_at'],
  partitions: [],
  defaultPartition: null,
  takenNames: new Set(),
  rescueHazards: [],
  unfinishedRetirements: [],
};

const iso = (ms: number) => new Date(ms).toISOString();

/** All the property violations of one plan, as readable lines (empty when it is right). */
function violations(
  zone: string,
  interval: PartitionInterval,
  now: number,
  plan: PartitionPlan,
  offset: (ms: number) => number,
  changes: number[],
  currentExpected: number | undefined,
): string[] {
  const where = `${zone} ${interval} now=${iso(now)}`;
  const problems: string[] = [];
  const parts = plan.create;
  if (parts.length !== PREMAKE[interval] + 1) problems.push(`${where}: ${parts.length} partitions, expected ${PREMAKE[interval] + 1}`);
  if (parts[0]?.from !== plan.currentFrom || !(plan.currentFrom <= now && now < parts[0]!.to)) {
    problems.push(`${where}: the first partition [${iso(parts[0]!.from)}, ${iso(parts[0]!.to)}) does not hold now`);
  }
  for (const [i, p] of parts.entries()) {
    if (!(p.from < p.to)) problems.push(`${where}: empty or reversed ${p.name.name}`);
    if (i > 0 && parts[i - 1]!.to !== p.from)
      problems.push(`${where}: ${parts[i - 1]!.name.name} ends at ${iso(parts[i - 1]!.to)} but ${p.name.name} starts at ${iso(p.from)}`);
    if (literalMs(p.fromLiteral) !== p.from || literalMs(p.toLiteral) !== p.to)
      problems.push(`${where}: ${p.name.name} literals ${p.fromLiteral}, ${p.toLiteral} are not its bounds`);
    if (p.fill || p.past) problems.push(`${where}: ${p.name.name} is not a plain future period`);
  }
  if (new Set(parts.map((p) => p.name.name)).size !== parts.length)
    problems.push(`${where}: duplicate names ${parts.map((p) => p.name.name).join(', ')}`);
  const expected = oracleBoundaries(offset, changes, interval, parts[0]!.from, parts[parts.length - 1]!.to);
  const actual = [...parts.map((p) => p.from), parts[parts.length - 1]!.to];
  if (expected.join() !== actual.join())
    problems.push(`${where}: bounds ${actual.map(iso).join(' ')} but periods begin at ${expected.map(iso).join(' ')}`);
  if (currentExpected !== plan.currentFrom)
    problems.push(
      `${where}: current period starts ${iso(plan.currentFrom)}, expected ${currentExpected === undefined ? 'none' : iso(currentExpected)}`,
    );
  return problems;
}

// Built directly, not parsed: the schema's zone check costs more than a plan.
const policyFor = (interval: PartitionInterval, timeZone: string): PartitionTargetPolicy => ({
  table: 'events',
  interval,
  premake: PREMAKE[interval],
  timeZone,
});

/**
 * Plans every interval at every `now` and returns the violations. A `now` whose current period
 * (by the oracle) was already planned for that interval adds nothing and is skipped: just before
 * and at a mid-month clock change, a monthly plan is the same.
 */
function sweep(zone: string, nows: number[], offset: (ms: number) => number, changes: number[]): { plans: number; problems: string[] } {
  const problems: string[] = [];
  let plans = 0;
  for (const interval of PARTITION_INTERVALS) {
    const policy = policyFor(interval, zone);
    const seen = new Set<number | undefined>();
    for (const now of nows) {
      const current = oracleBoundaries(offset, changes, interval, now - LONGEST[interval], now).pop();
      if (seen.has(current)) continue;
      seen.add(current);
      plans++;
      let plan: PartitionPlan;
      try {
        plan = planPartitions(emptyCatalog, policy, new Date(now));
      } catch (error) {
        problems.push(`${zone} ${interval} now=${iso(now)}: ${(error as Error).message}`);
        continue;
      }
      problems.push(...violations(zone, interval, now, plan, offset, changes, current));
    }
  }
  return { plans, problems };
}

/** Historical clock changes worth a look: [zone, a date near the change]. */
const ODDITIES: Array<[string, string, string]> = [
  ['Australia/Lord_Howe', '2026-04-05', 'a 30-minute fall-back'],
  ['Australia/Lord_Howe', '2026-10-04', 'a 30-minute spring-forward'],
  ['Pacific/Apia', '2011-12-30', 'Samoa skipped 2011-12-30'],
  ['Pacific/Kiritimati', '1995-01-01', 'skipped 1994-12-31'],
  ['Pacific/Kwajalein', '1993-08-21', 'skipped 1993-08-21'],
  ['Asia/Kathmandu', '1986-01-01', '+05:30 to +05:45 at midnight'],
  ['America/St_Johns', '2010-11-07', 'a -02:30/-03:30 fall-back at 00:01, which shows midnight twice'],
  ['America/St_Johns', '2010-03-14', 'a spring-forward at 00:01'],
  ['America/St_Johns', '2026-11-01', 'half-hour offsets today'],
  ['Europe/Dublin', '1971-10-31', 'the start of negative DST'],
  ['Europe/Dublin', '2026-10-25', 'negative DST today'],
  ['Africa/Casablanca', '2019-05-05', 'Ramadan suspends DST'],
  ['Africa/Casablanca', '2027-02-07', 'Ramadan suspends DST'],
  ['America/Sao_Paulo', '2018-11-04', 'midnight skipped'],
  ['America/Santiago', '2026-04-05', 'the clock set back from midnight'],
  ['America/Caracas', '2007-12-09', '-04:00 to -04:30'],
  ['Antarctica/Troll', '2026-10-25', 'a two-hour fall-back'],
  ['Europe/Moscow', '2014-10-26', 'a permanent change of offset'],
  ['Asia/Pyongyang', '2018-05-05', '+08:30 to +09:00'],
  ['Africa/Monrovia', '1972-01-07', 'an offset with seconds (-00:44:30)'],
  ['Asia/Manila', '1844-12-31', 'a skipped day and offsets with seconds'],
];

describe('planPartitions in every time zone', () => {
  it('terminates with contiguous, increasing partitions that each start at the first instant of a local period, uniquely named', () => {
    const anchor = Date.now();
    const problems: string[] = [];
    let plans = 0;
    let zonesWithChanges = 0;
    const zones = [...Intl.supportedValuesOf('timeZone'), 'UTC'];
    for (const zone of zones) {
      const offset = offsetsOf(zone);
      // Wide enough for the oracle to look back one longest period before the first `now` and to
      // follow the yearly plan to its end.
      const changes = transitions(offset, anchor - 2 * YEAR - 2 * LONGEST.year, anchor + 2 * YEAR + 3 * LONGEST.year);
      const near = changes.filter((t) => t >= anchor - 2 * YEAR && t <= anchor + 2 * YEAR);
      if (near.length > 0) zonesWithChanges++;
      const nows = near.length > 0 ? near.flatMap((t) => [t - 1, t]) : [anchor];
      const result = sweep(zone, nows, offset, changes);
      plans += result.plans;
      problems.push(...result.problems);
    }
    expect(problems.slice(0, 20)).toEqual([]);
    expect(zones.length).toBeGreaterThan(400);
    expect(zonesWithChanges).toBeGreaterThan(100); // the sweep really met clock changes
    expect(plans).toBeGreaterThan(5_000);
  }, 60_000); // a few seconds alone; the margin is for a machine shared with other suites

  it.each(ODDITIES)('%s around %s (%s)', (zone, date) => {
    const offset = offsetsOf(zone);
    const center = Date.parse(`${date}T00:00:00Z`);
    const changes = transitions(offset, center - 2 * YEAR, center + 3 * YEAR);
    const near = changes.filter((t) => Math.abs(t - center) < 60 * DAY);
    expect(near.length).toBeGreaterThan(0);
    const nows = near.flatMap((t) => [t - DAY, t - HOUR, t - 1, t, t + 30 * 60_000, t + HOUR]);
    expect(sweep(zone, nows, offset, changes).problems).toEqual([]);
  });
});
