import { DateTime } from 'luxon';

/**
 * The longest time between two firings of an EventBridge Scheduler expression evaluated in
 * `timeZone`, in seconds.
 *
 * The safety alarms treat missing data as breaching, so their period must hold at least one run:
 * that period comes from here. Supported: `rate(...)`, and `cron(...)` whose day-of-month, month
 * and year are `*` or `?` (minutes, hours and weekdays may be values, ranges, steps and lists).
 * Anything else returns undefined and the caller asks for `runsEvery`.
 *
 * In a zone with daylight saving time the wall clock jumps: Scheduler skips a firing whose local
 * time does not exist (spring) and fires once in the hour that repeats (autumn). So a daily 02:30
 * in Europe/Berlin leaves 48 hours once a year, and every daily schedule has a 25-hour gap. The
 * firings around each clock change of the two years from `from` are laid out in real time.
 */
export function longestGapSeconds(expression: string, timeZone = 'UTC', from: DateTime = DateTime.utc().startOf('year')): number | undefined {
  const rate = /^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$/.exec(expression);
  if (rate) return Number(rate[1]) * { minute: 60, hour: 3_600, day: 86_400 }[rate[2]!.replace(/s$/, '') as 'minute' | 'hour' | 'day'];
  const cron = /^cron\((.+)\)$/.exec(expression);
  if (!cron) return undefined;
  const fields = cron[1]!.trim().split(/\s+/);
  if (fields.length !== 6) return undefined;
  const [minute, hour, dayOfMonth, month, dayOfWeek, year] = fields as [string, string, string, string, string, string];
  if (![dayOfMonth, month, year].every((f) => f === '*' || f === '?')) return undefined;
  const minutes = expand(minute, 0, 59);
  const hours = expand(hour, 0, 23);
  // EventBridge numbers weekdays 1 (SUN) to 7 (SAT).
  const weekdays = dayOfWeek === '*' || dayOfWeek === '?' ? [1, 2, 3, 4, 5, 6, 7] : expand(dayOfWeek, 1, 7, WEEKDAY_NAMES);
  if (!minutes || !hours || !weekdays || minutes.length * hours.length * weekdays.length === 0) return undefined;
  const fires: number[] = [];
  for (const day of weekdays) for (const h of hours) for (const m of minutes) fires.push(((day - 1) * 24 + h) * 60 + m);
  fires.sort((a, b) => a - b);
  const week = 7 * 24 * 60;
  // On the wall clock, where every day has 24 hours.
  let longest = fires[0]! + week - fires[fires.length - 1]!;
  for (let i = 1; i < fires.length; i++) longest = Math.max(longest, fires[i]! - fires[i - 1]!);
  let seconds = longest * 60;
  // Days either side of a clock change that hold the firings before and after it.
  const reach = Math.ceil(longest / 1440) + 1;
  for (const change of clockChanges(timeZone, from)) {
    const instants: number[] = [];
    for (let offset = -reach; offset <= reach; offset++) {
      const local = change.plus({ days: offset });
      if (!weekdays.includes((local.weekday % 7) + 1)) continue;
      for (const h of hours)
        for (const m of minutes) {
          const at = firing(local, h, m);
          if (at !== undefined) instants.push(at);
        }
    }
    instants.sort((a, b) => a - b);
    for (let i = 1; i < instants.length; i++) seconds = Math.max(seconds, (instants[i]! - instants[i - 1]!) / 1000);
  }
  return seconds;
}

/** The local days (start of day) on which the zone's UTC offset changes, over two years from `from`. */
function clockChanges(timeZone: string, from: DateTime): DateTime[] {
  const days: DateTime[] = [];
  let day = from.setZone(timeZone).startOf('day');
  let offset = day.plus({ hours: 12 }).offset;
  for (let i = 0; i < 731; i++) {
    const next = day.plus({ days: 1 });
    const nextOffset = next.plus({ hours: 12 }).offset;
    if (nextOffset !== offset) days.push(next);
    [day, offset] = [next, nextOffset];
  }
  return days;
}

/** When Scheduler fires for local time h:m on `day`: never if it does not exist, once (the first) if it repeats. */
function firing(day: DateTime, hour: number, minute: number): number | undefined {
  const at = day.set({ hour, minute, second: 0, millisecond: 0 });
  if (at.hour !== hour || at.minute !== minute) return undefined;
  // Luxon resolves a repeated local time to its later instant; an earlier one with the same wall clock is the first.
  for (const back of [60, 30]) {
    const earlier = at.minus({ minutes: back });
    if (earlier.hour === hour && earlier.minute === minute) return earlier.toMillis();
  }
  return at.toMillis();
}

const WEEKDAY_NAMES = ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'];

function expand(field: string, min: number, max: number, names: string[] = []): number[] | undefined {
  const values = new Set<number>();
  const value = (text: string) => {
    const named = names.indexOf(text.toUpperCase());
    const n = named >= 0 ? named + min : /^\d+$/.test(text) ? Number(text) : Number.NaN;
    return n >= min && n <= max ? n : undefined;
  };
  for (const part of field.split(',')) {
    const match = /^(\*|[A-Za-z0-9]+(?:-[A-Za-z0-9]+)?)(?:\/(\d+))?$/.exec(part);
    if (!match) return undefined;
    const step = match[2] ? Number(match[2]) : 1;
    if (step < 1) return undefined;
    let from: number | undefined;
    let to: number | undefined;
    if (match[1] === '*') [from, to] = [min, max];
    else {
      const [a, b] = match[1]!.split('-');
      from = value(a!);
      to = b === undefined ? (match[2] ? max : from) : value(b);
    }
    if (from === undefined || to === undefined || to < from) return undefined;
    for (let n = from; n <= to; n += step) values.add(n);
  }
  return [...values];
}
