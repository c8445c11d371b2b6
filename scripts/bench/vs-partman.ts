/**
 * `npm run bench -- vs-partman`: the partition job side by side with pg_partman 4.7's
 * `CALL partman.run_maintenance_proc()` on one PostgreSQL 15, same machine, same run.
 *
 * Needs a PostgreSQL 15 with pg_partman 4.x: `../shared/tools/pg15-partman.sh start` (beside the
 * repository root; installs Debian packages, needs root) or PGHK_PARTMAN_URL pointing at a running
 * server (superuser: it creates and drops databases bench_partman and bench_ours). Where neither
 * works it prints one "skipped: ..." line and exits 0.
 *
 * Options (CLI `--name=value` after `vs-partman`, or the environment):
 *   --tables=N            PGHK_BENCH_TABLES   parent tables (default 200)
 *   --rounds=N            PGHK_BENCH_ROUNDS   rounds, each rebuilding both databases (default 3)
 *   --default-partition   PGHK_BENCH_DEFAULT_PARTITION=1   keep pg_partman's DEFAULT partitions and
 *                         give ours one too (default: neither has one, so ours detaches CONCURRENTLY)
 *   --keep                PGHK_BENCH_KEEP=1   leave both databases behind
 *   --concurrency=N       PGHK_BENCH_CONCURRENCY   our job's sessions (default: the job's default)
 *
 * Both databases get the same tables: `bench.t<i> (id bigserial, created_at timestamptz NOT NULL,
 * payload text) PARTITION BY RANGE (created_at)` with an index on created_at, daily partitions
 * `t<i>_pYYYY_MM_DD` for today and the 30 days before (UTC), one row for today. pg_partman's are
 * made by `create_parent(..., 'native', 'daily', p_premake := 7, p_start_partition := today - 30)`,
 * which also makes the next 7 days and a DEFAULT partition: those are dropped again so both tools
 * face the same work. Retention 7 days (pg_partman: retention = '7 days', retention_keep_table =
 * false; ours: keep 7), premake 7: each tool creates 7 and drops 23 partitions per table.
 *
 * Timing: ours is the run summary's durationMs (from connecting to the summary; no CLI start-up);
 * pg_partman's is the wall time of the CALL on an open connection. A writer inserts rows for today
 * into random tables during each full run, as in `bench -- partition`. Our job's pg client is
 * wrapped in this process to count round trips and time per statement category (a few µs each).
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { JOBS } from '../../functions/registry';
import { ledgerMigrations, migrate } from '../../shared/migrate';
import { sleep } from '../../shared/postgres';
import type { JobSummary } from '../../shared/run-job';
import { runLocally } from '../run-local';
import { connect, fmt, latencyProbe, silentLogger } from './util';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
/** `shared/` beside the repository root, where the team's tools live. */
const TOOL = resolve(REPO_ROOT, '../shared/tools/pg15-partman.sh');

const EXISTING_DAYS = 31; // today and the 30 days before it
const PREMAKE = 7;
const KEEP = 7; // → 23 expired partitions per table
const DB_PARTMAN = 'bench_partman';
const DB_OURS = 'bench_ours';

interface Settings {
  tables: number;
  rounds: number;
  withDefault: boolean;
  keep: boolean;
  /** Our job's `concurrency`; undefined: its default. */
  concurrency: number | undefined;
}

function setting(name: string, env: string): string | undefined {
  const prefix = `--${name}`;
  for (const arg of process.argv.slice(2)) {
    if (arg === prefix) return '1';
    if (arg.startsWith(`${prefix}=`)) return arg.slice(prefix.length + 1);
  }
  return process.env[env];
}

function readSettings(): Settings {
  const int = (value: string | undefined, fallback: number, what: string) => {
    if (value === undefined || value === '') return fallback;
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) throw new Error(`vs-partman: ${what} must be a whole number ≥ 1 (got ${JSON.stringify(value)})`);
    return n;
  };
  const flag = (value: string | undefined) => value !== undefined && value !== '' && value !== '0' && value !== 'false';
  return {
    tables: int(setting('tables', 'PGHK_BENCH_TABLES'), 200, '--tables / PGHK_BENCH_TABLES'),
    rounds: int(setting('rounds', 'PGHK_BENCH_ROUNDS'), 3, '--rounds / PGHK_BENCH_ROUNDS'),
    withDefault: flag(setting('default-partition', 'PGHK_BENCH_DEFAULT_PARTITION')),
    keep: flag(setting('keep', 'PGHK_BENCH_KEEP')),
    concurrency: setting('concurrency', 'PGHK_BENCH_CONCURRENCY')
      ? int(setting('concurrency', 'PGHK_BENCH_CONCURRENCY'), 4, '--concurrency')
      : undefined,
  };
}

const urlFor = (url: string, database: string) => {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
};

const lastLine = (text: unknown) =>
  String(text ?? '')
    .trim()
    .split('\n')
    .filter(Boolean)
    .pop();

