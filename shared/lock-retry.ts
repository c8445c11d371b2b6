import type pg from 'pg';
import { DeadlockError, LockTimeoutError } from './errors';
import { SQLSTATE, sleep, sqlState } from './postgres';
import type { TimeBudget } from './time-budget';

export interface LockRetryOptions {
  client: pg.ClientBase;
  /** What the statement needed, for the error text: "attach public.events_p2026_11_24". */
  action: string;
  /** Relations whose current lock holders are named when we give up. */
  relations: string[];
  attempts: number;
  lockTimeoutMs: number;
  budget: TimeBudget;
  initialBackoffMs?: number;
}

/** Who holds locks on these relations right now, in words an operator can act on. */
async function describeLockHolders(client: pg.ClientBase, relations: string[]): Promise<string> {
  const { rows } = await client.query<{
    pid: number;
    mode: string;
    relation: string;
    state: string | null;
    application_name: string | null;
    xact_seconds: number | null;
  }>(
    `SELECT l.pid, l.mode, l.relation::regclass::text AS relation, a.state, a.application_name,
            extract(epoch FROM now() - a.xact_start)::int AS xact_seconds
     FROM pg_locks l
     JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()
       AND l.relation = ANY (SELECT to_regclass(r)::oid FROM unnest($1::text[]) AS r)
     ORDER BY a.xact_start NULLS LAST
     LIMIT 5`,
    [relations],
  );
  if (rows.length === 0) return 'no session holds a lock on them any more (the blocker has since finished)';
  return rows
    .map(
      (r) =>
        `pid ${r.pid} (${r.application_name ? `application "${r.application_name}", ` : ''}state "${r.state ?? 'unknown'}"` +
        `${r.xact_seconds === null ? '' : `, transaction open ${r.xact_seconds} s`}) holds ${r.mode} on ${r.relation}`,
    )
    .join('; ');
}

/**
 * Runs `statement` (which must roll back its own transaction on failure). When it fails for want
 * of a lock (lock_timeout) or a deadlock, waits with exponential backoff and tries again, as long
 * as attempts and the time budget allow. Writers queued behind us therefore wait at most about
 * one lock_timeout per attempt, never behind a long transaction for long.
 */
export async function withLockRetry<T>(options: LockRetryOptions, statement: () => Promise<T>): Promise<T> {
  let backoff = options.initialBackoffMs ?? 200;
  for (let attempt = 1; ; attempt++) {
    try {
      return await statement();
    } catch (error) {
      const code = sqlState(error);
      if (code !== SQLSTATE.lockNotAvailable && code !== SQLSTATE.deadlockDetected) throw error;
      const nextWait = backoff + Math.floor(Math.random() * backoff * 0.2);
      // Time only: the statement's work already started, so a maintenance window closing meanwhile does not stop it.
      const budgetLeft = options.budget.hasTime(nextWait + options.lockTimeoutMs);
      if (attempt >= options.attempts || !budgetLeft) {
        const holders = await describeLockHolders(options.client, options.relations).catch(() => 'unknown holders');
        const deadlocked = code === SQLSTATE.deadlockDetected;
        const why = deadlocked ? 'deadlocked' : `could not get a lock within ${options.lockTimeoutMs} ms`;
        const message =
          `${options.action}: ${why} on ${attempt} attempt(s)${budgetLeft ? '' : ' (time budget spent)'}; ` +
          `gave up so writers are not queued behind us. Blocking: ${holders}`;
        throw deadlocked ? new DeadlockError(message, { cause: error }) : new LockTimeoutError(message, { cause: error });
      }
      await sleep(nextWait);
      backoff = Math.min(backoff * 2, 10_000);
    }
  }
}
