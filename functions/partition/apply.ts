import type pg from 'pg';
import { inTransaction } from '../../shared/db';
import { DeadlockError, errorMessage, HousekeeperError, LockTimeoutError } from '../../shared/errors';
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
  /** Refusals of steps that only fill past gaps: reported, but they fail nothing. */
  warnings: string[];
  /** Steps a guard refused (see SqlStatement.refuseIfRow). */
  refused: number;
  /** A step gave up on a lock: later steps need the same locks, so none were tried. */
  stoppedOnLock: boolean;
  /** Steps not started because the time budget was spent: work left for a continuation, not a failure. */
  notRun: number;
}

/** A guard statement found the step unsafe; its transaction is rolled back and it is not retried. */
class StepRefusedError extends HousekeeperError {}

async function runStatements(client: pg.ClientBase, statements: SqlStatement[]): Promise<number> {
  let moved = 0;
  for (const statement of statements) {
    const result = await client.query(statement.text, statement.params);
    if (statement.movesDefaultRows) moved += result.rowCount ?? 0;
    if (statement.refuseIfRow && (result.rowCount ?? 0) > 0) throw new StepRefusedError(statement.refuseIfRow);
    if (statement.refuseUnlessRow && (result.rowCount ?? 0) === 0) throw new StepRefusedError(statement.refuseUnlessRow);
  }
  return moved;
}

/** A statement whose result nothing looks at. */
const plain = (statement: SqlStatement) => !statement.refuseIfRow && !statement.refuseUnlessRow && !statement.movesDefaultRows;

async function isDetachPending(client: pg.ClientBase, partition: string): Promise<boolean> {
  const { rows } = await client.query<{ pending: boolean }>(`SELECT inhdetachpending AS pending FROM pg_inherits WHERE inhrelid = to_regclass($1)`, [
    partition,
  ]);
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
 * Runs each step on its own (one transaction per created partition; a retirement's groups one
 * after the other), so a failure costs only that step. A refused step is reported and the others
 * continue. Stops starting new steps once the budget is spent, or once a step gave up waiting for
 * a lock (retrying the others would only queue writers again).
 */
export async function applySteps(client: pg.ClientBase, steps: DdlStep[], options: ApplyOptions): Promise<ApplyResult> {
  const result: ApplyResult = { done: [], rowsMovedFromDefault: 0, failures: [], warnings: [], refused: 0, stoppedOnLock: false, notRun: 0 };
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
      // A retry of a later group never repeats an earlier one.
      for (const group of step.groups) {
        if (group.length === 1 && plain(group[0]!)) {
          // Outside a transaction block: CONCURRENTLY cannot run in one.
          await withLockRetry(retry, autocommitStatement(client, group[0]!));
        } else if (group.every((statement) => plain(statement) && !statement.params?.length && !statement.finalizeIfPending)) {
          // Statements without bind values or guards (a create without DEFAULT: CREATE TABLE, ATTACH)
          // go as one query, which Postgres runs as one transaction: one round trip instead of four.
          await withLockRetry(retry, () => client.query(group.map((statement) => statement.text).join(';\n')));
        } else {
          result.rowsMovedFromDefault += await withLockRetry(retry, () => inTransaction(client, () => runStatements(client, group)));
        }
      }
      result.done.push(step);
      options.logger.info(`${step.kind} ${step.partition}`);
    } catch (error) {
      if (error instanceof StepRefusedError) {
        result.refused++;
        options.logger.warn(`${step.kind} ${step.partition} refused`, { reason: error.message });
        (step.past ? result.warnings : result.failures).push(error.message);
        continue;
      }
      options.logger.error(`${step.kind} ${step.partition} failed`, { error: errorMessage(error) });
      result.failures.push(errorMessage(error));
      if (error instanceof LockTimeoutError || error instanceof DeadlockError) {
        const skipped = steps.length - index - 1;
        if (skipped > 0) result.failures.push(`${skipped} later step(s) not tried: they need the same locks`);
        result.stoppedOnLock = true;
        break;
      }
    }
  }
  return result;
}
