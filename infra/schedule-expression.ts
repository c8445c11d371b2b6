import { Duration, Token } from 'aws-cdk-lib';
import { IANAZone } from 'luxon';

/**
 * When a job runs, as operators say it: `{ cron: "0 3 * * ? *", timeZone: "Asia/Seoul" }` is every
 * day at 03:00 in Seoul; EventBridge Scheduler evaluates it in that zone and follows its daylight
 * saving changes. `{ rate: Duration.minutes(15) }` runs every 15 minutes, whatever the zone.
 */
export type JobSchedule = { cron: string; timeZone: string } | { rate: Duration };

/** A validated schedule: the Scheduler expression and the zone it is evaluated in. */
export interface ResolvedSchedule {
  expression: string;
  timeZone: string;
}

interface FieldSpec {
  name: string;
  min: number;
  max: number;
  names?: string[];
  /** Characters beyond digits, names, `,` `-` `*`: `/` steps, `?` no value, `L` `W` `#` day rules. */
  allows: string;
}

// EventBridge Scheduler cron: minutes hours day-of-month month day-of-week year.
const FIELDS: FieldSpec[] = [
  { name: 'minutes', min: 0, max: 59, allows: '/' },
  { name: 'hours', min: 0, max: 23, allows: '/' },
  { name: 'day-of-month', min: 1, max: 31, allows: '/?LW' },
  { name: 'month', min: 1, max: 12, names: ['JAN', 'FEB', 'MAR', 'APR', 'MAY', 'JUN', 'JUL', 'AUG', 'SEP', 'OCT', 'NOV', 'DEC'], allows: '/' },
  { name: 'day-of-week', min: 1, max: 7, names: ['SUN', 'MON', 'TUE', 'WED', 'THU', 'FRI', 'SAT'], allows: '?L#' },
  { name: 'year', min: 1970, max: 2199, allows: '/' },
];

function valueOk(text: string, spec: FieldSpec): boolean {
  const named = spec.names?.indexOf(text.toUpperCase()) ?? -1;
  if (named >= 0) return true;
  if (!/^\d+$/.test(text)) return false;
  const n = Number(text);
  return n >= spec.min && n <= spec.max;
}

/** Why one comma-separated part of a field is not Scheduler syntax, or undefined. */
function partProblem(part: string, spec: FieldSpec): string | undefined {
  const range = (text: string) => {
    const [from, to, ...more] = text.split('-');
    if (more.length > 0 || !valueOk(from!, spec) || (to !== undefined && !valueOk(to, spec))) return false;
    return true;
  };
  if (part === '*') return undefined;
  if (spec.allows.includes('/') && /^(\*|[^/]+)\/\d+$/.test(part)) {
    const [base, step] = part.split('/') as [string, string];
    if (Number(step) < 1) return 'a step must be at least 1';
    return base === '*' || range(base) ? undefined : `${JSON.stringify(base)} is out of range ${spec.min}-${spec.max}`;
  }
  if (spec.name === 'day-of-month' && /^(L|LW|\d{1,2}W)$/.test(part)) {
    return part.startsWith('L') || valueOk(part.slice(0, -1), spec) ? undefined : `${JSON.stringify(part)} is out of range`;
  }
  if (spec.name === 'day-of-week') {
    const nth = /^([A-Za-z]{3}|\d)#([1-5])$/.exec(part);
    if (nth) return valueOk(nth[1]!, spec) ? undefined : `${JSON.stringify(nth[1])} is not a day of the week`;
    const last = /^([A-Za-z]{3}|\d)?L$/.exec(part);
    if (last) return last[1] === undefined || valueOk(last[1], spec) ? undefined : `${JSON.stringify(last[1])} is not a day of the week`;
  }
  if (range(part)) return undefined;
  const extra = spec.names ? ` or ${spec.names[0]}-${spec.names[spec.names.length - 1]}` : '';
  return `${JSON.stringify(part)} is not a value ${spec.min}-${spec.max}${extra}, a range, a list or a step`;
}

/**
 * The cron as EventBridge Scheduler reads it (`cron(0 3 * * ? *)`), or an Error naming the field
 * and what is wrong, e.g. a five-field Unix cron or a day given in both day fields.
 */
export function validateCron(cron: string, where: string): string {
  const body = /^cron\((.*)\)$/.exec(cron.trim())?.[1] ?? cron.trim();
  const fields = body.trim().split(/\s+/);
  const fail = (problem: string) => new Error(`${where}: ${JSON.stringify(cron)}: ${problem}`);
  if (fields.length !== 6) {
    throw fail(
      `has ${fields.length} field(s); EventBridge Scheduler needs 6: minutes hours day-of-month month day-of-week year ` +
        '(e.g. "0 3 * * ? *" for 03:00 every day)',
    );
  }
  fields.forEach((field, i) => {
    const spec = FIELDS[i]!;
    if (field === '?') {
      if (!spec.allows.includes('?')) throw fail(`${spec.name}: "?" is allowed only in day-of-month or day-of-week`);
      return;
    }
    for (const part of field.split(',')) {
      const problem = partProblem(part, spec);
      if (problem) throw fail(`${spec.name}: ${problem}`);
    }
  });
  if ((fields[2] === '?') === (fields[4] === '?')) {
    throw fail('day-of-month and day-of-week: exactly one of them must be "?" (e.g. "0 3 * * ? *" every day, "0 3 ? * MON-FRI *" on weekdays)');
  }
  return `cron(${fields.join(' ')})`;
}

/** Checks a job's schedule at synth, naming the field: `Housekeeping.archive.schedule.timeZone: ...`. */
export function resolveSchedule(schedule: unknown, where: string): ResolvedSchedule {
  const value = schedule as Record<string, unknown> | undefined;
  if (value && typeof value === 'object' && 'expressionString' in value) {
    throw new Error(
      `${where}: write { cron: "0 3 * * ? *", timeZone: "Asia/Seoul" } or { rate: Duration.minutes(15) }, which synth checks and EventBridge Scheduler runs in that zone ` +
        '(an aws-events Schedule runs in UTC only)',
    );
  }
  if (value && typeof value === 'object' && 'rate' in value) {
    const rate = value.rate;
    if (!(rate instanceof Duration) || Token.isUnresolved(rate)) throw new Error(`${where}.rate: a Duration, e.g. Duration.minutes(15)`);
    const minutes = rate.toMinutes({ integral: false });
    if (!Number.isInteger(minutes) || minutes < 1)
      throw new Error(`${where}.rate: a whole number of minutes, at least 1 (got ${rate.toHumanString()})`);
    const [amount, unit] = minutes % 1440 === 0 ? [minutes / 1440, 'day'] : minutes % 60 === 0 ? [minutes / 60, 'hour'] : [minutes, 'minute'];
    return { expression: `rate(${amount} ${unit}${amount === 1 ? '' : 's'})`, timeZone: 'UTC' };
  }
  if (!value || typeof value !== 'object' || typeof value.cron !== 'string') {
    throw new Error(`${where}: expected { cron: "0 3 * * ? *", timeZone: "Asia/Seoul" } or { rate: Duration.minutes(15) }`);
  }
  const expression = validateCron(value.cron, `${where}.cron`);
  if (typeof value.timeZone !== 'string' || !IANAZone.isValidZone(value.timeZone)) {
    throw new Error(`${where}.timeZone: ${JSON.stringify(value.timeZone)} is not an IANA time zone (e.g. "UTC", "Asia/Seoul", "Europe/Berlin")`);
  }
  return { expression, timeZone: value.timeZone };
}