/** The server's URL, or why this bench cannot run here. */
function findServer(): { url: string } | { skipped: string } {
  const override = process.env.PGHK_PARTMAN_URL;
  if (override) return { url: override };
  if (!existsSync(TOOL)) {
    return {
      skipped: `${TOOL} not found (it lives in shared/tools beside the repository); or set PGHK_PARTMAN_URL to a PostgreSQL 15 with pg_partman 4.x`,
    };
  }
  try {
    const out = execFileSync('bash', [TOOL, 'start'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 15 * 60_000 });
    const url = out
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => /^postgres(ql)?:\/\//.test(l))
      .pop();
    if (!url) return { skipped: `${TOOL} start printed no postgres:// URL (got ${JSON.stringify(lastLine(out) ?? '')})` };
    return { url };
  } catch (error) {
    const e = error as { status?: number | null; stderr?: unknown; message?: string };
    const why = lastLine(e.stderr) ?? e.message ?? 'unknown error';
    return {
      skipped:
        `${TOOL} start failed (exit ${e.status ?? '?'}: ${why}); it installs Debian packages and needs root and apt-get` +
        ` (log: /tmp/hk-pg15-apt.log). Or set PGHK_PARTMAN_URL to a running PostgreSQL 15 with pg_partman 4.x`,
    };
  }
}

// ---------------------------------------------------------------------------------------------
// Building the tables

async function recreateDatabase(admin: pg.Client, name: string) {
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${name}`);
  // Day boundaries at UTC midnight for both tools (ours computes in the policy's zone, UTC).
  await admin.query(`ALTER DATABASE ${name} SET timezone TO 'UTC'`);
}

const createParents = (n: number) => `
  DO $$
  DECLARE t int;
  BEGIN
    FOR t IN 1..${n} LOOP
      EXECUTE format('CREATE TABLE bench.t%s (id bigserial, created_at timestamptz NOT NULL, payload text) PARTITION BY RANGE (created_at)', t);
      EXECUTE format('CREATE INDEX ON bench.t%s (created_at)', t);
      COMMIT;
    END LOOP;
  END $$`;

/** One transaction per table: all at once would need more locks than max_locks_per_transaction allows. */
async function buildOurs(url: string, s: Settings) {
  const sql = await connect(url, 'bench-setup');
  try {
    await sql.query(`CREATE SCHEMA bench`);
    await sql.query(createParents(s.tables));
    await sql.query(`
      DO $$
      DECLARE t int; d int; day date;
      BEGIN
        FOR t IN 1..${s.tables} LOOP
          FOR d IN 0..${EXISTING_DAYS - 1} LOOP
            day := current_date - d;
            EXECUTE format('CREATE TABLE bench.%I PARTITION OF bench.t%s FOR VALUES FROM (%L) TO (%L)',
                           't' || t || '_p' || to_char(day, 'YYYY_MM_DD'), t, day::timestamptz, (day + 1)::timestamptz);
          END LOOP;
          ${s.withDefault ? `EXECUTE format('CREATE TABLE bench.t%s_default PARTITION OF bench.t%s DEFAULT', t, t);` : ''}
          EXECUTE format('INSERT INTO bench.t%s (created_at, payload) VALUES (now(), %L)', t, 'seed');
          COMMIT;
        END LOOP;
      END $$`);
    // The ledger schema exists before timing starts: pg_partman's extension is installed beforehand too.
    await migrate(sql, ledgerMigrations(JOBS));
  } finally {
    await sql.end();
  }
}

async function buildPartman(url: string, s: Settings) {
  const sql = await connect(url, 'bench-setup');
  try {
    await sql.query(`CREATE SCHEMA bench`);
    await sql.query(`CREATE SCHEMA partman`);
    await sql.query(`CREATE EXTENSION pg_partman SCHEMA partman`);
    await sql.query(createParents(s.tables));
    await sql.query(`
      DO $$
      DECLARE t int;
      BEGIN
        FOR t IN 1..${s.tables} LOOP
          PERFORM partman.create_parent(format('bench.t%s', t), 'created_at', 'native', 'daily',
                                        p_premake := ${PREMAKE}, p_start_partition := (current_date - ${EXISTING_DAYS - 1})::text);
          EXECUTE format('INSERT INTO bench.t%s (created_at, payload) VALUES (now(), %L)', t, 'seed');
          COMMIT;
        END LOOP;
      END $$`);
    // create_parent made today + 7 ahead and a DEFAULT: drop the future ones (that is the work
    // maintenance must do) and, unless asked to keep them, the DEFAULTs (ours have none).
    await sql.query(`
      DO $$
      DECLARE r record; n int := 0;
      BEGIN
        FOR r IN
          SELECT c.oid::regclass::text AS child
          FROM pg_inherits i
          JOIN pg_class c ON c.oid = i.inhrelid
          JOIN pg_class p ON p.oid = i.inhparent
          JOIN pg_namespace ns ON ns.oid = p.relnamespace
          WHERE ns.nspname = 'bench'
            AND (${s.withDefault ? 'false' : `pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'`}
                 OR (c.relname ~ '_p\\d{4}_\\d{2}_\\d{2}$' AND to_date(right(c.relname, 10), 'YYYY_MM_DD') > current_date))
        LOOP
          EXECUTE 'DROP TABLE ' || r.child;
          n := n + 1;
          IF n % 100 = 0 THEN COMMIT; END IF;
        END LOOP;
      END $$`);
    await sql.query(`UPDATE partman.part_config SET retention = '${KEEP} days', retention_keep_table = false WHERE parent_table LIKE 'bench.%'`);
  } finally {
    await sql.end();
  }
}

/** Both databases start equally clean: no dead catalog rows from the build, no pending checkpoint. */
async function settle(url: string) {
  const sql = await connect(url, 'bench-setup');
  try {
    await sql.query(
      `VACUUM (ANALYZE) pg_catalog.pg_class, pg_catalog.pg_attribute, pg_catalog.pg_inherits, pg_catalog.pg_depend,
       pg_catalog.pg_type, pg_catalog.pg_index, pg_catalog.pg_constraint, pg_catalog.pg_attrdef, pg_catalog.pg_sequence`,
    );
  } finally {
    await sql.end();
  }
}

async function checkpoint(url: string) {
  const sql = await connect(url, 'bench-setup');
  try {
    await sql.query('CHECKPOINT');
  } finally {
    await sql.end();
  }
}

/** A checkpoint, then the kernel's dirty pages written out (sync), then a short pause. */
async function quiesce(url: string) {
  await checkpoint(url);
  try {
    execFileSync('sync', { stdio: 'ignore', timeout: 120_000 });
  } catch {
    // no sync(1): the checkpoint and the pause still help
  }
  await sleep(2_000);
}

interface Shape {
  /** "t1/t1_p2026_07_01" for every non-DEFAULT partition of bench.*. */
  partitions: Set<string>;
  defaults: number;
  /** Tables in bench named like partitions but attached to nothing (a detach without its drop). */
  loose: number;
}

async function shape(url: string): Promise<Shape> {
  const sql = await connect(url, 'bench-setup');
  try {
    const { rows } = await sql.query<{ parent: string; child: string; is_default: boolean }>(
      `SELECT p.relname AS parent, c.relname AS child, pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT' AS is_default
       FROM pg_inherits i
       JOIN pg_class c ON c.oid = i.inhrelid
       JOIN pg_class p ON p.oid = i.inhparent
       JOIN pg_namespace n ON n.oid = p.relnamespace
       WHERE n.nspname = 'bench' AND p.relkind = 'p'`,
    );
    const loose = await sql.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = 'bench' AND c.relkind = 'r' AND NOT c.relispartition`,
    );
    return {
      partitions: new Set(rows.filter((r) => !r.is_default).map((r) => `${r.parent}/${r.child}`)),
      defaults: rows.filter((r) => r.is_default).length,
      loose: loose.rows[0]!.n,
    };
  } finally {
    await sql.end();
  }
}

