/**
 * The benchmark cannot rot: `npm run bench -- --quick` runs every scenario
 * at small sizes against the built fixture server, on this run's PostgreSQL,
 * and prints its table and JSON. The figures are printed, not asserted
 * (speed belongs to the benchmark, not to a test on a shared machine); what
 * is asserted is that every scenario ran and delivered everything.
 */
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, expect, inject, it } from 'vitest'

const root = fileURLToPath(new URL('../..', import.meta.url))
const dir = await mkdtemp(join(tmpdir(), 'live-sync-bench-'))
afterAll(() => rm(dir, { recursive: true, force: true }))

it('runs the quick benchmark: a table and JSON with every scenario', async () => {
  const jsonFile = join(dir, 'bench.json')
  const output = await new Promise<string>((resolve, reject) => {
    const child = spawn(process.execPath, [join(root, 'test/bench/run.mjs'), '--quick', '--json', jsonFile], {
      cwd: root,
      env: { ...process.env, LIVE_SYNC_TEST_DATABASE_URL: inject('pgAdminUrl') },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let text = ''
    child.stdout.on('data', (chunk: Buffer) => (text += chunk))
    child.stderr.on('data', (chunk: Buffer) => (text += chunk))
    child.once('error', reject)
    child.once('exit', code => (code === 0 ? resolve(text) : reject(new Error(`[bench] exited with ${code}:\n${text}`))))
  })
  console.log(output)
  expect(output).toContain('| scenario | live sync | trigger + `pg_notify` + LISTEN, same run | target |')
  const report = JSON.parse(await readFile(jsonFile, 'utf8'))
  expect(report.quick).toBe(true)
  expect(Object.keys(report.scenarios).sort()).toEqual(['browser', 'cluster', 'fanout', 'idle', 'large', 'light', 'load', 'writer'])
  const { light, load, fanout, large, idle, writer, browser, cluster } = report.scenarios
  expect(light.liveSync.received).toBe(light.liveSync.sent)
  expect(light.triggerNotify.received).toBe(light.triggerNotify.sent)
  expect(load.lost).toBe(0)
  expect(fanout.lost).toBe(0)
  for (const result of Object.values(large) as Array<{ rows: number, received: number }>) expect(result.received).toBe(result.rows)
  // The walsender's position was read for every large transaction: when it got to the COMMIT.
  for (const size of [10_000, 50_000]) expect(Number.isFinite(large[size].walsenderReachedCommitMs)).toBe(true)
  expect(idle.failed).toBe(0)
  expect(writer.commitsPerSecond.none).toBeGreaterThan(0)
  // pg_recvlogical (the floor any consumer pays) runs where the machine has it, every round.
  if (writer.commitsPerSecond.all.floor) expect(writer.commitsPerSecond.all.floor.length).toBe(writer.rounds)
  expect(cluster.samples).toBeGreaterThan(0)
  expect(Number.isFinite(cluster.follower.p50) && Number.isFinite(cluster.single.p50)).toBe(true)
  // Both pages, the plain list and the one with content-visibility: updates, then the insert, all painted.
  for (const variant of [browser.plain, browser.contentVisibility]) {
    expect(variant.samples.map((s: { kind: string }) => s.kind)).toEqual(['update', 'insert'])
    expect(variant.samples.at(-1).listLength).toBe(browser.listRows + browser.txRows)
    expect(Number.isFinite(variant.updateRenderedMs.p50)).toBe(true)
  }
}, 600_000)
