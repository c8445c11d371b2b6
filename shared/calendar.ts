import { DateTime, type DurationLikeObject } from 'luxon';

/** Calendar arithmetic in a time zone. Months clamp the day (Mar 31 − 1 month = last day of Feb). */

export type CalendarUnit = 'hour' | 'day' | 'week' | 'month' | 'quarter' | 'year';
export type DurationUnit = 'hour' | 'day' | 'week' | 'month' | 'year';

export interface CalendarDuration {
  amount: number;
  unit: DurationUnit;
}

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

/** Start of the hour/day/ISO week (Monday)/month/quarter/year containing `at`, in `at`'s zone. */
export function floorTo(at: DateTime, unit: CalendarUnit): DateTime {
  return at.startOf(unit);
}

/**
 * The boundary `count` units after the boundary `at`. Re-flooring makes a day after a 23- or
 * 25-hour day land on local midnight again.
 */
export function addUnits(at: DateTime, unit: CalendarUnit, count: number): DateTime {
  return floorTo(at.plus(durationObject(unit, count)), unit);
}
