import type pg from 'pg';
import { relationExists } from './db';
import { SQLSTATE, sqlState } from './postgres';

export type RunState = 'started' | 'succeeded' | 'failed' | 'skipped';

export interface RunRecord {
  runId: string;
  job: string;
  target: string;
  state: RunState;
  startedAt: Date;
  durationMs?: number;
  counts?: Record<string, unknown>;
  policy?: unknown;
  detail?: string;
  /** The Lambda invocation chain this run belongs to, and its hop (0: the scheduled or manual invocation). */
  chainId?: string;
  hop?: number;
}

/**
 * Appends one state change. Runs outside any job transaction, so it survives the job's rollbacks.
 * Dry runs are never recorded, so dry_run keeps its default (false).
 */
export async function recordRunState(client: pg.ClientBase, record: RunRecord): Promise<void> {
  await recordRunStates(client, [record]);
}

/**
 * Appends many state changes in one statement (one commit): the outcomes of targets that changed
 * nothing. Each row's recorded_at is its own clock_timestamp(), in the order given.
 */
export async function recordRunStates(client: pg.ClientBase, records: readonly RunRecord[]): Promise<void> {
  if (records.length === 0) return;
  const column = <T>(value: (record: RunRecord) => T) => records.map(value);
  const insert = () =>
    client.query(
      `INSERT INTO housekeeping.job_runs
       (run_id, job, target, state, started_at, duration_ms, counts, policy, detail, chain_id, hop)
     SELECT run_id, job, target, state, started_at, duration_ms, counts, policy, detail, chain_id, hop
     FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::bigint[], $7::jsonb[], $8::jsonb[],
                 $9::text[], $10::uuid[], $11::integer[])
          WITH ORDINALITY AS r(run_id, job, target, state, started_at, duration_ms, counts, policy, detail, chain_id, hop, n)
     ORDER BY n`,
      [
        column((r) => r.runId),
        column((r) => r.job),
        column((r) => r.target),
        column((r) => r.state),
        column((r) => r.startedAt),
        column((r) => r.durationMs ?? null),
        column((r) => JSON.stringify(r.counts ?? {})),
        column((r) => (r.policy === undefined ? null : JSON.stringify(r.policy))),
        column((r) => r.detail ?? null),
        column((r) => r.chainId ?? null),
        column((r) => (r.chainId === undefined ? null : (r.hop ?? 0))),
      ],
    );
  try {
    await insert();
  } catch (error) {
    // Routed to DEFAULT while the partition job attached the month it belongs to (the attach
    // locks DEFAULT; the insert waited, then Postgres refused the row DEFAULT no longer takes).
    // A new statement routes it again, to the month's partition.
    if (sqlState(error) !== SQLSTATE.checkViolation) throw error;
    await insert();
  }
}

export interface LatestRun {
  job: string;
  target: string;
  state: RunState;
  runId: string;
  startedAt: Date;
  recordedAt: Date;
  durationMs: number | null;
  counts: Record<string, unknown>;
  detail: string | null;
  /** Set for Lambda runs: the chain's id, this row's hop, and how many hops of the chain have finished for this target. */
  chain: { id: string; hop: number; hops: number; startedAt: Date } | null;
}

/** The newest state of every (job, target), or an empty list before the first run. */
export async function latestRuns(client: pg.ClientBase): Promise<LatestRun[]> {
  if (!(await relationExists(client, 'housekeeping.latest_runs'))) return [];
  // A ledger older than migration 7 has no chains yet (status never migrates).
  const chains = await relationExists(client, 'housekeeping.chain_runs');
  const result = await client.query(
    chains
      ? `SELECT l.job, l.target, l.state, l.run_id, l.started_at, l.recorded_at, l.duration_ms, l.counts, l.detail,
                l.chain_id, l.hop, c.hops, c.started_at AS chain_started_at
         FROM housekeeping.latest_runs l
         LEFT JOIN housekeeping.chain_runs c ON c.job = l.job AND c.target = l.target AND c.chain_id = l.chain_id
         ORDER BY l.job, l.target`
      : `SELECT job, target, state, run_id, started_at, recorded_at, duration_ms, counts, detail FROM housekeeping.latest_runs ORDER BY job, target`,
  );
  return result.rows.map((row) => ({
    job: row.job,
    target: row.target,
    state: row.state,
    runId: row.run_id,
    startedAt: row.started_at,
    recordedAt: row.recorded_at,
    durationMs: row.duration_ms === null ? null : Number(row.duration_ms),
    counts: row.counts,
    detail: row.detail,
    chain: row.chain_id ? { id: row.chain_id, hop: row.hop, hops: Number(row.hops ?? 0), startedAt: row.chain_started_at } : null,
  }));
}

/**
 * Seconds from each target's newest success to the database's now(), in one query for all the
 * job's targets. A target that never succeeded counts from its first recorded run (it has been
 * failing since it was added); one with no record at all is left out.
 */
export async function secondsSinceLastSuccess(client: pg.ClientBase, job: string, targets: string[]): Promise<Map<string, number>> {
  const { rows } = await client.query<{ target: string; seconds: number | null }>(
    `SELECT t.target,
            extract(epoch FROM now() - coalesce(
              (SELECT r.recorded_at FROM housekeeping.job_runs r
                WHERE r.job = $1 AND r.target = t.target AND r.state = 'succeeded'
                ORDER BY r.started_at DESC, r.recorded_at DESC LIMIT 1),
              (SELECT min(r.started_at) FROM housekeeping.job_runs r WHERE r.job = $1 AND r.target = t.target)))::float8 AS seconds
     FROM unnest($2::text[]) AS t(target)`,
    [job, targets],
  );
  return new Map(rows.filter((row) => row.seconds !== null).map((row) => [row.target, Math.max(0, Math.round(row.seconds!))]));
}
