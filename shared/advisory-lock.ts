import type pg from 'pg';

/**
 * Session-level advisory lock keyed by (job, target). Non-blocking: a duplicate EventBridge
 * delivery or an overlapping run simply finds it taken. Session locks pin a connection behind
 * RDS Proxy; these jobs hold one connection per invocation anyway.
 */
export async function tryLockTarget(client: pg.ClientBase, job: string, target: string, explicitKey?: number): Promise<boolean> {
  const { rows } =
    explicitKey === undefined
      ? await client.query<{ locked: boolean }>(`SELECT pg_try_advisory_lock(hashtext($1), hashtext($2)) AS locked`, [
          `pg-housekeeper:${job}`,
          target,
        ])
      : await client.query<{ locked: boolean }>(`SELECT pg_try_advisory_lock($1::bigint) AS locked`, [explicitKey]);
  return rows[0]?.locked === true;
}

/**
 * `explicitKey`: a fixed bigint key some other entry point (a cron script, an app) already
 * takes, so the job serializes with it.
 */
export async function unlockTarget(client: pg.ClientBase, job: string, target: string, explicitKey?: number): Promise<void> {
  if (explicitKey === undefined) await client.query(`SELECT pg_advisory_unlock(hashtext($1), hashtext($2))`, [`pg-housekeeper:${job}`, target]);
  else await client.query(`SELECT pg_advisory_unlock($1::bigint)`, [explicitKey]);
}

export interface TargetLock {
  target: string;
  /** An explicit bigint key (see unlockTarget); the (job, target) key without it. */
  key?: number;
}

const LOCK_KEYS = `FROM unnest($2::text[], $3::bigint[]) WITH ORDINALITY AS x(target, key, n) ORDER BY n`;

/** tryLockTarget for many targets in one round trip: whether each was taken, in order. */
export async function tryLockTargets(client: pg.ClientBase, job: string, locks: readonly TargetLock[]): Promise<boolean[]> {
  if (locks.length === 0) return [];
  const { rows } = await client.query<{ locked: boolean }>(
    `SELECT CASE WHEN key IS NULL THEN pg_try_advisory_lock(hashtext($1), hashtext(target)) ELSE pg_try_advisory_lock(key) END AS locked ${LOCK_KEYS}`,
    [`pg-housekeeper:${job}`, locks.map((l) => l.target), locks.map((l) => l.key ?? null)],
  );
  return rows.map((row) => row.locked === true);
}

/** unlockTarget for many targets in one round trip. */
export async function unlockTargets(client: pg.ClientBase, job: string, locks: readonly TargetLock[]): Promise<void> {
  if (locks.length === 0) return;
  await client.query(
    `SELECT CASE WHEN key IS NULL THEN pg_advisory_unlock(hashtext($1), hashtext(target)) ELSE pg_advisory_unlock(key) END ${LOCK_KEYS}`,
    [`pg-housekeeper:${job}`, locks.map((l) => l.target), locks.map((l) => l.key ?? null)],
  );
}
