import { Duration } from 'aws-cdk-lib';
import { DateTime } from 'luxon';
import { describe, expect, it } from 'vitest';
import { resolveSchedule, validateCron } from '../../infra/schedule-expression';
import { longestGapSeconds } from '../../infra/schedule-gap';
import { TimeBudget } from '../../shared/time-budget';
import { formatWindow, parseWindow, windowAt, windowProblems } from '../../shared/window';

const at = (iso: string) => DateTime.fromISO(iso, { setZone: true }).toMillis();
const FROM = DateTime.utc(2026, 1, 1);

describe('schedules in a time zone', () => {
  it('take a six-field Scheduler cron, with or without cron(...), and a zone', () => {
    expect(resolveSchedule({ cron: '0 3 * * ? *', timeZone: 'Asia/Seoul' }, 'Housekeeping.partition.schedule')).toEqual({
      expression: 'cron(0 3 * * ? *)',
      timeZone: 'Asia/Seoul',
    });
    expect(resolveSchedule({ cron: 'cron(0 8,20 ? * MON-FRI *)', timeZone: 'Europe/Berlin' }, 'x')).toEqual({
      expression: 'cron(0 8,20 ? * MON-FRI *)',
      timeZone: 'Europe/Berlin',
    });
    expect(resolveSchedule({ rate: Duration.minutes(15) }, 'x')).toEqual({ expression: 'rate(15 minutes)', timeZone: 'UTC' });
    expect(resolveSchedule({ rate: Duration.hours(1) }, 'x').expression).toBe('rate(1 hour)');
    expect(resolveSchedule({ rate: Duration.days(2) }, 'x').expression).toBe('rate(2 days)');
    for (const cron of [
      '0/15 * * * ? *',
      '0 3 L * ? *',
      '0 3 15W * ? *',
      '0 3 ? * 6#3 *',
      '0 3 ? * FRIL *',
      '0 3 1 JAN-MAR ? 2026-2030',
      '5,35 1-4 ? * SUN,SAT *',
    ]) {
      expect(() => validateCron(cron, 'c'), cron).not.toThrow();
    }
  });

  it('refuse a bad zone or expression at synth, naming the field', () => {
    expect(() => resolveSchedule({ cron: '0 3 * * ? *', timeZone: 'Asia/Seol' }, 'Housekeeping.archive.schedule')).toThrowError(
      'Housekeeping.archive.schedule.timeZone: "Asia/Seol" is not an IANA time zone',
    );
    expect(() => resolveSchedule({ cron: '0 3 * * ? *' }, 'Housekeeping.archive.schedule')).toThrowError(
      /^Housekeeping\.archive\.schedule\.timeZone: undefined is not/,
    );
    const cases: Array<[string, RegExp]> = [
      ['0 3 * * *', /schedule\.cron: "0 3 \* \* \*": has 5 field\(s\); EventBridge Scheduler needs 6/],
      ['0 3 * * * *', /schedule\.cron: .*day-of-month and day-of-week: exactly one of them must be "\?"/],
      ['0 3 ? * ? *', /exactly one of them must be "\?"/],
      ['0 24 * * ? *', /schedule\.cron: .*hours: "24" is not a value 0-23/],
      ['61 3 * * ? *', /minutes: "61" is not a value 0-59/],
      ['0 3 ? * MOX *', /day-of-week: "MOX" is not a value 1-7 or SUN-SAT/],
      ['0 3 * 13 ? *', /month: "13" is not a value 1-12 or JAN-DEC/],
      ['0 ? * * ? *', /hours: "\?" is allowed only in day-of-month or day-of-week/],
      ['0 3 * * ? 1969', /year: "1969" is not a value 1970-2199/],
    ];
    for (const [cron, message] of cases) {
      expect(() => resolveSchedule({ cron, timeZone: 'UTC' }, 'Housekeeping.partition.schedule'), cron).toThrowError(message);
    }
    expect(() => resolveSchedule({ rate: Duration.seconds(90) }, 'Housekeeping.rollup.schedule')).toThrowError(
      /^Housekeeping\.rollup\.schedule\.rate: a whole number of minutes/,
    );
    expect(() => resolveSchedule({ expressionString: 'cron(0 3 * * ? *)' }, 'Housekeeping.rollup.schedule')).toThrowError(
      /aws-events Schedule runs in UTC only/,
    );
  });

  it('size the alarm period from the longest gap in real time: daylight saving adds an hour, a skipped local time a day', () => {
    // No DST in Seoul: 24 hours, every day.
    expect(longestGapSeconds('cron(0 3 * * ? *)', 'Asia/Seoul', FROM)).toBe(24 * 3600);
    // Berlin: the autumn change makes a 25-hour day.
    expect(longestGapSeconds('cron(0 3 * * ? *)', 'Europe/Berlin', FROM)).toBe(25 * 3600);
    // 02:30 does not exist on the spring change in Berlin: Scheduler skips it.
    expect(longestGapSeconds('cron(30 2 * * ? *)', 'Europe/Berlin', FROM)).toBe(47 * 3600);
    // Hourly in New York: the repeated 01:05 fires once, so two hours pass.
    expect(longestGapSeconds('cron(5 * * * ? *)', 'America/New_York', FROM)).toBe(2 * 3600);
    // Lord Howe moves its clocks by 30 minutes.
    expect(longestGapSeconds('cron(0 3 * * ? *)', 'Australia/Lord_Howe', FROM)).toBe(24.5 * 3600);
    expect(longestGapSeconds('cron(0 8,20 ? * MON-FRI *)', 'UTC', FROM)).toBe((12 + 48) * 3600);
    expect(longestGapSeconds('rate(15 minutes)', 'Europe/Berlin', FROM)).toBe(900);
    expect(longestGapSeconds('cron(0 0 1 * ? *)', 'UTC', FROM)).toBeUndefined();
  });
});

