import type { Logger } from '@aws-lambda-powertools/logger';
import { JOBS, type JobName } from '../functions/registry';
import { openSession } from '../shared/db';
import type { Job, Progress } from '../shared/job';
import { createJobLogger } from '../shared/logger';
import { type JobSummary, parseJobEvent, runJob } from '../shared/run-job';
import { TimeBudget } from '../shared/time-budget';

export interface LocalRunOptions {
  logger?: Logger;
  budget?: TimeBudget;
  onProgress?: (progress: Progress & { target: string }) => void;
  /** How the event is named in validation errors ("config" for the CLI). */
  where?: string;
  /** Another definition of the job (tests give the rollup another clock). */
  definition?: Job;
  /** The fleet database this run stands for (the CLI's --database): on every log line and in the summary. */
  database?: string;
}

/** A job run outside Lambda (CLI, tests, benchmarks): the same validation and runJob, connected by URL. */
export async function runLocally(job: JobName, payload: unknown, url: string, options: LocalRunOptions = {}): Promise<JobSummary> {
  const definition: Job = options.definition ?? JOBS[job];
  const event = parseJobEvent(definition, payload, options.where ?? 'event');
  const { lockTimeoutMs, statementTimeoutMs } = event.options;
  return runJob(definition, event, {
    jobs: JOBS,
    ...(options.database ? { database: options.database } : {}),
    connect: () => openSession({ kind: 'url', url }, { job, lockTimeoutMs, statementTimeoutMs }),
    logger: options.logger ?? createJobLogger(job, options.database),
    budget: options.budget ?? TimeBudget.unlimited(),
    onProgress: options.onProgress,
  });
}
