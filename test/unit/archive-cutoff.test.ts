import { describe, expect, it } from 'vitest';
import { archiveCutoff, cutoffLiteral } from '../../functions/archive/plan';

const cutoff = (now: string, retention: string, zone = 'UTC') => archiveCutoff(new Date(now), retention, zone);

describe('archive cutoff: calendar arithmetic on the database clock', () => {
  it.each([
    ['2027-03-31T10:00:00Z', '13 months', '2026-02-28 10:00:00.000+00:00'],
    ['2027-03-31T10:00:00Z', '1 month', '2027-02-28 10:00:00.000+00:00'],
    ['2028-03-31T10:00:00Z', '1 month', '2028-02-29 10:00:00.000+00:00'], // leap year
    ['2028-02-29T10:00:00Z', '1 year', '2027-02-28 10:00:00.000+00:00'],
    ['2027-05-07T00:00:00Z', '13 months', '2026-04-07 00:00:00.000+00:00'],
    ['2027-01-15T00:00:00Z', '90 days', '2026-10-17 00:00:00.000+00:00'],
    ['2027-01-15T00:30:00Z', '48 hours', '2027-01-13 00:30:00.000+00:00'],
    ['2027-01-15T00:30:00Z', '2 weeks', '2027-01-01 00:30:00.000+00:00'],
  ])('%s minus %s is %s', (now, retention, expected) => {
    expect(cutoffLiteral(cutoff(now, retention), 'timestamptz')).toBe(expected);
  });

  it('days are calendar days in the policy zone, across DST', () => {
    // Midnight of 2026-10-26 in Berlin (CET) minus 1 day is midnight of the 25th, still CEST: 25 hours earlier.
    const result = cutoff('2026-10-25T23:00:00Z', '1 day', 'Europe/Berlin');
    expect(cutoffLiteral(result, 'timestamptz')).toBe('2026-10-25 00:00:00.000+02:00');
    expect(new Date('2026-10-25T23:00:00Z').getTime() - result.instant.toMillis()).toBe(25 * 3600_000);
  });

  it('a wall time the zone skipped resolves to the first instant after the gap; a repeated one to its earlier instant', () => {
    // Berlin skipped 02:00-03:00 on 2026-03-29: a day before 02:30 on the 30th is 03:00 CEST, not 03:30.
    const skipped = cutoff('2026-03-30T00:30:00Z', '1 day', 'Europe/Berlin');
    expect(cutoffLiteral(skipped, 'timestamptz')).toBe('2026-03-29 03:00:00.000+02:00');
    expect(cutoffLiteral(skipped, 'timestamp')).toBe('2026-03-29 02:30:00.000'); // zone-less columns keep the wall time
    // Berlin repeated 02:00-03:00 on 2026-10-25: a day before 02:30 on the 26th is the first 02:30 (CEST).
    const repeated = cutoff('2026-10-26T01:30:00Z', '1 day', 'Europe/Berlin');
    expect(cutoffLiteral(repeated, 'timestamptz')).toBe('2026-10-25 02:30:00.000+02:00');
  });

  it('hours are elapsed time, whatever the wall clock did', () => {
    const result = cutoff('2026-03-29T03:00:00Z', '3 hours', 'Europe/Berlin'); // 05:00 CEST; three hours before is 01:00 CET
    expect(cutoffLiteral(result, 'timestamptz')).toBe('2026-03-29 01:00:00.000+01:00');
    expect(cutoffLiteral(result, 'timestamp')).toBe('2026-03-29 01:00:00.000');
  });

  it('zone-less columns compare on the wall clock of the policy zone', () => {
    const result = cutoff('2027-01-15T23:30:00Z', '30 days', 'Asia/Tokyo'); // already Jan 16 in Tokyo
    expect(cutoffLiteral(result, 'timestamp')).toBe('2026-12-17 08:30:00.000');
    expect(cutoffLiteral(result, 'date')).toBe('2026-12-17');
  });
});
