import { DateTime } from 'luxon';
import { describe, expect, it, vi } from 'vitest';
import type { ExistingPartition, PartitionCatalog, PartitionKeyType } from '../../functions/partition/catalog';
import { partitionsAhead, planPartitions } from '../../functions/partition/plan';
import { type PartitionTargetInput, partitionTargetSchema } from '../../functions/partition/policy';
import { addUnits, ZoneCalendar } from '../../shared/calendar';
import { CatalogError, ConfigError } from '../../shared/errors';

/** Key ms of an ISO text: an instant for timestamptz, the wall clock (as UTC) for timestamp/date. */
function keyMs(iso: string, keyType: PartitionKeyType): number {
  return keyType === 'timestamptz' ? DateTime.fromISO(iso, { setZone: true }).toMillis() : DateTime.fromISO(iso, { zone: 'UTC' }).toMillis();
}

function catalog(
  keyType: PartitionKeyType,
  partitions: Array<[string, string | null, string | null]> = [],
  extra: Partial<PartitionCatalog> & { pending?: string[] } = {},
): PartitionCatalog {
  const existing: ExistingPartition[] = partitions.map(([name, from, to], i) => ({
    name: { schema: 'public', name },
    oid: 1000 + i,
    from: from === null ? null : keyMs(from, keyType),
    to: to === null ? null : keyMs(to, keyType),
    detachPending: extra.pending?.includes(name) ?? false,
  }));
  return {
    parent: { schema: 'public', name: 'events' },
    keyColumn: 'created_at',
    keyType,
    columns: ['id', 'created_at'],
    partitions: existing,
    defaultPartition: null,
    takenNames: new Set(partitions.map(([name]) => name)),
    rescueHazards: [],
    unfinishedRetirements: [],
    ...extra,
  };
}

const policy = (input: Omit<PartitionTargetInput, 'table'>) => partitionTargetSchema.parse({ table: 'events', ...input });
const names = (plan: ReturnType<typeof planPartitions>) => plan.create.map((p) => p.name.name);
/** partitionsAhead as a run that created everything it planned would report it. */
const ahead = (existing: PartitionCatalog, plan: ReturnType<typeof planPartitions>) =>
  partitionsAhead(plan, [...existing.partitions, ...plan.create]);
const at = (iso: string) => new Date(iso);

