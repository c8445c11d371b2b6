import { displayName, quoteIdent, quoteLiteral, quoteQualified } from '../../shared/identifiers';
import type { PartitionCatalog } from './catalog';
import type { PartitionPlan, PlannedPartition, PlannedRetirement } from './plan';

export interface SqlStatement {
  text: string;
  params?: unknown[];
  /** Its row count is the number of rows rescued from DEFAULT. */
  movesDefaultRows?: boolean;
  /**
   * A DETACH ... CONCURRENTLY that times out in its second phase leaves the partition "pending
   * detach", and repeating it fails; a retry must then FINALIZE instead.
   */
  finalizeIfPending?: { partition: string; text: string };
  /** A guard: if the query returns a row, the step is refused (rolled back, not retried) with this message. */
  refuseIfRow?: string;
}

export interface DdlStep {
  kind: 'create' | 'drop' | 'detach';
  /** The partition this step creates or retires. */
  partition: string;
  /** Relations whose lock holders are named if the step cannot get its locks. */
  relations: string[];
  /** One transaction (retried whole) or, for CONCURRENTLY, statements each on their own. */
  transactional: boolean;
  statements: SqlStatement[];
  /** The range a create step attaches, in key ms. */
  range?: { from: number; to: number };
  /** A refusal of this step is a warning, not a failure: it fills a gap in the past. */
  past?: boolean;
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
    const fallback = quoteQualified(catalog.defaultPartition);
    const columns = catalog.columns.map(quoteIdent).join(', ');
    const key = quoteIdent(catalog.keyColumn);
    const inRange = `${key} >= $1::${catalog.keyType} AND ${key} < $2::${catalog.keyType}`;
    // Held to commit, so no row for this range can land in DEFAULT between the check or move and the attach.
    statements.push({ text: `LOCK TABLE ${fallback} IN ACCESS EXCLUSIVE MODE` });
    if (catalog.rescueHazards.length > 0) {
      statements.push({
        text: `SELECT 1 FROM ${fallback} WHERE ${inRange} LIMIT 1`,
        params: [planned.fromLiteral, planned.toLiteral],
        refuseIfRow:
          `DEFAULT partition ${displayName(catalog.defaultPartition)} holds rows in [${planned.fromLiteral}, ${planned.toLiteral}); ` +
          `moving them (a DELETE and an INSERT) would fire ${catalog.rescueHazards.join(', ')}, so ${displayName(planned.name)} was not created. ` +
          'Move those rows out of DEFAULT yourself; the next run then creates it',
      });
    } else {
      statements.push({
        text: `WITH moved AS (DELETE FROM ${fallback} WHERE ${inRange} RETURNING ${columns}) INSERT INTO ${child} (${columns}) SELECT ${columns} FROM moved`,
        params: [planned.fromLiteral, planned.toLiteral],
        movesDefaultRows: true,
      });
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
    transactional: true,
    statements,
    range: { from: planned.from, to: planned.to },
    past: planned.past,
  };
}

/**
 * DETACH ... CONCURRENTLY (no DEFAULT partition) never takes more than SHARE UPDATE EXCLUSIVE on
 * the parent but cannot run inside a transaction; otherwise a short ACCESS EXCLUSIVE is
 * unavoidable and lock_timeout bounds it.
 */
function retireStep(catalog: PartitionCatalog, retirement: PlannedRetirement): DdlStep {
  const parent = quoteQualified(catalog.parent);
  const child = quoteQualified(retirement.partition);
  const statements: SqlStatement[] = [];
  if (retirement.finalizePending) statements.push({ text: `ALTER TABLE ${parent} DETACH PARTITION ${child} FINALIZE` });
  else if (retirement.concurrently) {
    statements.push({
      text: `ALTER TABLE ${parent} DETACH PARTITION ${child} CONCURRENTLY`,
      finalizeIfPending: { partition: displayName(retirement.partition), text: `ALTER TABLE ${parent} DETACH PARTITION ${child} FINALIZE` },
    });
  }
  else if (retirement.mode === 'detach') statements.push({ text: `ALTER TABLE ${parent} DETACH PARTITION ${child}` });
  if (retirement.mode === 'drop') statements.push({ text: `DROP TABLE ${child}` });
  return {
    kind: retirement.mode,
    partition: displayName(retirement.partition),
    relations: [displayName(catalog.parent), displayName(retirement.partition)],
    transactional: statements.length === 1 && !retirement.concurrently && !retirement.finalizePending,
    statements,
  };
}

export function renderCreateSteps(catalog: PartitionCatalog, plan: PartitionPlan): DdlStep[] {
  return plan.create.map((planned) => createStep(catalog, planned));
}

export function renderRetireSteps(catalog: PartitionCatalog, plan: PartitionPlan): DdlStep[] {
  return plan.retire.map((retirement) => retireStep(catalog, retirement));
}

/** The exact SQL a step runs, as printed by dry run. */
export function stepToSql(step: DdlStep): string {
  const lines = step.statements.map((s) => {
    const params = s.params?.length ? `  -- $1..$${s.params.length} = ${s.params.map((p) => JSON.stringify(p)).join(', ')}` : '';
    return `${s.text};${params}`;
  });
  return step.transactional && lines.length > 1 ? ['BEGIN;', ...lines, 'COMMIT;'].join('\n') : lines.join('\n');
}
