import { Duration } from 'aws-cdk-lib';
import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TimeBudget } from '../../shared/time-budget';
import { runArchive } from '../support/archive';
import { createTestDatabase, type TestDatabase } from '../support/db';
import { startFakeLambda } from '../support/fake-lambda';
import { startFakeSecretsManager } from '../support/fake-secrets-manager';
import { runRollup, USAGE_DDL, usageRollup } from '../support/rollup';
import { type Bundle, emfValues, type Invocation, invokeBundle, synthesizeBundles } from './bundle-harness';

const SECRET_ARN = 'arn:aws:secretsmanager:eu-west-1:123456789012:secret:e2e-chains-AbCdEf';
// 10 s left is 5 s of budget (the margin is at least 5 s): a fraction of each backlog below.
const REMAINING_MS = 10_000;
const HOURS = 36;

let db: TestDatabase;
let sql: pg.Client;
let fakeSecrets: Awaited<ReturnType<typeof startFakeSecretsManager>>;
let fakeLambda: Awaited<ReturnType<typeof startFakeLambda>>;
let bundles: Record<string, Bundle>;

// One slice per bucket and a pause between slices: a 36-hour backfill takes several invocations.
const chainedRollup = { ...usageRollup, name: 'chained', target: 'app.usage_chained', sliceBuckets: 1, lookbackBuckets: 0, pauseMs: 400 };
const singleRollup = { ...usageRollup, name: 'single', target: 'app.usage_single', sliceBuckets: 1, lookbackBuckets: 0 };
const ordersTarget = (source: string, destination: string) => ({
  source,
  destination,
  ageColumn: 'completed_at',
  retention: '90 days',
  batchSize: 10,
  pauseMs: 40,
});

/**
 * Runs the synthesized bundle, then every continuation it sends, in sequence, each in a fresh
 * Node process with the template's environment, until a hop sends none.
 */
async function runChain(job: string, first: unknown): Promise<{ hops: Invocation[]; sent: typeof fakeLambda.calls }> {
  const hops: Invocation[] = [];
  const sent: typeof fakeLambda.calls = [];
  let event: unknown = first;
  while (event !== undefined) {
    if (hops.length > 30) throw new Error('the chain did not end');
    const before = fakeLambda.calls.length;
    const hop = await invokeBundle(bundles[job]!, event, {
      secretsManagerUrl: fakeSecrets.url,
      lambdaUrl: fakeLambda.url,
      remainingMs: REMAINING_MS,
    });
    expect(hop.ok, hop.stdout.slice(-3000)).toBe(true);
    hops.push(hop);
    const next = fakeLambda.calls.slice(before);
    // Exactly one continuation per hop that has work left, none when done.
    expect(next.length).toBeLessThanOrEqual(1);
    sent.push(...next);
    event = next[0]?.payload;
  }
  return { hops, sent };
}

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
  const url = new URL(db.url);
  fakeSecrets = await startFakeSecretsManager({
    [SECRET_ARN]: JSON.stringify({ host: url.hostname, port: Number(url.port), username: url.username, password: url.password, dbname: db.name }),
  });
  fakeLambda = await startFakeLambda();
  bundles = synthesizeBundles('E2EChains', SECRET_ARN, {
    archive: {
      schedule: { cron: '0 1 * * ? *', timeZone: 'Asia/Seoul' },
      policy: { targets: [ordersTarget('app.orders', 'app.orders_archive')] },
      maxContinuations: 30,
    },
    rollup: { schedule: { rate: Duration.minutes(15) }, policy: { targets: [chainedRollup] }, maxContinuations: 30 },
  });
}, 180_000);

afterAll(async () => {
  await fakeSecrets?.close();
  await fakeLambda?.close();
});

/** Every hop's own lines say which chain and hop they are. */
function expectHopOnEveryLine(hops: Invocation[], chainId: string) {
  hops.forEach((hop, i) => {
    const logLines = hop.lines.filter((line) => line.level !== undefined && line.chainId !== undefined);
    expect(logLines.length).toBeGreaterThan(2);
    for (const line of logLines) expect(line, line.message).toMatchObject({ chainId, hop: i });
  });
}