describe('planPartitions: every interval and its naming', () => {
  it('day: the current day plus premake future days, with UTC bounds', () => {
    const plan = planPartitions(catalog('timestamptz'), policy({ interval: 'day', premake: 3 }), at('2026-11-23T10:15:00Z'));
    expect(names(plan)).toEqual(['events_p2026_11_23', 'events_p2026_11_24', 'events_p2026_11_25', 'events_p2026_11_26']);
    expect(plan.create[0]).toMatchObject({ fromLiteral: '2026-11-23 00:00:00+00:00', toLiteral: '2026-11-24 00:00:00+00:00' });
    expect(plan.retire).toEqual([]);
    expect(ahead(catalog('timestamptz'), plan)).toBe(3);
  });

  it('hour: named by the UTC hour and minute', () => {
    const plan = planPartitions(catalog('timestamptz'), policy({ interval: 'hour', premake: 2 }), at('2026-11-23T22:59:59Z'));
    expect(names(plan)).toEqual(['events_p2026_11_23_2200', 'events_p2026_11_23_2300', 'events_p2026_11_24_0000']);
  });

  it('hour: half-hour zones get half-hour boundaries and still unique names', () => {
    const plan = planPartitions(
      catalog('timestamptz'),
      policy({ interval: 'hour', premake: 1, timeZone: 'Asia/Kolkata' }),
      at('2026-11-23T10:45:00Z'),
    );
    expect(plan.create.map((p) => [p.name.name, p.fromLiteral])).toEqual([
      ['events_p2026_11_23_1030', '2026-11-23 16:00:00+05:30'],
      ['events_p2026_11_23_1130', '2026-11-23 17:00:00+05:30'],
    ]);
  });

  it('week: ISO weeks starting Monday, across a 53-week year', () => {
    const plan = planPartitions(catalog('timestamptz'), policy({ interval: 'week', premake: 2 }), at('2026-12-24T12:00:00Z'));
    expect(names(plan)).toEqual(['events_p2026w52', 'events_p2026w53', 'events_p2027w01']);
    expect(plan.create[1]).toMatchObject({ fromLiteral: '2026-12-28 00:00:00+00:00', toLiteral: '2027-01-04 00:00:00+00:00' });
  });

  it('month, quarter and year', () => {
    const now = at('2026-11-30T23:59:00Z');
    expect(names(planPartitions(catalog('date'), policy({ interval: 'month', premake: 2 }), now))).toEqual([
      'events_p2026_11',
      'events_p2026_12',
      'events_p2027_01',
    ]);
    const quarters = planPartitions(catalog('date'), policy({ interval: 'quarter', premake: 1 }), now);
    expect(quarters.create.map((p) => [p.name.name, p.fromLiteral, p.toLiteral])).toEqual([
      ['events_p2026q4', '2026-10-01', '2027-01-01'],
      ['events_p2027q1', '2027-01-01', '2027-04-01'],
    ]);
    expect(names(planPartitions(catalog('date'), policy({ interval: 'year', premake: 1 }), now))).toEqual(['events_p2026', 'events_p2027']);
  });

  it('timestamp without time zone: boundaries are the wall clock of the policy zone', () => {
    // 23:30 UTC is already 08:30 the next morning in Tokyo.
    const plan = planPartitions(catalog('timestamp'), policy({ interval: 'day', premake: 1, timeZone: 'Asia/Tokyo' }), at('2026-11-23T23:30:00Z'));
    expect(plan.create.map((p) => [p.name.name, p.fromLiteral])).toEqual([
      ['events_p2026_11_24', '2026-11-24 00:00:00'],
      ['events_p2026_11_25', '2026-11-25 00:00:00'],
    ]);
  });

  it('refuses hour partitions on a date key', () => {
    expect(() => planPartitions(catalog('date'), policy({ interval: 'hour' }), at('2026-11-23T00:00:00Z'))).toThrowError(ConfigError);
  });
});

describe('planPartitions: daylight saving time', () => {
  it('a Berlin fall-back day is 25 hours and the spring-forward day 23 hours', () => {
    const fall = planPartitions(
      catalog('timestamptz'),
      policy({ interval: 'day', premake: 1, timeZone: 'Europe/Berlin' }),
      at('2026-10-25T08:00:00Z'),
    );
    expect(fall.create[0]).toMatchObject({ fromLiteral: '2026-10-25 00:00:00+02:00', toLiteral: '2026-10-26 00:00:00+01:00' });
    expect(fall.create[0]!.to - fall.create[0]!.from).toBe(25 * 3600_000);
    const spring = planPartitions(
      catalog('timestamptz'),
      policy({ interval: 'day', premake: 1, timeZone: 'Europe/Berlin' }),
      at('2027-03-28T08:00:00Z'),
    );
    expect(spring.create[0]!.to - spring.create[0]!.from).toBe(23 * 3600_000);
  });

  it('New York weeks around the November change start on local Monday midnight', () => {
    const plan = planPartitions(
      catalog('timestamptz'),
      policy({ interval: 'week', premake: 1, timeZone: 'America/New_York' }),
      at('2026-10-28T12:00:00Z'),
    );
    expect(plan.create.map((p) => [p.name.name, p.fromLiteral, p.toLiteral])).toEqual([
      ['events_p2026w44', '2026-10-26 00:00:00-04:00', '2026-11-02 00:00:00-05:00'],
      ['events_p2026w45', '2026-11-02 00:00:00-05:00', '2026-11-09 00:00:00-05:00'],
    ]);
    expect(plan.create[0]!.to - plan.create[0]!.from).toBe((7 * 24 + 1) * 3600_000);
  });

  it('the repeated local hour of a fall-back gets two distinct hourly partitions', () => {
    const plan = planPartitions(
      catalog('timestamptz'),
      policy({ interval: 'hour', premake: 2, timeZone: 'America/New_York' }),
      at('2026-11-01T05:10:00Z'), // 01:10 EDT, the first of two 01:00 hours
    );
    expect(plan.create.map((p) => [p.name.name, p.fromLiteral])).toEqual([
      ['events_p2026_11_01_0500', '2026-11-01 01:00:00-04:00'],
      ['events_p2026_11_01_0600', '2026-11-01 01:00:00-05:00'],
      ['events_p2026_11_01_0700', '2026-11-01 02:00:00-05:00'],
    ]);
  });
});

