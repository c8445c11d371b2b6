import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import type { z } from 'zod';
import { tryLockTargets, unlockTargets } from './advisory-lock';
import { type ChainRow, type ChainRun, claimNextHop, endChain, endChains, readChains, shortId, startHop } from './chain';
import { parseConfig, type RunOptions } from './config';
import { ConfigError, errorMessage } from './errors';
import type { JobDefinition, JobRegistry, PreparedTarget, Progress, StopReason, TargetOutcome } from './job';
import { type RunRecord, type RunState, recordRunState, recordRunStates } from './ledger';
import type { JobLogger } from './logger';
import { ledgerMigrations, migrate } from './migrate';
import { databaseNow } from './postgres';
import { applyOverrides, type Override, overridesFor, readRunSettings, takePause, unmatchedSettings } from './settings';
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
  // Two targets that are one to the lock, the ledger and the state (a rollup's watermark), or
  // that replace each other's rows, would each undo or skip the other's work under its name.
  const names = new Map<string, number>();
  const outputs = new Map<string, number>();
  for (const [index, target] of (options.targets as Array<z.output<S>>).entries()) {
    const name = definition.targetName(target);
    const first = names.get(name);
    if (first !== undefined) {
      throw new ConfigError(
        `${where}.targets[${index}]`,
        `names the same target as targets[${first}] (${name}): one lock, one ledger row and one state for two policies. Merge them, or give each its own ${definition.targetDescription}`,
      );
    }
    names.set(name, index);
    const output = definition.exclusiveOutput?.(target);
    if (!output) continue;
    const writer = outputs.get(output.table);
    if (writer !== undefined) {
      throw new ConfigError(
        `${where}.targets[${index}].${output.field}`,
        `${output.table} is also the target of targets[${writer}] (${definition.targetName((options.targets as Array<z.output<S>>)[writer]!)}); each run replaces whole windows of it, deleting what the other wrote. Give each its own table`,
      );
    }
    outputs.set(output.table, index);
  }
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
    const budget = run.window ? await windowedBudget(client, run.budget, run.window, run.logger) : run.budget;
    const settings = await readRunSettings(client, definition.job, Object.keys(run.jobs));
    warnings.push(...unmatchedSettings(settings, definition, targets, Object.keys(run.jobs)));
    for (const warning of warnings) run.logger.warn(warning);
    // A continuation runs only the targets that continue; the others keep their own schedule.
    const only = run.chain?.targets ? new Set(run.chain.targets) : undefined;
    const queue = inputs.flatMap(({ input, implicit }, index) => (only && !only.has(targets[index]!.name) ? [] : [{ input, index, implicit }]));
    summaries.push(...(await runTargets(definition, { ...run, budget }, client, queue, settings)));
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

interface QueuedTarget {
  input: unknown;
  /** Its place among the run's targets (deployed first, then the job's implicit ones). */
  index: number;
  implicit: boolean;
}

/** At most this many targets are locked, prepared and recorded together by one session. */
const MAX_CHUNK = 32;

/**
 * Works the queue with `concurrency` sessions (the run's own and more, opened here and closed at
 * the end). Each session takes a few targets at a time: locks them in one round trip, prepares
 * them together (the job's prepareTargets), records and unlocks the ones with nothing to do
 * together, then works the others one by one. Summaries come back in queue order.
 */
