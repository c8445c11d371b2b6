import type pg from 'pg';
import type { z } from 'zod';
import { parseConfig } from './config';
import { relationExists } from './db';

export type ValueSource = 'settings' | 'deployed' | 'default';

export interface Override {
  target: string;
  key: string;
  value: unknown;
}

export interface EffectivePolicy<P> {
  policy: P;
  /** Every leaf of the effective policy (dotted path) and where its value came from. */
  sources: Record<string, ValueSource>;
}

/** Overrides for one (job, target): rows for the exact target win over rows for '*'. */
export async function readOverrides(client: pg.ClientBase, job: string, target: string): Promise<Override[]> {
  if (!(await relationExists(client, 'housekeeping.settings'))) return [];
  const { rows } = await client.query<Override>(
    `SELECT target, key, value FROM housekeeping.settings
     WHERE job = $1 AND target IN ($2, '*')
     ORDER BY (target = '*') DESC, key`,
    [job, target],
  );
  return rows;
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
