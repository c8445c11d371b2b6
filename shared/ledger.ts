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