async function runTargets<S extends z.ZodType, O extends RunOptions>(
  definition: JobDefinition<S, O>,
  run: Run<O>,
  client: pg.Client,
  queue: QueuedTarget[],
  settings: readonly Override[],
): Promise<TargetSummary[]> {
  const wanted = Math.max(1, Math.min(definition.concurrency?.(run.options) ?? 1, queue.length));
  const results: TargetSummary[] = [];
  // Without a prepare stage there is nothing to share: one target at a time, as before. With it, a
  // session starts with up to a quarter of an even share; after a chunk in which a target had work
  // it takes one target at a time, so the sessions finish close together, and after a chunk in
  // which none had, as many as at first again (few round trips for a run with little to do).
  const first = definition.prepareTargets ? Math.max(1, Math.min(MAX_CHUNK, Math.ceil(queue.length / (wanted * 4)))) : 1;
  let next = 0;
  const work = async (session: pg.Client) => {
    let size = first;
    while (next < queue.length) {
      const from = next;
      const chunk = queue.slice(from, from + size);
      next += chunk.length;
      const { summaries, worked } = await runChunk(definition, run, session, chunk, settings);
      summaries.forEach((summary, k) => {
        results[from + k] = summary;
      });
      size = worked > 0 ? 1 : first;
    }
  };
  // The run's own session starts at once; each other one joins when it has connected (a run with
  // little to do may be over before they have), and is closed at the end.
  const joining = Array.from({ length: wanted - 1 }, async () => {
    const session = await run.connect();
    try {
      await work(session);
    } finally {
      await session.end().catch(() => {});
    }
  });
  const settled = await Promise.allSettled([work(client), ...joining]);
  const own = settled[0]!;
  if (own.status === 'rejected') throw own.reason;
  const refused = settled.slice(1).flatMap((result) => (result.status === 'rejected' ? [result.reason] : []));
  if (refused.length > 0) {
    run.logger.warn(`${refused.length} extra session(s) could not connect or failed; the others worked their targets`, {
      error: errorMessage(refused[0]),
    });
  }
  // A session that failed part way left its chunk without summaries: those targets fail with its error.
  for (const [k, queued] of queue.entries()) {
    if (results[k]) continue;
    results[k] = await new TargetRun(definition, run, client, queued).finish('failed', {}, `its session failed: ${errorMessage(refused[0])}`);
  }
  return results;
}

/**
 * One session's share of targets: budget → locks (one round trip) → pause, chain, effective policy
 * → prepare (the job's, one round trip or so for all) → the targets that change nothing are
 * recorded in one ledger statement and unlocked together → each of the others: 'started' row,
 * work, final row, unlock.
 */
