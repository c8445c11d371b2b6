import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import type pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { JOBS } from '../../functions/registry';
import { printStatus } from '../../scripts/cli';
import { ContinuationError, runLambdaJob } from '../../shared/lambda';
import { createJobLogger } from '../../shared/logger';
import { createJobMetrics } from '../../shared/metrics';
import type { JobSummary } from '../../shared/run-job';
import { TimeBudget } from '../../shared/time-budget';
import { ORDERS_DDL, seedOrders } from '../support/archive';
import { createTestDatabase, type TestDatabase } from '../support/db';
import { runPartition } from '../support/jobs';
import { lambdaContext, serveDatabaseSecret } from '../support/lambda';

const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:chains-db-AbCdEf';
const FUNCTION = 'pg-housekeeper-archive-test';
// Slow batches: 8 s of remaining time is 3 s of budget, about a third of the 1,200 rows.
const EXPIRED = 1200;
const deployed = {
  targets: [{ source: 'app.orders', destination: 'app.orders_archive', ageColumn: 'completed_at', retention: '90 days', batchSize: 10, pauseMs: 40 }],
};

const lambda = mockClient(LambdaClient);
let db: TestDatabase;
let sql: pg.Client;
let stopServingSecret: () => void;
let lines: Array<Record<string, any>>;
const saved = { ...process.env };

/** Runs the archive Lambda entry with `deployed` as the policy shipped in its asset. */
function archive(event: unknown, remainingMs = 8_000): Promise<JobSummary> {
  return runLambdaJob(JOBS.archive, JOBS, event, lambdaContext(remainingMs), createJobLogger('archive'), createJobMetrics('archive'), deployed);
}

/** The continuations sent, as the function would receive them. */
function sent(): Array<{ functionName: string; invocationType: string; payload: any }> {
  return lambda.commandCalls(InvokeCommand).map((call) => ({
    functionName: call.args[0].input.FunctionName!,
    invocationType: call.args[0].input.InvocationType!,
    payload: JSON.parse(new TextDecoder().decode(call.args[0].input.Payload as Uint8Array)),
  }));
}

async function chainRow() {
  const { rows } = await sql.query(`SELECT chain_id, hop, state, detail FROM housekeeping.chains WHERE job = 'archive' AND target = 'app.orders'`);
  return rows[0];
}

const count = async (table: string) => (await sql.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n as number;

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
  stopServingSecret = serveDatabaseSecret(db.url, SECRET_ARN);
  process.env.AWS_LAMBDA_FUNCTION_NAME = FUNCTION;
  process.env.POWERTOOLS_LOG_LEVEL = 'INFO';
});

afterAll(() => {
  stopServingSecret();
  process.env = saved;
});

beforeEach(async () => {
  lambda.reset();
  lambda.on(InvokeCommand).resolves({ StatusCode: 202 });
  process.env.PGHK_MAX_CONTINUATIONS = '15';
  delete process.env.PGHK_MAINTENANCE_WINDOW;
  lines = [];
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    for (const line of String(chunk).split('\n')) if (line.startsWith('{')) lines.push(JSON.parse(line));
    return true;
  });
  await sql.query(ORDERS_DDL);
  await sql.query(seedOrders(EXPIRED, 10));
  await sql.query(`DROP SCHEMA IF EXISTS housekeeping CASCADE`);
});

afterEach(() => vi.restoreAllMocks());

describe('run now', () => {
  it('an empty event runs the deployed policy, and {"dryRun": true} runs it dry', async () => {
    const dry = await archive({ dryRun: true }, 60_000);
    expect(dry).toMatchObject({ dryRun: true, targets: [{ target: 'app.orders', counts: { expiredRows: EXPIRED, wouldMove: EXPIRED } }] });
    const now = await archive({}, 60_000);
    expect(now.targets).toMatchObject([{ target: 'app.orders', state: 'succeeded', stopReason: 'done', counts: { rowsMoved: EXPIRED } }]);
    expect(sent()).toEqual([]);
  });
});

