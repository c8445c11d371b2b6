import { displayName, quoteIdent, quoteLiteral, quoteQualified } from '../../shared/identifiers';
import { ident, qualified, raw, type Sql, sql } from '../../shared/sql';
import type { PartitionCatalog } from './catalog';
import type { PartitionPlan, PlannedPartition, PlannedRetirement, UnfinishedRetirement } from './plan';

export interface SqlStatement {
  text: string;
  params?: unknown[];
  /** Its row count is the number of rows rescued from DEFAULT. */
  movesDefaultRows?: boolean;
  /**
   * A DETACH ... CONCURRENTLY that times out in its second phase leaves the partition "pending
   * detach", and repeating it fails; a retry must then FINALIZE instead. `partition` is the
   * quoted name (to_regclass folds an unquoted mixed-case name to lower case).
   */
  finalizeIfPending?: { partition: string; text: string };
  /** A guard: if the query returns a row, the step is refused (rolled back, not retried) with this message. */
  refuseIfRow?: string;
  /** A guard: if the query returns no row, the step is refused with this message. */
  refuseUnlessRow?: string;
}

export interface DdlStep {
  kind: 'create' | 'drop' | 'detach' | 'forget';
  /** The partition this step creates or retires. */
  partition: string;
  /** Relations whose lock holders are named if the step cannot get its locks. */
  relations: string[];
  /**
   * Run in order, each its own transaction (retried whole on a lock timeout). A group of one
   * statement runs outside a transaction block, as DETACH ... CONCURRENTLY must. A failed group
   * ends the step.
   */
  groups: SqlStatement[][];
  /** The range a create step attaches, in key ms. */
  range?: { from: number; to: number };
  /** A refusal of this step is a warning, not a failure: it fills a gap in the past. */
  past?: boolean;
}

/** A statement with its bind values numbered by the sql tag. */
function statement(query: Sql, guard: Pick<SqlStatement, 'movesDefaultRows' | 'refuseIfRow' | 'refuseUnlessRow'> = {}): SqlStatement {
  return { text: query.text, ...(query.values.length > 0 ? { params: query.values } : {}), ...guard };
}

/**
 * CREATE TABLE (LIKE parent) + ATTACH rather than CREATE TABLE ... PARTITION OF: PARTITION OF
 * takes ACCESS EXCLUSIVE on the parent (blocking every reader and writer while it waits),
 * ATTACH only SHARE UPDATE EXCLUSIVE. Rows of the new range parked in DEFAULT move into the new
 * table in the same transaction; otherwise the attach would fail on them. When that move would
 * fire foreign-key actions, triggers or rules (catalog.rescueHazards), the step only checks that
 * DEFAULT holds no row of the range, and refuses if it does.
 */
function createStep(catalog: PartitionCatalog, planned: PlannedPartition): DdlStep {
  const parent = quoteQualified(catalog.parent);
  const child = quoteQualified(planned.name);
  const statements: SqlStatement[] = [
    {
      text: `CREATE TABLE ${child} (LIKE ${parent} INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING STORAGE INCLUDING COMPRESSION)`,
    },
  ];
  if (catalog.defaultPartition) {
    const fallback = qualified(catalog.defaultPartition);
    const columns = raw(catalog.columns.map(quoteIdent).join(', '));
    const key = ident(catalog.keyColumn);
    const keyType = raw(catalog.keyType);
    const inRange = sql`${key} >= ${planned.fromLiteral}::${keyType} AND ${key} < ${planned.toLiteral}::${keyType}`;
    // Held to commit, so no row for this range can land in DEFAULT between the check or move and the attach.
    statements.push(statement(sql`LOCK TABLE ${fallback} IN ACCESS EXCLUSIVE MODE`));
    if (catalog.rescueHazards.length > 0) {
      statements.push(
        statement(sql`SELECT 1 FROM ${fallback} WHERE ${inRange} LIMIT 1`, {
          refuseIfRow:
            `DEFAULT partition ${displayName(catalog.defaultPartition)} holds rows in [${planned.fromLiteral}, ${planned.toLiteral}); ` +
            `moving them (a DELETE and an INSERT) would fire ${catalog.rescueHazards.join(', ')}, so ${displayName(planned.name)} was not created. ` +
            'Move those rows out of DEFAULT yourself; the next run then creates it',
        }),
      );
    } else {
      statements.push(
        statement(
          sql`WITH moved AS (DELETE FROM ${fallback} WHERE ${inRange} RETURNING ${columns}) INSERT INTO ${raw(child)} (${columns}) SELECT ${columns} FROM moved`,
          {
            movesDefaultRows: true,
          },
        ),
      );
    }
  }
  statements.push({
    text: `ALTER TABLE ${parent} ATTACH PARTITION ${child} FOR VALUES FROM (${quoteLiteral(planned.fromLiteral)}) TO (${quoteLiteral(planned.toLiteral)})`,
  });
  const relations = [displayName(catalog.parent), ...(catalog.defaultPartition ? [displayName(catalog.defaultPartition)] : [])];
  return {
    kind: 'create',
    partition: displayName(planned.name),
    relations,
    groups: [statements],
    range: { from: planned.from, to: planned.to },
    past: planned.past,
  };
}

