/**
 * Crash points for the crash tests: with `PGHK_CRASH_AT=<point>` (or `<point>:<n>` for its n-th
 * pass) the process SIGKILLs itself there, so each gap of the S3 protocol is hit on purpose.
 * Unset (always, outside tests), this is one comparison per batch.
 */
export type CrashPoint = 'after-upload' | 'after-verify' | 'after-commit' | 'after-copy' | 'after-publish' | 'restore-after-insert';

const passes = new Map<string, number>();

export function crashPoint(point: CrashPoint): void {
  const wanted = process.env.PGHK_CRASH_AT;
  if (!wanted) return;
  const [name, nth = '1'] = wanted.split(':');
  if (name !== point) return;
  const count = (passes.get(point) ?? 0) + 1;
  passes.set(point, count);
  if (count === Number(nth)) process.kill(process.pid, 'SIGKILL');
}