describe('planPartitions: existing partitions, gaps and adoption', () => {
  it('fills gaps in the middle, creating current and future partitions first', () => {
    const existing = catalog('timestamptz', [
      ['events_p2026_11_19', '2026-11-19T00:00:00Z', '2026-11-20T00:00:00Z'],
      ['events_p2026_11_21', '2026-11-21T00:00:00Z', '2026-11-22T00:00:00Z'],
      ['events_p2026_11_24', '2026-11-24T00:00:00Z', '2026-11-25T00:00:00Z'],
    ]);
    const plan = planPartitions(existing, policy({ interval: 'day', premake: 2 }), at('2026-11-23T10:00:00Z'));
    expect(names(plan)).toEqual(['events_p2026_11_23', 'events_p2026_11_25', 'events_p2026_11_22', 'events_p2026_11_20']);
  });

  it('adopts hand-made partitions by their bounds, whatever their names', () => {
    const existing = catalog('timestamptz', [
      ['events_today_by_hand', '2026-11-23T00:00:00Z', '2026-11-24T00:00:00Z'],
      ['legacy_tomorrow', '2026-11-24T00:00:00Z', '2026-11-25T00:00:00Z'],
    ]);
    const plan = planPartitions(existing, policy({ interval: 'day', premake: 2 }), at('2026-11-23T10:00:00Z'));
    expect(names(plan)).toEqual(['events_p2026_11_25']);
    expect(plan.warnings).toEqual([]);
  });

  it('fills the parts of periods a non-aligned partition leaves uncovered, named by their exact lower bound, with a warning', () => {
    const existing = catalog('timestamptz', [['events_odd', '2026-11-23T12:00:00Z', '2026-11-24T12:00:00Z']]);
    const plan = planPartitions(existing, policy({ interval: 'day', premake: 2 }), at('2026-11-23T10:00:00Z'));
    expect(plan.create.map((p) => [p.name.name, p.fromLiteral, p.toLiteral, p.fill])).toEqual([
      ['events_p20261123_000000', '2026-11-23 00:00:00+00:00', '2026-11-23 12:00:00+00:00', true],
      ['events_p20261124_120000', '2026-11-24 12:00:00+00:00', '2026-11-25 00:00:00+00:00', true],
      ['events_p2026_11_25', '2026-11-25 00:00:00+00:00', '2026-11-26 00:00:00+00:00', false],
    ]);
    expect(plan.warnings).toEqual([expect.stringContaining('public.events_odd covers a range not aligned to day boundaries')]);
    expect(ahead(existing, plan)).toBe(2);
  });

  it('a second plan after applying the first has nothing to do', () => {
    const now = at('2026-11-23T10:00:00Z');
    const first = planPartitions(catalog('timestamptz'), policy({ interval: 'day', premake: 3 }), now);
    const applied = catalog('timestamptz');
    applied.partitions = first.create
      .map((p, i) => ({ name: p.name, oid: i, from: p.from, to: p.to, detachPending: false }))
      .sort((a, b) => a.from - b.from);
    const second = planPartitions(applied, policy({ interval: 'day', premake: 3 }), now);
    expect(second.create).toEqual([]);
    expect(partitionsAhead(second, applied.partitions)).toBe(3);
  });

  it('refuses to plan over a name taken by a relation that is not the partition', () => {
    const existing = catalog('timestamptz', [], { takenNames: new Set(['events_p2026_11_24']) });
    expect(() => planPartitions(existing, policy({ interval: 'day', premake: 2 }), at('2026-11-23T10:00:00Z'))).toThrowError(CatalogError);
    expect(() => planPartitions(existing, policy({ interval: 'day', premake: 2 }), at('2026-11-23T10:00:00Z'))).toThrowError(
      /public\.events_p2026_11_24 .*already exists/,
    );
  });
});