function recordRetirement(
  catalog: PartitionCatalog,
  retirement: { partition: PlannedRetirement['partition']; oid: number; mode: string },
): SqlStatement {
  const { partition, oid, mode } = retirement;
  return statement(
    sql`INSERT INTO housekeeping.partition_retirements (parent, partition_schema, partition_name, partition_oid, mode) VALUES (${displayName(catalog.parent)}, ${partition.schema}, ${partition.name}, ${oid}, ${mode}) ON CONFLICT (parent, partition_oid) DO UPDATE SET mode = excluded.mode`,
  );
}

function forgetRetirement(catalog: PartitionCatalog, oid: number): SqlStatement {
  return statement(sql`DELETE FROM housekeeping.partition_retirements WHERE parent = ${displayName(catalog.parent)} AND partition_oid = ${oid}`);
}

/**
 * DETACH ... CONCURRENTLY (no DEFAULT partition) never takes more than SHARE UPDATE EXCLUSIVE on
 * the parent but cannot run inside a transaction, so detach and drop are separate transactions:
 * the retirement is recorded first and forgotten in the drop's own transaction, so a run that
 * dies in between leaves a record the next run finishes. With a DEFAULT partition, one plain
 * DETACH or DROP under lock_timeout is atomic and needs no record.
 */
function retireStep(catalog: PartitionCatalog, retirement: PlannedRetirement): DdlStep {
  const parent = quoteQualified(catalog.parent);
  const child = quoteQualified(retirement.partition);
  const step = {
    kind: retirement.mode,
    partition: displayName(retirement.partition),
    relations: [displayName(catalog.parent), displayName(retirement.partition)],
  };
  if (!retirement.concurrently && !retirement.finalizePending) {
    const text = retirement.mode === 'drop' ? `DROP TABLE ${child}` : `ALTER TABLE ${parent} DETACH PARTITION ${child}`;
    return { ...step, groups: [[{ text }]] };
  }
  const detach: SqlStatement = retirement.finalizePending
    ? { text: `ALTER TABLE ${parent} DETACH PARTITION ${child} FINALIZE` }
    : {
        text: `ALTER TABLE ${parent} DETACH PARTITION ${child} CONCURRENTLY`,
        finalizeIfPending: { partition: child, text: `ALTER TABLE ${parent} DETACH PARTITION ${child} FINALIZE` },
      };
  const done = forgetRetirement(catalog, retirement.oid);
  return {
    ...step,
    groups: [[recordRetirement(catalog, retirement)], [detach], retirement.mode === 'drop' ? [{ text: `DROP TABLE ${child}` }, done] : [done]],
  };
}

/** Finishes what an earlier run recorded: drops the detached table only if it is still the same, standalone table. */
function finishStep(catalog: PartitionCatalog, unfinished: UnfinishedRetirement): DdlStep {
  const shown = displayName(unfinished.partition);
  const done = forgetRetirement(catalog, unfinished.oid);
  if (unfinished.action === 'forget') return { kind: 'forget', partition: shown, relations: [], groups: [[done]] };
  const child = quoteQualified(unfinished.partition);
  return {
    kind: 'drop',
    partition: shown,
    relations: [shown],
    groups: [
      [
        { text: `LOCK TABLE ${child} IN ACCESS EXCLUSIVE MODE` },
        statement(sql`SELECT 1 FROM pg_class WHERE oid = ${unfinished.oid} AND oid = to_regclass(${child}) AND NOT relispartition`, {
          refuseUnlessRow: `${shown} changed since its retirement was recorded (another table took the name, or it was attached again); not dropped`,
        }),
        { text: `DROP TABLE ${child}` },
        done,
      ],
    ],
  };
}

export function renderCreateSteps(catalog: PartitionCatalog, plan: PartitionPlan): DdlStep[] {
  return plan.create.map((planned) => createStep(catalog, planned));
}

export function renderRetireSteps(catalog: PartitionCatalog, plan: PartitionPlan): DdlStep[] {
  return plan.retire.map((retirement) => retireStep(catalog, retirement));
}

export function renderFinishSteps(catalog: PartitionCatalog, plan: PartitionPlan): DdlStep[] {
  return plan.finish.map((unfinished) => finishStep(catalog, unfinished));
}

/** The exact SQL a step runs, as printed by dry run. */
export function stepToSql(step: DdlStep): string {
  return step.groups
    .map((group) => {
      const lines = group.map((s) => {
        const params = s.params?.length ? `  -- $1..$${s.params.length} = ${s.params.map((p) => JSON.stringify(p)).join(', ')}` : '';
        return `${s.text};${params}`;
      });
      return lines.length > 1 ? ['BEGIN;', ...lines, 'COMMIT;'].join('\n') : lines.join('\n');
    })
    .join('\n');
}
