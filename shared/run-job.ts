import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { z } from 'zod';
import { tryLockTarget, unlockTarget } from './advisory-lock';
import { type ChainRun, claimNextHop, endChain, shortId, startHop } from './chain';
import { parseConfig, type RunOptions } from './config';
import { ConfigError, errorMessage } from './errors';
import type { JobDefinition, JobRegistry, Progress, StopReason, TargetOutcome } from './job';
import { type RunState, recordRunState } from './ledger';
import type { JobLogger } from './logger';
import { ledgerMigrations, migrate } from './migrate';
import { databaseNow } from './postgres';
import { applyOverrides, readOverrides, reportUnmatchedSettings, takePause } from './settings';
import { TIME_BUDGET_STOP, type TimeBudget, WINDOW_STOP } from './time-budget';
import { type MaintenanceWindow, windowAt } from './window';

export interface TargetSummary {
  target: string;
  runId: string;
  state: Exclude<RunState, 'started'>;
  durationMs: number;
  counts: Record<string, number>;
  detail?: string;
  stopReason?: StopReason;
  notes: string[];
  /** A continuation will run this target again (it stopped on the time budget with work left). */
  continues?: boolean;
}

export interface JobSummary {
  job: string;
  /** The fleet database this run served (PGHK_DATABASE_ID, or the CLI's --database); absent outside a fleet. */
  database?: string;
  dryRun: boolean;
  targets: TargetSummary[];
  failed: string[];
  durationMs: number;
  /** Problems that did not stop any target (settings rows that match no target). */
  warnings: string[];
  /** Lambda runs: the chain and hop this run was, and the targets booked for the next hop. */
  chain?: { id: string; hop: number; continuing: string[] };
  /** The next hop was booked but could not be sent. */
  continuationError?: string;
}

/** An event, validated: the targets as received (overrides are applied to them) and the job's options. */
export interface JobEvent<O extends RunOptions> {
  targets: unknown[];
  options: O;
}

/**
 * Validates an event (a Lambda's, the CLI's --config, a policy at synth) against its job's
 * schema: the one way an event becomes something to run.
 */
export function parseJobEvent<S extends z.ZodType, O extends RunOptions>(
  definition: JobDefinition<S, O>,
  payload: unknown,
  where = 'event',
): JobEvent<O> {
  const options = parseConfig(definition.eventSchema, payload, where);
  // As received, not as parsed: the effective-policy line tells a deployed value from a default.
  return { targets: (payload as { targets: unknown[] }).targets, options };
}

/** How a run reaches the database and reports, whoever starts it (Lambda, CLI, tests). */
export interface RunJobOptions {
  /** Every job of the deployment: settings rows of any of them are known, and the ledger takes all their migrations. */
  jobs: JobRegistry;
  /** The fleet database this run serves: carried into the summary (the logger carries it on every line). */
  database?: string;
  connect: () => Promise<pg.Client>;
  logger: JobLogger;
  budget: TimeBudget;
  onProgress?: (progress: Progress & { target: string }) => void;
  /** Runs on the job's session after the last target, before it closes (the Lambda reads its metrics from the ledger). */
  beforeClose?: (client: pg.Client, targets: TargetSummary[]) => Promise<void>;
  /** Lambda runs: which chain of invocations this is; targets that stop on the budget with work left are booked for the next hop. */
  chain?: ChainRun;
  /** Sends the next hop (the Lambda invokes itself); if it throws, the bookings are released and the summary says why. */
  sendContinuation?: (next: { chainId: string; hop: number; targets: TargetSummary[] }) => Promise<void>;
  /** Outside it no archive batch or rollup slice starts (the budget refuses them), and nothing continues. */
  window?: MaintenanceWindow;
}

/** A run under way: the event and how it runs. */
interface Run<O extends RunOptions> extends RunJobOptions {
  targets: unknown[];
  options: O;
  dryRun: boolean;
}

/**
 * The one way every job runs: connect → migrate → per target: lock → effective policy → ledger
 * → work within the budget → ledger → unlock; then one summary line. A failing target does not
 * stop the others; the caller decides how to report `failed`.
 */
