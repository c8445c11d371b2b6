import type pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { runArchiveTarget } from '../../functions/archive/job';
import { type ArchiveTargetInput, archiveEventSchema, archiveTargetSchema } from '../../functions/archive/policy';
import { CatalogError, SchemaDriftError } from '../../shared/errors';
import { TimeBudget } from '../../shared/time-budget';
import { captureArchiveInvariant } from '../support/archive';
import { createTestDatabase, type TestDatabase } from '../support/db';
import { quietLogger } from '../support/jobs';

/**
 * Generated schemas: random column types and modifiers, unique indexes of every kind, foreign
 * keys both ways, triggers and rules, archives already holding equal and different copies,
 * partitioned sources repeating keys across partitions. Whatever the schema, a run either
 * refuses before changing anything, or keeps every row exactly (source ∪ archive the same rows,
 * byte for byte; a purge leaves exactly the unexpired rows) and changes no other table.
 *
 * Each case also says what it expects (refuse, fail on a colliding key, or move everything), so
 * a job that refused everything would not pass. Seeded: ARCHIVE_PROPERTY_SEED and
 * ARCHIVE_PROPERTY_CASES reproduce or widen a run; a failure names its seed and case.
 *
 * The job runs through runArchiveTarget on one session (no ledger, lock or reconnect per case:
 * those are tested elsewhere, and skipping them keeps hundreds of cases fast).
 */
const SEED = Number(process.env.ARCHIVE_PROPERTY_SEED ?? 20_261_123);
const CASES = Number(process.env.ARCHIVE_PROPERTY_CASES ?? 300);

let db: TestDatabase;
let sql: pg.Client;

function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    // mulberry32
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
  return {
    next,
    int: (lo: number, hi: number) => lo + Math.floor(next() * (hi - lo + 1)),
    pick: <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]!,
    chance: (p: number) => next() < p,
  };
}
type Rng = ReturnType<typeof prng>;

const q = (text: string) => `'${text.replace(/'/g, "''")}'`;

/** A column type, values it holds, and archive column types: true when they hold every value exactly. */
interface Kind {
  type: string;
  value: (r: Rng) => string;
  archive: Array<[string, boolean]>;
}

