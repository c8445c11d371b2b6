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
});
