import { describe, expect, it } from 'vitest';
import { JOB_NAMES, JOBS } from '../../functions/registry';
import { rollupTargetSchema } from '../../functions/rollup/policy';
import { ConfigError } from '../../shared/errors';
import { applyOverrides, IDENTITY_KEYS, unmatchedSettings } from '../../shared/settings';

const rollup = {
  name: 'usage_hourly',
  source: 'app.usage',
  timeColumn: 'occurred_at',
  target: 'app.usage_hourly',
  spec: { measures: [{ name: 'n', fn: 'count' }] },
};

describe('applyOverrides', () => {
  it.each([...IDENTITY_KEYS, 'target.x'])('refuses an override of %s, naming the settings row', (key) => {
    const override = { job: 'rollup', target: '*', key, value: 'app.other' };
    expect(() => applyOverrides(rollupTargetSchema, rollup, [override], 'targets[0]')).toThrowError(ConfigError);
    expect(() => applyOverrides(rollupTargetSchema, rollup, [override], 'targets[0]')).toThrowError(
      `housekeeping.settings (job 'rollup', target '*', key '${key}'): '${key.split('.')[0]}' identifies the target`,
    );
  });

  it('applies the others, exact-target rows over * rows, and says where each value came from', () => {
    const effective = applyOverrides(
      rollupTargetSchema,
      rollup,
      [
        { job: 'rollup', target: '*', key: 'lookbackBuckets', value: 1 },
        { job: 'rollup', target: 'usage_hourly', key: 'lookbackBuckets', value: 6 },
      ],
      'targets[0]',
    );
    expect(effective.policy).toMatchObject({ name: 'usage_hourly', lookbackBuckets: 6, sliceBuckets: 24 });
    expect(effective.sources).toMatchObject({ lookbackBuckets: 'settings', name: 'deployed', sliceBuckets: 'default' });
  });
});

describe('unmatchedSettings', () => {
  const targets = [
    { name: 'usage_hourly', input: rollup },
    { name: 'daily', input: { ...rollup, name: 'daily', target: 'app.usage_daily' } },
  ];
  const row = (job: string, target: string, key = 'pauseMs') => ({ job, target, key });

  it('reports rows keyed to no target, with the target they were most likely meant for', () => {
    expect(
      unmatchedSettings(
        [
          row('rollup', 'public.usage_hourly'),
          row('rollup', 'app.usage_daily'),
          row('rollup', 'nothing_like_it'),
          row('rollup', 'usage_hourly'),
          row('rollup', '*'),
        ],
        JOBS.rollup,
        targets,
        JOB_NAMES,
      ),
    ).toEqual([
      "housekeeping.settings row (job 'rollup', target 'public.usage_hourly', key 'pauseMs') matches no target of this run and is ignored: rollup settings are keyed by the rollup's name (or '*'); did you mean target 'usage_hourly'?",
      "housekeeping.settings row (job 'rollup', target 'app.usage_daily', key 'pauseMs') matches no target of this run and is ignored: rollup settings are keyed by the rollup's name (or '*'); did you mean target 'daily'?",
      "housekeeping.settings row (job 'rollup', target 'nothing_like_it', key 'pauseMs') matches no target of this run and is ignored: rollup settings are keyed by the rollup's name (or '*')",
    ]);
  });

  it('an archive row keyed by the destination points to the source; rows of other jobs are not this job’s business; unknown jobs are', () => {
    const archive = [{ name: 'public.orders', input: { source: 'orders', destination: 'archive.orders_old' } }];
    expect(
      unmatchedSettings(
        [row('archive', 'archive.orders_old'), row('partition', 'x'), row('archiv', 'public.orders')],
        JOBS.archive,
        archive,
        JOB_NAMES,
      ),
    ).toEqual([
      "housekeeping.settings row (job 'archive', target 'archive.orders_old', key 'pauseMs') matches no target of this run and is ignored: archive settings are keyed by the source table as schema.table (or '*'); did you mean target 'public.orders'?",
      "housekeeping.settings row (job 'archiv', target 'public.orders', key 'pauseMs') is ignored: 'archiv' is not a job (partition, archive, rollup)",
    ]);
  });
});
