import { DateTime } from 'luxon';
import { parseDuration, subtractDuration } from '../../shared/calendar';
import { ConfigError } from '../../shared/errors';

import type { TimeColumnType } from '../../shared/postgres';

export type AgeColumnType = TimeColumnType;

/**
 * The archive cutoff: database now minus the retention, in calendar terms in `timeZone`
 * (13 months before 2027-03-31 is 2026-02-28; 1 day before a 25-hour day is the same wall time).
 */
export function archiveCutoff(dbNow: Date, retention: string, timeZone: string): DateTime {
  const duration = parseDuration(retention);
  if (!duration) throw new ConfigError('retention', `cannot parse ${JSON.stringify(retention)}`);
  return subtractDuration(DateTime.fromJSDate(dbNow, { zone: timeZone }), duration);
}

/** The cutoff as a literal of the column's own type; a zone-less column compares on wall-clock time. */
export function cutoffLiteral(cutoff: DateTime, columnType: AgeColumnType): string {
  if (columnType === 'date') return cutoff.toFormat('yyyy-MM-dd');
  if (columnType === 'timestamp') return cutoff.toFormat('yyyy-MM-dd HH:mm:ss.SSS');
  return cutoff.toFormat('yyyy-MM-dd HH:mm:ss.SSSZZ');
}
