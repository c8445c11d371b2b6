import { describe, expect, it } from 'vitest';
import { JOBS } from '../../functions/registry';
import { ConfigError } from '../../shared/errors';
import { parseJobEvent } from '../../shared/run-job';

describe('parseJobEvent: how every event becomes a run', () => {
  it('keeps the targets as received, so the effective policy tells a deployed value from a default', () => {
    const event = parseJobEvent(JOBS.partition, { targets: [{ table: 'app.events', interval: 'day' }], dryRun: true });
    expect(event.targets).toEqual([{ table: 'app.events', interval: 'day' }]);
    expect(event.options.targets[0]).toMatchObject({ table: 'app.events', premake: 4, timeZone: 'UTC' });
    expect(event.options).toMatchObject({ dryRun: true, lockTimeoutMs: 3_000, maintainLedger: true });
  });

  it('refuses a bad event with the field named after where it came from', () => {
    expect(() =>
      parseJobEvent(JOBS.archive, { targets: [{ source: 'app.orders', mode: 'purge', ageColumn: 'at', retention: 'soon' }] }, 'config'),
    ).toThrowError(ConfigError);
    expect(() =>
      parseJobEvent(JOBS.archive, { targets: [{ source: 'app.orders', mode: 'purge', ageColumn: 'at', retention: 'soon' }] }, 'config'),
    ).toThrowError(/^config\.targets\[0\]\.retention: "soon" is not a duration/);
  });

  it('refuses two targets that are one target (the same table however spelled, the same source, the same rollup name)', () => {
    expect(() =>
      parseJobEvent(
        JOBS.partition,
        {
          targets: [
            { table: 'events', interval: 'day' },
            { table: 'public.events', interval: 'month' },
          ],
        },
        'config',
      ),
    ).toThrowError(/^config\.targets\[1\]: names the same target as targets\[0\] \(public\.events\)/);
    const purge = { source: 'app.orders', mode: 'purge', ageColumn: 'at', retention: '30 days' } as const;
    expect(() => parseJobEvent(JOBS.archive, { targets: [purge, { ...purge, retention: '7 days' }] })).toThrowError(
      /^event\.targets\[1\]: names the same target as targets\[0\] \(app\.orders\)/,
    );
    // Different tables, and rollups writing different tables, are fine.
    expect(() =>
      parseJobEvent(JOBS.partition, {
        targets: [
          { table: 'events', interval: 'day' },
          { table: 'app.events', interval: 'day' },
        ],
      }),
    ).not.toThrow();
  });

  it('partition concurrency: 4 sessions by default, a whole number from 1 to 16', () => {
    const event = (concurrency?: unknown) =>
      parseJobEvent(JOBS.partition, { targets: [{ table: 'app.events', interval: 'day' }], ...(concurrency === undefined ? {} : { concurrency }) });
    expect(event().options).toMatchObject({ concurrency: 4 });
    expect(event(1).options).toMatchObject({ concurrency: 1 });
    expect(event(16).options).toMatchObject({ concurrency: 16 });
    for (const bad of [0, 17, 2.5, -1]) {
      expect(() => event(bad)).toThrowError(
        new RegExp(`^event\\.concurrency: concurrency is how many sessions work targets at once: a whole number from 1 to 16 \\(got ${bad}\\)`),
      );
    }
    expect(() => event('4')).toThrowError(/^event\.concurrency: Invalid input: expected number, received string/);
  });
});
