import { ENV } from './environment';
import { ConfigError } from './errors';

/**
 * A database's id in a fleet: the value of the `database` metric dimension, the `database` key of
 * every log line, and part of every name the stack gives the database's functions, schedules,
 * alarms and saved queries. Lowercase letters, digits and single hyphens, so it reads the same in
 * all of them (Lambda and Scheduler names take no dots; CloudWatch dimension values are case-sensitive).
 */
const DATABASE_ID_PATTERN = /^[a-z0-9]+(?:-[a-z0-9]+)*$/;

/** Long enough for `team-service-env-region` ids; names built from longer ones are hash-shortened anyway (infra/names.ts). */
const MAX_DATABASE_ID_LENGTH = 63;

/** Why `id` is not a database id, or undefined. */
export function databaseIdProblem(id: unknown): string | undefined {
  if (typeof id !== 'string' || id === '') return 'is required (lowercase letters, digits and hyphens, e.g. "orders-eu")';
  if (id.length > MAX_DATABASE_ID_LENGTH) return `${JSON.stringify(id)} is ${id.length} characters; at most ${MAX_DATABASE_ID_LENGTH}`;
  if (!DATABASE_ID_PATTERN.test(id)) {
    return `${JSON.stringify(id)} must be lowercase letters, digits and single hyphens, starting and ending with a letter or digit (e.g. "orders-eu")`;
  }
  return undefined;
}

/** The database a deployed function serves (PGHK_DATABASE_ID); undefined outside a fleet (the CLI without --database). */
export function databaseIdFromEnvironment(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const id = env[ENV.databaseId];
  if (id === undefined || id === '') return undefined;
  const problem = databaseIdProblem(id);
  if (problem) throw new ConfigError(ENV.databaseId, problem);
  return id;
}
