import { Logger } from '@aws-lambda-powertools/logger';
import type { PartitionEventInput } from '../../functions/partition/policy';
import { runLocally } from '../../scripts/run-local';
import type { JobSummary } from '../../shared/run-job';
import type { TimeBudget } from '../../shared/time-budget';

export const quietLogger = () => new Logger({ serviceName: 'pg-housekeeper-test', logLevel: 'SILENT' });

export interface TestRunOptions {
  logger?: Logger;
  budget?: TimeBudget;
}

/** Runs the partition job exactly as the CLI does: validate, connect, runJob. */
export function runPartition(url: string, event: PartitionEventInput, options: TestRunOptions = {}): Promise<JobSummary> {
  return runLocally('partition', event, url, { logger: options.logger ?? quietLogger(), budget: options.budget });
}