export async function runJob<S extends z.ZodType, O extends RunOptions>(
  definition: JobDefinition<S, O>,
  event: JobEvent<O>,
  how: RunJobOptions,
): Promise<JobSummary> {
  const started = Date.now();
  const run: Run<O> = { ...how, targets: event.targets, options: event.options, dryRun: event.options.dryRun };
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
  let continuationError: string | undefined;
  try {
    // Dry run changes nothing, not even the ledger schema.
    if (!run.dryRun) await migrate(client, ledgerMigrations(run.jobs));
    const inputs = [
      ...run.targets.map((input) => ({ input, implicit: false })),
      ...(definition.implicitTargets?.(run.options, run.dryRun) ?? []).map((input) => ({ input, implicit: true })),
    ];
    const targets = inputs.map(({ input }) => ({ name: definition.targetName(definition.targetSchema.parse(input) as z.output<S>), input }));
    warnings.push(...(await reportUnmatchedSettings(client, definition, targets, Object.keys(run.jobs))));
    for (const warning of warnings) run.logger.warn(warning);
    const budget = run.window ? await windowedBudget(client, run.budget, run.window, run.logger) : run.budget;
    // A continuation runs only the targets that continue; the others keep their own schedule.
    const only = run.chain?.targets ? new Set(run.chain.targets) : undefined;
    for (const [index, { input, implicit }] of inputs.entries()) {
      if (only && !only.has(targets[index]!.name)) continue;
      summaries.push(await runTarget(definition, { ...run, budget }, client, input, index, implicit));
    }
    continuationError = await continueChain(definition.job, run, client, summaries);
    await run.beforeClose?.(client, summaries);
  } finally {
    await client.end().catch(() => {});
  }
  const summary: JobSummary = {
    job: definition.job,
    ...(run.database ? { database: run.database } : {}),
    dryRun: run.dryRun,
    targets: summaries,
    failed: summaries.filter((s) => s.state === 'failed').map((s) => s.target),
    durationMs: Date.now() - started,
    warnings,
    ...(run.chain ? { chain: { id: run.chain.id, hop: run.chain.hop, continuing: summaries.filter((t) => t.continues).map((t) => t.target) } } : {}),
    ...(continuationError ? { continuationError } : {}),
  };
  const log = summary.failed.length > 0 ? run.logger.error.bind(run.logger) : run.logger.info.bind(run.logger);
  log('run summary', {
    dryRun: summary.dryRun,
    durationMs: summary.durationMs,
    failed: summary.failed,
    ...(warnings.length > 0 ? { warnings } : {}),
    ...(summary.chain ? { chainId: summary.chain.id, hop: summary.chain.hop } : {}),
    targets: summary.targets.map(({ notes: _notes, ...rest }) => rest),
  });
  return summary;
}

/**
 * One continuation for every target booked for the next hop. If it cannot be sent, the bookings
 * are released at once, so the next scheduled run takes the targets up instead of waiting for
 * the bookings to go stale.
 */
async function continueChain<O extends RunOptions>(
  job: string,
  run: Run<O>,
  client: pg.Client,
  summaries: TargetSummary[],
): Promise<string | undefined> {
  const continuing = summaries.filter((t) => t.continues);
  if (!run.chain || continuing.length === 0) return undefined;
  try {
    if (!run.sendContinuation) throw new Error('this run has no way to send a continuation');
    await run.sendContinuation({ chainId: run.chain.id, hop: run.chain.hop + 1, targets: continuing });
    return undefined;
  } catch (error) {
    const message = `continuation could not be sent: ${errorMessage(error)}`;
    run.logger.error(message, { chainId: run.chain.id, hop: run.chain.hop + 1, targets: continuing.map((t) => t.target) });
    for (const summary of continuing) {
      await endChain(client, job, summary.target, run.chain.id, message).catch(() => {});
      summary.continues = false;
      summary.notes.push(message);
    }
    return message;
  }
}

/**
 * The run's budget with the maintenance window folded in. Whether the window is open, and for how
 * long, is read from the database clock once; the process's clock only measures time since.
 */
async function windowedBudget(client: pg.Client, budget: TimeBudget, window: MaintenanceWindow, logger: JobLogger): Promise<TimeBudget> {
  const now = (await databaseNow(client)).getTime();
  const state = windowAt(now, window);
  const where = { start: window.start, end: window.end, timeZone: window.timeZone };
  if (state.open) {
    logger.info('maintenance window open', { window: where, closesAt: new Date(state.closesAt).toISOString() });
    return budget.withWindowClosingIn(state.closesAt - now);
  }
  logger.info('maintenance window closed: no archive batch or rollup slice starts', {
    window: where,
    opensAt: new Date(state.opensAt).toISOString(),
  });
  return budget.withWindowClosingIn(0);
}