describe('planPartitions: retention', () => {
  const days = catalog(
    'timestamptz',
    Array.from({ length: 10 }, (_, i) => {
      const from = DateTime.fromISO('2026-11-14T00:00:00Z', { zone: 'UTC' }).plus({ days: i });
      return [`events_p${from.toFormat('yyyy_MM_dd')}`, from.toISO()!, from.plus({ days: 1 }).toISO()!] as [string, string, string];
    }),
  );

  it('keep N retires partitions ending at or before current − N intervals, and never creates expired gaps', () => {
    const plan = planPartitions(days, policy({ interval: 'day', premake: 1, retention: { keep: 3 } }), at('2026-11-23T10:00:00Z'));
    // current 11-23, keep 3 → cutoff 11-20 00:00; partitions 11-14 .. 11-19 end at or before it
    expect(plan.retire.map((r) => [r.partition.name, r.mode])).toEqual(
      ['14', '15', '16', '17', '18', '19'].map((d) => [`events_p2026_11_${d}`, 'drop']),
    );
    expect(names(plan)).toEqual(['events_p2026_11_24']);
  });

  it('a duration cutoff is now minus the duration; detach mode detaches concurrently without a DEFAULT', () => {
    const plan = planPartitions(
      days,
      policy({ interval: 'day', premake: 1, retention: { duration: '5 days', mode: 'detach' } }),
      at('2026-11-23T10:00:00Z'),
    );
    // cutoff 11-18 10:00: the 11-17 partition ends 11-18 00:00 (retired), 11-18 ends 11-19 (kept)
    expect(plan.retire.map((r) => r.partition.name)).toEqual([
      'events_p2026_11_14',
      'events_p2026_11_15',
      'events_p2026_11_16',
      'events_p2026_11_17',
    ]);
    expect(plan.retire.every((r) => r.mode === 'detach' && r.concurrently)).toBe(true);
  });

  it('month durations clamp to the end of a shorter month', () => {
    const months = catalog('date', [
      ['events_p2027_01', '2027-01-01', '2027-02-01'],
      ['events_p2027_02', '2027-02-01', '2027-03-01'],
    ]);
    const plan = planPartitions(months, policy({ interval: 'month', premake: 1, retention: { duration: '1 month' } }), at('2027-03-31T12:00:00Z'));
    // 2027-03-31 minus one month is 2027-02-28: January (ends 02-01) goes, February (ends 03-01) stays.
    expect(plan.retire.map((r) => r.partition.name)).toEqual(['events_p2027_01']);
    expect(plan.cutoff).toBe(keyMs('2027-02-28T12:00:00', 'date'));
  });

  it('with a DEFAULT partition detaches are not concurrent; DEFAULT itself is never retired', () => {
    const withDefault = { ...days, defaultPartition: { schema: 'public', name: 'events_default' } };
    const plan = planPartitions(withDefault, policy({ interval: 'day', premake: 1, retention: { keep: 8 } }), at('2026-11-23T10:00:00Z'));
    expect(plan.retire.map((r) => r.partition.name)).toEqual(['events_p2026_11_14']);
    expect(plan.retire[0]!.concurrently).toBe(false);
  });

  it('finishes an interrupted DETACH CONCURRENTLY', () => {
    const pending = catalog('timestamptz', [['events_p2026_11_22', '2026-11-22T00:00:00Z', '2026-11-23T00:00:00Z']], {
      pending: ['events_p2026_11_22'],
    });
    const plan = planPartitions(pending, policy({ interval: 'day', premake: 1 }), at('2026-11-23T10:00:00Z'));
    expect(plan.retire).toEqual([expect.objectContaining({ finalizePending: true, mode: 'detach' })]);
  });
});

