import type { Logger } from '@aws-lambda-powertools/logger';
import { parseConfig } from '../shared/config';
import { openSession } from '../shared/db';
import { createJobLogger } from '../shared/logger';
import type { Progress } from '../shared/job';
import { runJob, type JobSummary } from '../shared/run-job';
import { TimeBudget } from '../shared/time-budget';
import { JOBS, type CliJobName } from './jobs';

export interface LocalRunOptions {
  logger?: Logger;
  budget?: TimeBudget;
  onProgress?: (progress: Progress & { target: string }) => void;
  /** How the event is named in validation errors ("config" for the CLI). */
  where?: string;
}

/** A job run outside Lambda (CLI, tests, benchmarks): the same validation and runJob, connected by URL. */
export async function runLocally(job: CliJobName, event: unknown, url: string, options: LocalRunOptions = {}): Promise<JobSummary> {
  const { definition, eventSchema } = JOBS[job];
  const config = parseConfig(eventSchema, event, options.where ?? 'event');
  return runJob(definition as never, {
    targets: (event as { targets: unknown[] }).targets,
    options: config,
    dryRun: config.dryRun,
    connect: () => openSession({ kind: 'url', url }, { job, lockTimeoutMs: config.lockTimeoutMs, statementTimeoutMs: config.statementTimeoutMs }),
    logger: options.logger ?? createJobLogger(job),
    budget: options.budget ?? TimeBudget.unlimited(),
    onProgress: options.onProgress,
  });
}
