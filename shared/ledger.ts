import type pg from 'pg';
import { relationExists } from './db';

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
}

/**
 * Appends one state change. Runs outside any job transaction, so it survives the job's rollbacks.
 * Dry runs are never recorded, so dry_run keeps its default (false).
 */
export async function recordRunState(client: pg.ClientBase, record: RunRecord): Promise<void> {
  await client.query(
    `INSERT INTO housekeeping.job_runs
       (run_id, job, target, state, started_at, duration_ms, counts, policy, detail)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
    [
      record.runId,
      record.job,
      record.target,
      record.state,
      record.startedAt,
      record.durationMs ?? null,
      JSON.stringify(record.counts ?? {}),
      record.policy === undefined ? null : JSON.stringify(record.policy),
      record.detail ?? null,
    ],
  );
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
}

/** The newest state of every (job, target), or an empty list before the first run. */
export async function latestRuns(client: pg.ClientBase): Promise<LatestRun[]> {
  if (!(await relationExists(client, 'housekeeping.latest_runs'))) return [];
  const result = await client.query(
    `SELECT job, target, state, run_id, started_at, recorded_at, duration_ms, counts, detail
     FROM housekeeping.latest_runs ORDER BY job, target`,
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