describe('continuations', () => {
  it('a budget stop with work left sends exactly one continuation, hop + 1, to this function only; the hops are one logical run', async () => {
    const first = await archive({});
    expect(first.targets[0]).toMatchObject({ state: 'succeeded', stopReason: 'time budget nearly spent', continues: true });
    const chainId = first.chain!.id;
    expect(first.chain).toEqual({ id: chainId, hop: 0, continuing: ['app.orders'] });
    expect(sent()).toEqual([
      { functionName: FUNCTION, invocationType: 'Event', payload: { continuation: { chainId, hop: 1, targets: ['app.orders'] } } },
    ]);
    expect(await chainRow()).toMatchObject({ chain_id: chainId, hop: 1, state: 'continuing' });
    const continuing = lines.find((line) => line.message === 'continuing')!;
    expect(continuing).toMatchObject({
      chainId,
      hop: 0,
      nextHop: 1,
      maxContinuations: 15,
      targets: [{ target: 'app.orders', estimatedRemaining: expect.any(Number) }],
    });
    expect(continuing.targets[0].estimatedRemaining).toBeGreaterThan(0);

    // A scheduled tick while the chain lives leaves the target to it: no second chain, no work beside it.
    lambda.resetHistory();
    const tick = await archive({});
    expect(tick.targets[0]).toMatchObject({
      state: 'skipped',
      detail: expect.stringMatching(new RegExp(`^continuing in chain ${chainId.slice(0, 8)} \\(hop 1\\)`)),
    });
    expect(sent()).toEqual([]);

    // Hop 1, as Lambda delivers it; then the same delivery again, which finds itself superseded.
    const hop1 = { continuation: { chainId, hop: 1, targets: ['app.orders'] } };
    const second = await archive(hop1);
    expect(second.chain).toEqual({ id: chainId, hop: 1, continuing: ['app.orders'] });
    expect(sent().map((c) => c.payload)).toEqual([{ continuation: { chainId, hop: 2, targets: ['app.orders'] } }]);
    lambda.resetHistory();
    const duplicate = await archive(hop1);
    expect(duplicate.targets[0]).toMatchObject({
      state: 'skipped',
      detail: expect.stringMatching(/^continuation superseded: hop 1 of chain .* is at hop 2/),
    });
    expect(sent()).toEqual([]);

    // The last hop has time enough: done, nothing sent, the chain ends.
    const last = await archive({ continuation: { chainId, hop: 2, targets: ['app.orders'] } }, 120_000);
    expect(last.targets[0]).toMatchObject({ state: 'succeeded', stopReason: 'done' });
    expect(last.targets[0]!.continues).toBeUndefined();
    expect(sent()).toEqual([]);
    expect(await chainRow()).toMatchObject({ chain_id: chainId, state: 'ended', detail: 'done' });
    expect(await count('app.orders_archive')).toBe(EXPIRED);
    expect(await count('app.orders')).toBe(10);

    const { rows } = await sql.query(
      `SELECT hop, state, (counts->>'rowsMoved')::int AS moved FROM housekeeping.job_runs WHERE chain_id = $1 AND state <> 'started' ORDER BY recorded_at`,
      [chainId],
    );
    expect(rows.map((r) => [r.hop, r.state])).toEqual([
      [0, 'succeeded'],
      [1, 'succeeded'],
      [1, 'skipped'],
      [2, 'succeeded'],
    ]);
    expect(rows.reduce((sum, r) => sum + (r.moved ?? 0), 0)).toBe(EXPIRED);
    const view = await sql.query(`SELECT hops, last_hop, last_state FROM housekeeping.chain_runs WHERE chain_id = $1`, [chainId]);
    expect(view.rows).toEqual([{ hops: '4', last_hop: 2, last_state: 'succeeded' }]);
  });

  it('stops at maxContinuations: the last allowed hop sends nothing and ends the chain', async () => {
    process.env.PGHK_MAX_CONTINUATIONS = '3';
    const first = await archive({});
    const chainId = first.chain!.id;
    // As if hops 1 and 2 had run.
    await sql.query(`UPDATE housekeeping.chains SET hop = 3 WHERE chain_id = $1`, [chainId]);
    lambda.resetHistory();
    const third = await archive({ continuation: { chainId, hop: 3, targets: ['app.orders'] } });
    expect(third.targets[0]).toMatchObject({ state: 'succeeded', stopReason: 'time budget nearly spent' });
    expect(third.targets[0]!.notes).toContain('not continued: maxContinuations (3) reached at hop 3; the next scheduled run goes on');
    expect(sent()).toEqual([]);
    expect(await chainRow()).toMatchObject({ state: 'ended', detail: 'maxContinuations (3) reached' });
    // Off entirely: nothing continues.
    await sql.query(ORDERS_DDL);
    await sql.query(seedOrders(EXPIRED, 10));
    process.env.PGHK_MAX_CONTINUATIONS = '0';
    const off = await archive({});
    expect(off.targets[0]).toMatchObject({ stopReason: 'time budget nearly spent' });
    expect(sent()).toEqual([]);
  });

  it('outside the maintenance window starts no batch, says so, and does not continue', async () => {
    const { rows } = await sql.query(`SELECT to_char(now() AT TIME ZONE 'UTC' + interval '2 hours', 'HH24:MI') AS start,
      to_char(now() AT TIME ZONE 'UTC' + interval '3 hours', 'HH24:MI') AS end`);
    process.env.PGHK_MAINTENANCE_WINDOW = `${rows[0].start}-${rows[0].end} UTC`;
    const closed = await archive({}, 60_000);
    expect(closed.targets[0]).toMatchObject({ state: 'succeeded', stopReason: 'outside maintenance window', counts: { rowsMoved: 0 } });
    expect(closed.targets[0]!.continues).toBeUndefined();
    expect(sent()).toEqual([]);
    expect(lines.find((line) => line.message?.startsWith('maintenance window closed'))).toMatchObject({ opensAt: expect.any(String) });
    const ledger = await sql.query(`SELECT detail FROM housekeeping.job_runs WHERE state = 'succeeded'`);
    expect(ledger.rows).toEqual([{ detail: 'stopped: outside maintenance window' }]);

    // Inside it, the same run moves rows.
    const open = await sql.query(`SELECT to_char(now() AT TIME ZONE 'Asia/Seoul' - interval '1 hour', 'HH24:MI') AS start,
      to_char(now() AT TIME ZONE 'Asia/Seoul' + interval '1 hour', 'HH24:MI') AS end`);
    process.env.PGHK_MAINTENANCE_WINDOW = `${open.rows[0].start}-${open.rows[0].end} Asia/Seoul`;
    const inside = await archive({}, 60_000);
    expect(inside.targets[0]).toMatchObject({ stopReason: 'done', counts: { rowsMoved: EXPIRED } });
  });

  it('a target the budget never reached continues too; a target with nothing left does not', async () => {
    await sql.query(`CREATE TABLE app.events (id bigserial, created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at)`);
    const policy = { targets: [{ table: 'app.events', interval: 'day', premake: 2 }], maintainLedger: false };
    const partition = (event: unknown, remainingMs: number) =>
      runLambdaJob(JOBS.partition, JOBS, event, lambdaContext(remainingMs), createJobLogger('partition'), createJobMetrics('partition'), policy);
    // 5 s left is all margin: no time for any target.
    const starved = await partition({}, 5_000);
    expect(starved.targets[0]).toMatchObject({ state: 'skipped', detail: 'time budget spent before this target started', continues: true });
    expect(sent().map((c) => c.payload.continuation)).toEqual([{ chainId: starved.chain!.id, hop: 1, targets: ['app.events'] }]);
    lambda.resetHistory();
    const next = await partition(sent()[0]?.payload ?? { continuation: { chainId: starved.chain!.id, hop: 1, targets: ['app.events'] } }, 60_000);
    expect(next.targets[0]).toMatchObject({ state: 'succeeded', counts: { created: 3 } });
    expect(sent()).toEqual([]);

    // A closed window never holds the partition job's steps (tomorrow's partition must exist), only its continuations.
    const { rows } = await sql.query(`SELECT to_char(now() AT TIME ZONE 'UTC' + interval '2 hours', 'HH24:MI') AS start,
      to_char(now() AT TIME ZONE 'UTC' + interval '3 hours', 'HH24:MI') AS end`);
    process.env.PGHK_MAINTENANCE_WINDOW = `${rows[0].start}-${rows[0].end} UTC`;
    await sql.query(`DROP TABLE app.events; CREATE TABLE app.events (id bigserial, created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at)`);
    expect((await partition({}, 60_000)).targets[0]).toMatchObject({ state: 'succeeded', counts: { created: 3 } });
    const closed = await partition({}, 5_000);
    expect(closed.targets[0]).toMatchObject({ state: 'skipped', notes: ['not continued: outside the maintenance window'] });
    expect(closed.targets[0]!.continues).toBeUndefined();
    expect(sent()).toEqual([]);
  });

  it('partition: a continuation that finds nothing left to do ends its chain and records the hop, with no started row', async () => {
    await sql.query(`CREATE TABLE app.events (id bigserial, created_at timestamptz NOT NULL) PARTITION BY RANGE (created_at)`);
    const policy = { targets: [{ table: 'app.events', interval: 'day' as const, premake: 2 }], maintainLedger: false };
    const partition = (event: unknown, remainingMs: number) =>
      runLambdaJob(JOBS.partition, JOBS, event, lambdaContext(remainingMs), createJobLogger('partition'), createJobMetrics('partition'), policy);
    const starved = await partition({}, 5_000);
    expect(starved.targets[0]).toMatchObject({ state: 'skipped', continues: true });
    const chainId = starved.chain!.id;
    // Meanwhile another run did the work: the continuation finds nothing to change.
    await runPartition(db.url, policy);
    const next = await partition({ continuation: { chainId, hop: 1, targets: ['app.events'] } }, 60_000);
    expect(next.targets[0]).toMatchObject({ state: 'succeeded', counts: { created: 0, partitionsAhead: 2 } });
    const chain = await sql.query(`SELECT chain_id, hop, state, detail FROM housekeeping.chains WHERE job = 'partition' AND target = 'app.events'`);
    expect(chain.rows).toEqual([{ chain_id: chainId, hop: 1, state: 'ended', detail: 'done' }]);
    const ledger = await sql.query(`SELECT state, hop FROM housekeeping.job_runs WHERE chain_id = $1 ORDER BY recorded_at`, [chainId]);
    expect(ledger.rows).toEqual([
      { state: 'skipped', hop: 0 },
      { state: 'succeeded', hop: 1 },
    ]);
  });

  it('partition: steps the budget did not reach are work left (stepsLeft, time budget nearly spent), not a failure', async () => {
    await sql.query(`CREATE TABLE app.hours (id bigserial, at timestamptz NOT NULL) PARTITION BY RANGE (at)`);
    const event = { targets: [{ table: 'app.hours', interval: 'hour' as const, premake: 500 }], maintainLedger: false };
    // On a loaded machine connecting may spend a short budget before the target starts (it is
    // then skipped, having changed nothing): the budget doubles until the target starts.
    let short = await runPartition(db.url, event, { budget: TimeBudget.ofMs(600) });
    for (let ms = 1200; short.targets[0]!.state === 'skipped' && ms <= 4800; ms *= 2) {
      short = await runPartition(db.url, event, { budget: TimeBudget.ofMs(ms) });
    }
    expect(short.targets[0]).toMatchObject({ state: 'succeeded', stopReason: 'time budget nearly spent' });
    const { created, stepsLeft } = short.targets[0]!.counts as { created: number; stepsLeft: number };
    expect(created).toBeGreaterThan(0);
    expect(created + stepsLeft).toBe(501);
    const rest = await runPartition(db.url, event);
    expect(rest.targets[0]).toMatchObject({ state: 'succeeded', counts: { created: stepsLeft } });
    expect(rest.targets[0]!.counts.stepsLeft).toBeUndefined();
  });

  it('a continuation that cannot be sent releases the booking and fails the invocation loudly', async () => {
    lambda
      .on(InvokeCommand)
      .rejects(Object.assign(new Error('User is not authorized to perform: lambda:InvokeFunction'), { name: 'AccessDeniedException' }));
    const failed = archive({});
    await expect(failed).rejects.toThrowError(ContinuationError);
    await expect(failed).rejects.toThrowError(/continuation could not be sent: User is not authorized/);
    expect(await chainRow()).toMatchObject({ state: 'ended', detail: expect.stringMatching(/^continuation could not be sent/) });
    // So the next scheduled run takes the target up at once.
    lambda.on(InvokeCommand).resolves({ StatusCode: 202 });
    const tick = await archive({});
    expect(tick.targets[0]).toMatchObject({ state: 'succeeded', continues: true });
  });

  it('takes over a chain whose row has not moved for longer than the function timeout', async () => {
    const first = await archive({});
    await sql.query(`UPDATE housekeeping.chains SET updated_at = now() - interval '2 hours'`);
    lambda.resetHistory();
    const tick = await archive({});
    expect(tick.targets[0]).toMatchObject({ state: 'succeeded', continues: true });
    expect(sent().map((c) => c.payload.continuation.chainId)).toEqual([tick.chain!.id]);
    expect(tick.chain!.id).not.toBe(first.chain!.id);
    // The dead chain's late hop finds the target gone.
    const late = await archive({ continuation: { chainId: first.chain!.id, hop: 1, targets: ['app.orders'] } });
    expect(late.targets[0]).toMatchObject({ state: 'skipped', detail: expect.stringMatching(/^continuation superseded/) });
  });

  it('refuses a malformed continuation, naming the field, before anything connects', async () => {
    await expect(archive({ continuation: { chainId: 'x', hop: 0, targets: [] } })).rejects.toThrowError(/^event\.continuation\.chainId: /);
  });
});

