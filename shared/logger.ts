import { Logger } from '@aws-lambda-powertools/logger';
import { SERVICE_NAME } from './environment';

export type JobLogger = Logger;

/** One logger configuration for every job: JSON lines, the job on every line. */
export function createJobLogger(job: string): JobLogger {
  return new Logger({
    serviceName: SERVICE_NAME,
    persistentKeys: { job },
  });
}
