/**
 * Several instances (issue 10): three built servers of the fixture app in
 * cluster mode, behind a TCP round-robin proxy, on a real Redis and a real
 * PostgreSQL. Browser tabs are spread over the instances through the proxy;
 * protocol clients sit on single instances. Writes keep coming while:
 * - the leader is killed with SIGKILL: another takes over (the failover
 *   time is printed), every tab's rows equal the database's for its key,
 *   and there is exactly one replication slot;
 * - a follower is killed: its tabs resume on the others;
 * - the leader gets SIGTERM: it hands over without a gap (no resync);
 * - Redis restarts empty: each instance says so once, subscribers resync
 *   and end up equal to the database again.
 */
import type { Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { launchBrowser, newTestPage, waitForLive, waitForPageRows, type TestPage } from '../support/browser'
import { Instance, leaderOf, RowsClient, startProxy } from '../support/cluster'
import { startRedis, type RunningRedis } from '../support/redis'
import { createFixtureDatabase } from '../support/schema'
import { waitFor } from '../support/wait'
import { Writer } from '../support/writer'

const ORGS = [1, 2, 3]
// Slot names are global to the PostgreSQL cluster: unique to this file.
const SLOT = 'e2e_cluster_slot'

const db = await createFixtureDatabase('e2e_cluster', {
  tasks: Array.from({ length: 24 }, (_, i) => ({ organizationId: ORGS[i % 3]!, title: `seed ${i + 1}` })),
})
let redis: RunningRedis
let proxy: Awaited<ReturnType<typeof startProxy>>
let browser: Browser
const instances: Instance[] = []
const pages: Array<TestPage & { org: number }> = []
const clients: RowsClient[] = []

beforeAll(async () => {
  redis = await startRedis()
  for (const name of ['a', 'b', 'c']) instances.push(await Instance.create(name, { databaseUrl: db.url, redisUrl: redis.url, slotName: SLOT }))
  await Promise.all(instances.map(instance => instance.start()))
  proxy = await startProxy(() => instances.filter(instance => instance.running).map(instance => instance.port))
  browser = await launchBrowser()
}, 120_000)

afterAll(async () => {
  for (const client of clients) client.close()
  await browser?.close()
  await proxy?.close()
  await Promise.all(instances.map(instance => instance.kill('SIGTERM')))
  await redis?.close()
  await db.drop()
})

const rowsOfOrg = async (org: number) => (await db.tasksOf(org)).map(task => ({ id: task.id, title: task.title, done: String(task.done) }))
const rowsOfKey = async (org: number) => (await db.tasksOf(org)).map(task => ({ id: task.id, title: task.title, done: task.done }))

/** Opens a tab of `org` through the proxy (alternately the page with its own data and refresh, and the one whose rows live sync reads). */
async function openTab(org: number): Promise<void> {
  const page = await newTestPage(browser)
  const path = pages.length % 2 === 0 ? `/org/${org}` : `/live/${org}`
  const response = await page.page.goto(`http://127.0.0.1:${proxy.port}${path}`)
  expect(response?.status()).toBe(200)
  await waitForLive(page.page, 20_000)
  pages.push({ ...page, org })
}

async function socketsPerInstance(): Promise<number[]> {
  return Promise.all(instances.map(async instance => instance.running ? (await instance.state()).stats.sockets : 0))
}

async function expectTabsToMatchDb(label: string): Promise<void> {
  for (const { page, org, errors } of pages) {
    await waitForPageRows(page, () => rowsOfOrg(org), { timeout: 30_000, label: `${label}, ${page.url()}` })
    await waitForLive(page, 20_000)
    expect(errors, page.url()).toEqual([])
  }
  for (const client of clients) {
    for (const org of ORGS) await waitFor(async () => JSON.stringify(client.rowsOf(org)) === JSON.stringify(await rowsOfKey(org)), { timeout: 30_000, message: `${label}: a protocol client's rows of ${org} differ from the database` })
  }
}

async function slots(): Promise<Array<{ slot_name: string, temporary: boolean }>> {
  return db.sql(`SELECT slot_name, temporary FROM pg_replication_slots WHERE database = current_database()`)
}

// Heavy (three servers, a browser): the load project runs it alone; generous bounds for a busy machine.
describe('three instances behind a round-robin proxy, one Redis, one slot', { timeout: 120_000 }, () => {
  it('one leader holds the only slot; tabs spread over the instances go live', async () => {
    const leader = await leaderOf(instances)
    const states = await Promise.all(instances.map(instance => instance.state()))
    expect(states.map(state => state.role).sort()).toEqual(['follower', 'follower', 'leader'])
    // One shared history: the same epoch everywhere.
    expect(new Set(states.map(state => state.epoch)).size).toBe(1)
    expect(await slots()).toEqual([{ slot_name: SLOT, temporary: false }])
    // Tabs until every instance serves at least one (the proxy deals connections round-robin).
    for (let i = 0; pages.length < 6 || (pages.length < 15 && (await socketsPerInstance()).includes(0)); i++) await openTab(ORGS[i % 3]!)
    expect((await socketsPerInstance()).every(count => count > 0), `sockets per instance: ${await socketsPerInstance()}`).toBe(true)
    expect(leader.printed(/this instance leads/)).not.toEqual([])
  })

  it('the leader killed with SIGKILL under writes: another takes over, every tab equals the database, one slot', async () => {
    const leader = await leaderOf(instances)
    const writer = new Writer({ url: db.url, organizations: ORGS, label: 'kill', periodMs: 15 })
    try {
      await writer.commitsMore(20)
      const killed = performance.now()
      await leader.kill('SIGKILL')
      const next = await leaderOf(instances.filter(instance => instance.running))
      const failover = performance.now() - killed
      console.log(`[cluster] SIGKILL of the leader (${leader.name}): instance ${next.name} streams the slot ${failover.toFixed(0)} ms later`)
      expect(failover).toBeLessThan(5000)
      await writer.commitsMore(30)
    }
    finally {
      await writer.stop()
    }
    await expectTabsToMatchDb('after the leader was killed')
    expect(await slots()).toEqual([{ slot_name: SLOT, temporary: false }])
    // It comes back as a follower.
    await leader.start()
    expect((await leader.state()).role).toBe('follower')
  })

  it('a follower killed under writes: its tabs resume on the others', async () => {
    const leader = await leaderOf(instances)
    const counts = await socketsPerInstance()
    const follower = instances.filter(instance => instance !== leader).sort((a, b) => counts[instances.indexOf(b)]! - counts[instances.indexOf(a)]!)[0]!
    const writer = new Writer({ url: db.url, organizations: ORGS, label: 'follower', periodMs: 15 })
    try {
      await writer.commitsMore(10)
      await follower.kill('SIGKILL')
      await writer.commitsMore(20)
    }
    finally {
      await writer.stop()
    }
    await expectTabsToMatchDb('after a follower was killed')
    expect((await leader.state()).role).toBe('leader')
    await follower.start()
  })

  it('the leader stopped with SIGTERM hands over without a gap: no resync anywhere', async () => {
    const leader = await leaderOf(instances)
    // Protocol clients on the two followers, which stay up: they must see every change and no resync.
    for (const instance of instances.filter(other => other !== leader)) clients.push(await RowsClient.connect(instance.url, ORGS))
    const writer = new Writer({ url: db.url, organizations: ORGS, label: 'term', periodMs: 15 })
    const from = leader.output.length
    try {
      await writer.commitsMore(20)
      const stopping = performance.now()
      await leader.kill('SIGTERM')
      const next = await leaderOf(instances.filter(instance => instance.running))
      console.log(`[cluster] SIGTERM of the leader (${leader.name}): instance ${next.name} streams the slot ${(performance.now() - stopping).toFixed(0)} ms after the signal`)
      await writer.commitsMore(30)
    }
    finally {
      await writer.stop()
    }
    await expectTabsToMatchDb('after the leader handed over')
    for (const client of clients) expect(client.received('resync')).toEqual([])
    // What it said while handing over: that it was leading, nothing failing.
    expect(leader.output.slice(from).filter(line => /error|fail|unreachable/i.test(line))).toEqual([])
    await leader.start()
  })

  it('Redis restarted empty under writes: each instance says so once, subscribers resync and equal the database again', async () => {
    await leaderOf(instances)
    const writer = new Writer({ url: db.url, organizations: ORGS, label: 'redis', periodMs: 15 })
    try {
      await writer.commitsMore(10)
      await redis.stop()
      await waitFor(async () => (await Promise.all(instances.map(instance => instance.state()))).every(state => state.status === 'reconnecting'), { timeout: 15_000, message: 'the instances did not notice Redis was gone' })
      // Pages are still served meanwhile.
      const page = await fetch(`http://127.0.0.1:${proxy.port}/org/1`)
      expect(page.status).toBe(200)
      await writer.commitsMore(10)
      await redis.start()
      for (const client of clients) await waitFor(() => client.received('resync').some(frame => frame.reason === 'gap'), { timeout: 20_000, message: 'a protocol client got no resync after Redis came back' })
      await leaderOf(instances)
      await writer.commitsMore(20)
    }
    finally {
      await writer.stop()
    }
    await expectTabsToMatchDb('after Redis restarted')
    for (const instance of instances) {
      expect(instance.printed(/\[live-sync\].*Redis at .* is unreachable/), `instance ${instance.name}`).toHaveLength(1)
      expect(instance.printed(/\[live-sync\].*Redis at .* is reachable again/), `instance ${instance.name}`).toHaveLength(1)
    }
    expect(await slots()).toEqual([{ slot_name: SLOT, temporary: false }])
  })
})
