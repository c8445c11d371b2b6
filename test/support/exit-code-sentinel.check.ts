import { expect, it } from 'vitest';

// Run only by .ci/run, under the real global setup: it must make vitest exit non-zero.
it('fails on purpose, so .ci/run can prove a failing test fails the run', () => {
  expect('a failing test').toBe('reported as a failure');
});
