import type pg from 'pg';
import type { z } from 'zod';
import type { JobLogger } from './logger';
import type { JobName } from './run-job';
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
  policy: P;
  options: O;
  logger: JobLogger;
  budget: TimeBudget;
  dryRun: boolean;
  runId: string;
  /** Long jobs report progress here (the CLI draws a bar); logging progress stays the job's own. */
  onProgress?: (progress: Progress) => void;
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

export interface JobDefinition<S extends z.ZodType, O> {
  job: JobName;
  targetSchema: S;
  /**
   * The target's one name: what it is locked, logged, recorded and measured under, and what its
   * housekeeping.settings rows put in `target` (e.g. "public.events").
   */
  targetName(policy: z.output<S>): string;
  /** Targets the job always maintains besides the user's (the partition job keeps the ledger partitioned). */
  implicitTargets?(options: O, dryRun: boolean): unknown[];
  /** An explicit advisory lock key instead of the (job, target) one. */
  lockKey?(policy: z.output<S>): number | undefined;
  runTarget(context: TargetContext<z.output<S>, O>): Promise<TargetOutcome>;
}

