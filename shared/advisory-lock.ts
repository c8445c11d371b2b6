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