const minus = (a: Set<string>, b: Set<string>) => [...a].filter((x) => !b.has(x)).length;

// ---------------------------------------------------------------------------------------------
// Profiling our job's statements (the bench process wraps pg.Client; no job code changes)

interface Stat {
  count: number;
  ms: number;
}

/** Statement categories in the order a target runs them. */
const CATEGORY_ORDER = [
  'connect',
  'session settings',
  'migrate check',
  'advisory lock',
  'overrides read',
  'ledger: started row',
  'catalog: retirements table check',
  'catalog: every table of a chunk + now()',
  'now()',
  'BEGIN',
  'create: BEGIN',
  'create: CREATE TABLE + ATTACH, one query',
  'create: CREATE TABLE (LIKE)',
  'create: LOCK DEFAULT',
  'create: move rows from DEFAULT',
  'create: ATTACH',
  'create: COMMIT',
  'retire: BEGIN',
  'retire: DETACH CONCURRENTLY',
  'retire: DETACH FINALIZE / plain',
  'retire: DROP TABLE',
  'retire: COMMIT',
  'rows left in DEFAULT',
  'retire: record retirements',
  'retire: forget retirements',
  'ledger: final rows',
  'advisory unlock',
  'other',
];

function categorize(text: string, values: unknown): string {
  const params = Array.isArray(values) ? values : [];
  if (text.includes(`set_config('statement_timeout'`)) return 'session settings';
  if (text.includes('to_regclass($1) IS NOT NULL')) {
    if (params[0] === 'housekeeping.schema_migrations') return 'migrate check';
    if (params[0] === 'housekeeping.settings') return 'overrides read';
  }
  if (text.includes('FROM housekeeping.schema_migrations')) return 'migrate check';
  if (text.includes('pg_try_advisory_lock')) return 'advisory lock';
  if (text.includes('pg_advisory_unlock')) return 'advisory unlock';
  if (text.includes('FROM housekeeping.settings')) return 'overrides read';
  if (text.includes('INSERT INTO housekeeping.job_runs')) {
    const states = Array.isArray(params[3]) ? params[3] : [params[3]];
    return states.length === 1 && states[0] === 'started' ? 'ledger: started row' : 'ledger: final rows';
  }
  if (text.includes(`to_regclass('housekeeping.partition_retirements')`)) return 'catalog: retirements table check';
  if (text.includes('WITH input AS')) return 'catalog: every table of a chunk + now()';
  if (text.includes('INSERT INTO housekeeping.partition_retirements')) return 'retire: record retirements';
  if (text.includes('DELETE FROM housekeeping.partition_retirements')) return 'retire: forget retirements';
  if (text === 'SELECT now() AS now') return 'now()';
  if (text === 'BEGIN') return 'BEGIN'; // named after the statement that follows (see Profile)
  if (text === 'COMMIT') return 'COMMIT'; // named after the statement before it
  if (text.startsWith('CREATE TABLE'))
    return text.includes(' ATTACH PARTITION ') ? 'create: CREATE TABLE + ATTACH, one query' : 'create: CREATE TABLE (LIKE)';
  if (text.startsWith('LOCK TABLE')) return 'create: LOCK DEFAULT';
  if (text.startsWith('WITH moved AS')) return 'create: move rows from DEFAULT';
  if (/ ATTACH PARTITION /.test(text)) return 'create: ATTACH';
  if (/ DETACH PARTITION .* CONCURRENTLY$/.test(text)) return 'retire: DETACH CONCURRENTLY';
  if (/ DETACH PARTITION /.test(text)) return 'retire: DETACH FINALIZE / plain';
  if (text.startsWith('DROP TABLE')) return 'retire: DROP TABLE';
  if (text.includes('count(*)::int AS n FROM (SELECT 1 FROM')) return 'rows left in DEFAULT';
  return 'other';
}

