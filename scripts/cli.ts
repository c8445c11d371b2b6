import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { archiveEventSchema, keyColumns, s3Destination } from '../functions/archive/policy';
import type { RestoreSummary } from '../functions/archive/s3/restore';
import { JOB_NAMES, JOBS, type JobName } from '../functions/registry';
import { liveChains, shortId } from '../shared/chain';
import { parseConfig } from '../shared/config';
import { openSession, relationExists } from '../shared/db';
import { ConfigError, errorMessage } from '../shared/errors';
import { displayName, parseQualifiedName } from '../shared/identifiers';
import type { Progress } from '../shared/job';
import { type LatestRun, latestRuns } from '../shared/ledger';
import { ledgerMigrations, migrate } from '../shared/migrate';
import type { JobSummary } from '../shared/run-job';
import { pausedTargets } from '../shared/settings';
import { startEmbeddedPostgres } from './embedded-postgres';
import { runLocally } from './run-local';

const EMBEDDED_DATA_DIR = resolve(import.meta.dirname, '..', '.housekeeper-db');

export const USAGE = `usage:
  housekeeper demo
  housekeeper run <${JOB_NAMES.join('|')}> --config <file.json> [--database-url URL] [--dry-run]
  housekeeper run <${JOB_NAMES.join('|')}> --deployed [--database-url URL] [--dry-run]
  housekeeper run <${JOB_NAMES.join('|')}> --database ID [--database-url URL] [--dry-run]   (one database of infra/housekeeping.config.ts)
  housekeeper status [--database-url URL]
  housekeeper restore (--config <archive.json> | --deployed | --database ID) --from YYYY-MM-DD --to YYYY-MM-DD --into <schema.table> [--target <source>] [--database-url URL]

Without --database-url (or DATABASE_URL), an embedded Postgres is started in .housekeeper-db/.`;

export async function withDatabase<T>(databaseUrl: string | undefined, work: (url: string) => Promise<T>): Promise<T> {
  if (databaseUrl) return work(databaseUrl);
  const server = await startEmbeddedPostgres({ dataDir: EMBEDDED_DATA_DIR });
  try {
    return await work(server.url);
  } finally {
    await server.stop();
  }
}

function formatCounts(counts: Record<string, number>): string {
  const entries = Object.entries(counts);
  return entries.length === 0 ? '' : entries.map(([key, value]) => `${key} ${value}`).join(', ');
}

export function humanSummary(summary: JobSummary): string {
  const lines = [
    `${summary.database ? `${summary.database}: ` : ''}${summary.job}${summary.dryRun ? ' (dry run)' : ''}: ${summary.targets.length} target(s) in ${(summary.durationMs / 1000).toFixed(1)} s`,
  ];
  for (const target of summary.targets) {
    const stop = target.stopReason ? ` (stopped: ${target.stopReason})` : '';
    lines.push(`  ${target.state.padEnd(9)} ${target.target.padEnd(32)} ${formatCounts(target.counts)}${stop}`);
    if (target.detail) lines.push(`            ${target.detail}`);
    for (const note of target.notes) lines.push(note.replace(/^/gm, '    '));
  }
  return lines.join('\n');
}

export function readConfigFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError('--config', `cannot read ${path}: ${errorMessage(error)}`);
  }
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ConfigError('--config', `${path} is not valid JSON: ${errorMessage(error)}`);
  }
}

/** A one-line progress bar on a terminal's stderr; nothing when output is piped (CI, files). */
function progressBar(): ((progress: Progress & { target: string }) => void) | undefined {
  if (!process.stderr.isTTY) return undefined;
  return ({ target, done, estimatedTotal, ratePerSecond }) => {
    const fraction = estimatedTotal > 0 ? Math.min(1, done / estimatedTotal) : 0;
    const width = 30;
    const filled = Math.round(fraction * width);
    process.stderr.write(
      `\r${target} [${'#'.repeat(filled)}${' '.repeat(width - filled)}] ${(fraction * 100).toFixed(0).padStart(3)}% ` +
        `${done.toLocaleString()} / ~${estimatedTotal.toLocaleString()} rows, ${Math.round(ratePerSecond).toLocaleString()} rows/s   ` +
        (fraction >= 1 ? '\n' : ''),
    );
  };
}

/** `database`: the fleet database this run stands for (`--database`), on every log line and in the summary. */
export async function runFromCli(job: JobName, payload: unknown, databaseUrl: string, dryRunFlag: boolean, database?: string): Promise<JobSummary> {
  const withFlag = dryRunFlag && payload && typeof payload === 'object' ? { ...payload, dryRun: true } : payload;
  return runLocally(job, withFlag, databaseUrl, { where: 'config', onProgress: progressBar(), ...(database !== undefined ? { database } : {}) });
}