describe('maintenance windows', () => {
  const seoul = { start: '01:00', end: '05:00', timeZone: 'Asia/Seoul' };

  it('are open from start to end in their zone, whatever the process zone', () => {
    expect(windowAt(at('2026-11-23T01:00:00+09:00'), seoul)).toEqual({ open: true, closesAt: at('2026-11-23T05:00:00+09:00') });
    expect(windowAt(at('2026-11-23T04:59:59+09:00'), seoul)).toEqual({ open: true, closesAt: at('2026-11-23T05:00:00+09:00') });
    expect(windowAt(at('2026-11-23T05:00:00+09:00'), seoul)).toEqual({ open: false, opensAt: at('2026-11-24T01:00:00+09:00') });
    // 03:15 UTC is 12:15 in Seoul: business hours.
    expect(windowAt(at('2026-11-23T03:15:00Z'), seoul)).toEqual({ open: false, opensAt: at('2026-11-24T01:00:00+09:00') });
    expect(windowAt(at('2026-11-22T17:30:00Z'), seoul)).toEqual({ open: true, closesAt: at('2026-11-23T05:00:00+09:00') });
  });

  it('cross midnight when the end is before the start, and follow daylight saving', () => {
    const night = { start: '22:00', end: '04:00', timeZone: 'Europe/Berlin' };
    expect(windowAt(at('2026-11-23T23:30:00+01:00'), night)).toEqual({ open: true, closesAt: at('2026-11-24T04:00:00+01:00') });
    expect(windowAt(at('2026-11-24T03:00:00+01:00'), night)).toEqual({ open: true, closesAt: at('2026-11-24T04:00:00+01:00') });
    expect(windowAt(at('2026-11-24T12:00:00+01:00'), night)).toEqual({ open: false, opensAt: at('2026-11-24T22:00:00+01:00') });
    // The night of the spring change is an hour shorter in real time.
    const spring = windowAt(at('2026-03-28T22:00:00+01:00'), night);
    expect(spring).toEqual({ open: true, closesAt: at('2026-03-29T04:00:00+02:00') });
    expect(((spring as { closesAt: number }).closesAt - at('2026-03-28T22:00:00+01:00')) / 3600_000).toBe(5);
  });

  it('are validated naming the field, and travel as "HH:MM-HH:MM Zone"', () => {
    expect(windowProblems({ start: '25:00', end: '05:00', timeZone: 'Asia/Seol' }, 'Housekeeping.archive.window')).toEqual([
      'Housekeeping.archive.window.start: "25:00" is not a time of day (HH:MM, 00:00 to 23:59)',
      'Housekeeping.archive.window.timeZone: "Asia/Seol" is not an IANA time zone (e.g. "Asia/Seoul", "Europe/Berlin")',
    ]);
    expect(windowProblems({ start: '01:00', end: '01:00', timeZone: 'UTC' }, 'w')).toEqual([
      'w.end: equals start; a window that never closes is no window (leave window unset)',
    ]);
    expect(windowProblems({ start: '1:00', end: '05:00', timeZone: 'UTC', days: 'MON' }, 'w')).toEqual([
      'w.days: unknown field (a window has start, end and timeZone)',
      'w.start: "1:00" is not a time of day (HH:MM, 00:00 to 23:59)',
    ]);
    expect(parseWindow(formatWindow(seoul), 'PGHK_MAINTENANCE_WINDOW')).toEqual(seoul);
    expect(() => parseWindow('01:00 to 05:00', 'PGHK_MAINTENANCE_WINDOW')).toThrowError(/^PGHK_MAINTENANCE_WINDOW: /);
  });

  it('fold into the time budget: outside them no new work starts, while lock retries and partition steps look at time only', () => {
    const closed = TimeBudget.ofMs(60_000).withWindowClosingIn(0).forTarget();
    expect(closed.hasTime(1_000)).toBe(true);
    expect(closed.isExhausted()).toBe(false);
    expect(closed.refusedBy).toBeUndefined();
    expect(closed.windowClosed()).toBe(true);
    expect(closed.refusedBy).toBeUndefined();
    expect(closed.allows(1_000)).toBe(false);
    expect(closed.refusedBy).toBe('window');

    const short = TimeBudget.ofMs(500).withWindowClosingIn(3_600_000).forTarget();
    expect(short.allows(1_000)).toBe(false);
    expect(short.refusedBy).toBe('time');
    // Each target starts with a clean record.
    expect(short.forTarget().refusedBy).toBeUndefined();
    expect(TimeBudget.unlimited().allows(1e9)).toBe(true);
  });
});
