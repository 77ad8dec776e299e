import { defineConfig } from 'vitest/config';

// Two projects: unit tests are pure and start nothing; integration tests share one PostgreSQL 15 cluster and one
// real dev gateway process per run (test/support/global-setup.ts), and may start clusters of their own. Files run
// in separate processes ('forks'), at most two at a time on this 2-core machine.
export default defineConfig({
  test: {
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: true,
    maxWorkers: 2,
    projects: [
      { extends: true, test: { name: 'unit', include: ['test/unit/**/*.test.ts'] } },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          globalSetup: ['test/support/global-setup.ts'],
        },
      },
    ],
  },
});
