import { Logger } from '@aws-lambda-powertools/logger';
import type pg from 'pg';
import { vi } from 'vitest';
import { createRollupJob, type ReadNow } from '../../functions/rollup/job';
import type { RollupEventInput } from '../../functions/rollup/policy';
import { runLocally } from '../../scripts/run-local';
import { relationExists } from '../../shared/db';
import { databaseNow } from '../../shared/postgres';
import type { JobSummary } from '../../shared/run-job';
import { quietLogger, type TestRunOptions } from './jobs';

export function runRollup(url: string, event: RollupEventInput, options: TestRunOptions = {}): Promise<JobSummary> {
  return runLocally('rollup', event, url, { logger: options.logger ?? quietLogger(), budget: options.budget });
}

/**
 * Runs the rollup as the CLI does, but reading a database clock `shiftMs` later than the real one:
 * an open transaction then lies behind a bucket boundary of the run's clock without waiting for
 * the wall clock to cross one (no timed tests).
 */
export function runRollupLater(url: string, event: RollupEventInput, shiftMs: number, options: TestRunOptions = {}): Promise<JobSummary> {
  const readNow: ReadNow = async (client) => new Date((await databaseNow(client)).getTime() + shiftMs);
  return runLocally('rollup', event, url, {
    logger: options.logger ?? quietLogger(),
    budget: options.budget,
    definition: createRollupJob({ readNow }),
  });
}

/** A logger whose JSON lines the test can read back (stdout and stderr are captured until vi.restoreAllMocks). */
export function capturedLogger(): { logger: Logger; lines: () => Array<Record<string, unknown>> } {
  const output: string[] = [];
  for (const stream of [process.stdout, process.stderr]) {
    vi.spyOn(stream, 'write').mockImplementation((chunk: string | Uint8Array) => {
      output.push(String(chunk));
      return true;
    });
  }
  const logger = new Logger({ serviceName: 'test', logLevel: 'INFO' });
  const lines = () =>
    output
      .join('')
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  return { logger, lines };
}

export const USAGE_DDL = `
  DROP SCHEMA IF EXISTS app CASCADE; DROP SCHEMA IF EXISTS housekeeping CASCADE; CREATE SCHEMA app;
  CREATE TABLE app.usage (
    id bigserial PRIMARY KEY,
    occurred_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    tenant text NOT NULL,
    units numeric NOT NULL
  );
  CREATE INDEX ON app.usage (occurred_at);
  CREATE INDEX ON app.usage (updated_at);
  CREATE TABLE app.usage_hourly (bucket timestamptz NOT NULL, tenant text NOT NULL, events bigint NOT NULL, units numeric NOT NULL, peak numeric,
    PRIMARY KEY (bucket, tenant));
`;

export const usageRollup = {
  name: 'usage_hourly',
  source: 'app.usage',
  timeColumn: 'occurred_at',
  changedAtColumn: 'updated_at',
  target: 'app.usage_hourly',
  settleDelayMinutes: 0,
  spec: {
    groupBy: ['tenant'],
    measures: [
      { name: 'events', fn: 'count' as const },
      { name: 'units', fn: 'sum' as const, column: 'units' },
      { name: 'peak', fn: 'max' as const, column: 'units' },
    ],
  },
};

/** Target rows below the watermark that differ from a fresh GROUP BY over the source (both directions). */
export async function rollupMismatches(sql: pg.Client, name = 'usage_hourly', bucket: 'hour' | 'day' = 'hour', target = 'app.usage_hourly') {
  // Before the first run has migrated there is no state, hence no watermark and nothing to compare.
  if (!(await relationExists(sql, 'housekeeping.rollup_state'))) return [];
  const { rows } = await sql.query(
    `WITH wm AS (SELECT watermark FROM housekeeping.rollup_state WHERE name = $1),
     fresh AS (SELECT date_trunc('${bucket}', occurred_at) AS bucket, tenant, count(*)::bigint AS events, sum(units) AS units, max(units) AS peak
               FROM app.usage WHERE occurred_at < (SELECT watermark FROM wm) GROUP BY 1, 2),
     rolled AS (SELECT bucket, tenant, events, units, peak FROM ${target} WHERE bucket < (SELECT watermark FROM wm))
     (SELECT 'missing' AS kind, * FROM (SELECT * FROM fresh EXCEPT SELECT * FROM rolled) a)
     UNION ALL
     (SELECT 'extra', * FROM (SELECT * FROM rolled EXCEPT SELECT * FROM fresh) b)`,
    [name],
  );
  return rows;
}
