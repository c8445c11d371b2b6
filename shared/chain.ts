import type pg from 'pg';

/**
 * One Lambda run's place in a chain of invocations. A run that stops on its time budget with
 * work left invokes its own function again (a continuation); every hop of one chain records the
 * same id, so the ledger shows one logical run.
 */
export interface ChainRun {
  /** Made by the first invocation, carried by every continuation. */
  id: string;
  /** 0 for the scheduled (or manual) invocation, n for the n-th continuation. */
  hop: number;
  /** No hop past this one is started; 0 turns continuations off. */
  maxContinuations: number;
  /**
   * A chain whose row has not moved for this long is dead (its invocation timed out, or its
   * continuation was lost) and a new run may take the target over. At least the function's timeout.
   */
  staleAfterSeconds: number;
  /** For a continuation: the targets that continue; the others are not run by it. */
  targets?: string[];
}

export interface ChainRow {
  chain_id: string;
  hop: number;
  state: 'continuing' | 'ended';
  detail: string | null;
  age_seconds: number;
}

export const shortId = (id: string) => id.slice(0, 8);

async function readChain(client: pg.ClientBase, job: string, target: string): Promise<ChainRow | undefined> {
  const { rows } = await client.query<ChainRow>(
    `SELECT chain_id, hop, state, detail, extract(epoch FROM now() - updated_at)::float8 AS age_seconds
     FROM housekeeping.chains WHERE job = $1 AND target = $2`,
    [job, target],
  );
  return rows[0];
}

/** The chain rows of many targets in one round trip (read with their advisory locks held). */
export async function readChains(client: pg.ClientBase, job: string, targets: readonly string[]): Promise<Map<string, ChainRow>> {
  if (targets.length === 0) return new Map();
  const { rows } = await client.query<ChainRow & { target: string }>(
    `SELECT target, chain_id, hop, state, detail, extract(epoch FROM now() - updated_at)::float8 AS age_seconds
     FROM housekeeping.chains WHERE job = $1 AND target = ANY ($2::text[])`,
    [job, targets],
  );
  return new Map(rows.map(({ target, ...row }) => [target, row]));
}

function describeRow(row: ChainRow | undefined): string {
  if (!row) return 'no chain holds the target';
  if (row.state === 'ended') return `chain ${shortId(row.chain_id)} ended at hop ${row.hop}${row.detail ? ` (${row.detail})` : ''}`;
  return `chain ${shortId(row.chain_id)} is at hop ${row.hop}`;
}

export type HopStart = { run: true; tookOver?: string } | { run: false; detail: string };

/**
 * Called with the target's advisory lock held, before any work. A continuation runs only if the
 * chain still expects exactly this hop (a duplicate delivery, or a hop whose chain was taken over,
 * finds it moved on). Any other run leaves a target to a live chain, and takes over a stale one.
 */
export async function startHop(
  client: pg.ClientBase,
  job: string,
  target: string,
  chain: ChainRun,
  /** The target's row as readChains found it (with the lock already held), so no read of its own. */
  known?: { row: ChainRow | undefined },
): Promise<HopStart> {
  const row = known ? known.row : await readChain(client, job, target);
  if (chain.hop > 0) {
    if (row && row.chain_id === chain.id && row.hop === chain.hop && row.state === 'continuing') {
      await client.query(`UPDATE housekeeping.chains SET updated_at = now() WHERE job = $1 AND target = $2 AND chain_id = $3`, [
        job,
        target,
        chain.id,
      ]);
      return { run: true };
    }
    return { run: false, detail: `continuation superseded: hop ${chain.hop} of chain ${shortId(chain.id)} is not expected (${describeRow(row)})` };
  }
  if (!row || row.state === 'ended' || row.chain_id === chain.id) return { run: true };
  if (row.age_seconds < chain.staleAfterSeconds) {
    return { run: false, detail: `continuing in chain ${shortId(row.chain_id)} (hop ${row.hop}); this run leaves the target to it` };
  }
  const { rowCount } = await client.query(
    `UPDATE housekeeping.chains SET chain_id = $3, hop = 0, detail = $5, started_at = now(), updated_at = now()
     WHERE job = $1 AND target = $2 AND chain_id = $4`,
    [job, target, chain.id, row.chain_id, `took over stale chain ${shortId(row.chain_id)} (hop ${row.hop})`],
  );
  if (rowCount === 0) return { run: false, detail: `chain ${shortId(row.chain_id)} changed hands during this run` };
  return { run: true, tookOver: `chain ${shortId(row.chain_id)} (hop ${row.hop}, silent for ${Math.round(row.age_seconds)} s)` };
}

/**
 * Books the next hop for this target: a compare-and-set from this hop of this chain, or from no
 * live chain at all. False when another live chain holds the target: it continues, not us.
 */
export async function claimNextHop(client: pg.ClientBase, job: string, target: string, chain: ChainRun): Promise<boolean> {
  const { rowCount } = await client.query(
    `INSERT INTO housekeeping.chains AS c (job, target, chain_id, hop, state)
     VALUES ($1, $2, $3, $4 + 1, 'continuing')
     ON CONFLICT (job, target) DO UPDATE
       SET chain_id = excluded.chain_id, hop = excluded.hop, state = 'continuing', detail = NULL, updated_at = now(),
           started_at = CASE WHEN c.chain_id = excluded.chain_id THEN c.started_at ELSE now() END
     WHERE (c.chain_id = excluded.chain_id AND c.hop = $4)
        OR c.state = 'ended'
        OR c.updated_at < now() - make_interval(secs => $5)`,
    [job, target, chain.id, chain.hop, chain.staleAfterSeconds],
  );
  return rowCount === 1;
}

/** Ends this chain's hold on the target, saying why; a row of another chain is left alone. */
export async function endChain(client: pg.ClientBase, job: string, target: string, chainId: string, detail: string): Promise<void> {
  await client.query(
    `UPDATE housekeeping.chains SET state = 'ended', detail = $4, updated_at = now()
     WHERE job = $1 AND target = $2 AND chain_id = $3 AND state = 'continuing'`,
    [job, target, chainId, detail],
  );
}

/** endChain for many targets of one chain in one statement, each with its own detail. */
export async function endChains(
  client: pg.ClientBase,
  job: string,
  chainId: string,
  ends: ReadonlyArray<{ target: string; detail: string }>,
): Promise<void> {
  if (ends.length === 0) return;
  await client.query(
    `UPDATE housekeeping.chains c SET state = 'ended', detail = e.detail, updated_at = now()
     FROM unnest($2::text[], $3::text[]) AS e(target, detail)
     WHERE c.job = $1 AND c.target = e.target AND c.chain_id = $4 AND c.state = 'continuing'`,
    [job, ends.map((e) => e.target), ends.map((e) => e.detail), chainId],
  );
}

export interface LiveChain {
  job: string;
  target: string;
  chainId: string;
  hop: number;
  startedAt: Date;
  secondsSinceUpdate: number;
}

/** Chains that still hold a target, for `housekeeper status`. */
export async function liveChains(client: pg.ClientBase): Promise<LiveChain[]> {
  const { rows } = await client.query(
    `SELECT job, target, chain_id, hop, started_at, extract(epoch FROM now() - updated_at)::float8 AS age
     FROM housekeeping.chains WHERE state = 'continuing' ORDER BY job, target`,
  );
  return rows.map((r) => ({
    job: r.job,
    target: r.target,
    chainId: r.chain_id,
    hop: r.hop,
    startedAt: r.started_at,
    secondsSinceUpdate: Math.round(r.age),
  }));
}
