import type pg from 'pg';
import { expect } from 'vitest';
import type { ArchiveEventInput } from '../../functions/archive/policy';
import { runLocally } from '../../scripts/run-local';
import type { JobSummary } from '../../shared/run-job';
import { digestsSplitBy, relationTree, rowDigests, tableFingerprints, unionDigests } from './fingerprint';
import { quietLogger, type TestRunOptions } from './jobs';

export function runArchive(url: string, event: ArchiveEventInput, options: TestRunOptions = {}): Promise<JobSummary> {
  return runLocally('archive', event, url, { logger: options.logger ?? quietLogger(), budget: options.budget });
}

export interface ArchiveInvariantTarget {
  source: string;
  /** Move mode: rows must end in source ∪ destination, every one byte for byte as before. */
  destination?: string;
  /** Purge mode: SQL over alias `t`, true for the rows the policy retires (keep test rows far from the cutoff). */
  expired?: string;
  /**
   * A writer changes the source during the run and mirrors every change into this table (in the
   * same transaction): source ∪ destination must then equal the mirror's rows, not the rows before.
   */
  mirror?: string;
  /** Tables an opt-in lets the run change (allowTriggers' audit table, allowReferencingForeignKeys' children): asserted by the test itself. */
  allowedToChange?: string[];
}

const distinct = (digests: string[]) => [...new Set(digests)];
function overRepresented(after: string[], before: string[]): string[] {
  const count = (list: string[]) => list.reduce((m, d) => m.set(d, (m.get(d) ?? 0) + 1), new Map<string, number>());
  const was = count(before);
  return [...count(after)].filter(([d, n]) => n > (was.get(d) ?? 0)).map(([d]) => d);
}

/**
 * The safety invariant of every archive run, captured before and checked after:
 * - move: the whole contents of every row of source ∪ archive are the same (no row lost, none
 *   changed, none in both tables unless it already was);
 * - purge: the rows left are exactly the non-expired ones, unchanged (and all expired ones go
 *   when the run says done);
 * - every other table of the database is unchanged (foreign-key actions and triggers included);
 * - a run that failed before moving anything (a refusal) changed no table at all.
 */
export async function captureArchiveInvariant(client: pg.ClientBase, target: ArchiveInvariantTarget) {
  const { source, destination, expired, mirror, allowedToChange = [] } = target;
  const sourceTree = await relationTree(client, source);
  const destinationTree = destination ? await relationTree(client, destination) : [];
  const changeable: string[] = [];
  for (const table of allowedToChange) changeable.push(...(await relationTree(client, table)));
  const policyTables = [...sourceTree, ...destinationTree, ...(mirror ? [mirror] : []), ...changeable];
  const notOurs = [...(mirror ? [mirror] : []), ...changeable];
  const everything = await tableFingerprints(client, notOurs);
  const others = await tableFingerprints(client, policyTables);
  const union = sourceTree.length > 0 && destinationTree.length > 0 ? await unionDigests(client, [source, destination!]) : undefined;
  const split = sourceTree.length > 0 && expired ? await digestsSplitBy(client, source, expired) : undefined;

  return {
    async verify(summary?: { state: string; counts: Record<string, number | undefined>; stopReason?: string }): Promise<void> {
      const refused = !summary || (summary.state !== 'succeeded' && !summary.counts.batches);
      if (refused) {
        expect(await tableFingerprints(client, notOurs), 'a refused run changed a table').toEqual(everything);
        return;
      }
      expect(await tableFingerprints(client, policyTables), 'a table outside the policy changed').toEqual(others);
      if (union) {
        const after = await unionDigests(client, [source, destination!]);
        const expected = mirror ? await rowDigests(client, mirror) : union;
        // A row in both tables before (an identical archived copy) may end in the archive alone:
        // the same set of rows, and no row more often than before.
        expect(distinct(after), 'source ∪ archive lost or changed a row').toEqual(distinct(expected));
        expect(overRepresented(after, expected), 'a row is now in both source and archive').toEqual([]);
      }
      if (split) {
        const left = await rowDigests(client, source);
        const kept = new Set(split.other);
        const removable = new Set(split.matching);
        expect(
          split.other.filter((d) => !left.includes(d)),
          'a purge removed or changed a row that was not expired',
        ).toEqual([]);
        expect(
          left.filter((d) => !kept.has(d) && !removable.has(d)),
          'a row left behind was changed',
        ).toEqual([]);
        if (summary.stopReason === 'done') expect(left).toEqual(split.other);
      }
    },
  };
}

/** Runs the archive job with the invariant checked for each target; purge targets need `expired`. */
export async function runArchiveChecked(
  client: pg.ClientBase,
  url: string,
  event: ArchiveEventInput,
  options: TestRunOptions & Pick<ArchiveInvariantTarget, 'expired' | 'mirror' | 'allowedToChange'> = {},
): Promise<JobSummary> {
  const guards = [];
  // Each target's guard checks its own tables; the other targets' tables are theirs to check.
  const tableOf = (t: { destination?: unknown }) => (typeof t.destination === 'string' ? t.destination : undefined);
  const everyTarget = event.targets.flatMap((t) => [t.source, ...(tableOf(t) ? [tableOf(t)!] : [])]);
  for (const target of event.targets) {
    const others = everyTarget.filter((name) => name !== target.source && name !== tableOf(target));
    guards.push(
      await captureArchiveInvariant(client, {
        source: target.source,
        destination: tableOf(target),
        ...options,
        allowedToChange: [...(options.allowedToChange ?? []), ...others],
      }),
    );
  }
  const summary = await runArchive(url, event, options);
  for (const [index, guard] of guards.entries()) await guard.verify(summary.dryRun ? undefined : summary.targets[index]);
  return summary;
}

/** app.orders (hot) and app.orders_archive with the same columns; `expired` rows older than 100 days. */
export const ORDERS_DDL = `
  DROP SCHEMA IF EXISTS app CASCADE; CREATE SCHEMA app;
  CREATE TABLE app.orders (
    id bigint PRIMARY KEY,
    created_at timestamptz NOT NULL,
    completed_at timestamptz,
    status text NOT NULL DEFAULT 'new',
    amount numeric(12, 2) NOT NULL DEFAULT 0
  );
  CREATE INDEX ON app.orders (created_at);
  CREATE INDEX ON app.orders (completed_at);
  CREATE TABLE app.orders_archive (LIKE app.orders INCLUDING DEFAULTS);
  ALTER TABLE app.orders_archive ADD PRIMARY KEY (id);
`;

/** Rows 1..expired are 100+ days old (completed), then `fresh` recent rows. */
export function seedOrders(expired: number, fresh: number): string {
  return `
    INSERT INTO app.orders (id, created_at, completed_at, status, amount)
    SELECT i, now() - interval '200 days' + i * interval '1 second', now() - interval '150 days', 'done', i % 1000
    FROM generate_series(1, ${expired}) AS i;
    INSERT INTO app.orders (id, created_at, completed_at, status, amount)
    SELECT i, now() - interval '1 day', NULL, 'new', 1 FROM generate_series(${expired + 1}, ${expired + fresh}) AS i;
    ANALYZE app.orders;`;
}