const KINDS: Kind[] = [
  {
    type: 'int',
    value: (r) => String(r.int(-1000, 1000)),
    archive: [
      ['int', true],
      ['bigint', false],
    ],
  },
  { type: 'bigint', value: (r) => String(r.int(-1e9, 1e9)), archive: [['bigint', true]] },
  {
    type: 'text',
    value: (r) => q(r.pick(['a', 'A', 'b c', '', 'long text value'])),
    archive: [
      ['text', true],
      ['varchar(3)', false],
    ],
  },
  {
    type: 'varchar(10)',
    value: (r) => q(r.pick(['x', 'abcdefghij', 'Ab', ''])),
    archive: [
      ['varchar(10)', true],
      ['varchar(20)', true],
      ['varchar', true],
      ['varchar(5)', false],
      ['text', false],
    ],
  },
  {
    type: 'numeric',
    value: (r) => r.pick(['12.345678', '1.50', '1.5', '-0.000001', '100', '123456789.123456789']),
    archive: [
      ['numeric', true],
      ['numeric(12,2)', false],
      ['numeric(20,6)', false],
    ],
  },
  {
    type: 'numeric(10,4)',
    value: (r) => r.pick(['1.5', '123456.1234', '-0.0001', '0']),
    archive: [
      ['numeric(10,4)', true],
      ['numeric(14,4)', true],
      ['numeric', true],
      ['numeric(12,2)', false],
      ['numeric(12,6)', false],
      ['numeric(8,4)', false],
    ],
  },
  {
    type: 'timestamptz',
    value: (r) => `now() - interval '${r.int(0, 900)} days ${r.int(0, 86_399_999)} milliseconds' + interval '${r.int(0, 999)} microseconds'`,
    archive: [
      ['timestamptz', true],
      ['timestamptz(6)', true],
      ['timestamptz(0)', false],
      ['timestamptz(3)', false],
    ],
  },
  {
    type: 'timestamptz(3)',
    value: (r) => `now() - interval '${r.int(0, 900)} days ${r.int(0, 86_399_999)} milliseconds'`,
    archive: [
      ['timestamptz(3)', true],
      ['timestamptz', true],
      ['timestamptz(0)', false],
    ],
  },
  {
    type: 'timestamp',
    value: (r) => `timestamp '2026-01-01 00:00' + interval '${r.int(0, 10_000_000)} milliseconds 7 microseconds'`,
    archive: [
      ['timestamp', true],
      ['timestamptz', false],
    ],
  },
  { type: 'date', value: (r) => `date '2026-01-01' + ${r.int(-500, 500)}`, archive: [['date', true]] },
  {
    type: 'jsonb',
    value: (r) => q(r.pick(['{"a": 1.50}', '{"a": 1.5}', '[1, "x", null]', '{}'])),
    archive: [
      ['jsonb', true],
      ['json', false],
    ],
  },
  { type: 'json', value: (r) => q(r.pick(['{"a":1,  "b": 2}', '{"a":1,"b":2}', '[]'])), archive: [['json', true]] },
  {
    type: 'float8',
    value: (r) => q(r.pick(['0.1', '-0', '0', '1e-300', '3.141592653589793'])),
    archive: [
      ['float8', true],
      ['float4', false],
    ],
  },
  { type: 'bool', value: (r) => r.pick(['true', 'false', 'NULL']), archive: [['bool', true]] },
  { type: 'bytea', value: (r) => q(r.pick(['\\x00ff', '\\x', '\\xdeadbeef'])), archive: [['bytea', true]] },
  {
    type: 'int[]',
    value: (r) => q(r.pick(['{1,2,3}', '{}', '{NULL}'])),
    archive: [
      ['int[]', true],
      ['bigint[]', false],
    ],
  },
  {
    type: 'char(3)',
    value: (r) => q(r.pick(['ab', 'abc', ''])),
    archive: [
      ['char(3)', true],
      ['bpchar', true],
      ['char(5)', false],
    ],
  },
];

type AgeType = 'timestamptz' | 'timestamp' | 'date';
const ageValue = (type: AgeType, days: number) =>
  type === 'timestamptz'
    ? `now() - interval '${days} days'`
    : type === 'timestamp'
      ? `now()::timestamp - interval '${days} days'`
      : `current_date - ${days}`;

interface Case {
  description: string[];
  setup: string[];
  /** Run once both tables exist: pre-archived rows (may fail on a narrower archive: then none). */
  preArchive: string[];
  target: ArchiveTargetInput;
  expired: string;
  /** Why the run must refuse (empty: it must not). */
  hazards: Array<[string, RegExp]>;
}

