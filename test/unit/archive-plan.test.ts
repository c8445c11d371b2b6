import { describe, expect, it } from 'vitest';
import { nextBatch, planCutoffs } from '../../functions/archive/plan';

/** The database clock is an argument: the plan is the same in every process zone. */
const dbNow = new Date('2027-03-31T10:00:00Z');

describe('archive plan: cutoffs in each age column type', () => {
  it('gives the instant to a timestamptz column and the wall clock to timestamp and date columns', () => {
    const policy = { retention: '13 months', timeZone: 'Europe/Berlin' };
    expect(planCutoffs(dbNow, policy, { primary: 'timestamptz', fallback: 'timestamp' })).toEqual({
      primary: '2026-02-28 12:00:00.000+01:00',
      fallback: '2026-02-28 12:00:00.000',
    });
    expect(planCutoffs(dbNow, policy, { primary: 'date' })).toEqual({ primary: '2026-02-28' });
  });
});

describe('archive plan: the next batch', () => {
  const policy = { batchSize: 5_000, pauseMs: 0 };
  const plenty = { allows: () => true };

  it('picks a whole batch while the budget allows, up to the row cap', () => {
    expect(nextBatch({ moved: 0, longestBatchMs: 0 }, policy, plenty)).toEqual({ limit: 5_000 });
    expect(nextBatch({ moved: 8_000, longestBatchMs: 0 }, { ...policy, maxRowsPerRun: 10_000 }, plenty)).toEqual({ limit: 2_000 });
    expect(nextBatch({ moved: 10_000, longestBatchMs: 0 }, { ...policy, maxRowsPerRun: 10_000 }, plenty)).toEqual({ stop: 'max rows reached' });
  });

  it('stops before a batch as slow as the slowest so far (twice over, at least a second) and its pause might not fit', () => {
    const asked: number[] = [];
    const budget = (leftMs: number) => ({
      allows: (ms: number) => {
        asked.push(ms);
        return leftMs > ms;
      },
    });
    expect(nextBatch({ moved: 100, longestBatchMs: 300 }, { ...policy, pauseMs: 50 }, budget(1_100))).toEqual({ limit: 5_000 });
    expect(nextBatch({ moved: 100, longestBatchMs: 800 }, { ...policy, pauseMs: 50 }, budget(1_600))).toEqual({ stop: 'time budget nearly spent' });
    expect(asked).toEqual([1_050, 1_650]);
  });

  it('checks the row cap before the budget', () => {
    expect(nextBatch({ moved: 10, longestBatchMs: 0 }, { ...policy, maxRowsPerRun: 10 }, { allows: () => false })).toEqual({
      stop: 'max rows reached',
    });
  });
});
