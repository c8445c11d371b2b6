import { defineConfig } from 'vitest/config';

/** .ci/run's guard: the same global setup as the suite, one test that always fails. */
export default defineConfig({
  test: {
    globalSetup: ['test/support/global-setup.ts'],
    include: ['test/support/exit-code-sentinel.check.ts'],
    env: { POWERTOOLS_LOG_LEVEL: 'SILENT' },
  },
});
