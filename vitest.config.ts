import { BaseSequencer, type TestSpecification } from 'vitest/node'
import { defineConfig } from 'vitest/config'

// Tests that load the whole machine (a write flood against hundreds of
// sockets, 100 000 hostile frames, three app servers and a browser, the quick
// benchmark, an npm install + Nuxt build) run after
// the others and one at a time: their bounds ("a fresh page goes live within
// 2 s") are about the server under that load, not about a neighbour test's.
const LOAD_TESTS = [
  'test/e2e/slow-consumers.test.ts',
  'test/e2e/hostile-frames.test.ts',
  'test/e2e/cluster.test.ts',
  'test/e2e/bench-quick.test.ts',
  'test/e2e/packed-app.test.ts',
]

/** Runs the load tests in LOAD_TESTS order: the flood first, the npm install and build (disk writeback long after) last. */
class LoadOrder extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const rank = (file: TestSpecification) => LOAD_TESTS.findIndex(test => file.moduleId.endsWith(test))
    const sorted = await super.sort(files)
    return sorted.sort((a, b) => rank(a) - rank(b))
  }
}

// One PostgreSQL (wal_level=logical) per test run, started by the global
// setup; each test file makes its own database in it.
export default defineConfig({
  test: {
    exclude: ['**/node_modules/**', 'test/fixtures/**'],
    globalSetup: ['test/support/global-setup.ts'],
    pool: 'forks',
    sequence: { sequencer: LoadOrder },
    testTimeout: 30_000,
    hookTimeout: 120_000,
    projects: [
      {
        extends: true,
        test: { name: 'suite', include: ['test/**/*.test.ts'], exclude: ['**/node_modules/**', 'test/fixtures/**', ...LOAD_TESTS], sequence: { groupOrder: 0 } },
      },
      {
        extends: true,
        test: { name: 'load', include: LOAD_TESTS, fileParallelism: false, sequence: { groupOrder: 1 } },
      },
      // Type tests (expectTypeOf, nothing runs) in the fixture app's own contexts, with the
      // declarations Nuxt generated for it (`nuxi prepare test/fixtures/app`, done by npm test).
      {
        test: {
          name: 'types-app',
          include: [],
          typecheck: { enabled: true, only: true, include: ['test/fixtures/app/test/nuxt/**/*.test-d.ts'], tsconfig: 'test/fixtures/app/.nuxt/tsconfig.app.json' },
        },
      },
      {
        test: {
          name: 'types-server',
          include: [],
          typecheck: { enabled: true, only: true, include: ['test/fixtures/app/server/types/**/*.test-d.ts'], tsconfig: 'test/fixtures/app/.nuxt/tsconfig.server.json' },
        },
      },
    ],
  },
})
