import { describe, expect, it } from 'vitest';
import { renderArchiveSql } from '../../functions/archive/sql';

/**
 * The exact statements the archive job sends: a change to any of them shows here as a diff.
 * Values are always bind parameters; the same cutoff is one parameter wherever it is used.
 */
const plainTable = {
  keyColumns: ['id'],
  copyColumns: ['id', 'completed_at', 'amount'],
  compareColumns: ['id', 'completed_at', 'amount'],
  destinationKey: ['id'],
  sourceIsPartitioned: false,
  keyIsInteger: true,
  destinationHasTriggers: false,
};
const orders = renderArchiveSql(
  { schema: 'app', name: 'orders' },
  { schema: 'archive', name: 'orders' },
  { ageColumn: 'completed_at', ageFallbackColumn: 'created_at' },
  plainTable,
  { primary: '2026-01-01 00:00:00.000+00', fallback: '2026-01-01 00:00:00.000' },
);

describe('archive statements', () => {
  it('the plain batch: pick by key, delete by address, insert what was deleted, in one statement', () => {
    const batch = orders.batch({ limit: 500, skipExisting: false, skipLocked: false });
    expect(
      batch.text,
    ).toBe(`WITH batch AS (SELECT s."id", s.ctid FROM "app"."orders" AS s WHERE (s."completed_at" < $1 OR (s."completed_at" IS NULL AND s."created_at" < $2)) ORDER BY s."id" LIMIT $3),
moved AS (DELETE FROM "app"."orders" AS t WHERE t.ctid = ANY (ARRAY(SELECT ctid FROM batch)) AND (t."completed_at" < $1 OR (t."completed_at" IS NULL AND t."created_at" < $2)) RETURNING t.*),
inserted AS (INSERT INTO "archive"."orders" ("id", "completed_at", "amount") OVERRIDING SYSTEM VALUE SELECT "id", "completed_at", "amount" FROM moved AS m)
SELECT b.picked, m.moved, m.moved::int AS inserted, 0::int AS identical, 0::int AS altered, '{}'::text[] AS collisions, 0 AS collision_count, b.last_key
FROM (SELECT count(*)::int AS picked, ARRAY[max("id")::text] AS last_key FROM batch) AS b, (SELECT count(*)::int AS moved FROM moved) AS m`);
    expect(batch.values).toEqual(['2026-01-01 00:00:00.000+00', '2026-01-01 00:00:00.000', 500]);
  });

  it('the batch after a held row and an archived key: after the last key, skipping locked rows, comparing archived copies', () => {
    const batch = orders.batch({ limit: 500, afterKey: ['41'], skipExisting: true, skipLocked: true });
    expect(
      batch.text,
    ).toBe(`WITH batch AS (SELECT s."id", s.ctid FROM "app"."orders" AS s WHERE (s."completed_at" < $1 OR (s."completed_at" IS NULL AND s."created_at" < $2)) AND s."id" > $3 ORDER BY s."id" LIMIT $4 FOR UPDATE OF s SKIP LOCKED),
moved AS (DELETE FROM "app"."orders" AS t WHERE t.ctid = ANY (ARRAY(SELECT ctid FROM batch)) AND (t."completed_at" < $1 OR (t."completed_at" IS NULL AND t."created_at" < $2)) AND NOT EXISTS (SELECT 1 FROM "archive"."orders" AS d WHERE d."id" = t."id" AND NOT (ROW(d."id", d."completed_at", d."amount")::record *= ROW(t."id", t."completed_at", t."amount")::record)) RETURNING t.*),
inserted AS (INSERT INTO "archive"."orders" ("id", "completed_at", "amount") OVERRIDING SYSTEM VALUE SELECT "id", "completed_at", "amount" FROM moved AS m WHERE NOT EXISTS (SELECT 1 FROM "archive"."orders" AS d WHERE d."id" = m."id") RETURNING 1),
collided AS (SELECT t."id"::text AS k FROM "app"."orders" AS t WHERE t.ctid = ANY (ARRAY(SELECT ctid FROM batch)) AND (t."completed_at" < $1 OR (t."completed_at" IS NULL AND t."created_at" < $2)) AND EXISTS (SELECT 1 FROM "archive"."orders" AS d WHERE d."id" = t."id" AND NOT (ROW(d."id", d."completed_at", d."amount")::record *= ROW(t."id", t."completed_at", t."amount")::record)))
SELECT b.picked, m.moved, (SELECT count(*) FROM inserted)::int AS inserted, (SELECT count(*) FROM moved AS m WHERE EXISTS (SELECT 1 FROM "archive"."orders" AS d WHERE d."id" = m."id"))::int AS identical, 0::int AS altered, ARRAY(SELECT k FROM collided ORDER BY k LIMIT 10) AS collisions, (SELECT count(*) FROM collided)::int AS collision_count, b.last_key
FROM (SELECT count(*)::int AS picked, ARRAY[max("id")::text] AS last_key FROM batch) AS b, (SELECT count(*)::int AS moved FROM moved) AS m`);
    expect(batch.values).toEqual(['2026-01-01 00:00:00.000+00', '2026-01-01 00:00:00.000', '41', 500]);
  });

  it('the count of expired rows and the pick EXPLAIN reads', () => {
    const count = orders.count;
    expect(count.text).toBe(
      `SELECT count(*)::bigint AS n FROM "app"."orders" AS s WHERE (s."completed_at" < $1 OR (s."completed_at" IS NULL AND s."created_at" < $2))`,
    );
    expect(count.values).toEqual(['2026-01-01 00:00:00.000+00', '2026-01-01 00:00:00.000']);
    const explain = orders.explainPick(5000);
    expect(explain.text).toBe(
      `SELECT s."id" FROM "app"."orders" AS s WHERE (s."completed_at" < $1 OR (s."completed_at" IS NULL AND s."created_at" < $2)) ORDER BY s."id" LIMIT $3`,
    );
    expect(explain.values).toEqual(['2026-01-01 00:00:00.000+00', '2026-01-01 00:00:00.000', 5000]);
  });

  it('a partitioned source with a composite key and archive triggers: located by key, every arrival checked', () => {
    const batch = renderArchiveSql(
      { schema: 'app', name: 'events' },
      { schema: 'archive', name: 'events' },
      { ageColumn: 'created_at' },
      {
        keyColumns: ['id', 'created_at'],
        copyColumns: ['id', 'created_at', 'note'],
        compareColumns: ['id', 'created_at', 'note'],
        destinationKey: ['id', 'created_at'],
        sourceIsPartitioned: true,
        keyIsInteger: false,
        destinationHasTriggers: true,
      },
      { primary: '2026-01-01' },
    ).batch({ limit: 100, afterKey: ['7', '2025-12-01 00:00:00'], skipExisting: false, skipLocked: false });
    expect(
      batch.text,
    ).toBe(`WITH batch AS (SELECT s."id", s."created_at" FROM "app"."events" AS s WHERE s."created_at" < $1 AND (s."id", s."created_at") > ($2, $3) ORDER BY s."id", s."created_at" LIMIT $4),
moved AS (DELETE FROM "app"."events" AS t WHERE t."id" = ANY (ARRAY(SELECT "id" FROM batch)) AND (t."id", t."created_at") IN (SELECT "id", "created_at" FROM batch) AND t."created_at" < $1 RETURNING t.*),
inserted AS (INSERT INTO "archive"."events" ("id", "created_at", "note") OVERRIDING SYSTEM VALUE SELECT "id", "created_at", "note" FROM moved AS m RETURNING "id", "created_at", "note")
SELECT b.picked, m.moved, (SELECT count(*) FROM inserted)::int AS inserted, 0::int AS identical, (SELECT count(*) FROM moved AS m WHERE NOT EXISTS (SELECT 1 FROM inserted AS i WHERE i."id" = m."id" AND i."created_at" = m."created_at" AND ROW(i."id", i."created_at", i."note")::record *= ROW(m."id", m."created_at", m."note")::record))::int AS altered, '{}'::text[] AS collisions, 0 AS collision_count, b.last_key
FROM (SELECT count(*)::int AS picked, (SELECT ARRAY[l."id"::text, l."created_at"::text] FROM batch AS l ORDER BY l."id" DESC, l."created_at" DESC LIMIT 1) AS last_key FROM batch) AS b, (SELECT count(*)::int AS moved FROM moved) AS m`);
    expect(batch.values).toEqual(['2026-01-01', '7', '2025-12-01 00:00:00', 100]);
  });

  it('a purge deletes and copies nothing', () => {
    const batch = renderArchiveSql(
      { schema: 'public', name: 'sessions' },
      undefined,
      { ageColumn: 'last_seen_at' },
      { ...plainTable, copyColumns: [], compareColumns: [], destinationKey: [] },
      { primary: '2026-01-01' },
    ).batch({ limit: 10, skipExisting: false, skipLocked: false });
    expect(batch.text).toBe(`WITH batch AS (SELECT s."id", s.ctid FROM "public"."sessions" AS s WHERE s."last_seen_at" < $1 ORDER BY s."id" LIMIT $2),
moved AS (DELETE FROM "public"."sessions" AS t WHERE t.ctid = ANY (ARRAY(SELECT ctid FROM batch)) AND t."last_seen_at" < $1 RETURNING 1)
SELECT b.picked, m.moved, 0::int AS inserted, 0::int AS identical, 0::int AS altered, '{}'::text[] AS collisions, 0 AS collision_count, b.last_key
FROM (SELECT count(*)::int AS picked, ARRAY[max("id")::text] AS last_key FROM batch) AS b, (SELECT count(*)::int AS moved FROM moved) AS m`);
    expect(batch.values).toEqual(['2026-01-01', 10]);
  });
});
