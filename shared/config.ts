import { IANAZone } from 'luxon';
import * as z from 'zod';
import { parseDuration } from './calendar';
import { ConfigError } from './errors';
import { identifierProblem, qualifiedNameProblem } from './identifiers';

/** `table` or `schema.table`, plain identifiers only, each at most 63 bytes. */
export const qualifiedNameSchema = z.string().superRefine((value, ctx) => {
  const problem = qualifiedNameProblem(value);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

export const identifierSchema = z.string().superRefine((value, ctx) => {
  const problem = identifierProblem(value);
  if (problem) ctx.addIssue({ code: 'custom', message: problem });
});

export const timeZoneSchema = z.string().superRefine((value, ctx) => {
  if (!IANAZone.isValidZone(value)) {
    ctx.addIssue({ code: 'custom', message: `${JSON.stringify(value)} is not an IANA time zone (e.g. "UTC", "Europe/Berlin")` });
  }
});

/** "90 days", "6 months", "12 hours", "2 weeks", "1 year". */
export const durationSchema = z.string().superRefine((value, ctx) => {
  if (!parseDuration(value)) {
    ctx.addIssue({
      code: 'custom',
      message: `${JSON.stringify(value)} is not a duration like "30 days", "6 months" or "12 hours" (a whole number ≥ 1 and one of hour, day, week, month, year)`,
    });
  }
});

/** Options every job event accepts beside its targets. */
export const runOptionsShape = {
  dryRun: z.boolean().default(false),
  /** How long one DDL or batch statement may wait for a lock before giving up and retrying. */
  lockTimeoutMs: z.number().int().min(50).max(60_000).default(3_000),
  /** Attempts per statement when its lock wait times out, with exponential backoff between them. */
  lockAttempts: z.number().int().min(1).max(20).default(5),
  statementTimeoutMs: z.number().int().min(1_000).max(3_600_000).default(300_000),
};

/** What every job's event holds beside its own options: the targets, as received, and the run options. */
export type RunOptions = { targets: unknown[] } & z.output<z.ZodObject<typeof runOptionsShape>>;

function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    out += typeof part === 'number' ? `[${part}]` : out ? `.${String(part)}` : String(part);
  }
  return out;
}

function describeInput(input: unknown): string {
  if (input === undefined) return 'missing';
  const text = JSON.stringify(input);
  return `got ${text && text.length > 120 ? `${text.slice(0, 117)}...` : text}`;
}

/**
 * Validates `input` against `schema`. On failure throws one ConfigError whose field is the first
 * bad path and whose message lists every problem with the offending value.
 */
export function parseConfig<S extends z.ZodType>(schema: S, input: unknown, where = ''): z.output<S> {
  const result = schema.safeParse(input, { reportInput: true });
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const field = [where, formatPath(issue.path)].filter(Boolean).join('.').replace(/\.\[/g, '[') || '(root)';
    const shown = issue.code === 'custom' || issue.code === 'unrecognized_keys' ? '' : ` (${describeInput(issue.input)})`;
    return { field, problem: `${issue.message}${shown}` };
  });
  // The first problem's field is the error's; the message names every field, each before its problem.
  const [first, ...others] = problems;
  throw new ConfigError(first!.field, [first!.problem, ...others.map((p) => `${p.field}: ${p.problem}`)].join('; '));
}
