/**
 * Typed errors. Each names the thing it is about so that a single CloudWatch line tells an
 * operator what to fix, and none ever carries a password or connection string.
 */
export class HousekeeperError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** A policy, event, CLI flag or settings override is invalid. Nothing has been changed. */
export class ConfigError extends HousekeeperError {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(field ? `${field}: ${message}` : message);
  }
}

/**
 * The database is not in a shape the job can work with: a missing table, the wrong partitioning,
 * a column of another type. `object` is what to look at (`app.orders`, `housekeeping.rollup_state(usage)`).
 */
export class CatalogError extends HousekeeperError {
  constructor(
    readonly object: string,
    message: string,
  ) {
    super(message);
  }
}

/** Source and archive disagree on columns or keys: a catalog problem that names both tables. */
export class SchemaDriftError extends CatalogError {}

/** A statement waited for its lock `lock_timeout` long on every attempt, and gave up so writers are not queued behind it. */
export class LockTimeoutError extends HousekeeperError {}

/** A statement was chosen as a deadlock's victim on every attempt; a lock timeout it is not. */
export class DeadlockError extends HousekeeperError {}

/** At least one target failed; thrown at the end of an invocation so Lambda records an error. */
export class JobFailedError extends HousekeeperError {
  constructor(job: string, failedTargets: string[]) {
    super(`${job}: ${failedTargets.length} target(s) failed: ${failedTargets.join(', ')}`);
  }
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
