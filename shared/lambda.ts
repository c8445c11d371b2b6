import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Metrics } from '@aws-lambda-powertools/metrics';
import type { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import type { Context } from 'aws-lambda';
import type pg from 'pg';
import * as z from 'zod';
import type { ChainRun } from './chain';
import { parseConfig } from './config';
import { databaseIdFromEnvironment } from './database-id';
import { databaseSourceFromEnvironment, openSession } from './db';
import { DEPLOYED_POLICY_FILE, ENV } from './environment';
import { ConfigError, errorMessage, HousekeeperError, JobFailedError } from './errors';
import { identifierProblem, quoteIdent } from './identifiers';
import type { Job, JobRegistry } from './job';
import { MAX_CONTINUATIONS_CAP } from './lambda-limits';
import { secondsSinceLastSuccess } from './ledger';
import { createJobLogger, type JobLogger } from './logger';
import { createJobMetrics, publishRunMetrics } from './metrics';
import { type JobSummary, parseJobEvent, runJob, type TargetSummary } from './run-job';
import { useSecretsManager } from './secrets';
import { TimeBudget } from './time-budget';
import { type MaintenanceWindow, parseWindow } from './window';

// Only the handlers import this module: the Lambda's init phase builds the Secrets Manager
// client, and the CLI, which never imports it, never loads the SDK.
useSecretsManager({ SecretsManagerClient, GetSecretValueCommand });

/** The deployed policy, read once per sandbox; undefined outside a deployed bundle. */
function readDeployedPolicy(directory: string | undefined = typeof __dirname === 'string' ? __dirname : undefined): unknown {
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
function unwrapScheduledEvent(event: unknown): unknown {
  if (event && typeof event === 'object' && (event as Record<string, unknown>)['detail-type'] === 'Scheduled Event') {
    return (event as { detail?: unknown }).detail ?? {};
  }
  return event;
}

/**
 * What to run: an event with `targets` is a whole policy of its own (an ad-hoc run); otherwise
 * the deployed policy, with the event's options (`{"dryRun": true}`) over its own.
 */
function resolvePolicy(payload: unknown, deployed: unknown): unknown {
  const event = payload === undefined || payload === null ? {} : payload;
  if (typeof event !== 'object' || Array.isArray(event) || 'targets' in event || deployed === undefined) return event;
  return { ...(deployed as object), ...event };
}

/** What a continuation adds to the event it carries on: which chain, which hop, which targets. */
const continuationSchema = z.strictObject({
  chainId: z.uuid(),
  hop: z.number().int().min(1).max(MAX_CONTINUATIONS_CAP),
  targets: z.array(z.string().min(1)).min(1),
});
type Continuation = z.output<typeof continuationSchema>;

/** Splits `continuation` off the event; it says where a chain is, not what to run. */
function takeContinuation(event: unknown): { event: unknown; continuation?: Continuation } {
  if (!event || typeof event !== 'object' || Array.isArray(event) || !('continuation' in event)) return { event };
  const { continuation, ...rest } = event as Record<string, unknown>;
  return { event: rest, continuation: parseConfig(continuationSchema, continuation, 'event.continuation') };
}

interface ChainSettings {
  maxContinuations: number;
  window?: MaintenanceWindow;
}

/** PGHK_MAX_CONTINUATIONS (0, or unset: no continuations) and PGHK_MAINTENANCE_WINDOW, as the template sets them. */
function chainSettingsFromEnvironment(env: NodeJS.ProcessEnv = process.env): ChainSettings {
  const text = env[ENV.maxContinuations];
  const maxContinuations = text === undefined || text === '' ? 0 : Number(text);
  if (!Number.isInteger(maxContinuations) || maxContinuations < 0 || maxContinuations > MAX_CONTINUATIONS_CAP) {
    throw new ConfigError(ENV.maxContinuations, `a whole number from 0 to ${MAX_CONTINUATIONS_CAP} (got ${text})`);
  }
  let window: MaintenanceWindow | undefined;
  const windowText = env[ENV.maintenanceWindow];
  if (windowText) {
    try {
      window = parseWindow(windowText, ENV.maintenanceWindow);
    } catch (error) {
      throw new ConfigError('', errorMessage(error));
    }
  }
  return { maxContinuations, ...(window ? { window } : {}) };
}

/** What a continuing target has left, by the count its job names, for the continuation's log line. */
function remainingOf(definition: Job, target: TargetSummary): Record<string, unknown> {
  if (target.state === 'skipped') return { notStarted: target.detail };
  const key = definition.remainingCount;
  return key !== undefined && key in target.counts ? { [key]: target.counts[key] } : {};
}

/** The continuation could not be sent: the work done stands, the rest waits for the next scheduled run. */
export class ContinuationError extends HousekeeperError {}

/** Same reasoning as Secrets Manager's: without a route, fail in seconds, naming it. */
const LAMBDA_API_TIMEOUTS = { connectionTimeoutMs: 3_000, requestTimeoutMs: 3_000, maxAttempts: 2 };

let lambdaSdk: { LambdaClient: typeof LambdaClient; InvokeCommand: typeof InvokeCommand } | undefined;
let lambdaClient: LambdaClient | undefined;

/**
 * Invokes this function again, asynchronously. The SDK module is loaded on the first
 * continuation, not at init: most runs never continue and should not pay for it.
 */
async function invokeSelf(functionName: string, payload: unknown): Promise<void> {
  lambdaSdk ??= await import('@aws-sdk/client-lambda');
  lambdaClient ??= new lambdaSdk.LambdaClient({
    maxAttempts: LAMBDA_API_TIMEOUTS.maxAttempts,
    requestHandler: {
      connectionTimeout: LAMBDA_API_TIMEOUTS.connectionTimeoutMs,
      requestTimeout: LAMBDA_API_TIMEOUTS.requestTimeoutMs,
      throwOnRequestTimeout: true,
    },
  });
  const started = Date.now();
  let status: number | undefined;
  try {
    ({ StatusCode: status } = await lambdaClient.send(
      new lambdaSdk.InvokeCommand({
        FunctionName: functionName,
        InvocationType: 'Event',
        Payload: new TextEncoder().encode(JSON.stringify(payload)),
      }),
    ));
  } catch (error) {
    const e = error as { name?: string; code?: string };
    if (
      e?.name === 'TimeoutError' ||
      ['ETIMEDOUT', 'ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH'].includes(e?.code ?? '')
    ) {
      const region = process.env.AWS_REGION ?? 'REGION';
      throw new ContinuationError(
        `cannot reach the Lambda API within ${Math.ceil((Date.now() - started) / 1000)} s (${errorMessage(error)}): the function's subnets need a NAT gateway ` +
          `or a com.amazonaws.${region}.lambda VPC endpoint (private DNS on)`,
      );
    }
    throw error;
  }
  if (status !== 202) throw new ContinuationError(`Invoke of ${functionName} answered ${status}, not 202 (accepted)`);
}

/**
 * A statement may not outlive the invocation: a Lambda killed at its timeout would leave the
 * backend running it, and holding the run's session lock, for up to `statementTimeoutMs`.
 */
function cappedStatementTimeoutMs(configured: number, budget: TimeBudget): number {
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
 * A job's Lambda entry: the logger and metrics made once per sandbox, then each invocation run by
 * runLambdaJob. `jobs` is the registry (every job's settings rows and migrations are known).
 */
export function lambdaHandler(jobs: JobRegistry, job: string): (event: unknown, context: Context) => Promise<JobSummary> {
  const definition = jobs[job];
  if (!definition) throw new Error(`internal: no job ${job} in the registry (${Object.keys(jobs).join(', ')})`);
  const logger = createJobLogger(job);
  const metrics = createJobMetrics(job);
  return (event, context) => runLambdaJob(definition, jobs, event, context, logger, metrics);
}

/**
 * Event in → validated config → runJob → summary out. Throws when any target failed so Lambda
 * counts an error (alarms, on-failure destination); a bad event throws before anything connects.
 */
export async function runLambdaJob(
  definition: Job,
  jobs: JobRegistry,
  event: unknown,
  context: Context,
  logger: JobLogger,
  metrics: Metrics,
  deployed: unknown = deployedPolicy,
): Promise<JobSummary> {
  // cold_start, function_request_id and the function's name on every line, children included.
  logger.appendKeys(lambdaContextKeys(context));
  const { event: received, continuation } = takeContinuation(unwrapScheduledEvent(event));
  const payload = resolvePolicy(received, deployed);
  const parsed = parseJobEvent(definition, payload, 'event');
  const config = parsed.options;
  const source = databaseSourceFromEnvironment();
  const database = databaseIdFromEnvironment();
  const role = roleFromEnvironment();
  const settings = chainSettingsFromEnvironment();
  // Every invocation of this function has its timeout; a chain silent for longer than that is dead.
  const staleAfterSeconds = Math.ceil(context.getRemainingTimeInMillis() / 1000) + 60;
  const budget = TimeBudget.fromLambda(context);
  const statementTimeoutMs = cappedStatementTimeoutMs(config.statementTimeoutMs, budget);
  const chain: ChainRun = {
    id: continuation?.chainId ?? randomUUID(),
    hop: continuation?.hop ?? 0,
    maxContinuations: settings.maxContinuations,
    staleAfterSeconds,
    ...(continuation ? { targets: continuation.targets } : {}),
  };
  // Every line of a hop says which chain and hop it is; a dry run is no chain (and a warm sandbox forgets the last one).
  if (config.dryRun) logger.removeKeys(['chainId', 'hop']);
  else logger.appendKeys({ chainId: chain.id, hop: chain.hop });
  if (continuation)
    logger.info('continuation started', {
      chainId: chain.id,
      hop: chain.hop,
      maxContinuations: chain.maxContinuations,
      targets: continuation.targets,
    });
  const functionName = process.env.AWS_LAMBDA_FUNCTION_NAME ?? context.functionName;
  const started = Date.now();
  let summary: JobSummary | undefined;
  let lastSuccess = new Map<string, number>();
  let continuations = 0;
  try {
    summary = await runJob(definition, parsed, {
      jobs,
      ...(database ? { database } : {}),
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
      // A dry run changes nothing, so it is no chain and never continues.
      ...(config.dryRun ? {} : { chain }),
      window: settings.window,
      sendContinuation: async (next) => {
        logger.info('continuing', {
          chainId: next.chainId,
          nextHop: next.hop,
          maxContinuations: chain.maxContinuations,
          targets: next.targets.map((t) => ({ target: t.target, ...remainingOf(definition, t) })),
        });
        // The event as received (a deployed run's is {}), so every hop runs the same policy.
        await invokeSelf(functionName, {
          ...(received as object),
          continuation: { chainId: next.chainId, hop: next.hop, targets: next.targets.map((t) => t.target) },
        });
        continuations++;
      },
      // Every target, whatever its state: a target that is skipped or failing every run ages here.
      beforeClose: config.dryRun
        ? undefined
        : async (client, targets) => {
            try {
              lastSuccess = await secondsSinceLastSuccess(
                client,
                definition.job,
                targets.map((t) => t.target),
              );
              logger.info('seconds since last success', { secondsSinceLastSuccess: Object.fromEntries(lastSuccess) });
            } catch (error) {
              // No value is published, which the staleness alarm treats as breaching.
              logger.error('could not read the last successes from the ledger', { error: errorMessage(error) });
            }
          },
    });
  } finally {
    publishRunMetrics(
      metrics,
      { summary, durationMs: Date.now() - started, dryRun: config.dryRun, secondsSinceLastSuccess: lastSuccess, continuations },
      Object.values(definition.metrics),
    );
  }
  if (summary.failed.length > 0) throw new JobFailedError(definition.job, summary.failed);
  // Loud: a function that can never continue would otherwise leave every long backlog to the next tick in silence.
  if (summary.continuationError) throw new ContinuationError(summary.continuationError);
  return summary;
}