describe('planPartitions: clock changes that do not move whole hours', () => {
  it('addUnits always moves to a strictly later boundary (Lord Howe falls back 30 minutes at 02:00)', () => {
    const slot = DateTime.fromISO('2026-04-04T14:00:00Z').setZone('Australia/Lord_Howe'); // 01:00 +11:00
    const next = addUnits(slot, 'hour', 1);
    expect(next.toMillis()).toBeGreaterThan(slot.toMillis());
    // 01:00-02:00 local is 90 minutes long (01:30-02:00 happens twice); the next hour starts at 02:00 +10:30.
    expect(next.toUTC().toISO()).toBe('2026-04-04T15:30:00.000Z');
  });

  it('plans hourly partitions through the Lord Howe fall-back and returns', () => {
    const plan = planPartitions(
      catalog('timestamptz'),
      policy({ interval: 'hour', premake: 4, timeZone: 'Australia/Lord_Howe' }),
      at('2026-04-04T11:10:00Z'),
    );
    expect(plan.create.map((p) => [p.name.name, p.fromLiteral, p.toLiteral])).toEqual([
      ['events_p2026_04_04_1100', '2026-04-04 22:00:00+11:00', '2026-04-04 23:00:00+11:00'],
      ['events_p2026_04_04_1200', '2026-04-04 23:00:00+11:00', '2026-04-05 00:00:00+11:00'],
      ['events_p2026_04_04_1300', '2026-04-05 00:00:00+11:00', '2026-04-05 01:00:00+11:00'],
      ['events_p2026_04_04_1400', '2026-04-05 01:00:00+11:00', '2026-04-05 02:00:00+10:30'],
      ['events_p2026_04_04_1530', '2026-04-05 02:00:00+10:30', '2026-04-05 03:00:00+10:30'],
    ]);
  });

  it('a calendar step that does not move forward fails loudly instead of shortening the plan', () => {
    const spy = vi.spyOn(ZoneCalendar.prototype, 'next').mockImplementation((ms: number) => ms);
    try {
      expect(() =>
        planPartitions(catalog('timestamptz'), policy({ interval: 'hour', premake: 2, timeZone: 'Australia/Lord_Howe' }), at('2026-04-04T11:10:00Z')),
      ).toThrowError(
        'planning public.events (interval hour, zone Australia/Lord_Howe): the hour boundary after 2026-04-04 22:00:00+11:00 is not later than it',
      );
    } finally {
      spy.mockRestore();
    }
  });

  it('a planning loop that stops advancing fails loudly, naming the target, zone and interval', () => {
    const real = ZoneCalendar.prototype.next;
    let calls = 0;
    // The first premake + 1 steps are real (they find the horizon); then a step of one millisecond.
    const spy = vi.spyOn(ZoneCalendar.prototype, 'next').mockImplementation(function (this: ZoneCalendar, ms: number) {
      return ++calls <= 3 ? real.call(this, ms) : ms + 1;
    });
    try {
      // Everything is covered already, so only the bound can end the loop.
      const covered = catalog('timestamptz', [['events_all', null, null]]);
      expect(() =>
        planPartitions(covered, policy({ interval: 'day', premake: 2, timeZone: 'Europe/Berlin' }), at('2026-11-23T10:00:00Z')),
      ).toThrowError(/planning public\.events \(interval day, zone Europe\/Berlin\): no day boundary reached .* within \d+ steps/);
    } finally {
      spy.mockRestore();
    }
  });
});

