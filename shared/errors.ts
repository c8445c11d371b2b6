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

/** The database catalog is not in a shape the job can work with (missing table, wrong partitioning...). */
export class CatalogError extends HousekeeperError {
  constructor(
    readonly object: string,
    message: string,
  ) {
    super(message);
  }
}

/** Source and destination tables disagree on columns or keys. */
export class SchemaDriftError extends HousekeeperError {
  constructor(
    readonly object: string,
    message: string,
  ) {
    super(message);
  }
}

/** DDL could not get its lock within lock_timeout, even after retries. */
export class LockTimeoutError extends HousekeeperError {
  constructor(
    readonly object: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** At least one target failed; thrown at the end of an invocation so Lambda records an error. */
export class JobFailedError extends HousekeeperError {
  constructor(
    readonly job: string,
    readonly failedTargets: string[],
  ) {
    super(`${job}: ${failedTargets.length} target(s) failed: ${failedTargets.join(', ')}`);
  }
}

export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