/** One random schema, its rows and the policy to run on it. */
function generate(r: Rng): Case {
  const d: string[] = [];
  const hazards: Array<[string, RegExp]> = [];
  const setup = ['DROP SCHEMA IF EXISTS p CASCADE', 'CREATE SCHEMA p'];
  const mode = r.chance(0.2) ? 'purge' : 'move';
  // About half the cases are safe to run; the others may carry any number of hazards.
  const risky = r.chance(0.5);
  const shape = risky
    ? r.pick(['pk', 'unique', 'expr', 'partial', 'none', 'nullable', 'composite', 'partitioned'] as const)
    : r.pick(['pk', 'pk', 'unique', 'covering', 'deferrable', 'composite', 'partitioned', 'partitioned', 'by-key'] as const);
  const partitioned = shape === 'partitioned' || shape === 'by-key';
  const ageType: AgeType = shape === 'partitioned' ? 'timestamptz' : r.pick(['timestamptz', 'timestamp', 'date'] as const);
  const fallback = shape !== 'partitioned' && shape !== 'composite' && r.chance(0.3);
  const idType = partitioned ? 'bigint' : r.pick(['int', 'bigint', 'text']);
  d.push(`${risky ? 'risky' : 'safe'}, mode ${mode}, source ${shape}, age ${ageType}${fallback ? ' with fallback' : ''}, id ${idType}`);

  // Columns beyond id, age, created, note and parent_id.
  const columns = Array.from({ length: r.int(0, 4) }, (_, i) => {
    const kind = r.pick(KINDS);
    const [archiveType, exact] = r.pick(risky ? kind.archive : kind.archive.filter(([, ok]) => ok));
    if (!exact && mode === 'move') hazards.push([`c${i} ${kind.type} into ${archiveType}`, new RegExp(`incompatible types: .*c${i} \\(`)]);
    return { name: `c${i}`, kind, archiveType };
  });
  d.push(`columns ${columns.map((c) => `${c.name} ${c.kind.type}→${c.archiveType}`).join(', ') || 'none'}`);
  const withParent = r.chance(0.25);
  const sourceColumns = [
    `id ${idType}${shape === 'nullable' ? '' : ' NOT NULL'}`,
    `age ${ageType}${fallback ? '' : ' NOT NULL'}`,
    `created timestamptz NOT NULL`,
    `note text`,
    ...(withParent ? [`parent_id int REFERENCES p.parent ON DELETE CASCADE`] : []),
    ...columns.map((c) => `${c.name} ${c.kind.type}`),
  ];
  if (withParent) setup.push('CREATE TABLE p.parent (id int PRIMARY KEY)', 'INSERT INTO p.parent VALUES (1), (2)');

  // The source and its uniqueness.
  let key: string[] = ['id'];
  const keyOk = {
    pk: true,
    unique: true,
    covering: true,
    deferrable: true,
    expr: false,
    partial: false,
    none: false,
    nullable: false,
    composite: false,
    partitioned: false,
    'by-key': true,
  }[shape];
  if ((shape === 'composite' || shape === 'partitioned') && (!risky || r.chance(0.5))) key = ['id', 'age'];
  if (!keyOk && key.length === 1) {
    hazards.push([
      `source not unique on id (${shape})`,
      shape === 'nullable' ? /key: p\.source\.id may be NULL/ : /key: p\.source has no primary key or unique index on id/,
    ]);
  }
  const constraint = {
    pk: ', PRIMARY KEY (id)',
    unique: ', UNIQUE (id)',
    covering: ', UNIQUE (id) INCLUDE (note)',
    deferrable: ', PRIMARY KEY (id) DEFERRABLE INITIALLY DEFERRED',
    expr: '',
    partial: '',
    none: '',
    nullable: ', UNIQUE (id)',
    composite: ', PRIMARY KEY (id, age)',
    partitioned: ', PRIMARY KEY (id, age)',
    'by-key': ', PRIMARY KEY (id)',
  }[shape];
  if (shape === 'partitioned') {
    setup.push(
      `CREATE TABLE p.source (${sourceColumns.join(', ')}${constraint}) PARTITION BY RANGE (age)`,
      `CREATE TABLE p.source_old PARTITION OF p.source FOR VALUES FROM (MINVALUE) TO (now() - interval '300 days')`,
      `CREATE TABLE p.source_mid PARTITION OF p.source FOR VALUES FROM (now() - interval '300 days') TO (now() - interval '50 days')`,
      `CREATE TABLE p.source_new PARTITION OF p.source FOR VALUES FROM (now() - interval '50 days') TO (MAXVALUE)`,
    );
  } else if (shape === 'by-key') {
    const bound = idType === 'text' ? `'m'` : '10';
    setup.push(
      `CREATE TABLE p.source (${sourceColumns.join(', ')}${constraint}) PARTITION BY RANGE (id)`,
      `CREATE TABLE p.source_low PARTITION OF p.source FOR VALUES FROM (MINVALUE) TO (${bound})`,
      `CREATE TABLE p.source_high PARTITION OF p.source FOR VALUES FROM (${bound}) TO (MAXVALUE)`,
    );
  } else {
    setup.push(`CREATE TABLE p.source (${sourceColumns.join(', ')}${constraint})`);
  }
  if (shape === 'expr') setup.push(`CREATE UNIQUE INDEX source_expr ON p.source (id, lower(note))`);
  if (shape === 'partial') setup.push(`CREATE UNIQUE INDEX source_partial ON p.source (id) WHERE note IS NOT NULL`);
  setup.push(`CREATE INDEX ON p.source (age)`);

  // The archive: same columns (unless it drifts), a unique key of some kind.
  const drift = risky && mode === 'move' && r.chance(0.15) ? r.pick(['missing', 'extra'] as const) : undefined;
  if (drift) hazards.push([`archive column ${drift}`, drift === 'missing' ? /only in p\.source: note/ : /only in p\.archive: extra/]);
  const archiveShape = risky
    ? r.pick(['key', 'key', 'id-only', 'none', 'expr', 'partial'] as const)
    : r.pick(key.length === 1 ? (['key', 'key', 'deferred', 'id-only'] as const) : (['key', 'key', 'deferred'] as const));
  if (mode === 'move') {
    d.push(`archive ${archiveShape}${drift ? `, ${drift} column` : ''}`);
    const archiveColumns = [
      `id ${idType}`,
      `age ${ageType}`,
      'created timestamptz NOT NULL',
      ...(drift === 'missing' ? [] : ['note text']),
      ...(withParent ? [`parent_id int${r.chance(0.5) ? ' REFERENCES p.parent' : ''}`] : []),
      ...columns.map((c) => `${c.name} ${c.archiveType}`),
      ...(drift === 'extra' ? ['extra text'] : []),
    ];
    const archiveKey = {
      key: `, PRIMARY KEY (${key.join(', ')})`,
      deferred: `, PRIMARY KEY (${key.join(', ')}) DEFERRABLE INITIALLY DEFERRED`,
      'id-only': ', PRIMARY KEY (id)',
      none: '',
      expr: '',
      partial: '',
    }[archiveShape];
    setup.push(`CREATE TABLE p.archive (${archiveColumns.join(', ')}${archiveKey})`);
    if (archiveShape === 'expr') setup.push(`CREATE UNIQUE INDEX archive_expr ON p.archive ((id::text || 'x'))`);
    if (archiveShape === 'partial') setup.push(`CREATE UNIQUE INDEX archive_partial ON p.archive (id) WHERE created > '2000-01-01'`);
    if (archiveShape === 'none' || archiveShape === 'expr' || archiveShape === 'partial')
      hazards.push([`archive ${archiveShape}`, /p\.archive has no primary key or unique index on/]);
    // A source unique only on (id, age) cannot go into an archive unique on id alone.
    if (archiveShape === 'id-only' && key.length > 1)
      hazards.push(['archive unique on id only', /p\.archive's unique index archive_pkey is on id, but p\.source is unique only on \(id, age\)/]);
  }

  // Foreign keys to the source, triggers and rules.
  if (risky && !partitioned && ['pk', 'unique', 'covering', 'composite'].includes(shape) && r.chance(0.25)) {
    const columnsReferenced = shape === 'composite' ? '(id, age)' : '(id)';
    const action = r.pick(['CASCADE', 'SET NULL', 'NO ACTION']);
    setup.push(
      `CREATE TABLE p.child (n int PRIMARY KEY, id ${idType}, age ${ageType}, FOREIGN KEY ${shape === 'composite' ? '(id, age)' : '(id)'} REFERENCES p.source ${columnsReferenced} ON DELETE ${action})`,
    );
    hazards.push([`referenced by p.child (ON DELETE ${action})`, /p\.source is referenced by foreign keys: child_id.* on p\.child/]);
    d.push(`child foreign key ON DELETE ${action}`);
  }
  const audit = () => setup.push('CREATE TABLE IF NOT EXISTS p.audit (n bigserial, what text)');
  const sourceTrigger = risky
    ? r.pick(['none', 'none', 'audit', 'before', 'statement', 'update-only', 'disabled'] as const)
    : r.pick(['none', 'none', 'none', 'update-only', 'disabled'] as const);
  if (sourceTrigger !== 'none') {
    audit();
    d.push(`source trigger ${sourceTrigger}`);
    const when = {
      audit: 'AFTER DELETE',
      before: 'BEFORE DELETE',
      statement: 'AFTER DELETE',
      'update-only': 'AFTER UPDATE',
      disabled: 'AFTER DELETE',
    }[sourceTrigger];
    const each = sourceTrigger === 'statement' ? 'STATEMENT' : 'ROW';
    setup.push(`CREATE TRIGGER source_trigger ${when} ON p.source FOR EACH ${each} EXECUTE FUNCTION pfun.audit()`);
    if (sourceTrigger === 'disabled') setup.push('ALTER TABLE p.source DISABLE TRIGGER source_trigger');
    if (['audit', 'before', 'statement'].includes(sourceTrigger))
      hazards.push([`source trigger ${sourceTrigger}`, /user triggers would fire on every batch: source_trigger on p\.source/]);
  }
  if (mode === 'move') {
    const archiveTrigger = risky
      ? r.pick(['none', 'none', 'insert', 'update-only'] as const)
      : r.pick(['none', 'none', 'none', 'update-only'] as const);
    if (archiveTrigger !== 'none') {
      audit();
      d.push(`archive trigger ${archiveTrigger}`);
      setup.push(
        `CREATE TRIGGER archive_trigger AFTER ${archiveTrigger === 'insert' ? 'INSERT' : 'UPDATE'} ON p.archive FOR EACH ROW EXECUTE FUNCTION pfun.audit()`,
      );
      if (archiveTrigger === 'insert') hazards.push(['archive trigger', /user triggers would fire on every batch: .*archive_trigger on p\.archive/]);
    }
  }
  if (risky && r.chance(0.1)) {
    audit();
    const onArchive = mode === 'move' && r.chance(0.5);
    setup.push(
      onArchive
        ? 'CREATE RULE archive_rule AS ON INSERT TO p.archive DO ALSO INSERT INTO p.audit (what) VALUES (NEW.id::text)'
        : 'CREATE RULE source_rule AS ON DELETE TO p.source DO ALSO INSERT INTO p.audit (what) VALUES (OLD.id::text)',
    );
    hazards.push([onArchive ? 'archive rule' : 'source rule', onArchive ? /p\.archive has INSERT rules/ : /p\.source has DELETE rules/]);
    d.push(onArchive ? 'archive rule' : 'source rule');
  }

  // Rows: expired ones far past the cutoff, fresh ones far before it; keys repeated across
  // partitions when the source is partitioned by age.
  const rows: string[] = [];
  const count = r.int(0, 24);
  const expiredIds: number[] = [];
  for (let n = 1; n <= count; n++) {
    const id = shape === 'partitioned' ? 1 + (n % Math.max(1, Math.ceil(count / 2))) : n;
    const days = shape === 'partitioned' ? r.pick([400, 200, 150, 10, 1]) + n / 1000 : r.chance(0.6) ? r.int(150, 800) : r.int(0, 50);
    const ageNull = fallback && r.chance(0.3);
    const createdDays = ageNull ? (r.chance(0.5) ? r.int(150, 800) : r.int(0, 50)) : r.int(0, 800);
    const expired = ageNull ? createdDays >= 150 : days >= 150;
    if (expired) expiredIds.push(n);
    const idValue = idType === 'text' ? q(`k${String(id).padStart(3, '0')}`) : String(id);
    const values = [
      idValue,
      ageNull ? 'NULL' : ageType === 'timestamptz' ? `now() - interval '${days} days'` : ageValue(ageType, Math.floor(days)),
      `now() - interval '${createdDays} days'`,
      r.chance(0.2) ? 'NULL' : q(r.pick(['n', 'N', 'note', 'other'])),
      ...(withParent ? [r.pick(['1', '2', 'NULL'])] : []),
      ...columns.map((c) => c.kind.value(r)),
    ];
    rows.push(`(${values.join(', ')})`);
  }
  if (rows.length > 0) setup.push(`INSERT INTO p.source VALUES ${rows.join(', ')}`);
  if (setup.some((s) => s.startsWith('CREATE TABLE p.child')) && rows.length > 0) {
    setup.push(`INSERT INTO p.child SELECT row_number() OVER (), id, age FROM p.source WHERE random() < 2`);
  }

  // Copies already in the archive: identical ones (a run that moved them and was never told),
  // and different ones (a reset sequence, a restore, a second source).
  const preArchive: string[] = [];
  if (mode === 'move' && rows.length > 0 && r.chance(0.5)) {
    const identical = r.int(0, 3);
    const different = r.chance(0.4) ? r.int(1, 2) : 0;
    const names = [
      'id',
      'age',
      'created',
      ...(drift === 'missing' ? [] : ['note']),
      ...(withParent ? ['parent_id'] : []),
      ...columns.map((c) => c.name),
    ].join(', ');
    // Numbered rows in the order the test inserted them; the pre-archived ones are chosen among all rows.
    preArchive.push(`CREATE TEMP TABLE numbered AS SELECT row_number() OVER (ORDER BY id, age) AS n, s.* FROM p.source AS s`);
    const chosen = [...new Set(Array.from({ length: identical + different }, () => r.int(1, rows.length)))];
    const identicalRows = chosen.slice(0, identical);
    const differentRows = chosen.slice(identical);
    if (identicalRows.length > 0)
      preArchive.push(`INSERT INTO p.archive (${names}) SELECT ${names} FROM numbered WHERE n IN (${identicalRows.join(', ')})`);
    if (differentRows.length > 0) {
      preArchive.push(
        `INSERT INTO p.archive (${names}) SELECT ${names.replace(/\bnote\b/, `coalesce(note, '') || ' (different)'`)} FROM numbered WHERE n IN (${differentRows.join(', ')})`,
      );
    }
    preArchive.push(`DROP TABLE numbered`);
    d.push(`pre-archived rows: identical ${identicalRows.join(',') || '-'}, different ${differentRows.join(',') || '-'}`);
  }
  d.push(`${rows.length} rows, ${expiredIds.length} expired`);

  const target: ArchiveTargetInput = {
    source: 'p.source',
    ...(mode === 'move' ? { destination: 'p.archive' } : { mode: 'purge' as const }),
    ageColumn: 'age',
    ...(fallback ? { ageFallbackColumn: 'created' } : {}),
    key: key.length === 1 ? 'id' : key,
    retention: '100 days',
    timeZone: r.pick(['UTC', 'UTC', 'Asia/Tokyo', 'America/Sao_Paulo']),
    batchSize: r.pick([1, 2, 3, 5, 10, 100]),
  };
  d.push(`policy ${JSON.stringify(target)}`);
  const expired = fallback
    ? `(t.age < now() - interval '100 days' OR (t.age IS NULL AND t.created < now() - interval '100 days'))`
    : `t.age < now() - interval '100 days'`;
  return { description: d, setup, preArchive, target, expired, hazards };
}

beforeAll(async () => {
  db = await createTestDatabase();
  sql = await db.connect();
  await sql.query(`CREATE SCHEMA pfun;
    CREATE FUNCTION pfun.audit() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN INSERT INTO p.audit (what) VALUES (TG_OP || ' ' || TG_TABLE_NAME); RETURN coalesce(NEW, OLD); END $$;`);
});

describe('archive on generated schemas', () => {
  it(`a run refuses before changing anything, or keeps every row exactly (seed ${SEED}, ${CASES} cases)`, async () => {
    const r = prng(SEED);
    const tally = { refused: 0, collided: 0, moved: 0, rowsMoved: 0, alreadyArchived: 0 };
    const options = archiveEventSchema.parse({ targets: [{ source: 'x', mode: 'purge', ageColumn: 'a', retention: '1 day' }] });
    for (let index = 0; index < CASES; index++) {
      const generated = generate(r);
      const where = `seed ${SEED}, case ${index}:\n  ${generated.description.join('\n  ')}`;
      for (const statement of generated.setup)
        await sql.query(statement).catch((error) => Promise.reject(new Error(`${where}\nsetup failed: ${statement}\n${error}`)));
      try {
        await sql.query('BEGIN');
        for (const statement of generated.preArchive) await sql.query(statement);
        await sql.query('COMMIT');
      } catch {
        // The archive cannot take these values (a narrower column): no copies then.
        await sql.query('ROLLBACK');
      }
      // Which expired rows the archive already holds, the same or different (by whole row).
      let copies = { identical: 0, different: 0 };
      if (generated.hazards.length === 0 && generated.target.destination) {
        const on = (typeof generated.target.key === 'string' ? [generated.target.key] : generated.target.key!)
          .map((k) => `d.${k} = t.${k}`)
          .join(' AND ');
        const { rows } = await sql.query(
          `SELECT count(*) FILTER (WHERE to_jsonb(t)::text = to_jsonb(d)::text)::int AS identical, count(*) FILTER (WHERE to_jsonb(t)::text <> to_jsonb(d)::text)::int AS different
           FROM p.source AS t JOIN p.archive AS d ON ${on} WHERE ${generated.expired}`,
        );
        copies = rows[0];
      }
      const guard = await captureArchiveInvariant(sql, {
        source: 'p.source',
        destination: generated.target.destination as string | undefined,
        expired: generated.target.mode === 'purge' ? generated.expired : undefined,
      });
      const policy = archiveTargetSchema.parse(generated.target);
      let summary: { state: string; counts: Record<string, number | undefined>; stopReason?: string; detail?: string };
      try {
        const outcome = await runArchiveTarget({
          client: sql,
          connect: () => db.connect(),
          policy,
          options,
          logger: quietLogger(),
          budget: TimeBudget.unlimited(),
          dryRun: false,
          runId: `case-${index}`,
        });
        summary = {
          state: outcome.failure ? 'failed' : 'succeeded',
          counts: outcome.counts,
          stopReason: outcome.stopReason,
          detail: outcome.failure,
        };
      } catch (error) {
        const typed = error instanceof CatalogError || error instanceof SchemaDriftError;
        expect(typed, `${where}\nthrew something other than a refusal: ${String(error)}`).toBe(true);
        // A refusal names the table to look at.
        expect(['p.source', 'p.archive'], `${where}\n${String(error)}`).toContain((error as CatalogError).object);
        summary = { state: 'failed', counts: {}, detail: (error as Error).message };
      }
      await guard.verify(summary).catch((error) => Promise.reject(new Error(`${where}\n${summary.detail ?? ''}\n${error}`)));

      const context = `${where}\noutcome: ${JSON.stringify(summary)}`;
      if (generated.hazards.length > 0) {
        expect(summary.state, context).toBe('failed');
        expect(summary.detail, context).toMatch(/nothing was moved/);
        // With a single hazard, the refusal names it.
        if (generated.hazards.length === 1) expect(summary.detail, context).toMatch(generated.hazards[0]![1]);
        tally.refused++;
      } else if (copies.different > 0) {
        expect(summary.state, context).toBe('failed');
        expect(summary.detail, context).toMatch(/already holds \d+ key\(s\) of expired p\.source rows with different contents/);
        tally.collided++;
      } else {
        expect(summary.state, context).toBe('succeeded');
        expect(summary.stopReason, context).toBe('done');
        const left = await sql.query(`SELECT count(*)::int AS n FROM p.source AS t WHERE ${generated.expired}`);
        expect(left.rows[0].n, `${context}\nexpired rows left behind`).toBe(0);
        tally.moved++;
        tally.rowsMoved += summary.counts.rowsMoved ?? summary.counts.rowsPurged ?? 0;
        if (generated.target.destination) expect(summary.counts.alreadyArchived, context).toBe(copies.identical);
        tally.alreadyArchived += summary.counts.alreadyArchived ?? 0;
      }
    }
    // The generator really exercised every outcome.
    expect(tally.refused).toBeGreaterThan(CASES / 5);
    expect(tally.moved).toBeGreaterThan(CASES / 5);
    expect(tally.collided).toBeGreaterThan(0);
    expect(tally.rowsMoved).toBeGreaterThan(CASES);
    expect(tally.alreadyArchived).toBeGreaterThan(0);
  }, 180_000);
});
