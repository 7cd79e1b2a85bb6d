/**
 * Cluster mode at the engine level: two engines (two "instances" in this
 * process) on one database and a real Redis. One leads and streams the one
 * permanent slot; both get every change through Redis (the leader too);
 * a subscriber resumes on the other engine from the shared history; a
 * leader that stops hands over under writes with nothing lost or repeated;
 * a restarted Redis makes subscribers resync, then changes flow again.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import pg from 'pg'
import { DataTypes, Model, Sequelize } from 'sequelize'
import { captureLogger, Collector } from '../support/engine-harness'
import { createDatabase, dropDatabase } from '../support/postgres.mjs'
import { startRedis, type RunningRedis } from '../support/redis'
import { waitFor } from '../support/wait'
import { up } from '../../src/migration'
import { createRedisCluster } from '../../src/runtime/server/cluster/redis-cluster'
import { createLiveSyncEngine, type LiveSyncEngine } from '../../src/runtime/server/engine/live-sync-engine'
import type { ClusterSubscription } from '../../src/runtime/server/engine/engine-cluster'

const NAME = 'engine_cluster'
// Slot names are global to the PostgreSQL cluster: unique to this file.
const SLOT = 'engine_cluster_test'

let redis: RunningRedis
let url: string
let sequelize: Sequelize
let writer: pg.Client
const engines: LiveSyncEngine[] = []
const subscriptions: ClusterSubscription[] = []
const logs = captureLogger()

function startEngine(logger = logs.logger): LiveSyncEngine {
  const cluster = createRedisCluster({ url: redis.url, slotName: SLOT, connection: { connectionString: url }, logger })
  // A leader holds at most 64 KiB of one transaction's changes (4 MiB by default): more is not sent through Redis.
  const engine = createLiveSyncEngine({ sequelize, logger, cluster, retry: { minDelayMs: 50, maxDelayMs: 500 }, streaming: { maxHeldChars: 64 * 1024 } })
  engines.push(engine)
  void engine.start()
  return engine
}

/** Subscribes a collector to `key` on `engine` (history after `since` first). */
async function join(engine: LiveSyncEngine, key: number, since?: string | null): Promise<{ collector: Collector, subscription: ClusterSubscription }> {
  const collector = new Collector()
  const subscription = await engine.join(key, collector.receive, since, deliver => deliver())
  subscription.live()
  subscriptions.push(subscription)
  return { collector, subscription }
}

async function leaderOf(list: LiveSyncEngine[], timeout = 15_000): Promise<LiveSyncEngine> {
  return waitFor(() => {
    const leaders = list.filter(engine => engine.role === 'leader' && engine.replicationStatus === 'streaming')
    return leaders.length === 1 && list.every(engine => engine.status === 'streaming') ? leaders[0] : null
  }, { timeout, interval: 20, message: `no single streaming leader among ${list.length} engines: ${JSON.stringify(list.map(e => [e.role, e.replicationStatus, e.status]))}; logs ${JSON.stringify(logs.error)}` })
}

async function slots(): Promise<Array<{ slot_name: string, temporary: boolean }>> {
  return (await writer.query(`SELECT slot_name, temporary FROM pg_replication_slots WHERE database = current_database()`)).rows
}

const insert = (owner: number, name: string) => writer.query('INSERT INTO items (owner, name) VALUES ($1, $2)', [owner, name])
const names = (collector: Collector) => collector.changes.map(change => (change.row as { name: string }).name)

beforeAll(async () => {
  redis = await startRedis()
  url = await createDatabase(inject('pgAdminUrl'), NAME)
  sequelize = new Sequelize(url, { logging: false })
  await sequelize.query('CREATE TABLE items (id serial PRIMARY KEY, owner integer, name text)')
  class Item extends Model {}
  Item.init({ id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true }, owner: DataTypes.INTEGER, name: DataTypes.TEXT }, { sequelize, tableName: 'items', timestamps: false, liveSync: { subscriptionKey: 'owner' } })
  await up(sequelize.getQueryInterface())
  writer = new pg.Client(url)
  await writer.connect()
  startEngine()
  startEngine()
})

afterAll(async () => {
  for (const subscription of subscriptions) subscription.unsubscribe()
  await Promise.all(engines.map(engine => engine.stop()))
  await writer?.end()
  await sequelize?.close()
  await redis?.close()
  await dropDatabase(inject('pgAdminUrl'), NAME)
})

