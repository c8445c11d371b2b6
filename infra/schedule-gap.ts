/**
 * The longest time between two firings of an EventBridge schedule expression, in seconds.
 *
 * The safety alarms treat missing data as breaching, so their period must hold at least one run:
 * that period comes from here. Supported: `rate(...)`, and `cron(...)` whose day-of-month, month
 * and year are `*` or `?` (minutes, hours and weekdays may be values, ranges, steps and lists).
 * Anything else returns undefined and the caller asks for `runsEvery`.
 */
export function longestGapSeconds(expression: string): number | undefined {
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
  let longest = fires[0]! + week - fires[fires.length - 1]!;
  for (let i = 1; i < fires.length; i++) longest = Math.max(longest, fires[i]! - fires[i - 1]!);
  return longest * 60;
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