describe('a backlog bigger than one invocation', () => {
  it('rollup: a 36-hour backfill completes exactly across chained invocations of the bundle, as one unbounded run would', async () => {
    await sql.query(USAGE_DDL);
    await sql.query(`CREATE TABLE app.usage_chained (LIKE app.usage_hourly INCLUDING ALL); CREATE TABLE app.usage_single (LIKE app.usage_hourly INCLUDING ALL);
      INSERT INTO app.usage (occurred_at, tenant, units)
      SELECT date_trunc('hour', now()) - interval '${HOURS + 24} hours' + i * interval '7 minutes', (ARRAY['acme','globex','initech'])[1 + i % 3], i % 97
      FROM generate_series(0, ${(HOURS * 60) / 7}) AS i`);

    const { hops, sent } = await runChain('rollup', {});
    expect(hops.length).toBeGreaterThanOrEqual(3);
    const chainId = hops[0]!.result.chain.id;
    // Hop n sends hop n + 1 to the function itself, asynchronously, signed.
    expect(sent.map((c) => [c.functionName, c.invocationType, c.authorized, c.payload.continuation.hop, c.payload.continuation.chainId])).toEqual(
      sent.map((_, i) => ['pg-housekeeper-e2e', 'Event', true, i + 1, chainId]),
    );
    expect(sent.every((c) => JSON.stringify(c.payload.continuation.targets) === '["chained"]')).toBe(true);
    for (const hop of hops.slice(0, -1)) expect(hop.result.targets[0]).toMatchObject({ stopReason: 'time budget nearly spent', continues: true });
    expect(hops.at(-1)!.result.targets[0]).toMatchObject({ state: 'succeeded', stopReason: 'done' });
    expectHopOnEveryLine(hops, chainId);
    for (const [i, hop] of hops.slice(1).entries())
      expect(hop.lines.find((l) => l.message === 'continuation started')).toMatchObject({ hop: i + 1, targets: ['chained'] });
    // Each continuation logs its hop, the cap and what remains.
    hops.slice(0, -1).forEach((hop, i) => {
      const line = hop.lines.find((l) => l.message === 'continuing')!;
      expect(line).toMatchObject({ hop: i, nextHop: i + 1, maxContinuations: 30, targets: [{ target: 'chained', lagSeconds: expect.any(Number) }] });
    });
    // Metrics count them: one per hop that continued.
    expect(hops.map((hop) => emfValues(hop, 'Continuations'))).toEqual(hops.map((_, i) => [i < hops.length - 1 ? 1 : 0]));

    // The same backfill, one run without a time limit.
    const single = await runRollup(db.url, { targets: [singleRollup] }, { budget: TimeBudget.unlimited() });
    expect(single.targets[0]).toMatchObject({ state: 'succeeded', stopReason: 'done' });
    const rows = async (table: string) => (await sql.query(`SELECT bucket, tenant, events, units, peak FROM ${table} ORDER BY bucket, tenant`)).rows;
    const chained = await rows('app.usage_chained');
    expect(chained.length).toBeGreaterThan(HOURS * 3 - 3);
    expect(chained).toEqual(await rows('app.usage_single'));
    const state = await sql.query(`SELECT name, watermark FROM housekeeping.rollup_state ORDER BY name`);
    expect(state.rows[0].watermark).toEqual(state.rows[1].watermark);

    // The ledger shows one logical run across the hops; the chain has let the target go.
    const ledger = await sql.query(`SELECT hops, last_hop, last_state FROM housekeeping.chain_runs WHERE chain_id = $1`, [chainId]);
    expect(ledger.rows).toEqual([{ hops: String(hops.length), last_hop: hops.length - 1, last_state: 'succeeded' }]);
    const chains = await sql.query(`SELECT state, detail FROM housekeeping.chains WHERE job = 'rollup' AND target = 'chained'`);
    expect(chains.rows).toEqual([{ state: 'ended', detail: 'done' }]);
  }, 300_000);

  it('archive: a nightly backlog is moved the same night across chained invocations, row for row as one unbounded run', async () => {
    const ddl = (
      name: string,
    ) => `CREATE TABLE app.${name} (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, completed_at timestamptz, note text NOT NULL);
      CREATE INDEX ON app.${name} (completed_at);
      CREATE TABLE app.${name}_archive (LIKE app.${name} INCLUDING DEFAULTS); ALTER TABLE app.${name}_archive ADD PRIMARY KEY (id);
      INSERT INTO app.${name} SELECT i, now() - interval '200 days', CASE WHEN i % 10 = 0 THEN now() - interval '1 day' ELSE now() - interval '150 days' END, 'row ' || i
      FROM generate_series(1, 3000) AS i; ANALYZE app.${name};`;
    await sql.query(
      `CREATE SCHEMA IF NOT EXISTS app; DROP TABLE IF EXISTS app.orders, app.orders_archive, app.orders_single, app.orders_single_archive; ${ddl('orders')} ${ddl('orders_single')}`,
    );

    const { hops, sent } = await runChain('archive', {});
    expect(hops.length).toBeGreaterThanOrEqual(3);
    expect(sent.map((c) => c.payload.continuation.hop)).toEqual(sent.map((_, i) => i + 1));
    expect(hops.at(-1)!.result.targets[0]).toMatchObject({ state: 'succeeded', stopReason: 'done' });
    // Each continuing hop says what remains (the planner's estimate: not exact, so not monotone under
    // a busy autovacuum), and every continuing hop made progress of its own. The last hop may move
    // none: a run is done only when a pick comes back empty, so when the budget ran out just after
    // the backlog's last batch, the next hop's first pick is the one that finds nothing left.
    const remaining = hops.slice(0, -1).map((hop) => hop.lines.find((l) => l.message === 'continuing')!.targets[0].estimatedRemaining);
    for (const estimate of remaining) expect(estimate).toBeGreaterThanOrEqual(0);
    const movedPerHop = hops.map((hop) => hop.result.targets[0].counts.rowsMoved as number);
    for (const moved of movedPerHop.slice(0, -1)) expect(moved, `rows moved per hop: ${movedPerHop.join(', ')}`).toBeGreaterThan(0);
    expect(movedPerHop.reduce((sum, moved) => sum + moved, 0)).toBe(2700);

    // Pacing changes when rows move, not which: the unbounded run needs no pause.
    const single = await runArchive(
      db.url,
      { targets: [{ ...ordersTarget('app.orders_single', 'app.orders_single_archive'), pauseMs: 0 }] },
      { budget: TimeBudget.unlimited() },
    );
    expect(single.targets[0]).toMatchObject({ stopReason: 'done', counts: { rowsMoved: 2700 } });
    const rows = async (table: string) => (await sql.query(`SELECT id, created_at, completed_at, note FROM ${table} ORDER BY id`)).rows;
    expect(await rows('app.orders_archive')).toEqual(await rows('app.orders_single_archive'));
    expect(await rows('app.orders')).toEqual(await rows('app.orders_single'));
    expect((await rows('app.orders_archive')).length).toBe(2700);
  }, 300_000);
});