describe('cluster mode (two engines, one database, one Redis)', () => {
  it('one engine leads and streams the one permanent slot; both get each change through Redis', async () => {
    const leader = await leaderOf(engines)
    expect(engines.filter(engine => engine.role === 'follower')).toHaveLength(1)
    expect(await slots()).toEqual([{ slot_name: SLOT, temporary: false }])
    // Both epochs are the shared history's.
    expect(engines[0]!.epoch).not.toBe('')
    expect(engines[0]!.epoch).toBe(engines[1]!.epoch)

    const [a, b] = await Promise.all(engines.map(engine => join(engine, 1)))
    for (const n of [1, 2, 3]) await insert(1, `one ${n}`)
    await a!.collector.changeCount(3)
    await b!.collector.changeCount(3)
    expect(names(a!.collector)).toEqual(['one 1', 'one 2', 'one 3'])
    // The same frames, serialized once by the leader; the leader's own subscriber got them from Redis too.
    expect(a!.collector.batches.map(batch => batch.frame())).toEqual(b!.collector.batches.map(batch => batch.frame()))
    expect(await redis.client().xlen(`live-sync:{${NAME}/${SLOT}}:k:1`)).toBe(3)
    void leader
  })

  it('a transaction larger than a leader holds is not sent through Redis: its keys reload, other keys hear nothing of it, what follows flows', async () => {
    await leaderOf(engines)
    const [first, second] = engines
    const { collector: big } = await join(second!, 7)
    const { collector: bigHere } = await join(first!, 7)
    const { collector: other } = await join(second!, 8)
    await insert(8, 'eight before')
    await other.changeCount(1)
    const before = other.batches[0]!.cursor
    // About 2 000 × 80 characters of changes: over the 64 KiB these engines hold.
    await writer.query(`INSERT INTO items (owner, name) SELECT 7, 'big ' || n FROM generate_series(1, 2000) n`)
    await waitFor(() => big.resyncs.length > 0 && bigHere.resyncs.length > 0)
    expect(big.resyncs.map(notice => notice.reason)).toEqual(['gap'])
    expect(big.changes).toHaveLength(0)
    // Not one of its frames went to Redis.
    expect(await redis.client().exists(`live-sync:{${NAME}/${SLOT}}:k:7`)).toBe(0)
    await insert(8, 'eight after')
    await insert(7, 'seven after')
    await other.changeCount(2)
    await big.changeCount(1)
    expect(names(big)).toEqual(['seven after'])
    expect(other.resyncs).toHaveLength(0)
    // A subscriber whose cursor is before it cannot have it replayed: it reloads too.
    const { subscription } = await join(first!, 7, before)
    expect(subscription.tooOld).toBe(true)
    expect(logs.info.join('\n')).toMatch(/holds more than 65536 characters of changes: in cluster mode it is not sent through Redis/)
  })

  it('a subscriber resumes on the other engine from its cursor, with what it missed (the shared history)', async () => {
    const [first, second] = engines
    const { collector: seen } = await join(first!, 4)
    for (const n of [1, 2, 3, 4]) await insert(4, `four ${n}`)
    await seen.changeCount(4)
    const cursor = seen.batches[1]!.cursor
    const { collector: resumed, subscription } = await join(second!, 4, cursor)
    expect(subscription.tooOld).toBe(false)
    expect(subscription.replayed).toBe(2)
    expect(names(resumed)).toEqual(['four 3', 'four 4'])
    expect(resumed.batches.map(batch => batch.frame())).toEqual(seen.batches.slice(2).map(batch => batch.frame()))
    // Older than the history reaches: resync.
    const { subscription: tooOld } = await join(second!, 4, '0/1')
    expect(tooOld.tooOld).toBe(true)
  })

  it('a leader that stops hands over under writes: nothing lost, nothing twice, no resync', async () => {
    const leader = await leaderOf(engines)
    const follower = engines.find(engine => engine !== leader)!
    const { collector } = await join(follower, 2)
    const TOTAL = 300
    let written = 0
    const writing = (async () => {
      for (; written < TOTAL; written++) {
        await insert(2, `two ${written + 1}`)
        await new Promise(resolve => setTimeout(resolve, 3))
      }
    })()
    await waitFor(() => written >= 60)
    const stopped = Date.now()
    await leader.stop()
    await leaderOf([follower])
    console.log(`[cluster] the follower streams ${Date.now() - stopped} ms after the leader began to stop`)
    await writing
    await collector.changeCount(TOTAL, 20_000)
    expect(names(collector)).toEqual(Array.from({ length: TOTAL }, (_, i) => `two ${i + 1}`))
    expect(collector.resyncs).toEqual([])
    expect(await slots()).toEqual([{ slot_name: SLOT, temporary: false }])
    // The stopped engine comes back as a follower.
    engines.splice(engines.indexOf(leader), 1)
    const again = startEngine()
    await waitFor(() => again.status === 'streaming' && again.role === 'follower', { timeout: 15_000 })
  })

  it('a restarted (empty) Redis: subscribers resync, then changes flow again on every engine; one started meanwhile says so once and joins', async () => {
    await leaderOf(engines)
    const joined = await Promise.all(engines.map(engine => join(engine, 3)))
    await insert(3, 'three before')
    for (const { collector } of joined) await collector.changeCount(1)
    await redis.stop()
    await waitFor(() => engines.every(engine => engine.status === 'reconnecting'), { timeout: 10_000 })
    await insert(3, 'three while Redis is down')
    const late = captureLogger()
    const started = startEngine(late.logger)
    await waitFor(() => late.error.length > 0, { timeout: 10_000 })
    expect(late.error).toEqual([expect.stringMatching(/^\[live-sync\] Redis at redis:\/\/127\.0\.0\.1:\d+\/? is unreachable \(.+\): live updates pause on this instance/)])
    expect(started.status).not.toBe('streaming')
    await redis.start()
    for (const { collector } of joined) {
      await waitFor(() => collector.resyncs.some(resync => resync.reason === 'gap'), { timeout: 15_000, message: 'no resync after Redis came back' })
    }
    await leaderOf(engines)
    const { collector: lateCollector } = await join(started, 3)
    await insert(3, 'three after')
    for (const { collector } of [...joined, { collector: lateCollector }]) {
      await waitFor(() => names(collector).includes('three after'), { timeout: 15_000 })
    }
    // Said once, however many reconnects failed; and that it is back.
    expect(late.error).toHaveLength(1)
    expect(late.info.filter(line => line.includes('reachable again'))).toHaveLength(1)
    expect(logs.error.filter(line => line.includes('Redis at'))).not.toEqual([])
    expect(logs.info.filter(line => line.includes('reachable again'))).not.toEqual([])
  })
})