/** One session's place in the statement stream: the profile splits time per session, since several work at once. */
interface SessionState {
  inTarget: boolean;
  lastEnd: number | null;
  lastCategory: string;
  pendingBegin: number | undefined;
}

class Profile {
  readonly run = new Map<string, Stat>();
  readonly target = new Map<string, Stat>();
  targets = 0;
  sessions = 0;
  private readonly states = new WeakMap<object, SessionState>();

  private state(session: object): SessionState {
    let state = this.states.get(session);
    if (!state) {
      state = { inTarget: false, lastEnd: null, lastCategory: '', pendingBegin: undefined };
      this.states.set(session, state);
    }
    return state;
  }

  private add(map: Map<string, Stat>, key: string, ms: number) {
    const stat = map.get(key) ?? { count: 0, ms: 0 };
    stat.count += 1;
    stat.ms += ms;
    map.set(key, stat);
  }

  /** Time in our process between two statements of one session (validation, planning, rendering, logging, waiting for the event loop). */
  beforeStatement(session: object, now: number, category: string) {
    const state = this.state(session);
    if (state.lastEnd === null) return;
    // Between one chunk's unlock and the next one's lock: the next targets' validation and logger set-up.
    const betweenTargets = category === 'advisory lock' && state.lastCategory === 'advisory unlock';
    const key = betweenTargets ? 'js before advisory lock (next targets set-up)' : `js after ${state.lastCategory}`;
    this.add(state.inTarget || betweenTargets ? this.target : this.run, key, now - state.lastEnd);
  }

  statement(session: object, category: string, ms: number, end: number, values: unknown) {
    const state = this.state(session);
    // A transaction belongs to the step it wraps: a create, or (with a DEFAULT partition) a drop.
    const phase = (c: string) => (c.startsWith('retire') ? 'retire' : c.startsWith('create') ? 'create' : 'other');
    if (category === 'BEGIN') {
      state.pendingBegin = ms;
    } else if (state.pendingBegin !== undefined) {
      this.add(state.inTarget ? this.target : this.run, `${phase(category)}: BEGIN`, state.pendingBegin);
      state.pendingBegin = undefined;
    }
    if (category === 'COMMIT') category = `${phase(state.lastCategory)}: COMMIT`;
    if (category === 'BEGIN') {
      state.lastEnd = end;
      state.lastCategory = category;
      return;
    }
    if (category === 'advisory lock') {
      state.inTarget = true;
      // One statement locks a chunk of targets: its second parameter lists them.
      const params = Array.isArray(values) ? values : [];
      this.targets += Array.isArray(params[1]) ? params[1].length : 1;
    }
    this.add(state.inTarget || category === 'advisory unlock' ? this.target : this.run, category, ms);
    state.lastEnd = end;
    state.lastCategory = category;
  }

  connected(session: object, ms: number, end: number) {
    const state = this.state(session);
    this.sessions += 1;
    this.add(this.run, 'connect', ms);
    state.lastEnd = end;
    state.lastCategory = 'connect';
  }
}

let activeProfile: Profile | undefined;

function isOurSession(client: pg.Client): boolean {
  const name = (client as unknown as { connectionParameters?: { application_name?: string } }).connectionParameters?.application_name;
  return typeof name === 'string' && name.startsWith('pg-housekeeper/');
}

let profilerInstalled = false;

