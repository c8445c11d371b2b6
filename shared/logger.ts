import { Logger } from '@aws-lambda-powertools/logger';

export type JobLogger = Logger;

/** One logger configuration for every job: JSON lines, the job on every line. */
export function createJobLogger(job: string): JobLogger {
  return new Logger({
    serviceName: 'pg-housekeeper',
    persistentKeys: { job },
  });
}
