import { describe, expect, it } from 'vitest';
import { postgresZoneName } from '../../shared/calendar';

/**
 * The name the S3 destination gives Postgres for the policy's zone (its dt= days) must be the zone
 * Node reads (Luxon computes the cutoffs), under a name Postgres cannot take for one of its
 * abbreviations: a region's name, with a slash.
 */
const offsets = (zone: string, instants: number[]) => {
  const format = new Intl.DateTimeFormat('en-US', { timeZone: zone, timeZoneName: 'longOffset', hour: 'numeric' });
  return instants.map((ms) => format.formatToParts(ms).find((part) => part.type === 'timeZoneName')!.value);
};

describe('postgresZoneName', () => {
  // Every week of two years: each zone's summer and winter, and the days between.
  const instants = Array.from({ length: 105 }, (_, week) => Date.UTC(2025, 0, 1) + week * 7 * 86_400_000);
  const legacy = [
    'IST',
    'CET',
    'MET',
    'EET',
    'WET',
    'EST',
    'MST',
    'HST',
    'ACT',
    'NST',
    'BST',
    'AST',
    'PST',
    'CST',
    'ART',
    'EST5EDT',
    'US/Pacific-New',
    'UTC',
    'GMT',
    'Etc/UTC',
  ];

  it('is the zone Node reads, with a slash, for every zone Node knows and the legacy names it accepts', () => {
    for (const zone of [...Intl.supportedValuesOf('timeZone'), ...legacy]) {
      const name = postgresZoneName(zone);
      expect(name, zone).toContain('/');
      expect(offsets(name, instants), `${zone} -> ${name}`).toEqual(offsets(zone, instants));
    }
  });

  it('reads the names Postgres knows as abbreviations as Node does', () => {
    expect(postgresZoneName('IST')).toBe('Asia/Calcutta');
    expect(postgresZoneName('UTC')).toBe('Etc/UTC');
    expect(postgresZoneName('Europe/Berlin')).toBe('Europe/Berlin');
  });
});
