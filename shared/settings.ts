import type pg from 'pg';
import type { z } from 'zod';
import { parseConfig } from './config';
import { relationExists } from './db';
import { ConfigError } from './errors';

type ValueSource = 'settings' | 'deployed' | 'default';

export interface Override {
  job: string;
  target: string;
  key: string;
  value: unknown;
}

/**
 * Policy keys that say *what* a target is, not how it is maintained. The lock, the ledger row and
 * the metrics use the deployed value; an override would send the work elsewhere under the old
 * name (two targets could then work one table under two locks), so such rows are refused.
 */
export const IDENTITY_KEYS: ReadonlySet<string> = new Set(['table', 'source', 'destination', 'name', 'target', 'lockKey', 'function']);

/**
 * Policy keys that let a run change rows its policy does not name (foreign-key actions, user
 * triggers). They are decided where the policy is reviewed and deployed, never by a settings
 * row: one `*` row would have opted every archive target into CASCADE deletes at once.
 */
const DEPLOY_ONLY_KEYS: ReadonlySet<string> = new Set(['allowReferencingForeignKeys', 'allowTriggers']);

/** A settings row as operators will look for it. */
function settingsRow(row: { job: string; target: string; key: string }): string {
  return `housekeeping.settings (job '${row.job}', target '${row.target}', key '${row.key}')`;
}

/**
 * The run-time pause: a settings row with key `paused` and value `true` (for one target, or '*'
 * for every target of the job) makes the run skip the target before any work. It is not a policy
 * key, so it never reaches the policy schema; a row for the exact target wins over '*'.
 */
const PAUSED_KEY = 'paused';

export interface Pause {
  paused: boolean;
  /** The row that decided it, as operators will look for it. */
  row?: string;
}

/** Splits the pause rows off the policy overrides; a value other than true or false fails the target naming its row. */
export function takePause(overrides: Override[]): { pause: Pause; overrides: Override[] } {
  const pauses = overrides.filter((o) => o.key === PAUSED_KEY);
  let pause: Pause = { paused: false };
  // Rows come '*' first, so the exact target's row is applied last and wins.
  for (const row of pauses) {
    if (typeof row.value !== 'boolean') {
      throw new ConfigError(settingsRow(row), `'${PAUSED_KEY}' is true or false (got ${JSON.stringify(row.value)})`);
    }
    pause = { paused: row.value, row: settingsRow(row) };
  }
  return { pause, overrides: overrides.filter((o) => o.key !== PAUSED_KEY) };
}

/** Every (job, target) paused by a settings row, for `housekeeper status` ('*' rows as target '*'). */
export async function pausedTargets(client: pg.ClientBase): Promise<Array<{ job: string; target: string }>> {
  if (!(await relationExists(client, 'housekeeping.settings'))) return [];
  const { rows } = await client.query<{ job: string; target: string }>(
    `SELECT job, target FROM housekeeping.settings WHERE key = $1 AND value = 'true'::jsonb ORDER BY job, target`,
    [PAUSED_KEY],
  );
  return rows;
}

export interface EffectivePolicy<P> {
  policy: P;
  /** Every leaf of the effective policy (dotted path) and where its value came from. */
  sources: Record<string, ValueSource>;
}

/**
 * Overrides for one (job, target) out of the run's settings rows (readRunSettings): rows for the
 * exact target win over rows for '*' ('*' rows come first, then by key). An implicit target (one
 * the job adds itself, like the partition job's ledger) takes only rows keyed to its own name: a
 * '*' retention meant for daily tables once dropped three months of run history.
 */