function installProfiler() {
  if (profilerInstalled) return;
  profilerInstalled = true;
  const proto = pg.Client.prototype as unknown as {
    query: (this: pg.Client, config: unknown, values?: unknown, callback?: unknown) => unknown;
    connect: (this: pg.Client, callback?: unknown) => unknown;
  };
  const query = proto.query;
  const connectClient = proto.connect;
  proto.query = function (this: pg.Client, config: unknown, values?: unknown, callback?: unknown) {
    const profile = activeProfile;
    const text = typeof config === 'string' ? config : (config as { text?: unknown } | null)?.text;
    if (!profile || callback !== undefined || typeof values === 'function' || typeof text !== 'string' || !isOurSession(this)) {
      return query.call(this, config, values, callback);
    }
    const category = categorize(text, values);
    const started = performance.now();
    profile.beforeStatement(this, started, category);
    const done = () => {
      const end = performance.now();
      profile.statement(this, category, end - started, end, values);
    };
    return (query.call(this, config, values) as Promise<unknown>).then(
      (result) => {
        done();
        return result;
      },
      (error: unknown) => {
        done();
        throw error;
      },
    );
  };
  proto.connect = function (this: pg.Client, callback?: unknown) {
    const profile = activeProfile;
    if (!profile || callback !== undefined || !isOurSession(this)) return connectClient.call(this, callback);
    const started = performance.now();
    return (connectClient.call(this) as Promise<unknown>).then((result) => {
      const end = performance.now();
      profile.connected(this, end - started, end);
      return result;
    });
  };
}

// ---------------------------------------------------------------------------------------------
// Runs

interface RunResult {
  ms: number;
  created?: number;
  dropped?: number;
  writer?: WriterResult;
  memory?: { rssBefore: number; rssPeak: number; heapBefore: number; heapPeak: number };
  profile?: Profile;
}

/**
 * Writes rows for today into random tables: what a production writer does while maintenance runs.
 * A second session samples pg_stat_activity every ~20 ms to tell lock waits (the writer queued
 * behind a maintenance lock) from plain slowness (CPU or WAL flushes on a busy machine).
 */
async function startWriter(url: string, tables: number) {
  const writer = await connect(url, 'bench-writer');
  const monitor = await connect(url, 'bench-monitor');
  const probe = latencyProbe(() =>
    writer.query(`INSERT INTO bench.t${1 + Math.floor(Math.random() * tables)} (created_at, payload) VALUES (now(), repeat('x', 200))`),
  );
  let running = true;
  let samples = 0;
  let lockSamples = 0;
  let longestLockMs = 0;
  let waitingSince: number | undefined;
  const watching = (async () => {
    while (running) {
      const { rows } = await monitor.query<{ waiting: boolean }>(
        `SELECT count(*) > 0 AS waiting FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'bench-writer' AND wait_event_type = 'Lock'`,
      );
      const now = performance.now();
      samples += 1;
      if (rows[0]!.waiting) {
        lockSamples += 1;
        waitingSince ??= now;
        longestLockMs = Math.max(longestLockMs, now - waitingSince);
      } else waitingSince = undefined;
      await sleep(20);
    }
  })();
  return {
    async stop() {
      const result = await probe.stop();
      running = false;
      await watching;
      await Promise.all([writer.end(), monitor.end()]);
      return { ...result, samples, lockSamples, longestLockMs };
    },
  };
}

type WriterResult = Awaited<ReturnType<Awaited<ReturnType<typeof startWriter>>['stop']>>;

const describeLockWaits = (w: WriterResult) =>
  w.lockSamples === 0
    ? `never seen waiting for a lock (${w.samples} samples)`
    : `waiting for a lock in ${w.lockSamples} of ${w.samples} samples, longest ≥ ${fmt(w.longestLockMs, 0)} ms`;

function memorySampler() {
  (globalThis as { gc?: () => void }).gc?.();
  const before = process.memoryUsage();
  let rssPeak = before.rss;
  let heapPeak = before.heapUsed;
  const timer = setInterval(() => {
    const now = process.memoryUsage();
    rssPeak = Math.max(rssPeak, now.rss);
    heapPeak = Math.max(heapPeak, now.heapUsed);
  }, 20);
  return {
    stop() {
      clearInterval(timer);
      const now = process.memoryUsage();
      return { rssBefore: before.rss, rssPeak: Math.max(rssPeak, now.rss), heapBefore: before.heapUsed, heapPeak: Math.max(heapPeak, now.heapUsed) };
    },
  };
}

