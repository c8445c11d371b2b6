import { DateTime, IANAZone } from 'luxon';

/**
 * Wall-clock hours in a zone inside which archive batches and rollup slices may start, e.g.
 * `{ start: "01:00", end: "05:00", timeZone: "Asia/Seoul" }`. An end at or before the start
 * crosses midnight (`22:00`–`04:00`).
 */
export interface MaintenanceWindow {
  start: string;
  end: string;
  timeZone: string;
}

const TIME_OF_DAY = /^([01]\d|2[0-3]):([0-5]\d)$/;

/** Every problem of a window, each naming its field under `where` ("Housekeeping.archive.window"). */
export function windowProblems(window: unknown, where: string): string[] {
  if (!window || typeof window !== 'object' || Array.isArray(window)) return [`${where}: expected { start: "HH:MM", end: "HH:MM", timeZone }`];
  const { start, end, timeZone, ...rest } = window as Record<string, unknown>;
  const problems: string[] = [];
  for (const key of Object.keys(rest)) problems.push(`${where}.${key}: unknown field (a window has start, end and timeZone)`);
  for (const [field, value] of [
    ['start', start],
    ['end', end],
  ] as const) {
    if (typeof value !== 'string' || !TIME_OF_DAY.test(value)) {
      problems.push(`${where}.${field}: ${JSON.stringify(value)} is not a time of day (HH:MM, 00:00 to 23:59)`);
    }
  }
  if (typeof timeZone !== 'string' || !IANAZone.isValidZone(timeZone)) {
    problems.push(`${where}.timeZone: ${JSON.stringify(timeZone)} is not an IANA time zone (e.g. "Asia/Seoul", "Europe/Berlin")`);
  }
  if (problems.length === 0 && start === end) {
    problems.push(`${where}.end: equals start; a window that never closes is no window (leave window unset)`);
  }
  return problems;
}

/** How the window travels to the function: `01:00-05:00 Asia/Seoul` (PGHK_MAINTENANCE_WINDOW). */
export function formatWindow(window: MaintenanceWindow): string {
  return `${window.start}-${window.end} ${window.timeZone}`;
}

/** The inverse of formatWindow; throws naming `where` on anything else. */
export function parseWindow(text: string, where: string): MaintenanceWindow {
  const match = /^(\S+)-(\S+) (\S+)$/.exec(text.trim());
  const window = match ? { start: match[1]!, end: match[2]!, timeZone: match[3]! } : undefined;
  const problems = window ? windowProblems(window, where) : [`${where}: ${JSON.stringify(text)} is not "HH:MM-HH:MM Zone"`];
  if (problems.length > 0) throw new Error(problems.join('; '));
  return window!;
}

function atTime(day: DateTime, time: string): DateTime {
  const [hour, minute] = time.split(':').map(Number) as [number, number];
  // A start inside a spring-forward gap moves to the first minute that exists after it.
  return day.set({ hour, minute, second: 0, millisecond: 0 });
}

export type WindowState = { open: true; closesAt: number } | { open: false; opensAt: number };

/**
 * Whether `nowMs` is inside the window, and when that changes. The caller passes the database's
 * clock: the window is an instant computed in the window's zone, whatever the process's zone.
 */
export function windowAt(nowMs: number, window: MaintenanceWindow): WindowState {
  const now = DateTime.fromMillis(nowMs, { zone: window.timeZone });
  const crossesMidnight = window.end <= window.start;
  let opensAt = Number.POSITIVE_INFINITY;
  // The window that began yesterday may still be open after midnight; tomorrow's is the next one.
  for (const offset of [-1, 0, 1]) {
    const day = now.startOf('day').plus({ days: offset });
    const start = atTime(day, window.start).toMillis();
    const end = atTime(crossesMidnight ? day.plus({ days: 1 }) : day, window.end).toMillis();
    if (start <= nowMs && nowMs < end) return { open: true, closesAt: end };
    if (start > nowMs) opensAt = Math.min(opensAt, start);
  }
  return { open: false, opensAt };
}
