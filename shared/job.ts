import type pg from 'pg';
import type { z } from 'zod';
import type { RunOptions } from './config';
import type { RunState } from './ledger';
import type { JobLogger } from './logger';
import type { Migration } from './migrate';
import type { TimeBudget } from './time-budget';

/**
 * What a job is: the definition each job folder exports and functions/registry.ts lists. The
 * spine (shared/run-job.ts) runs any definition the same way; the job brings its schemas, its
 * target's name, and the work on one target.
 */

/**
 * Why a target's run ended before its work did, or that it did not: the words the summary, the
 * ledger (`stopped: ...`) and the logs use, the same for every job.
 */
export type StopReason = 'done' | 'max rows reached' | 'time budget nearly spent' | 'outside maintenance window';

export interface TargetContext<P, O> {
  client: pg.Client;
  /**
   * Opens another session set up as `client` is (TLS, role, timeouts), which the caller closes.
   * It holds none of the target's locks: for reads that may run beside `client`'s transactions.
   */
  connect: () => Promise<pg.Client>;
  policy: P;
  options: O;
  logger: JobLogger;
  budget: TimeBudget;
  dryRun: boolean;
  runId: string;
  /** Long jobs report progress here (the CLI draws a bar); logging progress stays the job's own. */
  onProgress?: (progress: Progress) => void;
  /** What the job's prepareTargets read for this target, when it has that stage. */
  prepared?: unknown;
}

/** One target as prepareTargets sees it: its effective policy and its logger. */
export interface PrepareItem<P> {
  policy: P;
  logger: JobLogger;
}

/** What prepareTargets found for one target. */
export interface PreparedTarget {
  /** Passed to runTarget as `prepared`. */
  state?: unknown;
  /** The target cannot run: it fails with this error, as if runTarget had thrown it. */
  error?: unknown;
  /**
   * The target has nothing to change: its outcome. It is recorded without a 'started' row, in one
   * ledger statement with the other targets' that changed nothing, and runTarget is not called.
   */
  idle?: TargetOutcome;
}

export interface Progress {
  done: number;
  estimatedTotal: number;
  ratePerSecond: number;
}

export interface TargetOutcome {
  counts: Record<string, number>;
  /** Set when the target did part of its work and then failed: counts still tell what was done. */
  failure?: string;
  /** Human lines for the CLI summary (plans, warnings). */
  notes?: string[];
  /** Why a run that can stop early stopped. */
  stopReason?: StopReason;
}

/**
 * One of a job's metrics, read off each target's summary after a run (`undefined`: nothing for
 * that target). Published under the job's dimension; alarms watch the name, so never rename one.
 */
export interface TargetMetric {
  name: string;
  unit: 'Count' | 'Seconds';
  value(target: { state: Exclude<RunState, 'started'>; counts: Record<string, number> }): number | undefined;
}

export interface JobDefinition<S extends z.ZodType, O extends RunOptions, I = unknown> {
  /** The job's name: its folder under functions/, its key in the registry, its lock and ledger prefix. */
  job: string;
  /** The event its Lambda receives and the CLI's --config holds: targets and run options. */
  eventSchema: z.ZodType<O, I>;
  targetSchema: S;
  /**
   * The target's one name: what it is locked, logged, recorded and measured under, and what its
   * housekeeping.settings rows put in `target` (e.g. "public.events").
   */
  targetName(policy: z.output<S>): string;
  /** That name in words, for a settings row keyed to no target: "the table as schema.table". */
  targetDescription: string;
  /** Targets the job always maintains besides the user's (the partition job keeps the ledger partitioned). */
  implicitTargets?(options: O, dryRun: boolean): unknown[];
  /**
   * The table the target replaces rows of and no other target may write (a rollup's target: each
   * recompute deletes its window whole), with the policy field that names it.
   */
  exclusiveOutput?(policy: z.output<S>): { field: string; table: string } | undefined;
  /** An explicit advisory lock key instead of the (job, target) one. */
  lockKey?(policy: z.output<S>): number | undefined;
  runTarget(context: TargetContext<z.output<S>, O>): Promise<TargetOutcome>;
  /**
   * Reads what many targets need in one go, with their advisory locks held, before any of them
   * runs: a target with nothing to do then costs no round trip of its own. One entry per item, in
   * order; a problem of one target is its `error`, not a throw.
   */
  prepareTargets?(client: pg.ClientBase, items: ReadonlyArray<PrepareItem<z.output<S>>>, options: O, dryRun: boolean): Promise<PreparedTarget[]>;
  /** How many sessions work the run's targets at once (each target still under its own advisory lock); 1 without it. */
  concurrency?(options: O): number;
  /** Every reason runTarget may stop with; another one fails the target (a bug, not an outcome). */
  stopReasons: readonly StopReason[];
  /** The job's metrics, by a name infra refers to them with. */
  metrics: Readonly<Record<string, TargetMetric>>;
  /** The count that says what a target stopped by its budget has left, logged when it continues. */
  remainingCount?: string;
  /** The ledger tables the job owns, numbered in the one sequence every migration shares (shared/migrate.ts). */
  migrations?: readonly Migration[];
  /** Its Lambda's defaults; a deployment may set others. */
  lambda: { timeoutSeconds: number; retryAttempts: 0 | 1 | 2 };
}

/** Any job, as the spine and the registry see it. */
export type Job = JobDefinition<z.ZodType, RunOptions>;

/** Every job by name (functions/registry.ts): the spine takes it as an argument, it never imports it. */
export type JobRegistry = Readonly<Record<string, Job>>;
