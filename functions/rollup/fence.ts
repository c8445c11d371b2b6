import type pg from 'pg';
import { queryOne } from '../../shared/postgres';

export interface FenceHolder {
  pid: number;
  application: string;
  state: string | null;
  /** The transaction's start (xact_start), ISO-8601 UTC. */
  since: string;
}

export interface Fence {
  /** Start of the oldest open transaction in this database other than the run's own, or null. */
  at: Date | null;
  holder: FenceHolder | null;
  /** Whether this role sees every session's transaction (pg_read_all_stats, which pg_monitor includes). */
  privileged: boolean;
  role: string;
  /** Sessions of other roles whose transaction start this role cannot see; `writing` of them have an xid. */
  hidden: { sessions: number; writing: number };
}

/**
 * `now()` is a transaction's start time, and any open transaction can still commit rows stamped
 * with it, or with a later clock reading, whether it has written yet or not (`BEGIN; SELECT now()`
 * and an INSERT an hour later). So the oldest open transaction's xact_start bounds where rows not
 * yet visible to us can land: neither the upper bound nor the changed-at horizon may pass it.
 *
 * Excluded: the run's own session, sessions with no transaction open (idle), autovacuum workers
 * and WAL senders (they never write user rows). Sessions of other roles show no xact_start
 * unless this role has pg_read_all_stats (pg_monitor on RDS): those are counted, not dated, and
 * the run warns that the fence cannot see them. Their backend_xid stays visible, so the warning
 * can say how many of them are writing right now.
 */
export async function readFence(client: pg.ClientBase): Promise<Fence> {
  const { rows } = await client.query<{
    pid: number;
    application: string;
    state: string | null;
    since: Date | null;
    hidden: boolean;
    writing: boolean;
  }>(
    `SELECT pid, application_name AS application, state, xact_start AS since,
            backend_type IS NULL AS hidden, backend_xid IS NOT NULL AS writing
     FROM pg_stat_activity
     WHERE datname = current_database() AND pid <> pg_backend_pid()
       AND (backend_type IS NULL OR backend_type NOT IN ('autovacuum worker', 'walsender'))
       AND (xact_start IS NOT NULL OR backend_xid IS NOT NULL OR backend_xmin IS NOT NULL OR backend_type IS NULL)
     ORDER BY xact_start NULLS LAST, pid`,
  );
  const who = await queryOne<{ privileged: boolean; role: string }>(
    client,
    `SELECT pg_has_role('pg_read_all_stats', 'USAGE') AS privileged, current_user::text AS role`,
  );
  const dated = rows.find((row) => row.since !== null);
  const hidden = rows.filter((row) => row.hidden);
  return {
    at: dated?.since ?? null,
    holder: dated ? { pid: dated.pid, application: dated.application, state: dated.state, since: dated.since!.toISOString() } : null,
    privileged: who.privileged,
    role: who.role,
    hidden: { sessions: hidden.length, writing: hidden.filter((row) => row.writing).length },
  };
}

export function describeHolder(holder: FenceHolder): string {
  return `pid ${holder.pid} (application "${holder.application}", state "${holder.state ?? 'unknown'}", since ${holder.since})`;
}

/** Why the fence may be blind, or undefined when it sees every session. */
export function blindness(fence: Fence): string | undefined {
  if (fence.privileged && fence.hidden.sessions === 0) return undefined;
  const seen =
    fence.hidden.sessions > 0
      ? `the fence cannot see ${fence.hidden.sessions} session(s) of other roles in this database (${fence.hidden.writing} writing now)`
      : `role ${fence.role} cannot see other roles' sessions, so the fence would not see their open transactions`;
  return (
    `${seen}: a transaction of theirs that commits after this run can land rows behind the watermark unseen. ` +
    `grant pg_monitor (or pg_read_all_stats) to ${fence.role}`
  );
}
