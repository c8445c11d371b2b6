import type { StopReason } from './job';

/** The stop reason of a job that left work for later because its time ran out. */
export const TIME_BUDGET_STOP = 'time budget nearly spent' satisfies StopReason;
/** The same stop, when it was the maintenance window that closed (no continuation follows). */
export const WINDOW_STOP = 'outside maintenance window' satisfies StopReason;

/** Why a budget said no: time running out, or the maintenance window being closed. */
export type Refusal = 'time' | 'window';

/**
 * How long a run may keep working. Lambda gives its remaining time; we keep a margin so the run
 * can record its outcome and close connections before the sandbox is frozen.
 *
 * A maintenance window folds in here, so the jobs need no code path of their own: outside it,
 * `allows()` refuses to start more work (an archive batch, a rollup slice). `isExhausted()` and
 * `hasTime()` look at time only: work already under way (a lock retry) and the partition job's
 * steps, which keep inserts working whatever the hour, are not held to the window.
 */
export class TimeBudget {
  private refusal: Refusal | undefined;

  private constructor(
    private readonly deadline: number,
    /** Date.now() from which no new work starts; infinite without a window. */
    private readonly windowCloses = Number.POSITIVE_INFINITY,
  ) {}

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

  /** The same deadline; new work is refused once `ms` have passed (0: the window is closed already). */
  withWindowClosingIn(ms: number): TimeBudget {
    return new TimeBudget(this.deadline, Math.min(this.windowCloses, Date.now() + Math.max(0, ms)));
  }

  /** The same limits, remembering for one target whether (and why) it was refused work. */
  forTarget(): TimeBudget {
    return new TimeBudget(this.deadline, this.windowCloses);
  }

  /** Set once this budget refused work: the caller stopped with work left. */
  get refusedBy(): Refusal | undefined {
    return this.refusal;
  }

  remainingMs(): number {
    return this.deadline - Date.now();
  }

  isExhausted(): boolean {
    const exhausted = this.remainingMs() <= 0;
    if (exhausted) this.refusal ??= 'time';
    return exhausted;
  }

  /** True when `ms` more of work still ends before the deadline, and the window is open: start it. */
  allows(ms: number): boolean {
    if (this.windowClosed()) {
      this.refusal = 'window';
      return false;
    }
    if (this.remainingMs() > ms) return true;
    this.refusal ??= 'time';
    return false;
  }

  /** Whether the maintenance window has closed (asks only; records nothing). */
  windowClosed(): boolean {
    return Date.now() >= this.windowCloses;
  }

  /** Time only: whether `ms` more of work already under way (a retry) still ends before the deadline. */
  hasTime(ms: number): boolean {
    return this.remainingMs() > ms;
  }
}