async function runChunk<S extends z.ZodType, O extends RunOptions>(
  definition: JobDefinition<S, O>,
  run: Run<O>,
  client: pg.Client,
  chunk: QueuedTarget[],
  settings: readonly Override[],
): Promise<{ summaries: TargetSummary[]; worked: number }> {
  const targets = chunk.map((queued) => new TargetRun(definition, run, client, queued));
  const summaries = new Map<TargetRun<S, O>, TargetSummary>();
  // Outcomes of targets that changed nothing, written together.
  const quiet: RunRecord[] = [];
  const live: Array<TargetRun<S, O>> = [];
  for (const target of targets) {
    if (target.budget.isExhausted()) summaries.set(target, await target.skipForBudget(quiet));
    else live.push(target);
  }
  const locks = await tryLockTargets(
    client,
    definition.job,
    live.map((target) => ({ target: target.target, key: target.lockKey })),
  );
  const held = new Set<TargetRun<S, O>>();
  for (const [i, target] of live.entries()) {
    if (locks[i]) held.add(target);
    // Whoever holds the lock is working the target; a chain's booking is left for it to settle.
    else summaries.set(target, await target.finish('skipped', {}, 'locked: another run holds this target', {}, undefined, {}, quiet));
  }
  const release = async (released: Array<TargetRun<S, O>>) => {
    for (const target of released) held.delete(target);
    await unlockTargets(
      client,
      definition.job,
      released.map((target) => ({ target: target.target, key: target.lockKey })),
    ).catch(() => {});
  };
  let worked = 0;
  // Chains whose hold on a target that changed nothing ends, ended together with the quiet rows.
  const ends: Array<{ target: string; detail: string }> = [];
  const chain = run.dryRun ? undefined : run.chain;
  try {
    const chains =
      chain && held.size > 0
        ? await readChains(
            client,
            definition.job,
            [...held].map((target) => target.target),
          )
        : undefined;
    const ready: Array<TargetRun<S, O>> = [];
    for (const target of held) {
      const overrides = overridesFor(settings, definition.job, target.target, { implicit: target.implicit });
      const ended = await target.resolve(overrides, quiet, ends, chains);
      if (ended) summaries.set(target, ended);
      else ready.push(target);
    }
    let prepared: PreparedTarget[] = ready.map(() => ({}));
    if (definition.prepareTargets && ready.length > 0) {
      try {
        prepared = await definition.prepareTargets(
          client,
          ready.map((target) => ({ policy: target.policy as z.output<S>, logger: target.logger })),
          run.options,
          run.dryRun,
        );
      } catch (error) {
        // Each target fails on it in its turn, as if its own read had failed.
        await client.query('ROLLBACK').catch(() => {});
        prepared = ready.map(() => ({ error }));
      }
    }
    const working: Array<[TargetRun<S, O>, PreparedTarget]> = [];
    for (const [i, target] of ready.entries()) {
      const found = prepared[i] ?? {};
      if (found.idle && found.error === undefined) summaries.set(target, await target.idle(found.idle, quiet, ends));
      else working.push([target, found]);
    }
    if (chain && ends.length > 0) {
      // The work is done and recorded either way; without a booking the next scheduled run goes on.
      await endChains(client, definition.job, chain.id, ends).catch((error) =>
        run.logger.error('could not end the chains', { error: errorMessage(error) }),
      );
    }
    if (!run.dryRun && quiet.length > 0) {
      await recordRunStates(client, quiet).catch((error) => run.logger.error('could not write the run ledger', { error: errorMessage(error) }));
    }
    worked = working.length;
    const busy = new Set(working.map(([target]) => target));
    await release([...held].filter((target) => !busy.has(target)));
    for (const [target, found] of working) {
      try {
        summaries.set(target, await target.work(found));
      } finally {
        await release([target]);
      }
    }
  } finally {
    if (held.size > 0) await release([...held]);
  }
  return { summaries: targets.map((target) => summaries.get(target)!), worked };
}

/** One target's run: its name, lock, budget, logger and ledger rows, through the stages runChunk drives. */
class TargetRun<S extends z.ZodType, O extends RunOptions> {
  readonly runId = randomUUID();
  private startedAt = new Date();
  readonly deployed: z.output<S>;
  readonly target: string;
  readonly implicit: boolean;
  readonly lockKey: number | undefined;
  readonly logger: JobLogger;
  /** Per target: whether the budget turned this target's work away, and why. */
  readonly budget: TimeBudget;
  /** Dry runs change nothing, chains included. */
  private readonly chain: ChainRun | undefined;
  private readonly input: unknown;
  private readonly index: number;
  policy: unknown;

  constructor(
    private readonly definition: JobDefinition<S, O>,
    private readonly run: Run<O>,
    private readonly client: pg.Client,
    queued: QueuedTarget,
  ) {
    this.input = queued.input;
    this.index = queued.index;
    this.implicit = queued.implicit;
    this.deployed = definition.targetSchema.parse(queued.input) as z.output<S>;
    this.target = definition.targetName(this.deployed);
    this.lockKey = definition.lockKey?.(this.deployed);
    this.logger = run.logger.createChild({ persistentKeys: { target: this.target, runId: this.runId } });
    this.budget = run.budget.forTarget();
    this.chain = run.dryRun ? undefined : run.chain;
  }