async function runTarget<S extends z.ZodType, O extends RunOptions>(
  definition: JobDefinition<S, O>,
  run: Run<O>,
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
  // Per target: whether the budget turned this target's work away, and why.
  const budget = run.budget.forTarget();
  // Dry runs change nothing, chains included.
  const chain = run.dryRun ? undefined : run.chain;
  const finish = async (
    state: TargetSummary['state'],
    counts: Record<string, number>,
    detail?: string,
    outcome: Pick<TargetOutcome, 'notes' | 'stopReason'> = {},
    policy?: unknown,
    continuation: { continues?: boolean; note?: string } = {},
  ): Promise<TargetSummary> => {
    const durationMs = Date.now() - startedAt.getTime();
    const { notes = [], stopReason } = outcome;
    const said = detail ?? (stopReason ? `stopped: ${stopReason}` : undefined);
    const recorded = [said, continuation.note].filter(Boolean).join('; ') || undefined;
    if (!run.dryRun) {
      await recordRunState(client, {
        runId,
        job: definition.job,
        target,
        state,
        startedAt,
        durationMs,
        counts,
        detail: recorded,
        policy,
        chainId: chain?.id,
        hop: chain?.hop,
      }).catch((error) => logger.error('could not write the run ledger', { error: errorMessage(error) }));
    }
    const line = {
      state,
      durationMs,
      counts,
      ...(detail ? { detail } : {}),
      ...(stopReason ? { stopReason } : {}),
      ...(continuation.note ? { continuation: continuation.note } : {}),
    };
    if (state === 'failed') logger.error('target failed', line);
    else logger.info(`target ${state}`, line);
    return {
      target,
      runId,
      state,
      durationMs,
      counts,
      notes: continuation.note ? [...notes, continuation.note] : notes,
      ...(detail ? { detail } : {}),
      ...(stopReason ? { stopReason } : {}),
      ...(continuation.continues ? { continues: true } : {}),
    };
  };
  /**
   * A target that stopped on its time budget with work left is booked for the next hop, unless
   * the cap is reached or another live chain holds it; any other end releases this chain's hold.
   */
  const settle = async (workLeft: boolean, why: string): Promise<{ continues?: boolean; note?: string }> => {
    if (!chain) return {};
    try {
      if (!workLeft) {
        await endChain(client, definition.job, target, chain.id, why);
        return {};
      }
      if (budget.windowClosed()) {
        await endChain(client, definition.job, target, chain.id, WINDOW_STOP);
        return { note: 'not continued: outside the maintenance window' };
      }
      if (chain.hop >= chain.maxContinuations) {
        await endChain(client, definition.job, target, chain.id, `maxContinuations (${chain.maxContinuations}) reached`);
        const note = `not continued: maxContinuations (${chain.maxContinuations}) reached at hop ${chain.hop}; the next scheduled run goes on`;
        logger.warn(note);
        return { note };
      }
      if (await claimNextHop(client, definition.job, target, chain)) {
        return { continues: true, note: `continues in hop ${chain.hop + 1} of chain ${shortId(chain.id)}` };
      }
      return { note: 'not continued: another live chain holds this target' };
    } catch (error) {
      // The work is done and recorded either way; without a booking the next scheduled run goes on.
      logger.error('could not book the continuation', { error: errorMessage(error) });
      return { note: `not continued: ${errorMessage(error)}` };
    }
  };

  if (budget.isExhausted()) {
    const detail = 'time budget spent before this target started';
    return finish('skipped', {}, detail, {}, undefined, await settle(true, detail));
  }
  const lockKey = definition.lockKey?.(deployed);
  if (!(await tryLockTarget(client, definition.job, target, lockKey))) {
    // Whoever holds the lock is working the target; a chain's booking is left for it to settle.
    return finish('skipped', {}, 'locked: another run holds this target');
  }
  let policy: unknown;
  try {
    const { pause, overrides } = takePause(await readOverrides(client, definition.job, target, { implicit }));
    if (pause.paused) {
      await settle(false, 'paused');
      return await finish('skipped', {}, `paused: ${pause.row} is true`);
    }
    if (chain) {
      const hop = await startHop(client, definition.job, target, chain);
      if (!hop.run) return await finish('skipped', {}, hop.detail);
      if (hop.tookOver) logger.warn(`took over a stale ${hop.tookOver}`);
    }
    const effective = applyOverrides(definition.targetSchema, input, overrides, `targets[${index}]`);
    // applyOverrides refuses identity keys by name; this catches any other path to a new identity.
    if (definition.targetName(effective.policy) !== target || definition.lockKey?.(effective.policy) !== lockKey) {
      throw new ConfigError(`targets[${index}]`, `housekeeping.settings overrides would change the identity of target ${target}; refused`);
    }
    policy = effective.policy;
    logger.info('effective policy', { policy: effective.policy, sources: effective.sources });
    if (!run.dryRun) {
      await recordRunState(client, { runId, job: definition.job, target, state: 'started', startedAt, policy, chainId: chain?.id, hop: chain?.hop });
    }
    const outcome = await definition.runTarget({
      client,
      policy: effective.policy,
      options: run.options,
      logger,
      budget,
      dryRun: run.dryRun,
      runId,
      onProgress: run.onProgress && ((progress) => run.onProgress?.({ target, ...progress })),
    });
    if (outcome.stopReason !== undefined && !definition.stopReasons.includes(outcome.stopReason)) {
      throw new Error(`internal: the ${definition.job} job stopped with '${outcome.stopReason}', which it does not declare`);
    }
    // The job stops the same way whichever limit said no; only time running out continues.
    const stopReason = outcome.stopReason === TIME_BUDGET_STOP && budget.refusedBy === 'window' ? WINDOW_STOP : outcome.stopReason;
    const state = outcome.failure ? 'failed' : 'succeeded';
    const workLeft = state === 'succeeded' && stopReason === TIME_BUDGET_STOP;
    const continuation = await settle(workLeft, state === 'failed' ? 'failed' : (stopReason ?? 'done'));
    return await finish(state, outcome.counts, outcome.failure, { ...outcome, stopReason }, policy, continuation);
  } catch (error) {
    // Leave the session usable for the next target whatever state the job left it in.
    await client.query('ROLLBACK').catch(() => {});
    await settle(false, 'failed');
    return await finish('failed', {}, errorMessage(error), {}, policy);
  } finally {
    await unlockTarget(client, definition.job, target, lockKey).catch(() => {});
  }
}