async function runOurs(url: string, s: Settings, withWriter: boolean): Promise<RunResult> {
  const event = {
    targets: Array.from({ length: s.tables }, (_, i) => ({ table: `bench.t${i + 1}`, interval: 'day', premake: PREMAKE, retention: { keep: KEEP } })),
    // Like for like: pg_partman maintains only the registered tables. Our ledger rows (started +
    // final per target) are still written: they are part of every run of ours.
    maintainLedger: false,
    ...(s.concurrency === undefined ? {} : { concurrency: s.concurrency }),
  };
  await checkpoint(url);
  const writer = withWriter ? await startWriter(url, s.tables) : undefined;
  const profile = new Profile();
  const memory = memorySampler();
  activeProfile = profile;
  let summary: JobSummary;
  try {
    summary = await runLocally('partition', event, url, { logger: silentLogger() });
  } finally {
    activeProfile = undefined;
  }
  const mem = memory.stop();
  const writes = await writer?.stop();
  if (summary.failed.length > 0) throw new Error(`our run failed: ${summary.targets.find((t) => t.state === 'failed')?.detail}`);
  const total = (key: string) => summary.targets.reduce((sum, t) => sum + (t.counts[key] ?? 0), 0);
  return { ms: summary.durationMs, created: total('created'), dropped: total('dropped'), writer: writes, memory: mem, profile };
}

async function runPartman(url: string, s: Settings, withWriter: boolean): Promise<RunResult> {
  await checkpoint(url);
  const sql = await connect(url, 'bench-partman');
  try {
    const writer = withWriter ? await startWriter(url, s.tables) : undefined;
    const started = performance.now();
    await sql.query('CALL partman.run_maintenance_proc()');
    const ms = performance.now() - started;
    return { ms, writer: await writer?.stop() };
  } finally {
    await sql.end();
  }
}

// ---------------------------------------------------------------------------------------------
// Report

const median = (values: number[]) => {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
};
const mb = (bytes: number) => `${fmt(bytes / 1024 / 1024, 0)} MB`;
const pad = (text: string, width: number) => text.padEnd(width);
const lpad = (text: string, width: number) => text.padStart(width);

/** Per-target round trips and ms by category, summed over rounds and divided by targets. */
function breakdown(title: string, profiles: Profile[], durations: number[]): string[] {
  const targets = profiles.reduce((n, p) => n + p.targets, 0);
  const perTarget = new Map<string, Stat>();
  const perRun = new Map<string, Stat>();
  for (const profile of profiles) {
    for (const [map, into] of [
      [profile.target, perTarget],
      [profile.run, perRun],
    ] as const) {
      for (const [key, stat] of map) {
        const sum = into.get(key) ?? { count: 0, ms: 0 };
        sum.count += stat.count;
        sum.ms += stat.ms;
        into.set(key, sum);
      }
    }
  }
  // Several sessions work at once: shares are of session time, durationMs × sessions.
  const totalMs = durations.reduce((a, b, i) => a + b * Math.max(1, profiles[i]!.sessions), 0);
  const sessions = profiles.reduce((n, p) => n + p.sessions, 0) / Math.max(1, profiles.length);
  const rank = (key: string) => {
    const i = CATEGORY_ORDER.indexOf(key);
    if (i >= 0) return i;
    if (key.startsWith('js before advisory lock')) return CATEGORY_ORDER.indexOf('advisory lock') - 0.5;
    const after = CATEGORY_ORDER.indexOf(key.replace(/^js after /, ''));
    return after >= 0 ? after + 0.5 : CATEGORY_ORDER.length;
  };
  const lines = [
    `  ${title}: per target (averaged over ${profiles.length} run(s), ${targets / Math.max(1, profiles.length)} targets each, ${fmt(sessions, 0)} session(s)); share of session time (durationMs × sessions)`,
    `    ${pad('category', 44)} ${lpad('trips', 6)} ${lpad('ms', 8)} ${lpad('share', 6)}`,
  ];
  let trips = 0;
  let ms = 0;
  const row = (key: string, stat: Stat, per: number) => {
    lines.push(
      `    ${pad(key, 44)} ${lpad(key.startsWith('js ') ? '' : fmt(stat.count / per, 2), 6)} ${lpad(fmt(stat.ms / per, 3), 8)} ${lpad(`${fmt((100 * stat.ms) / totalMs, 1)}%`, 6)}`,
    );
  };
  for (const [key, stat] of [...perTarget].sort((a, b) => rank(a[0]) - rank(b[0]))) {
    if (stat.ms / targets < 0.0005 && !key.startsWith('js ')) continue;
    if (key.startsWith('js ') && stat.ms / targets < 0.01) continue;
    row(key, stat, targets);
    if (!key.startsWith('js ')) trips += stat.count;
    ms += stat.ms;
  }
  const js = [...perTarget].filter(([k]) => k.startsWith('js ')).reduce((a, [, s]) => a + s.ms, 0);
  lines.push(
    `    ${pad('= per target', 44)} ${lpad(fmt(trips / targets, 2), 6)} ${lpad(fmt(ms / targets, 3), 8)} ${lpad(`${fmt((100 * ms) / totalMs, 1)}%`, 6)}` +
      `   (of which JS between statements ${fmt(js / targets, 3)} ms)`,
  );
  const runMs = [...perRun].reduce((a, [, s]) => a + s.ms, 0);
  const runTrips = [...perRun].filter(([k]) => !k.startsWith('js ')).reduce((a, [, s]) => a + s.count, 0);
  lines.push(
    `    once per run: ${[...perRun]
      .sort((a, b) => rank(a[0]) - rank(b[0]))
      .map(([k, s]) => `${k} ${fmt(s.ms / profiles.length, 1)} ms${k.startsWith('js ') ? '' : ` (${fmt(s.count / profiles.length, 0)})`}`)
      .join(', ')}` + `  = ${fmt(runMs / profiles.length, 1)} ms, ${fmt(runTrips / profiles.length, 0)} round trips`,
  );
  const unaccounted = totalMs - ms - runMs;
  lines.push(`    not inside any statement or gap above (end of run, summary): ${fmt(unaccounted / profiles.length, 1)} ms per run`);
  return lines;
}

