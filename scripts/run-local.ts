import type { Logger } from '@aws-lambda-powertools/logger';
import { parseConfig } from '../shared/config';
import { openSession } from '../shared/db';
import { createJobLogger } from '../shared/logger';
import { runJob, type JobSummary, type Progress } from '../shared/run-job';
import { TimeBudget } from '../shared/time-budget';
import { JOBS, type CliJobName } from './jobs';

export interface LocalRunOptions {
  logger?: Logger;
  budget?: TimeBudget;
  onProgress?: (progress: Progress & { target: string }) => void;
  /** How the event is named in validation errors ("config" for the CLI). */
  where?: string;
  /** The fleet database this run stands for (the CLI's --database): on every log line and in the summary. */
  database?: string;
}

/** A job run outside Lambda (CLI, tests, benchmarks): the same validation and runJob, connected by URL. */
export async function runLocally(job: CliJobName, event: unknown, url: string, options: LocalRunOptions = {}): Promise<JobSummary> {
  const { definition, eventSchema } = JOBS[job];
  const config = parseConfig(eventSchema, event, options.where ?? 'event');
  return runJob(definition as never, {
    ...(options.database ? { database: options.database } : {}),
    targets: (event as { targets: unknown[] }).targets,
    options: config,
    dryRun: config.dryRun,
    connect: () => openSession({ kind: 'url', url }, { job, lockTimeoutMs: config.lockTimeoutMs, statementTimeoutMs: config.statementTimeoutMs }),
    logger: options.logger ?? createJobLogger(job, options.database),
    budget: options.budget ?? TimeBudget.unlimited(),
    onProgress: options.onProgress,
  });
}
