import type { Context } from 'aws-lambda';
import type { z } from 'zod';
import { parseConfig } from './config';
import { databaseSourceFromEnvironment, openSession } from './db';
import { JobFailedError } from './errors';
import type { JobLogger } from './logger';
import { publishRunMetrics } from './metrics';
import type { Metrics } from '@aws-lambda-powertools/metrics';
import { runJob, type JobDefinition, type JobSummary } from './run-job';
import { TimeBudget } from './time-budget';

/**
 * The rule target's input is the policy itself. A full EventBridge "Scheduled Event" (no input
 * configured, or an input transformer that kept the envelope) carries it in `detail`.
 */
export function unwrapScheduledEvent(event: unknown): unknown {
  if (event && typeof event === 'object' && (event as Record<string, unknown>)['detail-type'] === 'Scheduled Event') {
    return (event as { detail?: unknown }).detail ?? {};
  }
  return event;
}

interface JobEvent {
  targets: unknown[];
  dryRun: boolean;
  lockTimeoutMs: number;
  statementTimeoutMs: number;
}

/**
 * Event in → validated config → runJob → summary out. Throws when any target failed so Lambda
 * counts an error (alarms, DLQ); a bad event throws before anything connects.
 */
export async function runLambdaJob<S extends z.ZodType, E extends z.ZodType<JobEvent>>(
  definition: JobDefinition<S, z.output<E>>,
  eventSchema: E,
  event: unknown,
  context: Pick<Context, 'getRemainingTimeInMillis' | 'awsRequestId'>,
  logger: JobLogger,
  metrics: Metrics,
): Promise<JobSummary> {
  logger.appendKeys({ requestId: context.awsRequestId });
  const payload = unwrapScheduledEvent(event);
  const config = parseConfig(eventSchema, payload, 'event') as z.output<E>;
  const source = databaseSourceFromEnvironment();
  const started = Date.now();
  let summary: JobSummary | undefined;
  try {
    summary = await runJob(definition, {
      targets: (payload as { targets: unknown[] }).targets,
      options: config,
      dryRun: config.dryRun,
      connect: () =>
        openSession(source, { job: definition.job, lockTimeoutMs: config.lockTimeoutMs, statementTimeoutMs: config.statementTimeoutMs }),
      logger,
      budget: TimeBudget.fromLambda(context),
    });
  } finally {
    // Also when the run died before any target: TargetsFailed then counts the run itself.
    publishRunMetrics(metrics, summary, Date.now() - started);
  }
  if (summary.failed.length > 0) throw new JobFailedError(definition.job, summary.failed);
  return summary;
}
