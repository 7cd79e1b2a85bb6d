#!/usr/bin/env node
// Everything `npm test` needs before vitest starts, on a fresh clone:
// generated types (tsconfig extends .nuxt/tsconfig.json), the built module
// (`nuxt-live-sync/migration` resolves to dist/), and the fixture app built
// once as a production server that the end-to-end tests start.
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../..', import.meta.url))

function run(label, command, args) {
  const started = Date.now()
  const result = spawnSync(command, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', env: { ...process.env, NUXT_TELEMETRY_DISABLED: '1' } })
  if (result.status !== 0) {
    process.stderr.write(`${result.stdout}\n${result.stderr}\n[prepare] ${label} failed (exit ${result.status})\n`)
    process.exit(result.status ?? 1)
  }
  console.log(`[prepare] ${label} (${((Date.now() - started) / 1000).toFixed(1)} s)`)
}

run('module types', 'npx', ['nuxt-module-build', 'prepare'])
run('module build', 'npx', ['nuxt-module-build', 'build'])
run('fixture types', 'npx', ['nuxi', 'prepare', 'test/fixtures/app'])
run('fixture build', 'npx', ['nuxi', 'build', 'test/fixtures/app'])
