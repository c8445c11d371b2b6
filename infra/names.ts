import { createHash } from 'node:crypto';

/**
 * Physical names of a database's resources. Every name carries the stack and the database id, so
 * the console, an alarm email and `aws lambda invoke` all say which database a thing serves; a
 * name over the service's limit is shortened deterministically (a hash of the whole name keeps
 * two long ids apart), so a long id never fails a deploy.
 */

/** Lambda function names: 64 characters. */
const FUNCTION_NAME_LIMIT = 64;
/** EventBridge Scheduler schedule names: 64 characters. */
const SCHEDULE_NAME_LIMIT = 64;
/** CloudWatch alarm names: 255 characters. */
const ALARM_NAME_LIMIT = 255;
/** CloudWatch Logs query definition names: 255 characters. */
const QUERY_NAME_LIMIT = 255;

const HASH_LENGTH = 8;

/**
 * `parts` joined by `separator`, or, when that exceeds `limit`, the head cut short, a hash of the
 * whole name, and the last part (the job or the alarm) kept whole, so what the thing is stays readable.
 */
export function fitName(parts: string[], limit: number, separator = '-'): string {
  const full = parts.join(separator);
  if (full.length <= limit) return full;
  const last = parts.at(-1)!;
  const hash = createHash('sha256').update(full).digest('hex').slice(0, HASH_LENGTH);
  const room = limit - last.length - hash.length - 2 * separator.length;
  if (room < 1) throw new Error(`cannot fit ${JSON.stringify(full)} into ${limit} characters`);
  const head = parts
    .slice(0, -1)
    .join(separator)
    .slice(0, room)
    .replace(/[-\s/]+$/, '');
  return [head, hash, last].join(separator);
}

/** The names of one database's resources in one stack. */
export function databaseNames(stackName: string, databaseId: string) {
  return {
    /** `PgHousekeeping-orders-archive`: what `aws lambda invoke --function-name` takes. */
    function: (job: string) => fitName([stackName, databaseId, job], FUNCTION_NAME_LIMIT),
    schedule: (job: string) => fitName([stackName, databaseId, job], SCHEDULE_NAME_LIMIT),
    /** `PgHousekeeping orders archiveStale`: the subject line of the alarm's email. */
    alarm: (alarm: string) => fitName([stackName, databaseId, alarm], ALARM_NAME_LIMIT, ' '),
    /** `pg-housekeeper/PgHousekeeping/orders/failed-runs`: the console shows one folder per database. */
    query: (query: string) => fitName(['pg-housekeeper', stackName, databaseId, query], QUERY_NAME_LIMIT, '/'),
  };
}
