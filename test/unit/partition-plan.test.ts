import { DateTime } from 'luxon';
import { describe, expect, it } from 'vitest';
import type { ExistingPartition, PartitionCatalog, PartitionKeyType } from '../../functions/partition/catalog';
import { planPartitions } from '../../functions/partition/plan';
import { partitionTargetSchema, type PartitionTargetInput } from '../../functions/partition/policy';
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
  const existing: ExistingPartition[] = partitions.map(([name, from, to]) => ({
    name: { schema: 'public', name },
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
    ...extra,
  };
}

const policy = (input: Omit<PartitionTargetInput, 'table'>) => partitionTargetSchema.parse({ table: 'events', ...input });
const names = (plan: ReturnType<typeof planPartitions>) => plan.create.map((p) => p.name.name);
const at = (iso: string) => new Date(iso);

describe('planPartitions: every interval and its naming', () => {
  it('day: the current day plus premake future days, with UTC bounds', () => {
    const plan = planPartitions(catalog('timestamptz'), policy({ interval: 'day', premake: 3 }), at('2026-11-23T10:15:00Z'));
    expect(names(plan)).toEqual(['events_p2026_11_23', 'events_p2026_11_24', 'events_p2026_11_25', 'events_p2026_11_26']);
    expect(plan.create[0]).toMatchObject({ fromLiteral: '2026-11-23 00:00:00+00:00', toLiteral: '2026-11-24 00:00:00+00:00' });
    expect(plan.retire).toEqual([]);
    expect(plan.aheadBefore + plan.aheadPlanned.size).toBe(3);
  });

  it('hour: named by the UTC hour and minute', () => {
    const plan = planPartitions(catalog('timestamptz'), policy({ interval: 'hour', premake: 2 }), at('2026-11-23T22:59:59Z'));
    expect(names(plan)).toEqual(['events_p2026_11_23_2200', 'events_p2026_11_23_2300', 'events_p2026_11_24_0000']);
  });

  it('hour: half-hour zones get half-hour boundaries and still unique names', () => {
    const plan = planPartitions(catalog('timestamptz'), policy({ interval: 'hour', premake: 1, timeZone: 'Asia/Kolkata' }), at('2026-11-23T10:45:00Z'));
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
    const fall = planPartitions(catalog('timestamptz'), policy({ interval: 'day', premake: 1, timeZone: 'Europe/Berlin' }), at('2026-10-25T08:00:00Z'));
    expect(fall.create[0]).toMatchObject({ fromLiteral: '2026-10-25 00:00:00+02:00', toLiteral: '2026-10-26 00:00:00+01:00' });
    expect(fall.create[0]!.to - fall.create[0]!.from).toBe(25 * 3600_000);
    const spring = planPartitions(catalog('timestamptz'), policy({ interval: 'day', premake: 1, timeZone: 'Europe/Berlin' }), at('2027-03-28T08:00:00Z'));
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

  it('leaves slots overlapped by a non-aligned partition to it, with a warning', () => {
    const existing = catalog('timestamptz', [['events_odd', '2026-11-23T12:00:00Z', '2026-11-24T12:00:00Z']]);
    const plan = planPartitions(existing, policy({ interval: 'day', premake: 2 }), at('2026-11-23T10:00:00Z'));
    expect(names(plan)).toEqual(['events_p2026_11_25']);
    expect(plan.warnings).toEqual([expect.stringContaining('public.events_odd covers a range not aligned to day boundaries')]);
  });

  it('a second plan after applying the first has nothing to do', () => {
    const now = at('2026-11-23T10:00:00Z');
    const first = planPartitions(catalog('timestamptz'), policy({ interval: 'day', premake: 3 }), now);
    const applied = catalog('timestamptz');
    applied.partitions = first.create.map((p) => ({ name: p.name, from: p.from, to: p.to, detachPending: false })).sort((a, b) => a.from - b.from);
    const second = planPartitions(applied, policy({ interval: 'day', premake: 3 }), now);
    expect(second.create).toEqual([]);
    expect(second.aheadBefore).toBe(3);
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
    const plan = planPartitions(days, policy({ interval: 'day', premake: 1, retention: { duration: '5 days', mode: 'detach' } }), at('2026-11-23T10:00:00Z'));
    // cutoff 11-18 10:00: the 11-17 partition ends 11-18 00:00 (retired), 11-18 ends 11-19 (kept)
    expect(plan.retire.map((r) => r.partition.name)).toEqual(['events_p2026_11_14', 'events_p2026_11_15', 'events_p2026_11_16', 'events_p2026_11_17']);
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
