import { describe, expect, it } from 'vitest';
import type { PartitionCatalog } from '../../functions/partition/catalog';
import { renderCreateSteps, renderFinishSteps, renderRetireSteps, stepToSql } from '../../functions/partition/ddl';
import type { PartitionPlan } from '../../functions/partition/plan';

/**
 * The exact SQL the partition job runs, in the form dry run prints it (one statement a line,
 * BEGIN/COMMIT around a transaction's group, bind values after the statement): a change to any
 * statement shows here as a diff.
 */
const catalog = (overrides: Partial<PartitionCatalog> = {}): PartitionCatalog => ({
  parent: { schema: 'app', name: 'events' },
  keyColumn: 'created_at',
  keyType: 'timestamptz',
  columns: ['id', 'created_at', 'kind'],
  partitions: [],
  defaultPartition: null,
  takenNames: new Set(),
  rescueHazards: [],
  unfinishedRetirements: [],
  ...overrides,
});
const withDefault = { defaultPartition: { schema: 'app', name: 'events_default' } };
const plan = {
  create: [
    {
      name: { schema: 'app', name: 'events_p2026_11_24' },
      from: Date.parse('2026-11-24T00:00:00Z'),
      to: Date.parse('2026-11-25T00:00:00Z'),
      fromLiteral: '2026-11-24 00:00:00+00:00',
      toLiteral: '2026-11-25 00:00:00+00:00',
      fill: false,
      past: false,
    },
  ],
  retire: [
    { partition: { schema: 'app', name: 'events_p2026_10_01' }, oid: 4242, to: 0, mode: 'drop', concurrently: true, finalizePending: false },
    { partition: { schema: 'app', name: 'events_p2026_10_02' }, oid: 4243, to: 0, mode: 'detach', concurrently: true, finalizePending: true },
    { partition: { schema: 'app', name: 'events_p2026_10_03' }, oid: 4244, to: 0, mode: 'drop', concurrently: false, finalizePending: false },
  ],
  finish: [
    { partition: { schema: 'app', name: 'events_p2026_09_01' }, oid: 99, mode: 'drop', action: 'drop', reason: 'detached, not dropped', warn: false },
    { partition: { schema: 'app', name: 'events_p2026_09_02' }, oid: 98, mode: 'detach', action: 'forget', reason: 'detached', warn: false },
  ],
} as unknown as PartitionPlan;
const sqlOf = (steps: Array<Parameters<typeof stepToSql>[0]>) => steps.map(stepToSql);

describe('partition DDL', () => {
  it('creates a partition with CREATE TABLE (LIKE) and ATTACH, in one transaction', () => {
    expect(sqlOf(renderCreateSteps(catalog(), plan))).toEqual([
      `BEGIN;
CREATE TABLE "app"."events_p2026_11_24" (LIKE "app"."events" INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMPRESSION);
ALTER TABLE "app"."events" ATTACH PARTITION "app"."events_p2026_11_24" FOR VALUES FROM ('2026-11-24 00:00:00+00:00') TO ('2026-11-25 00:00:00+00:00');
COMMIT;`,
    ]);
  });

  it('with a DEFAULT partition: locks it and moves the range’s rows into the new table before the attach', () => {
    expect(sqlOf(renderCreateSteps(catalog(withDefault), plan))).toEqual([
      `BEGIN;
CREATE TABLE "app"."events_p2026_11_24" (LIKE "app"."events" INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMPRESSION);
LOCK TABLE "app"."events_default" IN ACCESS EXCLUSIVE MODE;
WITH moved AS (DELETE FROM "app"."events_default" WHERE "created_at" >= $1::timestamptz AND "created_at" < $2::timestamptz RETURNING "id", "created_at", "kind") INSERT INTO "app"."events_p2026_11_24" ("id", "created_at", "kind") SELECT "id", "created_at", "kind" FROM moved;  -- $1..$2 = "2026-11-24 00:00:00+00:00", "2026-11-25 00:00:00+00:00"
ALTER TABLE "app"."events" ATTACH PARTITION "app"."events_p2026_11_24" FOR VALUES FROM ('2026-11-24 00:00:00+00:00') TO ('2026-11-25 00:00:00+00:00');
COMMIT;`,
    ]);
  });

  it('when moving them would fire something: only checks that DEFAULT holds none of the range', () => {
    const hazards = { ...withDefault, rescueHazards: ['trigger t on app.events_default (fires on DELETE)'] };
    expect(sqlOf(renderCreateSteps(catalog(hazards), plan))).toEqual([
      `BEGIN;
CREATE TABLE "app"."events_p2026_11_24" (LIKE "app"."events" INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMPRESSION);
LOCK TABLE "app"."events_default" IN ACCESS EXCLUSIVE MODE;
SELECT 1 FROM "app"."events_default" WHERE "created_at" >= $1::timestamptz AND "created_at" < $2::timestamptz LIMIT 1;  -- $1..$2 = "2026-11-24 00:00:00+00:00", "2026-11-25 00:00:00+00:00"
ALTER TABLE "app"."events" ATTACH PARTITION "app"."events_p2026_11_24" FOR VALUES FROM ('2026-11-24 00:00:00+00:00') TO ('2026-11-25 00:00:00+00:00');
COMMIT;`,
    ]);
  });

  it('retires: records, detaches concurrently, then drops and forgets; finalizes a pending detach; a plain DROP beside DEFAULT', () => {
    expect(sqlOf(renderRetireSteps(catalog(), plan))).toEqual([
      `INSERT INTO housekeeping.partition_retirements (parent, partition_schema, partition_name, partition_oid, mode) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (parent, partition_oid) DO UPDATE SET mode = excluded.mode;  -- $1..$5 = "app.events", "app", "events_p2026_10_01", 4242, "drop"
ALTER TABLE "app"."events" DETACH PARTITION "app"."events_p2026_10_01" CONCURRENTLY;
BEGIN;
DROP TABLE "app"."events_p2026_10_01";
DELETE FROM housekeeping.partition_retirements WHERE parent = $1 AND partition_oid = $2;  -- $1..$2 = "app.events", 4242
COMMIT;`,
      `INSERT INTO housekeeping.partition_retirements (parent, partition_schema, partition_name, partition_oid, mode) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (parent, partition_oid) DO UPDATE SET mode = excluded.mode;  -- $1..$5 = "app.events", "app", "events_p2026_10_02", 4243, "detach"
ALTER TABLE "app"."events" DETACH PARTITION "app"."events_p2026_10_02" FINALIZE;
DELETE FROM housekeeping.partition_retirements WHERE parent = $1 AND partition_oid = $2;  -- $1..$2 = "app.events", 4243`,
      `DROP TABLE "app"."events_p2026_10_03";`,
    ]);
  });

  it('finishes an earlier run’s retirement only if the table is still the recorded one; forgets the rest', () => {
    expect(sqlOf(renderFinishSteps(catalog(), plan))).toEqual([
      `BEGIN;
LOCK TABLE "app"."events_p2026_09_01" IN ACCESS EXCLUSIVE MODE;
SELECT 1 FROM pg_class WHERE oid = $1 AND oid = to_regclass($2) AND NOT relispartition;  -- $1..$2 = 99, "\\"app\\".\\"events_p2026_09_01\\""
DROP TABLE "app"."events_p2026_09_01";
DELETE FROM housekeeping.partition_retirements WHERE parent = $1 AND partition_oid = $2;  -- $1..$2 = "app.events", 99
COMMIT;`,
      `DELETE FROM housekeeping.partition_retirements WHERE parent = $1 AND partition_oid = $2;  -- $1..$2 = "app.events", 98`,
    ]);
  });
});
