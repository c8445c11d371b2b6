import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { z } from 'zod';
import { tryLockTarget, unlockTarget } from './advisory-lock';
import { ConfigError, errorMessage } from './errors';
import { recordRunState, type RunState } from './ledger';
import type { JobDefinition, Progress, StopReason, TargetOutcome } from './job';
import type { JobLogger } from './logger';
import { migrate } from './migrate';
import { applyOverrides, readOverrides, reportUnmatchedSettings } from './settings';
import type { TimeBudget } from './time-budget';

export const JOB_NAMES = ['partition', 'archive', 'rollup'] as const;
export type JobName = (typeof JOB_NAMES)[number];

export interface TargetSummary {
  target: string;
  runId: string;
  state: Exclude<RunState, 'started'>;
  durationMs: number;
  counts: Record<string, number>;
  detail?: string;
  stopReason?: StopReason;
  notes: string[];
}

export interface JobSummary {
  job: JobName;
  dryRun: boolean;
  targets: TargetSummary[];
  failed: string[];
  durationMs: number;
  /** Problems that did not stop any target (settings rows that match no target). */
  warnings: string[];
}

export interface RunJobOptions<O> {
  /** Deployed target policies as received (already validated once by the event schema). */
  targets: unknown[];
  options: O;
  dryRun: boolean;
  connect: () => Promise<pg.Client>;
  logger: JobLogger;
  budget: TimeBudget;
  onProgress?: (progress: Progress & { target: string }) => void;
  /** Runs on the job's session after the last target, before it closes (the Lambda reads its metrics from the ledger). */
  beforeClose?: (client: pg.Client, targets: TargetSummary[]) => Promise<void>;
}

/**
 * The one way every job runs: connect → migrate → per target: lock → effective policy → ledger
 * → work within the budget → ledger → unlock; then one summary line. A failing target does not
 * stop the others; the caller decides how to report `failed`.
 */
export async function runJob<S extends z.ZodType, O>(definition: JobDefinition<S, O>, run: RunJobOptions<O>): Promise<JobSummary> {
  const started = Date.now();
  let client: pg.Client;
  try {
    client = await run.connect();
  } catch (error) {
    // pg's messages name the user and host, never the password; ours never repeat a URL.
    run.logger.error('cannot connect to the database', { error: errorMessage(error), code: (error as { code?: string }).code });
    throw error;
  }
  const summaries: TargetSummary[] = [];
  const warnings: string[] = [];
  try {
    // Dry run changes nothing, not even the ledger schema.
    if (!run.dryRun) await migrate(client);
    const inputs = [
      ...run.targets.map((input) => ({ input, implicit: false })),
      ...(definition.implicitTargets?.(run.options, run.dryRun) ?? []).map((input) => ({ input, implicit: true })),
    ];
    const targets = inputs.map(({ input }) => ({ name: definition.targetName(definition.targetSchema.parse(input) as z.output<S>), input }));
    warnings.push(...(await reportUnmatchedSettings(client, definition.job, targets, JOB_NAMES)));
    for (const warning of warnings) run.logger.warn(warning);
    for (const [index, { input, implicit }] of inputs.entries()) {
      summaries.push(await runTarget(definition, run, client, input, index, implicit));
    }
    await run.beforeClose?.(client, summaries);
  } finally {
    await client.end().catch(() => {});
  }
  const summary: JobSummary = {
    job: definition.job,
    dryRun: run.dryRun,
    targets: summaries,
    failed: summaries.filter((s) => s.state === 'failed').map((s) => s.target),
    durationMs: Date.now() - started,
    warnings,
  };
  const log = summary.failed.length > 0 ? run.logger.error.bind(run.logger) : run.logger.info.bind(run.logger);
  log('run summary', {
    dryRun: summary.dryRun,
    durationMs: summary.durationMs,
    failed: summary.failed,
    ...(warnings.length > 0 ? { warnings } : {}),
    targets: summary.targets.map(({ notes: _notes, ...rest }) => rest),
  });
  return summary;
}

async function runTarget<S extends z.ZodType, O>(
  definition: JobDefinition<S, O>,
  run: RunJobOptions<O>,
  client: pg.Client,
  input: unknown,
  index: number,
  implicit: boolean,
): Promise<TargetSummary> {
  const runId = randomUUID();
  const startedAt = new Date();
  const deployed = definition.targetSchema.parse(input) as z.output<S>;
  const target = definition.targetName(deployed);
  const logger = run.logger.createChild({ persistentKeys: { target, runId } });
  const finish = async (
    state: TargetSummary['state'],
    counts: Record<string, number>,
    detail?: string,
    outcome: Pick<TargetOutcome, 'notes' | 'stopReason'> = {},
    policy?: unknown,
  ): Promise<TargetSummary> => {
    const durationMs = Date.now() - startedAt.getTime();
    const { notes = [], stopReason } = outcome;
    if (!run.dryRun) {
      await recordRunState(client, {
        runId,
        job: definition.job,
        target,
        state,
        startedAt,
        durationMs,
        counts,
        detail: detail ?? (stopReason ? `stopped: ${stopReason}` : undefined),
        policy,
      }).catch((error) => logger.error('could not write the run ledger', { error: errorMessage(error) }));
    }
    const line = { state, durationMs, counts, ...(detail ? { detail } : {}), ...(stopReason ? { stopReason } : {}) };
    if (state === 'failed') logger.error('target failed', line);
    else logger.info(`target ${state}`, line);
    return { target, runId, state, durationMs, counts, notes, ...(detail ? { detail } : {}), ...(stopReason ? { stopReason } : {}) };
  };

  if (run.budget.isExhausted()) return finish('skipped', {}, 'time budget spent before this target started');
  const lockKey = definition.lockKey?.(deployed);
  if (!(await tryLockTarget(client, definition.job, target, lockKey))) {
    return finish('skipped', {}, 'locked: another run holds this target');
  }
  let policy: unknown;
  try {
    const overrides = await readOverrides(client, definition.job, target, { implicit });
    const effective = applyOverrides(definition.targetSchema, input, overrides, `targets[${index}]`);
    // applyOverrides refuses identity keys by name; this catches any other path to a new identity.
    if (definition.targetName(effective.policy) !== target || definition.lockKey?.(effective.policy) !== lockKey) {
      throw new ConfigError(`targets[${index}]`, `housekeeping.settings overrides would change the identity of target ${target}; refused`);
    }
    policy = effective.policy;
    logger.info('effective policy', { policy: effective.policy, sources: effective.sources });
    if (!run.dryRun) {
      await recordRunState(client, { runId, job: definition.job, target, state: 'started', startedAt, policy });
    }
    const outcome = await definition.runTarget({
      client,
      policy: effective.policy,
      options: run.options,
      logger,
      budget: run.budget,
      dryRun: run.dryRun,
      runId,
      onProgress: run.onProgress && ((progress) => run.onProgress?.({ target, ...progress })),
    });
    return await finish(outcome.failure ? 'failed' : 'succeeded', outcome.counts, outcome.failure, outcome, policy);
  } catch (error) {
    // Leave the session usable for the next target whatever state the job left it in.
    await client.query('ROLLBACK').catch(() => {});
    return await finish('failed', {}, errorMessage(error), {}, policy);
  } finally {
    await unlockTarget(client, definition.job, target, lockKey).catch(() => {});
  }
}