describe('planPartitions: existing partitions that do not match the policy', () => {
  /** Sub-ranges of [from, to) no existing or planned partition covers, as ISO pairs. */
  function holes(existing: PartitionCatalog, plan: ReturnType<typeof planPartitions>, from: number, to: number): string[][] {
    const ranges = [...existing.partitions, ...plan.create].map((p) => [p.from ?? -Infinity, p.to ?? Infinity] as const).sort((a, b) => a[0] - b[0]);
    const out: string[][] = [];
    let cursor = from;
    for (const [lo, hi] of ranges) {
      if (hi <= cursor) continue;
      if (lo >= to) break;
      if (lo > cursor) out.push([new Date(cursor).toISOString(), new Date(lo).toISOString()]);
      cursor = Math.max(cursor, hi);
    }
    if (cursor < to) out.push([new Date(cursor).toISOString(), new Date(to).toISOString()]);
    return out;
  }

  const utcDays = (first: string, count: number) =>
    Array.from({ length: count }, (_, i) => {
      const from = DateTime.fromISO(first, { zone: 'UTC' }).plus({ days: i });
      return [`events_p${from.toFormat('yyyy_MM_dd')}`, from.toISO()!, from.plus({ days: 1 }).toISO()!] as [string, string, string];
    });

  it('daily UTC partitions adopted by a Berlin policy leave no hole: every uncovered piece gets a partition', () => {
    // UTC days through 11-26 exist; Berlin days run 23:00Z to 23:00Z.
    const existing = catalog('timestamptz', utcDays('2026-11-20', 7));
    const plan = planPartitions(existing, policy({ interval: 'day', premake: 6, timeZone: 'Europe/Berlin' }), at('2026-11-23T10:00:00Z'));
    const horizon = plan.periods[plan.periods.length - 1]!;
    expect(holes(existing, plan, plan.now, horizon)).toEqual([]);
    // The piece the old planner skipped, [11-27 00:00Z, 11-27 23:00Z), is filled and named by its exact UTC start.
    expect(plan.create.map((p) => [p.name.name, p.fromLiteral, p.toLiteral, p.fill])).toEqual([
      ['events_p20261127_000000', '2026-11-27 01:00:00+01:00', '2026-11-28 00:00:00+01:00', true],
      ['events_p2026_11_28', '2026-11-28 00:00:00+01:00', '2026-11-29 00:00:00+01:00', false],
      ['events_p2026_11_29', '2026-11-29 00:00:00+01:00', '2026-11-30 00:00:00+01:00', false],
      // and, in the past, the hour of the Berlin day 11-20 before the oldest UTC partition starts
      ['events_p20261119_230000', '2026-11-20 00:00:00+01:00', '2026-11-20 01:00:00+01:00', true],
    ]);
    expect(plan.warnings[0]).toMatch(/public\.events_p2026_11_2\d covers a range not aligned to day boundaries in Europe\/Berlin/);
  });

  it('the same in the past: gaps next to non-aligned partitions are filled too, newest first', () => {
    const existing = catalog('timestamptz', [utcDays('2026-11-18', 1)[0]!, ...utcDays('2026-11-22', 6)]);
    const plan = planPartitions(existing, policy({ interval: 'day', premake: 2, timeZone: 'Europe/Berlin' }), at('2026-11-23T10:00:00Z'));
    expect(holes(existing, plan, Date.parse('2026-11-17T23:00:00Z'), plan.periods[plan.periods.length - 1]!)).toEqual([]);
    expect(plan.create.map((p) => [p.name.name, p.fromLiteral, p.toLiteral, p.fill, p.past])).toEqual([
      ['events_p20261121_230000', '2026-11-22 00:00:00+01:00', '2026-11-22 01:00:00+01:00', true, true],
      ['events_p2026_11_21', '2026-11-21 00:00:00+01:00', '2026-11-22 00:00:00+01:00', false, true],
      ['events_p2026_11_20', '2026-11-20 00:00:00+01:00', '2026-11-21 00:00:00+01:00', false, true],
      ['events_p20261119_000000', '2026-11-19 01:00:00+01:00', '2026-11-20 00:00:00+01:00', true, true],
      ['events_p20261117_230000', '2026-11-18 00:00:00+01:00', '2026-11-18 01:00:00+01:00', true, true],
    ]);
  });

  it('partitionsAhead counts only coverage contiguous from now', () => {
    // Today and the day after tomorrow exist; tomorrow does not.
    const existing = catalog('timestamptz', [
      ['events_p2026_11_23', '2026-11-23T00:00:00Z', '2026-11-24T00:00:00Z'],
      ['events_p2026_11_25', '2026-11-25T00:00:00Z', '2026-11-26T00:00:00Z'],
    ]);
    const plan = planPartitions(existing, policy({ interval: 'day', premake: 3 }), at('2026-11-23T10:00:00Z'));
    expect(partitionsAhead(plan, existing.partitions)).toBe(0);
    expect(partitionsAhead(plan, [...existing.partitions, ...plan.create])).toBe(3);
    const withoutTomorrow = plan.create.filter((p) => p.name.name !== 'events_p2026_11_24');
    expect(partitionsAhead(plan, [...existing.partitions, ...withoutTomorrow])).toBe(0);
    // Nothing at all for now: no insert works, nothing is ahead.
    expect(partitionsAhead(plan, existing.partitions.slice(1))).toBe(0);
  });

  it('a fill whose name would be too long fails the target without stopping the other partitions (a warning in the past)', () => {
    const long = 'e'.repeat(47); // + _p2026_11_23 fits in 63 bytes, + _p20261123_000000 does not
    const existing: PartitionCatalog = {
      ...catalog('timestamptz', [
        [`${long}_a`, '2026-11-20T12:00:00Z', '2026-11-21T00:00:00Z'],
        [`${long}_b`, '2026-11-24T12:00:00Z', '2026-11-25T00:00:00Z'],
      ]),
      parent: { schema: 'public', name: long },
    };
    const plan = planPartitions(existing, partitionTargetSchema.parse({ table: long, interval: 'day', premake: 2 }), at('2026-11-23T10:00:00Z'));
    expect(plan.failures).toEqual([expect.stringMatching(/cannot fill \[2026-11-24 00:00:00\+00:00, 2026-11-24 12:00:00\+00:00\) .* over 63 bytes/)]);
    expect(plan.warnings).toContainEqual(expect.stringMatching(/cannot fill \[2026-11-20 00:00:00\+00:00, 2026-11-20 12:00:00\+00:00\)/));
    expect(names(plan)).toEqual([`${long}_p2026_11_23`, `${long}_p2026_11_25`, `${long}_p2026_11_22`, `${long}_p2026_11_21`]);
  });

  it('a fill whose lower bound has milliseconds carries them in its name', () => {
    const existing = catalog('timestamptz', [['events_odd', '2026-11-22T00:00:00Z', '2026-11-23T05:00:00.250Z']]);
    const plan = planPartitions(existing, policy({ interval: 'day', premake: 1 }), at('2026-11-23T10:00:00Z'));
    expect(plan.create.map((p) => [p.name.name, p.fromLiteral])).toEqual([
      ['events_p20261123_050000250', '2026-11-23 05:00:00.250+00:00'],
      ['events_p2026_11_24', '2026-11-24 00:00:00+00:00'],
    ]);
  });

  it('timestamp and date keys fill on the wall clock', () => {
    const existing = catalog('timestamp', [['events_odd', '2026-11-23T06:00:00', '2026-11-24T06:00:00']]);
    const plan = planPartitions(existing, policy({ interval: 'day', premake: 1, timeZone: 'Asia/Tokyo' }), at('2026-11-23T10:00:00Z'));
    expect(plan.create.map((p) => [p.name.name, p.fromLiteral, p.toLiteral])).toEqual([
      ['events_p20261123_000000', '2026-11-23 00:00:00', '2026-11-23 06:00:00'],
      ['events_p20261124_060000', '2026-11-24 06:00:00', '2026-11-25 00:00:00'],
    ]);
    const weekly = catalog('date', [['events_week', '2026-11-19', '2026-11-26']]);
    const days = planPartitions(weekly, policy({ interval: 'day', premake: 4 }), at('2026-11-23T10:00:00Z'));
    expect(days.create.map((p) => [p.name.name, p.fromLiteral])).toEqual([
      ['events_p2026_11_26', '2026-11-26'],
      ['events_p2026_11_27', '2026-11-27'],
    ]);
    expect(partitionsAhead(days, [...weekly.partitions, ...days.create])).toBe(4);
  });
});
