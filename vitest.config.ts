import { defineConfig } from 'vitest/config'

// One PostgreSQL (wal_level=logical) per test run, started by the global
// setup; each test file makes its own database in it.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['**/node_modules/**', 'test/fixtures/**'],
    globalSetup: ['test/support/global-setup.ts'],
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 120_000,
    benchmark: { include: ['test/bench/**/*.bench.ts'] },
  },
})
