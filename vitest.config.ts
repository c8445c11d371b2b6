import { defineConfig } from 'vitest/config';

/**
 * Pure tests (test/unit) run three times, under three process time zones: the Lambda runs in UTC,
 * the CLI wherever its user is, and nothing we compute may depend on which. Files named
 * `*.zoned.test.ts` are integration tests that run against Postgres under a non-UTC process zone.
 * Everything else runs once, in UTC.
 */
const PROCESS_ZONES = { utc: 'UTC', seoul: 'Asia/Seoul', saopaulo: 'America/Sao_Paulo' } as const;
const quiet = { POWERTOOLS_LOG_LEVEL: 'SILENT', POWERTOOLS_METRICS_DISABLED: 'true' };
const withPostgres = {
  globalSetup: ['test/support/global-setup.ts'],
  setupFiles: ['test/support/no-queued-queries.ts'],
  testTimeout: 60_000,
  hookTimeout: 60_000,
};

export default defineConfig({
  test: {
    // Two cores: two files at a time, each with its own database on the shared server.
    maxWorkers: 2,
    projects: [
      ...Object.entries(PROCESS_ZONES).map(([name, zone]) => ({
        test: { name: `unit-${name}`, include: ['test/unit/**/*.test.ts'], env: { ...quiet, TZ: zone } },
      })),
      {
        test: {
          name: 'integration',
          include: ['test/**/*.test.ts'],
          exclude: ['test/unit/**', 'test/**/*.zoned.test.ts'],
          env: { ...quiet, TZ: 'UTC' },
          ...withPostgres,
        },
      },
      {
        test: { name: 'zoned', include: ['test/**/*.zoned.test.ts'], env: { ...quiet, TZ: 'America/Sao_Paulo' }, ...withPostgres },
      },
    ],
  },
});
