import { Logger } from '@aws-lambda-powertools/logger';
import { partitionJob } from '../../functions/partition/job';
import { partitionEventSchema, type PartitionEventInput } from '../../functions/partition/policy';
import { parseConfig } from '../../shared/config';
import { openSession } from '../../shared/db';
import { runJob, type JobSummary } from '../../shared/run-job';
import { TimeBudget } from '../../shared/time-budget';

export const quietLogger = () => new Logger({ serviceName: 'pg-housekeeper-test', logLevel: 'SILENT' });

/** Runs the partition job exactly as the CLI and handler do: validate, connect, runJob. */
export async function runPartition(url: string, event: PartitionEventInput, options: { logger?: Logger; budget?: TimeBudget } = {}): Promise<JobSummary> {
  const config = parseConfig(partitionEventSchema, event, 'event');
  return runJob(partitionJob, {
    targets: event.targets,
    options: config,
    dryRun: config.dryRun,
    connect: () => openSession({ kind: 'url', url }, { job: 'partition', lockTimeoutMs: config.lockTimeoutMs, statementTimeoutMs: config.statementTimeoutMs }),
    logger: options.logger ?? quietLogger(),
    budget: options.budget ?? TimeBudget.unlimited(),
  });
}