  /** Records the outcome (into `quiet` when given: written later, with other targets' that changed nothing) and logs it. */
  async finish(
    state: TargetSummary['state'],
    counts: Record<string, number>,
    detail?: string,
    outcome: Pick<TargetOutcome, 'notes' | 'stopReason'> = {},
    policy?: unknown,
    continuation: { continues?: boolean; note?: string } = {},
    quiet?: RunRecord[],
  ): Promise<TargetSummary> {
    const durationMs = Date.now() - this.startedAt.getTime();
    const { notes = [], stopReason } = outcome;
    const said = detail ?? (stopReason ? `stopped: ${stopReason}` : undefined);
    const recorded = [said, continuation.note].filter(Boolean).join('; ') || undefined;
    if (!this.run.dryRun) {
      const record: RunRecord = {
        runId: this.runId,
        job: this.definition.job,
        target: this.target,
        state,
        startedAt: this.startedAt,
        durationMs,
        counts,
        detail: recorded,
        policy,
        chainId: this.chain?.id,
        hop: this.chain?.hop,
      };
      if (quiet) quiet.push(record);
      else
        await recordRunState(this.client, record).catch((error) =>
          this.logger.error('could not write the run ledger', { error: errorMessage(error) }),
        );
    }
    const line = {
      state,
      durationMs,
      counts,
      ...(detail ? { detail } : {}),
      ...(stopReason ? { stopReason } : {}),
      ...(continuation.note ? { continuation: continuation.note } : {}),
    };
    if (state === 'failed') this.logger.error('target failed', line);
    else this.logger.info(`target ${state}`, line);
    return {
      target: this.target,
      runId: this.runId,
      state,
      durationMs,
      counts,
      notes: continuation.note ? [...notes, continuation.note] : notes,
      ...(detail ? { detail } : {}),
      ...(stopReason ? { stopReason } : {}),
      ...(continuation.continues ? { continues: true } : {}),
    };
  }

  /**
   * A target that stopped on its time budget with work left is booked for the next hop, unless
   * the cap is reached or another live chain holds it; any other end releases this chain's hold.
   */
  private async settle(workLeft: boolean, why: string): Promise<{ continues?: boolean; note?: string }> {
    const { chain, client, logger, budget } = this;
    const job = this.definition.job;
    if (!chain) return {};
    try {
      if (!workLeft) {
        await endChain(client, job, this.target, chain.id, why);
        return {};
      }
      if (budget.windowClosed()) {
        await endChain(client, job, this.target, chain.id, WINDOW_STOP);
        return { note: 'not continued: outside the maintenance window' };
      }
      if (chain.hop >= chain.maxContinuations) {
        await endChain(client, job, this.target, chain.id, `maxContinuations (${chain.maxContinuations}) reached`);
        const note = `not continued: maxContinuations (${chain.maxContinuations}) reached at hop ${chain.hop}; the next scheduled run goes on`;
        logger.warn(note);
        return { note };
      }
      if (await claimNextHop(client, job, this.target, chain)) {
        return { continues: true, note: `continues in hop ${chain.hop + 1} of chain ${shortId(chain.id)}` };
      }
      return { note: 'not continued: another live chain holds this target' };
    } catch (error) {
      // The work is done and recorded either way; without a booking the next scheduled run goes on.
      logger.error('could not book the continuation', { error: errorMessage(error) });
      return { note: `not continued: ${errorMessage(error)}` };
    }
  }

  async skipForBudget(quiet: RunRecord[]): Promise<TargetSummary> {
    const detail = 'time budget spent before this target started';
    return this.finish('skipped', {}, detail, {}, undefined, await this.settle(true, detail), quiet);
  }

  /** Leaves the session usable for the next target whatever state the job left it in, and records the failure. */
  private async fail(error: unknown): Promise<TargetSummary> {
    await this.client.query('ROLLBACK').catch(() => {});
    await this.settle(false, 'failed');
    return this.finish('failed', {}, errorMessage(error), {}, this.policy);
  }

