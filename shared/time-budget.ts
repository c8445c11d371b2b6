/**
 * How long a run may keep working. Lambda gives its remaining time; we keep a margin so the run
 * can record its outcome and close connections before the sandbox is frozen.
 */
export class TimeBudget {
  private constructor(private readonly deadline: number) {}

  static unlimited(): TimeBudget {
    return new TimeBudget(Number.POSITIVE_INFINITY);
  }

  static ofMs(ms: number): TimeBudget {
    return new TimeBudget(Date.now() + ms);
  }

  /** Remaining Lambda time minus a margin: 10% of it, at least 5 s and at most 60 s. */
  static fromLambda(context: { getRemainingTimeInMillis(): number }): TimeBudget {
    const remaining = context.getRemainingTimeInMillis();
    const margin = Math.min(60_000, Math.max(5_000, remaining * 0.1));
    return new TimeBudget(Date.now() + Math.max(0, remaining - margin));
  }

  remainingMs(): number {
    return this.deadline - Date.now();
  }

  isExhausted(): boolean {
    return this.remainingMs() <= 0;
  }

  /** True when `ms` more of work still ends before the deadline. */
  allows(ms: number): boolean {
    return this.remainingMs() > ms;
  }
}
