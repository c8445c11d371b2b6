import { execFile } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { EmbeddedPostgresError, privateDirectoryMessage, startEmbeddedPostgres, unreachableDirectories } from '../../scripts/embedded-postgres';

const run = promisify(execFile);
const isRoot = process.getuid?.() === 0;
const checkout = resolve(import.meta.dirname, '..', '..');
const made: string[] = [];

/** A directory only its owner may enter, like `mktemp -d` or a container's /root. */
function privateDirectory(): string {
  const directory = mkdtempSync(join(tmpdir(), 'hk-private-'));
  chmodSync(directory, 0o700);
  made.push(directory);
  return directory;
}

afterAll(() => {
  for (const directory of made) rmSync(directory, { recursive: true, force: true });
});

describe('the embedded Postgres from a private directory', () => {
  it('names every directory an account cannot enter, by owner, group and other bits, through symlinks', () => {
    const secret = privateDirectory();
    const inner = join(secret, 'app', 'node_modules');
    mkdirSync(inner, { recursive: true });
    const { uid, gid } = statSync(secret);
    const stranger = { uid: 990_001, gid: 990_001 };

    expect(unreachableDirectories([inner], stranger)).toEqual([secret]);
    expect(unreachableDirectories([inner], { uid, gid: stranger.gid })).toEqual([]); // the owner
    chmodSync(secret, 0o710);
    expect(unreachableDirectories([inner], { uid: stranger.uid, gid })).toEqual([]); // the group
    expect(unreachableDirectories([inner], stranger)).toEqual([secret]);
    chmodSync(secret, 0o711);
    expect(unreachableDirectories([inner], stranger)).toEqual([]);
    chmodSync(secret, 0o700);

    // A path that looks public but leads through a symlink into the private directory.
    const open = mkdtempSync(join(tmpdir(), 'hk-open-'));
    made.push(open);
    chmodSync(open, 0o755);
    symlinkSync(inner, join(open, 'node_modules'));
    expect(unreachableDirectories([join(open, 'node_modules')], stranger)).toEqual([secret]);
    // Several, outermost first, each named once.
    const deeper = join(inner, 'deeper');
    mkdirSync(deeper, { mode: 0o700 });
    expect(unreachableDirectories([deeper, inner, tmpdir()], stranger)).toEqual([secret, deeper]);
    expect(privateDirectoryMessage([secret, deeper])).toBe(
      `running as root from a private directory: the embedded Postgres runs as user postgres, who cannot enter ${secret} or ${deeper}; ` +
        `make them traversable (chmod o+x ${secret} ${deeper}) or run as a non-root user`,
    );
  });

  it('with its data directory inside a private directory, starts, or (as root) refuses with one sentence and creates nothing', async () => {
    const secret = privateDirectory();
    const dataDir = join(secret, 'app', '.housekeeper-db');
    if (!isRoot) {
      // Not root: Postgres runs as us, and we can enter our own directories.
      const server = await startEmbeddedPostgres({ dataDir });
      await server.stop();
      return;
    }
    const attempt = startEmbeddedPostgres({ dataDir });
    await expect(attempt).rejects.toThrowError(EmbeddedPostgresError);
    await expect(attempt).rejects.toThrowError(privateDirectoryMessage([secret]));
    expect(readdirSync(secret)).toEqual([]);
  });

  it('the CLI stops with that one line and exit code 1, no stack trace, when its checkout is private', async () => {
    // The checkout's code in a private directory; node_modules linked back, so no npm ci.
    const secret = privateDirectory();
    const app = join(secret, 'app');
    for (const part of ['scripts', 'shared', 'functions', 'examples', 'package.json', 'tsconfig.json']) {
      cpSync(join(checkout, part), join(app, part), { recursive: true });
    }
    symlinkSync(join(checkout, 'node_modules'), join(app, 'node_modules'));
    const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: '' };
    const outcome = await run(process.execPath, ['--import', 'tsx', join(app, 'scripts', 'housekeeper.ts'), 'status'], { cwd: app, env }).then(
      ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
      (error: { code: number; stdout: string; stderr: string }) => error,
    );
    if (!isRoot) {
      expect(outcome).toMatchObject({ code: 0, stdout: 'no runs recorded yet\n' });
      return;
    }
    expect(outcome.code).toBe(1);
    const lines = outcome.stderr.split('\n').filter(Boolean);
    expect(lines.at(-1)).toBe(`EmbeddedPostgresError: ${privateDirectoryMessage([secret])}`);
    expect(outcome.stderr).not.toMatch(/^\s+at /m);
    expect(existsSync(join(app, '.housekeeper-db'))).toBe(false);
  });

  it('any other startup failure also ends in one line: the server says why', async () => {
    const parent = mkdtempSync(join(tmpdir(), 'hk-broken-'));
    made.push(parent);
    chmodSync(parent, 0o755);
    const dataDir = join(parent, 'db');
    mkdirSync(dataDir, { mode: 0o755 });
    writeFileSync(join(dataDir, 'PG_VERSION'), '17\n'); // looks initialised, is not
    const failure = await startEmbeddedPostgres({ dataDir }).then(
      () => undefined,
      (error: unknown) => error,
    );
    expect(failure).toBeInstanceOf(EmbeddedPostgresError);
    // embedded-postgres itself rejects with `undefined` here.
    expect((failure as Error).message).toBe(
      `the embedded Postgres in ${dataDir} did not start: postgres: could not access the server configuration file "${dataDir}/postgresql.conf": No such file or directory`,
    );
  });

  it.runIf(isRoot)('as root with umask 077, initdb (user postgres) can still read its password file', async () => {
    const previous = process.umask(0o077);
    try {
      const server = await startEmbeddedPostgres();
      await server.stop();
    } finally {
      process.umask(previous);
    }
  });
});