describe('housekeeper status', () => {
  it('shows the hop and chain of the latest run, the chains still continuing, and what is paused', async () => {
    const first = await archive({});
    const chainId = first.chain!.id;
    await archive({ continuation: { chainId, hop: 1, targets: ['app.orders'] } });
    await sql.query(`INSERT INTO housekeeping.settings (job, target, key, value) VALUES ('rollup', '*', 'paused', 'true')`);
    const printed: string[] = [];
    vi.spyOn(console, 'log').mockImplementation((...args: unknown[]) => void printed.push(args.join(' ')));
    await printStatus(db.url);
    const out = printed.join('\n');
    expect(out).toMatch(
      new RegExp(
        `archive +app\\.orders +succeeded .*stopped: time budget nearly spent; continues in hop 2 of chain ${chainId.slice(0, 8)} \\| hop 1 of chain ${chainId.slice(0, 8)} \\(2 hop\\(s\\) since`,
      ),
    );
    expect(out).toContain(`continuing: archive app.orders: chain ${chainId.slice(0, 8)} expects hop 2`);
    expect(out).toContain(`paused: rollup every target (housekeeping.settings key 'paused')`);
  });
});

describe('pause at run time', () => {
  it("paused: true in housekeeping.settings skips the target before any work (skipped: paused), '*' pauses them all, an exact false wins", async () => {
    await archive({ dryRun: true });
    await sql.query(`CREATE SCHEMA IF NOT EXISTS housekeeping`);
    await archive({}, 120_000).catch(() => {}); // migrates the ledger (and archives)
    await sql.query(
      `DELETE FROM app.orders_archive; INSERT INTO app.orders (id, created_at, completed_at) SELECT i, now() - interval '200 days', now() - interval '150 days' FROM generate_series(10001, 10100) i`,
    );
    await sql.query(`INSERT INTO housekeeping.settings (job, target, key, value) VALUES ('archive', 'app.orders', 'paused', 'true')`);
    const paused = await archive({}, 60_000);
    expect(paused.targets[0]).toMatchObject({
      state: 'skipped',
      detail: "paused: housekeeping.settings (job 'archive', target 'app.orders', key 'paused') is true",
    });
    expect(await count('app.orders_archive')).toBe(0);
    expect(sent()).toEqual([]);

    await sql.query(`UPDATE housekeeping.settings SET target = '*'`);
    expect((await archive({}, 60_000)).targets[0]).toMatchObject({ state: 'skipped', detail: expect.stringMatching(/^paused: .*target '\*'/) });
    await sql.query(`INSERT INTO housekeeping.settings (job, target, key, value) VALUES ('archive', 'app.orders', 'paused', 'false')`);
    expect((await archive({}, 60_000)).targets[0]).toMatchObject({ state: 'succeeded', counts: { rowsMoved: 100 } });

    await sql.query(`UPDATE housekeeping.settings SET value = '"yes"' WHERE target = 'app.orders'`);
    await expect(archive({}, 60_000)).rejects.toThrowError(/target\(s\) failed: app\.orders/);
    const { rows } = await sql.query(`SELECT detail FROM housekeeping.latest_runs WHERE target = 'app.orders'`);
    expect(rows[0].detail).toBe(`housekeeping.settings (job 'archive', target 'app.orders', key 'paused'): 'paused' is true or false (got "yes")`);
  });
});
