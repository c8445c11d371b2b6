import type pg from 'pg';
import { errorMessage, LockTimeoutError } from '../../shared/errors';
import { inTransaction } from '../../shared/db';
import { withLockRetry } from '../../shared/lock-retry';
import type { JobLogger } from '../../shared/logger';
import type { TimeBudget } from '../../shared/time-budget';
import type { DdlStep, SqlStatement } from './ddl';

export interface ApplyOptions {
  budget: TimeBudget;
  lockTimeoutMs: number;
  lockAttempts: number;
  logger: JobLogger;
}

export interface ApplyResult {
  done: DdlStep[];
  rowsMovedFromDefault: number;
  failures: string[];
  /** A step gave up on a lock: later steps need the same locks, so none were tried. */
  stoppedOnLock: boolean;
  /** Steps not started because the time budget was spent: work left for a continuation, not a failure. */
  notRun: number;
}

async function runStatements(client: pg.ClientBase, step: DdlStep): Promise<number> {
  let moved = 0;
  for (const statement of step.statements) {
    const result = await client.query(statement.text, statement.params);
    if (statement.movesDefaultRows) moved += result.rowCount ?? 0;
  }
  return moved;
}

async function isDetachPending(client: pg.ClientBase, partition: string): Promise<boolean> {
  const { rows } = await client.query<{ pending: boolean }>(
    `SELECT inhdetachpending AS pending FROM pg_inherits WHERE inhrelid = to_regclass($1)`,
    [partition],
  );
  return rows[0]?.pending === true;
}

/** One statement outside a transaction block; a retry of an interrupted concurrent detach finalizes it. */
function autocommitStatement(client: pg.ClientBase, statement: SqlStatement): () => Promise<unknown> {
  let attempted = false;
  return async () => {
    const finalize = statement.finalizeIfPending;
    const text = attempted && finalize && (await isDetachPending(client, finalize.partition)) ? finalize.text : statement.text;
    attempted = true;
    return client.query(text, statement.params);
  };
}

/**
 * Runs each step on its own (one transaction per created partition, one per retirement), so a
 * failure costs only that step. Stops starting new steps once the budget is spent, or once a
 * step gave up waiting for a lock (retrying the others would only queue writers again).
 */
export async function applySteps(client: pg.ClientBase, steps: DdlStep[], options: ApplyOptions): Promise<ApplyResult> {
  const result: ApplyResult = { done: [], rowsMovedFromDefault: 0, failures: [], stoppedOnLock: false, notRun: 0 };
  for (const [index, step] of steps.entries()) {
    if (options.budget.isExhausted()) {
      result.notRun = steps.length - index;
      options.logger.warn(`time budget spent: ${result.notRun} step(s) not run, starting with ${step.kind} ${step.partition}`);
      break;
    }
    const retry = {
      client,
      action: `${step.kind} ${step.partition}`,
      relations: step.relations,
      attempts: options.lockAttempts,
      lockTimeoutMs: options.lockTimeoutMs,
      budget: options.budget,
    };
    try {
      if (step.transactional) {
        result.rowsMovedFromDefault += await withLockRetry(retry, () => inTransaction(client, () => runStatements(client, step)));
      } else {
        // CONCURRENTLY cannot run in a transaction block; each statement is retried on its own,
        // and a retry of the second never repeats the first.
        for (const statement of step.statements) {
          await withLockRetry(retry, autocommitStatement(client, statement));
        }
      }
      result.done.push(step);
      options.logger.info(`${step.kind} ${step.partition}`);
    } catch (error) {
      options.logger.error(`${step.kind} ${step.partition} failed`, { error: errorMessage(error) });
      result.failures.push(errorMessage(error));
      if (error instanceof LockTimeoutError) {
        const skipped = steps.length - index - 1;
        if (skipped > 0) result.failures.push(`${skipped} later step(s) not tried: they need the same locks`);
        result.stoppedOnLock = true;
        break;
      }
    }
  }
  return result;
}
