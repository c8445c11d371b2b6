import { Logger } from '@aws-lambda-powertools/logger';
import { databaseIdFromEnvironment } from './database-id';
import { SERVICE_NAME } from './environment';

export type JobLogger = Logger;

/**
 * One logger configuration for every job: JSON lines, the job on every line, and the database
 * (PGHK_DATABASE_ID in a deployed function, `--database` in the CLI) when there is one, so one
 * Logs Insights filter picks a database out of a fleet.
 */
export function createJobLogger(job: string, database: string | undefined = databaseIdFromEnvironment()): JobLogger {
  return new Logger({
    serviceName: SERVICE_NAME,
    persistentKeys: { job, ...(database ? { database } : {}) },
  });
}