export function overridesFor(rows: readonly Override[], job: string, target: string, options: { implicit?: boolean } = {}): Override[] {
  const mine = rows.filter((row) => row.job === job && (row.target === target || (row.target === '*' && options.implicit !== true)));
  return mine.sort((a, b) => Number(b.target === '*') - Number(a.target === '*') || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
}

/**
 * The settings rows that matter to one run of `job`, read once at its start: its own rows (the
 * overrides of every target) and rows of no job at all (reported). A change made during a run
 * applies from the next run.
 */
export async function readRunSettings(client: pg.ClientBase, job: string, jobs: readonly string[]): Promise<Override[]> {
  if (!(await relationExists(client, 'housekeeping.settings'))) return [];
  const { rows } = await client.query<Override>(
    `SELECT job, target, key, value FROM housekeeping.settings WHERE job = $1 OR NOT (job = ANY ($2::text[])) ORDER BY job, target, key`,
    [job, jobs],
  );
  return rows;
}

/** The job whose run reads the settings, and what its rows put in `target`, in words. */
export interface SettingsJob {
  job: string;
  targetDescription: string;
}

export interface SettingsTarget {
  /** The target name (lock, ledger, settings key). */
  name: string;
  /** The deployed policy input, to recognise a row keyed by one of its tables. */
  input: unknown;
}

const bareName = (name: string) => name.slice(name.lastIndexOf('.') + 1);
const qualified = (name: string) => (name.includes('.') ? name : `public.${name}`);
const TABLE_FIELDS = ['table', 'source', 'target', 'destination'];

/** The target a mis-keyed row was most likely meant for: the same name in another spelling, or the target whose policy names that table. */
function likelyTarget(rowTarget: string, targets: SettingsTarget[]): string | undefined {
  const sameName = targets.find((t) => bareName(t.name) === bareName(rowTarget));
  if (sameName) return sameName.name;
  return targets.find((t) =>
    TABLE_FIELDS.some((field) => {
      const value = (t.input as Record<string, unknown> | null)?.[field];
      return typeof value === 'string' && qualified(value) === qualified(rowTarget);
    }),
  )?.name;
}

/**
 * Settings rows this run will never apply, one message each: rows of this job keyed to no target
 * of the run, and rows of no job at all. A mis-keyed row used to be ignored silently, so the
 * operator believed a change was live that was not.
 */
export function unmatchedSettings(
  rows: Array<{ job: string; target: string; key: string }>,
  { job, targetDescription }: SettingsJob,
  targets: SettingsTarget[],
  jobs: readonly string[],
): string[] {
  const names = new Set(targets.map((t) => t.name));
  const messages: string[] = [];
  for (const row of rows) {
    if (!jobs.includes(row.job)) {
      messages.push(
        `housekeeping.settings row (job '${row.job}', target '${row.target}', key '${row.key}') is ignored: '${row.job}' is not a job (${jobs.join(', ')})`,
      );
    } else if (row.job === job && row.target !== '*' && !names.has(row.target)) {
      const meant = likelyTarget(row.target, targets);
      messages.push(
        `housekeeping.settings row (job '${row.job}', target '${row.target}', key '${row.key}') matches no target of this run and is ignored: ` +
          `${job} settings are keyed by ${targetDescription} (or '*')${meant ? `; did you mean target '${meant}'?` : ''}`,
      );
    }
  }
  return messages;
}

function setPath(object: Record<string, unknown>, path: string[], value: unknown): void {
  let node = object;
  for (const part of path.slice(0, -1)) {
    const next = node[part];
    node = node[part] = next && typeof next === 'object' && !Array.isArray(next) ? { ...(next as object) } : {};
  }
  node[path[path.length - 1]!] = value;
}

function leafPaths(value: unknown, prefix = ''): string[] {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return prefix ? [prefix] : [];
  return Object.entries(value).flatMap(([key, child]) => leafPaths(child, prefix ? `${prefix}.${key}` : key));
}

function hasPath(object: unknown, path: string): boolean {
  let node = object;
  for (const part of path.split('.')) {
    if (node === null || typeof node !== 'object' || !(part in node)) return false;
    node = (node as Record<string, unknown>)[part];
  }
  return true;
}

/**
 * Applies overrides on top of the deployed policy input and validates the result with the
 * job's own schema, so a bad override fails with the same clear error as a bad deploy.
 */
export function applyOverrides<S extends z.ZodType>(
  schema: S,
  deployed: unknown,
  overrides: Override[],
  where: string,
): EffectivePolicy<z.output<S>> {
  for (const override of overrides) {
    const head = override.key.split('.')[0]!;
    if (IDENTITY_KEYS.has(head)) {
      throw new ConfigError(
        settingsRow(override),
        `'${head}' identifies the target (its lock, ledger row and metrics keep the deployed value), so it cannot be overridden; ` +
          'change it in the deployed policy and delete this row',
      );
    }
    if (DEPLOY_ONLY_KEYS.has(head)) {
      throw new ConfigError(
        settingsRow(override),
        `'${head}' lets a run change rows its policy does not name (foreign-key actions, triggers), so it is set in the deployed policy only, never by a settings row; ` +
          'delete this row (nothing was changed)',
      );
    }
  }
  const merged = structuredClone(deployed) as Record<string, unknown>;
  // '*' rows come first, so exact-target rows overwrite them.
  for (const override of overrides) setPath(merged, override.key.split('.'), override.value);
  const overridden = new Set(overrides.map((o) => o.key));
  const label = overrides.length > 0 ? `${where} (with housekeeping.settings overrides ${[...overridden].join(', ')})` : where;
  const policy = parseConfig(schema, merged, label);
  const sources: Record<string, ValueSource> = {};
  for (const path of leafPaths(policy)) {
    const overriddenHere = [...overridden].some((key) => path === key || path.startsWith(`${key}.`));
    sources[path] = overriddenHere ? 'settings' : hasPath(deployed, path) ? 'deployed' : 'default';
  }
  return { policy, sources };
}