/** Which hop of which chain a Lambda run was: one logical run across its invocations. */
function chainText(run: LatestRun): string | undefined {
  if (!run.chain || (run.chain.hop === 0 && run.chain.hops <= 1)) return undefined;
  return `hop ${run.chain.hop} of chain ${shortId(run.chain.id)} (${run.chain.hops} hop(s) since ${run.chain.startedAt.toISOString().slice(11, 19)} UTC)`;
}

/** A read of the ledger: it may wait briefly behind a partition's DDL, never hang on it. */
const STATUS_SESSION = { job: 'status', lockTimeoutMs: 3_000, statementTimeoutMs: 30_000 } as const;

export async function printStatus(url: string): Promise<void> {
  // The same session as a job run: TLS verified for any non-loopback host, application_name,
  // timeouts. A plain pg.Client talked to a remote database in clear text, password included.
  const client = await openSession({ kind: 'url', url }, STATUS_SESSION);
  try {
    const runs = await latestRuns(client);
    if (runs.length === 0) {
      console.log('no runs recorded yet');
      return;
    }
    console.log(
      `${'job'.padEnd(10)} ${'target'.padEnd(32)} ${'state'.padEnd(10)} ${'started (UTC)'.padEnd(20)} ${'ms'.padStart(7)}  counts / detail`,
    );
    for (const run of runs) {
      const started = run.startedAt.toISOString().slice(0, 19).replace('T', ' ');
      const counts = formatCounts(run.counts as Record<string, number>);
      console.log(
        `${run.job.padEnd(10)} ${run.target.padEnd(32)} ${run.state.padEnd(10)} ${started.padEnd(20)} ${String(run.durationMs ?? '').padStart(7)}  ${[counts, run.detail, chainText(run)].filter(Boolean).join(' | ')}`,
      );
    }
    // Chains and pauses exist once the ledger is at migration 7 (a database a newer run has touched).
    if (await relationExists(client, 'housekeeping.chains')) {
      for (const chain of await liveChains(client)) {
        console.log(
          `continuing: ${chain.job} ${chain.target}: chain ${shortId(chain.chainId)} expects hop ${chain.hop} ` +
            `(started ${chain.startedAt.toISOString().slice(0, 19).replace('T', ' ')} UTC, last moved ${chain.secondsSinceUpdate} s ago)`,
        );
      }
    }
    for (const paused of await pausedTargets(client)) {
      console.log(`paused: ${paused.job} ${paused.target === '*' ? 'every target' : paused.target} (housekeeping.settings key 'paused')`);
    }
  } finally {
    await client.end();
  }
}

/**
 * `restore`: the rows of the S3 objects of one archive target whose day is in [from, to], back
 * into a table (README, "Restore"). The S3 code is loaded here, not when the CLI starts.
 */
export async function restoreFromCli(
  payload: unknown,
  url: string,
  options: { from: string; to: string; into: string; target?: string },
): Promise<RestoreSummary> {
  const event = parseConfig(archiveEventSchema, payload, '--config');
  const named = options.target === undefined ? undefined : displayName(parseQualifiedName(options.target, '--target'));
  const candidates = event.targets.filter(
    (t) => s3Destination(t) && (named === undefined || displayName(parseQualifiedName(t.source, 'source')) === named),
  );
  if (candidates.length !== 1) {
    throw new ConfigError(
      '--target',
      candidates.length === 0
        ? `no target of that policy writes to S3${named ? ` with source ${named}` : ''}`
        : `the policy has ${candidates.length} S3 targets: name one with --target`,
    );
  }
  const target = candidates[0]!;
  const s3 = s3Destination(target)!;
  const { restoreArchived } = await import('../functions/archive/s3/restore');
  const client = await openSession(
    { kind: 'url', url },
    { job: 'restore', statementTimeoutMs: event.statementTimeoutMs, lockTimeoutMs: event.lockTimeoutMs },
  );
  try {
    await migrate(client, ledgerMigrations(JOBS));
    return await restoreArchived(client, {
      source: displayName(parseQualifiedName(target.source, 'source')),
      bucket: s3.bucket,
      prefix: s3.prefix,
      ...(s3.kmsKeyId ? { kmsKeyId: s3.kmsKeyId } : {}),
      keyColumns: keyColumns(target),
      into: options.into,
      from: options.from,
      to: options.to,
    });
  } finally {
    await client.end().catch(() => {});
  }
}
