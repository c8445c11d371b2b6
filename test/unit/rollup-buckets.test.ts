import { DateTime, IANAZone } from 'luxon';
import { describe, expect, it } from 'vitest';
import { BUCKET_MS, type Bucket, floorToBucket, instant, isBucketStart, mergeBuckets } from '../../functions/rollup/buckets';
import { upperBound } from '../../functions/rollup/plan';
import { parseUtcDate, parseUtcTimestamp, utcParameter } from '../../shared/db';

/**
 * Runs under three process zones (vitest.config.ts: UTC, Asia/Seoul, America/Sao_Paulo). Every
 * bucket start, floor and merge, and every value the driver reads or binds for them, must come out
 * the same in each, swept across DST transitions of zones with whole-hour, half-hour and
 * 45-minute offsets (the process zone never observes these transitions itself).
 */
const ZONES = [
  'America/New_York',
  'Europe/Berlin',
  'Australia/Sydney',
  'Australia/Lord_Howe',
  'America/St_Johns',
  'America/Sao_Paulo',
  'Asia/Kathmandu',
];
const YEARS = [2018, 2019, 2026];
const HOUR = 3_600_000;
const BUCKETS: Bucket[] = ['hour', 'day'];

/**
 * Every instant at which one of ZONES changes its UTC offset in YEARS, to the minute. Found day
 * by day, then by bisection inside the day (no zone changes its offset twice in one day).
 */
function transitions(): number[] {
  const DAY = 24 * HOUR;
  const found: number[] = [];
  for (const name of ZONES) {
    const zone = IANAZone.create(name);
    for (const year of YEARS) {
      for (let day = Date.UTC(year, 0, 1), end = Date.UTC(year + 1, 0, 1); day < end; day += DAY) {
        const before = zone.offset(day);
        if (zone.offset(day + DAY) === before) continue;
        let [lo, hi] = [day, day + DAY]; // offset(lo) = before, offset(hi) differs
        while (hi - lo > 60_000) {
          const mid = lo + Math.floor((hi - lo) / 120_000) * 60_000;
          if (zone.offset(mid) === before) lo = mid;
          else hi = mid;
        }
        found.push(hi);
      }
    }
  }
  return found;
}

const TRANSITIONS = transitions();

/** Instants around each transition: 30 hours either side (a local day and its neighbours), on an odd step so seconds and milliseconds vary too. */
function sweep(): number[] {
  const out: number[] = [];
  for (const at of TRANSITIONS) {
    out.push(at, at - 1, at + 1);
    for (let ms = at - 30 * HOUR; ms <= at + 30 * HOUR; ms += 11 * 60_000 + 13_017) out.push(ms);
  }
  out.push(Date.UTC(1969, 11, 31, 23, 59, 59, 999), 0, Date.UTC(2026, 10, 19, 15), Date.UTC(2026, 10, 18, 15));
  return out;
}

const reference = (ms: number, bucket: Bucket) => DateTime.fromMillis(ms, { zone: 'UTC' }).startOf(bucket).toMillis();
/** Postgres's ISO text of a UTC wall-clock time, as a `timestamp` column returns it. */
const timestampText = (ms: number, micros = '') => DateTime.fromMillis(ms, { zone: 'UTC' }).toFormat('yyyy-MM-dd HH:mm:ss') + micros;

