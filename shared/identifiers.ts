import { ConfigError } from './errors';

/**
 * Postgres silently truncates identifiers to 63 bytes (NAMEDATALEN - 1), so two long names can
 * collide. We refuse them instead.
 */
export const MAX_IDENTIFIER_BYTES = 63;

// Plain identifiers only: no quotes, dots, spaces or semicolons can ever reach SQL text.
const PLAIN_IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_$]*$/;

export interface QualifiedName {
  schema: string;
  name: string;
}

/** Returns an error message when `value` is not a usable identifier, else undefined. */
export function identifierProblem(value: string): string | undefined {
  if (value.length === 0) return 'is empty';
  if (!PLAIN_IDENTIFIER.test(value)) {
    return `${JSON.stringify(value)} is not a plain identifier (letters, digits, _ or $, not starting with a digit)`;
  }
  const bytes = Buffer.byteLength(value, 'utf8');
  if (bytes > MAX_IDENTIFIER_BYTES) {
    return `${JSON.stringify(value)} is ${bytes} bytes; Postgres truncates identifiers longer than ${MAX_IDENTIFIER_BYTES} bytes`;
  }
  return undefined;
}

/** Returns an error message when `value` is not `table` or `schema.table`, else undefined. */
export function qualifiedNameProblem(value: string): string | undefined {
  const parts = value.split('.');
  if (parts.length > 2) {
    return `${JSON.stringify(value)} must be "table" or "schema.table"`;
  }
  for (const part of parts) {
    const problem = identifierProblem(part);
    if (problem) return problem === 'is empty' ? `${JSON.stringify(value)} has an empty name part` : problem;
  }
  return undefined;
}

/** Parses `table` or `schema.table` (schema defaults to public). Names are case-sensitive, as in the catalog. */
export function parseQualifiedName(value: string, field: string): QualifiedName {
  const problem = qualifiedNameProblem(value);
  if (problem) throw new ConfigError(field, problem);
  const parts = value.split('.');
  return parts.length === 2 ? { schema: parts[0]!, name: parts[1]! } : { schema: 'public', name: parts[0]! };
}

export function quoteIdent(identifier: string): string {
  return `"${identifier.replace(/"/g, '""')}"`;
}

export function quoteQualified(name: QualifiedName): string {
  return `${quoteIdent(name.schema)}.${quoteIdent(name.name)}`;
}

/** `schema.table` as a human reads it in logs and the ledger. */
export function displayName(name: QualifiedName): string {
  return `${name.schema}.${name.name}`;
}

/** For the few literals DDL cannot take as bind parameters (partition bounds we generated ourselves). */
export function quoteLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}
