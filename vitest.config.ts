import { defineConfig } from 'vitest/config';

// Integration tests each start their own PostgreSQL cluster, so files run in
// separate processes ('forks') and at most two at a time to bound the number
// of concurrent servers. Timeouts are generous because initdb + start happen in hooks.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // One PostgreSQL cluster + dev gateway shared by the integration tests (see test/support/global-setup.ts).
    globalSetup: ['test/support/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: true,
    maxWorkers: 2,
  },
});