export async function benchVsPartman(): Promise<string[]> {
  const s = readSettings();
  const server = findServer();
  if ('skipped' in server) return [`vs-partman: skipped: ${server.skipped}`];
  let admin: pg.Client;
  try {
    admin = await connect(server.url, 'bench-setup');
  } catch (error) {
    return [`vs-partman: skipped: cannot connect to the pg_partman server (${(error as Error).message})`];
  }
  const out: string[] = [];
  try {
    const { rows } = await admin.query<{ version: string; partman: string | null; superuser: boolean }>(
      `SELECT current_setting('server_version') AS version,
              (SELECT default_version FROM pg_available_extensions WHERE name = 'pg_partman') AS partman,
              (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser`,
    );
    const info = rows[0]!;
    if (!info.partman) return [`vs-partman: skipped: pg_partman is not available on that server (PostgreSQL ${info.version})`];
    if (!info.partman.startsWith('4.')) {
      return [
        `vs-partman: skipped: pg_partman ${info.partman} found; this bench drives 4.x (create_parent(..., 'native', 'daily'), run_maintenance_proc)`,
      ];
    }
    if (!info.superuser) return [`vs-partman: skipped: the URL's role is not a superuser (the bench creates databases and runs CHECKPOINT)`];
    installProfiler();
    const partmanUrl = urlFor(server.url, DB_PARTMAN);
    const oursUrl = urlFor(server.url, DB_OURS);
    out.push(
      `vs-partman: PostgreSQL ${info.version}, pg_partman ${info.partman}; ${s.tables} daily tables, ${EXISTING_DAYS} partitions each, premake ${PREMAKE}, keep ${KEEP}` +
        ` (expect ${s.tables * PREMAKE} creates, ${s.tables * (EXISTING_DAYS - KEEP - 1)} drops); ${s.withDefault ? 'with' : 'no'} DEFAULT partitions; ${s.rounds} round(s); ours with concurrency ${s.concurrency ?? `${JOBS.partition.eventSchema.parse({ targets: [{ table: 'x', interval: 'day' }] }).concurrency} (default)`}`,
    );
    console.log(out[0]);

    const ratios = { full: [] as number[], noop: [] as number[] };
    const profiles = { full: [] as Profile[], noop: [] as Profile[] };
    const durations = { full: [] as number[], noop: [] as number[] };
    const memories: NonNullable<RunResult['memory']>[] = [];
    for (let round = 1; round <= s.rounds; round++) {
      const built = performance.now();
      await recreateDatabase(admin, DB_OURS);
      await recreateDatabase(admin, DB_PARTMAN);
      await buildOurs(oursUrl, s);
      await buildPartman(partmanUrl, s);
      await settle(oursUrl);
      await settle(partmanUrl);
      const before = { ours: await shape(oursUrl), partman: await shape(partmanUrl) };
      const buildSeconds = (performance.now() - built) / 1000;

      const idle = await startWriter(oursUrl, s.tables);
      await sleep(2_000);
      const baseline = await idle.stop();

      const oursFirst = round % 2 === 1;
      const tools = oursFirst ? (['ours', 'partman'] as const) : (['partman', 'ours'] as const);
      const full: Record<string, RunResult> = {};
      const noop: Record<string, RunResult> = {};
      // Before each timed run both databases' catalogs are vacuumed and the disk is quiet: otherwise
      // autovacuum and the writeback of the first tool's thousands of dropped files land on the
      // second tool's run (ours, with a commit per statement, suffers most).
      const timed = async (tool: 'ours' | 'partman', withWriter: boolean) => {
        await settle(oursUrl);
        await settle(partmanUrl);
        await quiesce(oursUrl);
        return tool === 'ours' ? runOurs(oursUrl, s, withWriter) : runPartman(partmanUrl, s, withWriter);
      };
      for (const tool of tools) full[tool] = await timed(tool, true);
      const after = { ours: await shape(oursUrl), partman: await shape(partmanUrl) };
      for (const tool of tools) noop[tool] = await timed(tool, false);
      const afterNoop = { ours: await shape(oursUrl), partman: await shape(partmanUrl) };

      const ours = full.ours!;
      const partman = full.partman!;
      const fullRatio = ours.ms / partman.ms;
      const noopRatio = noop.ours!.ms / noop.partman!.ms;
      ratios.full.push(fullRatio);
      ratios.noop.push(noopRatio);
      profiles.full.push(ours.profile!);
      profiles.noop.push(noop.ours!.profile!);
      durations.full.push(ours.ms);
      durations.noop.push(noop.ours!.ms);
      memories.push(ours.memory!);

      const counts = (tool: 'ours' | 'partman') => {
        const b = before[tool];
        const a = after[tool];
        return {
          before: b.partitions.size,
          after: a.partitions.size,
          created: minus(a.partitions, b.partitions),
          dropped: minus(b.partitions, a.partitions),
          noopChanged: minus(afterNoop[tool].partitions, a.partitions) + minus(a.partitions, afterNoop[tool].partitions),
          loose: a.loose,
          defaults: a.defaults,
        };
      };
      const co = counts('ours');
      const cp = counts('partman');
      const same = minus(after.ours.partitions, after.partman.partitions) === 0 && minus(after.partman.partitions, after.ours.partitions) === 0;
      const sameBefore =
        minus(before.ours.partitions, before.partman.partitions) === 0 && minus(before.partman.partitions, before.ours.partitions) === 0;
      const lines = [
        `round ${round} (${oursFirst ? 'ours first' : 'pg_partman first'}; built in ${fmt(buildSeconds, 0)} s)`,
        `  partitions   ours ${co.before} → ${co.after} (created ${co.created}, dropped ${co.dropped}; job counted ${ours.created}/${ours.dropped}; no-op changed ${co.noopChanged}; loose tables ${co.loose}, DEFAULTs ${co.defaults})`,
        `               pg_partman ${cp.before} → ${cp.after} (created ${cp.created}, dropped ${cp.dropped}; no-op changed ${cp.noopChanged}; loose tables ${cp.loose}, DEFAULTs ${cp.defaults})`,
        `               same partitions before: ${sameBefore ? 'yes' : 'NO'}, after: ${same ? 'yes' : 'NO'}`,
        `  full run     ours ${fmt(ours.ms / 1000, 2)} s, pg_partman ${fmt(partman.ms / 1000, 2)} s  → ours/partman ${fmt(fullRatio, 2)}×`,
        `  no-op rerun  ours ${fmt(noop.ours!.ms / 1000, 2)} s, pg_partman ${fmt(noop.partman!.ms / 1000, 2)} s  → ours/partman ${fmt(noopRatio, 2)}×`,
        `  writer INSERT idle worst ${fmt(baseline.worst)} ms / p99 ${fmt(baseline.p99)} ms (n=${baseline.count}); during full run:` +
          ` ours worst ${fmt(ours.writer!.worst)} / p99 ${fmt(ours.writer!.p99)} ms (n=${ours.writer!.count}),` +
          ` pg_partman worst ${fmt(partman.writer!.worst)} / p99 ${fmt(partman.writer!.p99)} ms (n=${partman.writer!.count})`,
        `  writer locks during full run: ours ${describeLockWaits(ours.writer!)}; pg_partman ${describeLockWaits(partman.writer!)}`,
        `  our process  full run: rss ${mb(ours.memory!.rssBefore)} → peak ${mb(ours.memory!.rssPeak)}, heap ${mb(ours.memory!.heapBefore)} → peak ${mb(ours.memory!.heapPeak)};` +
          ` no-op: rss peak ${mb(noop.ours!.memory!.rssPeak)}, heap peak ${mb(noop.ours!.memory!.heapPeak)}`,
      ];
      if (!same || co.created !== cp.created || co.dropped !== cp.dropped) {
        lines.push(`  WARNING: the two tools did different work (see counts above); the ratios compare unequal runs`);
      }
      for (const line of lines) console.log(line);
      out.push(...lines);
    }

    const summary = [
      `summary over ${s.rounds} round(s) at ${s.tables} tables:`,
      `  full  ours/partman  best ${fmt(Math.min(...ratios.full), 2)}×  median ${fmt(median(ratios.full), 2)}×  (${ratios.full.map((r) => fmt(r, 2)).join(', ')})   goal ≤ 1.0×`,
      `  no-op ours/partman  best ${fmt(Math.min(...ratios.noop), 2)}×  median ${fmt(median(ratios.noop), 2)}×  (${ratios.noop.map((r) => fmt(r, 2)).join(', ')})   goal ≤ 0.25×`,
      `  our peak rss ${mb(Math.max(...memories.map((m) => m.rssPeak)))}, peak heap growth during a full run ${mb(Math.max(...memories.map((m) => m.heapPeak - m.heapBefore)))}`,
      `where our time goes (statement = round trip measured in the client, including server time):`,
      ...breakdown('full run', profiles.full, durations.full),
      ...breakdown('no-op rerun', profiles.noop, durations.noop),
    ];
    out.push(...summary);
    return [...summary];
  } finally {
    if (!s.keep) {
      await admin.query(`DROP DATABASE IF EXISTS ${DB_OURS} WITH (FORCE)`).catch(() => {});
      await admin.query(`DROP DATABASE IF EXISTS ${DB_PARTMAN} WITH (FORCE)`).catch(() => {});
    }
    await admin.end();
  }
}
