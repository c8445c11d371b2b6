/**
 * Bucket arithmetic, on epoch milliseconds only. Buckets are UTC hours and UTC days, and an epoch
 * millisecond count has no zone: nothing here may read the process's zone (the Lambda runs in UTC,
 * the CLI wherever its user is), so no local-time Date getter appears in this file. An hour or a
 * day in UTC is always exactly 3,600,000 or 86,400,000 ms (no DST, no leap seconds in epoch time),
 * which is what makes a floor a plain division.
 */
export type Bucket = 'hour' | 'day';

export const BUCKET_MS: Readonly<Record<Bucket, number>> = { hour: 3_600_000, day: 86_400_000 };

/** Start of the UTC bucket holding `ms` (Math.floor, so instants before 1970 floor downwards too). */
export function floorToBucket(ms: number, bucket: Bucket): number {
  const size = BUCKET_MS[bucket];
  return Math.floor(ms / size) * size;
}

/** An instant as ISO-8601 UTC text: how the rollup binds times, so no parameter depends on the driver's Date handling. */
export function instant(ms: number): string {
  return new Date(ms).toISOString();
}

export function isBucketStart(ms: number, bucket: Bucket): boolean {
  return floorToBucket(ms, bucket) === ms;
}

/** Merges bucket starts (any order, duplicates allowed) into sorted [from, to) ranges of adjacent buckets. */
export function mergeBuckets(starts: number[], bucket: Bucket): Array<[number, number]> {
  const size = BUCKET_MS[bucket];
  const ranges: Array<[number, number]> = [];
  for (const start of starts.map((s) => floorToBucket(s, bucket)).sort((a, b) => a - b)) {
    const last = ranges[ranges.length - 1];
    if (last && start <= last[1]) last[1] = Math.max(last[1], start + size);
    else ranges.push([start, start + size]);
  }
  return ranges;
}
