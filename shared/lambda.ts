import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { Metrics } from '@aws-lambda-powertools/metrics';
import type { Context } from 'aws-lambda';
import type pg from 'pg';
import type { z } from 'zod';
import { parseConfig } from './config';
import { databaseSourceFromEnvironment, openSession } from './db';
import { ENV } from './environment';
import { ConfigError, errorMessage, JobFailedError } from './errors';
import { identifierProblem, quoteIdent } from './identifiers';
import { secondsSinceLastSuccess } from './ledger';
import type { JobLogger } from './logger';
import { publishRunMetrics } from './metrics';
import type { JobDefinition } from './job';
import { runJob, type JobSummary } from './run-job';
import { useSecretsManager } from './secrets';
import { TimeBudget } from './time-budget';

// Only the handlers import this module: the Lambda's init phase builds the Secrets Manager
// client, and the CLI, which never imports it, never loads the SDK.
useSecretsManager({ SecretsManagerClient, GetSecretValueCommand });

/** The policy CDK ships next to the bundle (infra/job-function.ts, POLICY_FILE). */
export const DEPLOYED_POLICY_FILE = 'policy.json';

/** The deployed policy, read once per sandbox; undefined outside a deployed bundle. */
export function readDeployedPolicy(directory: string | undefined = typeof __dirname === 'string' ? __dirname : undefined): unknown {
  if (!directory) return undefined;
  const path = join(directory, DEPLOYED_POLICY_FILE);
  if (!existsSync(path)) return undefined;
  return JSON.parse(readFileSync(path, 'utf8')) as unknown;
}

const deployedPolicy = readDeployedPolicy();
let coldStart = true;

/**
 * Powertools' Lambda context fields, as keys every child logger inherits. Logger.addContext
 * would do for this logger, but each child it makes calls it again and reads cold_start false.
 */
function lambdaContextKeys(context: Context): Record<string, unknown> {
  const cold = coldStart;
  coldStart = false;
  return {
    cold_start: cold,
    function_name: context.functionName,
    function_arn: context.invokedFunctionArn,
    function_memory_size: Number(context.memoryLimitInMB),
    function_request_id: context.awsRequestId,
  };
}

/**
 * The rule target's input is empty: the event runs the deployed policy. A full EventBridge
 * "Scheduled Event" (no input configured, or an input transformer that kept the envelope)
 * carries it in `detail`.
 */
export function unwrapScheduledEvent(event: unknown): unknown {
  if (event && typeof event === 'object' && (event as Record<string, unknown>)['detail-type'] === 'Scheduled Event') {
    return (event as { detail?: unknown }).detail ?? {};
  }
  return event;
}

/**
 * What to run: an event with `targets` is a whole policy of its own (an ad-hoc run); otherwise
 * the deployed policy, with the event's options (`{"dryRun": true}`) over its own.
 */
export function resolvePolicy(payload: unknown, deployed: unknown): unknown {
  const event = payload === undefined || payload === null ? {} : payload;
  if (typeof event !== 'object' || Array.isArray(event) || 'targets' in event || deployed === undefined) return event;
  return { ...(deployed as object), ...event };
}

interface JobEvent {
  targets: unknown[];
  dryRun: boolean;
  lockTimeoutMs: number;
  statementTimeoutMs: number;
}

/**
 * A statement may not outlive the invocation: a Lambda killed at its timeout would leave the
 * backend running it, and holding the run's session lock, for up to `statementTimeoutMs`.
 */
export function cappedStatementTimeoutMs(configured: number, budget: TimeBudget): number {
  return Math.max(1_000, Math.min(configured, Math.floor(budget.remainingMs())));
}

/**
 * Per session: a backend whose client vanished mid-statement (a killed Lambda) notices within
 * seconds and ends, releasing its locks (Postgres 14+; older servers skip it). With
 * PGHK_DB_ROLE, every object the run creates is owned by that role, whichever login user of an
 * alternating-users rotation connected, so the next run can drop it.
 */
async function prepareSession(client: pg.Client, role: string | undefined): Promise<void> {
  await client.query(`SELECT set_config('client_connection_check_interval', '5s', false)`).catch(() => {});
  if (role) await client.query(`SET ROLE ${quoteIdent(role)}`);
}

function roleFromEnvironment(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const role = env[ENV.dbRole];
  if (!role) return undefined;
  const problem = identifierProblem(role);
  if (problem) throw new ConfigError(ENV.dbRole, problem);
  return role;
}

/**
 * Event in → validated config → runJob → summary out. Throws when any target failed so Lambda
 * counts an error (alarms, on-failure destination); a bad event throws before anything connects.
 */
export async function runLambdaJob<S extends z.ZodType, E extends z.ZodType<JobEvent>>(
  definition: JobDefinition<S, z.output<E>>,
  eventSchema: E,
  event: unknown,
  context: Context,
  logger: JobLogger,
  metrics: Metrics,
  deployed: unknown = deployedPolicy,
): Promise<JobSummary> {
  // cold_start, function_request_id and the function's name on every line, children included.
  logger.appendKeys(lambdaContextKeys(context));
  const payload = resolvePolicy(unwrapScheduledEvent(event), deployed);
  const config = parseConfig(eventSchema, payload, 'event') as z.output<E>;
  const source = databaseSourceFromEnvironment();
  const role = roleFromEnvironment();
  const budget = TimeBudget.fromLambda(context);
  const statementTimeoutMs = cappedStatementTimeoutMs(config.statementTimeoutMs, budget);
  const started = Date.now();
  let summary: JobSummary | undefined;
  let lastSuccess = new Map<string, number>();
  try {
    summary = await runJob(definition, {
      targets: (payload as { targets: unknown[] }).targets,
      options: config,
      dryRun: config.dryRun,
      connect: async () => {
        const client = await openSession(source, { job: definition.job, lockTimeoutMs: config.lockTimeoutMs, statementTimeoutMs });
        try {
          await prepareSession(client, role);
        } catch (error) {
          await client.end().catch(() => {});
          throw error;
        }
        return client;
      },
      logger,
      budget,
      // Every target, whatever its state: a target that is skipped or failing every run ages here.
      beforeClose: config.dryRun
        ? undefined
        : async (client, targets) => {
            try {
              lastSuccess = await secondsSinceLastSuccess(client, definition.job, targets.map((t) => t.target));
              logger.info('seconds since last success', { secondsSinceLastSuccess: Object.fromEntries(lastSuccess) });
            } catch (error) {
              // No value is published, which the staleness alarm treats as breaching.
              logger.error('could not read the last successes from the ledger', { error: errorMessage(error) });
            }
          },
    });
  } finally {
    publishRunMetrics(metrics, { summary, durationMs: Date.now() - started, dryRun: config.dryRun, secondsSinceLastSuccess: lastSuccess });
  }
  if (summary.failed.length > 0) throw new JobFailedError(definition.job, summary.failed);
  return summary;
}