describe('rollup bucket alignment is exact and independent of the process zone', () => {
  const instants = sweep();

  it(`sweeps ${ZONES.length} zones' offset changes (process zone ${process.env.TZ})`, () => {
    expect(TRANSITIONS.length).toBeGreaterThanOrEqual(25);
    expect(instants.length).toBeGreaterThan(5_000);
  });

  it.each(BUCKETS)('%s: every floor is the UTC bucket start holding the instant, and a bucket start floors to itself', (bucket) => {
    for (const ms of instants) {
      const floor = floorToBucket(ms, bucket);
      if (floor !== reference(ms, bucket))
        expect({ ms: instant(ms), floor: instant(floor) }).toEqual({ ms: instant(ms), floor: instant(reference(ms, bucket)) });
      if (!(floor <= ms && ms < floor + BUCKET_MS[bucket]) || !isBucketStart(floor, bucket) || floorToBucket(floor, bucket) !== floor) {
        expect.fail(`${bucket} floor of ${instant(ms)} is ${instant(floor)}`);
      }
      if (isBucketStart(ms, bucket) !== (floor === ms)) expect.fail(`isBucketStart(${instant(ms)}, ${bucket})`);
      const iso = instant(floor);
      if (!(bucket === 'hour' ? /T\d\d:00:00\.000Z$/ : /T00:00:00\.000Z$/).test(iso)) expect.fail(`${iso} is not a ${bucket} start`);
    }
  });

  it.each(BUCKETS)('%s: the upper bound is a bucket start at or before both now − settle delay and the fence', (bucket) => {
    for (const [i, ms] of instants.entries()) {
      const settle = [0, 5, 61, 1_440][i % 4]!;
      const fence = i % 3 === 0 ? null : ms - (i % 7) * 1_234_567;
      const upper = upperBound(ms, settle, fence, bucket);
      const limit = Math.min(ms - settle * 60_000, fence ?? Number.POSITIVE_INFINITY);
      if (!isBucketStart(upper, bucket) || upper > limit || upper + BUCKET_MS[bucket] <= limit) {
        expect.fail(`upper bound ${instant(upper)} for now ${instant(ms)}, settle ${settle} min, fence ${fence === null ? 'none' : instant(fence)}`);
      }
    }
  });

  it.each(BUCKETS)('%s: a lookback start (watermark floor − n buckets) is a bucket start', (bucket) => {
    for (const [i, ms] of instants.entries()) {
      const from = floorToBucket(ms, bucket) - (i % 5) * BUCKET_MS[bucket];
      if (!isBucketStart(from, bucket)) expect.fail(`lookback start ${instant(from)}`);
    }
  });

  it.each(BUCKETS)(
    '%s: merged changed buckets are sorted, disjoint, non-adjacent ranges on the grid covering exactly the changed buckets',
    (bucket) => {
      const size = BUCKET_MS[bucket];
      // Changed-at rows anywhere in the sweep (not only bucket starts), in a scrambled order.
      const rows = instants.filter((_, i) => i % 3 !== 0).sort((a, b) => ((a * 7919) % 104729) - ((b * 7919) % 104729));
      const ranges = mergeBuckets(rows, bucket);
      const covered = new Set<number>();
      for (const [i, [from, to]] of ranges.entries()) {
        if (!isBucketStart(from, bucket) || !isBucketStart(to, bucket) || to <= from) expect.fail(`range [${instant(from)}, ${instant(to)})`);
        if (i > 0 && from <= ranges[i - 1]![1]) expect.fail(`range ${i} touches the previous one`);
        for (let b = from; b < to; b += size) covered.add(b);
      }
      expect([...covered].sort((a, b) => a - b)).toEqual([...new Set(rows.map((ms) => reference(ms, bucket)))].sort((a, b) => a - b));
    },
  );

  it('the driver reads timestamp and date text as UTC and binds Dates as UTC, whatever the process zone', () => {
    for (const ms of instants) {
      const hour = floorToBucket(ms, 'hour');
      const day = floorToBucket(ms, 'day');
      const wholeMs = Math.floor(ms / 1000) * 1000;
      if ((parseUtcTimestamp(timestampText(hour)) as Date).getTime() !== hour) expect.fail(`timestamp ${timestampText(hour)}`);
      if ((parseUtcTimestamp(timestampText(wholeMs, '.123456')) as Date).getTime() !== wholeMs + 123)
        expect.fail(`timestamp ${timestampText(wholeMs, '.123456')}`);
      if ((parseUtcDate(timestampText(day).slice(0, 10)) as Date).getTime() !== day) expect.fail(`date ${timestampText(day).slice(0, 10)}`);
      const bound = utcParameter(new Date(ms));
      if (bound !== new Date(ms).toISOString().replace('Z', '+00:00')) expect.fail(`Date ${instant(ms)} bound as ${String(bound)}`);
    }
    expect(parseUtcTimestamp('infinity')).toBe(Number.POSITIVE_INFINITY);
    expect(parseUtcTimestamp('-infinity')).toBe(Number.NEGATIVE_INFINITY);
    expect((parseUtcTimestamp('0044-03-15 12:00:00 BC') as Date).toISOString()).toBe('-000043-03-15T12:00:00.000Z');
    expect(utcParameter(new Date('-000043-03-15T12:00:00.000Z'))).toBe('0044-03-15T12:00:00.000+00:00 BC');
    expect(utcParameter([new Date(Date.UTC(2026, 10, 19)), 'x', 3])).toEqual(['2026-11-19T00:00:00.000+00:00', 'x', 3]);
    expect(utcParameter(['x', [new Date(Date.UTC(2026, 10, 19))]])).toEqual(['x', ['2026-11-19T00:00:00.000+00:00']]);
    const plain = ['1', '2'];
    expect(utcParameter(plain)).toBe(plain);
  });
});