  /** With the lock held: pause, chain and the effective policy. A summary when the target ends here. */
  async resolve(
    overrides: Override[],
    quiet: RunRecord[],
    ends: Array<{ target: string; detail: string }>,
    chains: Map<string, ChainRow> | undefined,
  ): Promise<TargetSummary | undefined> {
    const { definition, logger } = this;
    try {
      const { pause, overrides: policyOverrides } = takePause(overrides);
      if (pause.paused) {
        if (this.chain) ends.push({ target: this.target, detail: 'paused' });
        return await this.finish('skipped', {}, `paused: ${pause.row} is true`, {}, undefined, {}, quiet);
      }
      if (this.chain) {
        const known = chains ? { row: chains.get(this.target) } : undefined;
        const hop = await startHop(this.client, definition.job, this.target, this.chain, known);
        if (!hop.run) return await this.finish('skipped', {}, hop.detail, {}, undefined, {}, quiet);
        if (hop.tookOver) logger.warn(`took over a stale ${hop.tookOver}`);
      }
      const effective = applyOverrides(definition.targetSchema, this.input, policyOverrides, `targets[${this.index}]`);
      // applyOverrides refuses identity keys by name; this catches any other path to a new identity.
      if (definition.targetName(effective.policy) !== this.target || definition.lockKey?.(effective.policy) !== this.lockKey) {
        throw new ConfigError(
          `targets[${this.index}]`,
          `housekeeping.settings overrides would change the identity of target ${this.target}; refused`,
        );
      }
      this.policy = effective.policy;
      logger.info('effective policy', { policy: effective.policy, sources: effective.sources });
      return undefined;
    } catch (error) {
      return this.fail(error);
    }
  }

  /** The job found nothing to change: one quiet row, no 'started' row. */
  async idle(outcome: TargetOutcome, quiet: RunRecord[], ends: Array<{ target: string; detail: string }>): Promise<TargetSummary> {
    try {
      if (this.chain) ends.push({ target: this.target, detail: 'done' });
      return await this.finish('succeeded', outcome.counts, undefined, { notes: outcome.notes ?? [] }, this.policy, {}, quiet);
    } catch (error) {
      return this.fail(error);
    }
  }

  /** The target's work: 'started' row, runTarget within the budget, final row. */
  async work(prepared: PreparedTarget): Promise<TargetSummary> {
    const { definition, run, logger, budget, chain } = this;
    if (budget.isExhausted()) {
      const detail = 'time budget spent before this target started';
      return this.finish('skipped', {}, detail, {}, undefined, await this.settle(true, detail));
    }
    // Its run starts now: the targets before it in the chunk worked meanwhile.
    this.startedAt = new Date();
    const { policy } = this;
    try {
      if (!run.dryRun) {
        await recordRunState(this.client, {
          runId: this.runId,
          job: definition.job,
          target: this.target,
          state: 'started',
          startedAt: this.startedAt,
          policy,
          chainId: chain?.id,
          hop: chain?.hop,
        });
      }
      if (prepared.error !== undefined) throw prepared.error;
      const outcome = await definition.runTarget({
        client: this.client,
        connect: run.connect,
        policy: policy as z.output<S>,
        options: run.options,
        logger,
        budget,
        dryRun: run.dryRun,
        runId: this.runId,
        onProgress: run.onProgress && ((progress) => run.onProgress?.({ target: this.target, ...progress })),
        ...(prepared.state !== undefined ? { prepared: prepared.state } : {}),
      });
      if (outcome.stopReason !== undefined && !definition.stopReasons.includes(outcome.stopReason)) {
        throw new Error(`internal: the ${definition.job} job stopped with '${outcome.stopReason}', which it does not declare`);
      }
      // The job stops the same way whichever limit said no; only time running out continues.
      const stopReason = outcome.stopReason === TIME_BUDGET_STOP && budget.refusedBy === 'window' ? WINDOW_STOP : outcome.stopReason;
      const state = outcome.failure ? 'failed' : 'succeeded';
      const workLeft = state === 'succeeded' && stopReason === TIME_BUDGET_STOP;
      const continuation = await this.settle(workLeft, state === 'failed' ? 'failed' : (stopReason ?? 'done'));
      return await this.finish(state, outcome.counts, outcome.failure, { ...outcome, stopReason }, policy, continuation);
    } catch (error) {
      return this.fail(error);
    }
  }
}
