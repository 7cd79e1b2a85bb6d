#!/usr/bin/env node
/**
 * Cluster mode benchmark (several instances on Redis). Prints figures,
 * asserts nothing. `npm run bench` runs its latency scenario last; alone (with
 * the fan-out choice):
 * `node test/bench/cluster.bench.mjs` (needs `node test/scripts/prepare.mjs`).
 *
 *   cluster latency  commit → WebSocket client, single-row transactions,
 *                    interleaved in one run: a single instance (its own
 *                    database) and three instances on Redis, clients on the
 *                    leader and on a follower (everything goes through Redis)
 *   fan-out          how instances get the changes: per-key pub/sub channels
 *                    (each instance only its sockets' keys; what live sync
 *                    does) vs one stream read by every instance (XREAD):
 *                    bytes Redis sends, CPU of Redis and of the readers
 */
import { performance } from 'node:perf_hooks'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { createJiti } from 'jiti'
import { createDatabase, dropDatabase, startPostgres } from '../support/postgres.mjs'

const root = fileURLToPath(new URL('../..', import.meta.url))
const jiti = createJiti(import.meta.url)
const require = createRequire(import.meta.url)
const pg = require('pg')

const SAMPLES = Number(process.env.BENCH_SAMPLES ?? 500)
const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
const fmt = n => n.toLocaleString('en-US', { maximumFractionDigits: 2 })
const summary = list => `median ${fmt(quantile(list, 0.5))} ms, p99 ${fmt(quantile(list, 0.99))} ms`

/** A WebSocket client subscribed to `key` on one instance; `next()` resolves at its next `tx` frame. */
async function subscriber(WebSocket, url, key) {
  const socket = new WebSocket(`${url.replace(/^http/, 'ws')}/_live_sync?v=1`)
  let waiter = null
  socket.on('message', (data) => {
    const type = JSON.parse(data.toString()).type
    if (type === 'subscribed' || type === 'tx') waiter?.(performance.now())
  })
  await new Promise(resolve => socket.once('open', resolve))
  const subscribed = new Promise(resolve => (waiter = resolve))
  socket.send(JSON.stringify({ type: 'sub', key }))
  await subscribed
  return {
    next: () => new Promise(resolve => (waiter = resolve)),
    close: () => socket.close(),
  }
}

async function latency(adminUrl, redis, count = SAMPLES) {
  const { Instance, leaderOf } = await jiti.import(`${root}test/support/cluster.ts`)
  const { FIXTURE_SCHEMA } = await jiti.import(`${root}test/support/fixture-schema.ts`)
  const { up } = await jiti.import(`${root}src/migration.ts`)
  const { Sequelize } = require('sequelize')
  const { default: WebSocket } = await import('ws')
  const databases = {}
  for (const name of ['single', 'cluster']) {
    const url = await createDatabase(adminUrl, `live_sync_bench_${name}`)
    const schema = new Sequelize(url, { logging: false })
    await schema.query(`${FIXTURE_SCHEMA}; INSERT INTO organizations (id, name) VALUES (5, 'bench')`)
    await up(schema.getQueryInterface())
    await schema.close()
    databases[name] = url
  }
  const single = await Instance.create('single', { databaseUrl: databases.single, redisUrl: null, slotName: 'live_sync' })
  const cluster = []
  for (const name of ['a', 'b', 'c']) cluster.push(await Instance.create(name, { databaseUrl: databases.cluster, redisUrl: redis.url, slotName: 'live_sync_bench' }))
  const writers = {}
  const sockets = []
  try {
    await Promise.all([single, ...cluster].map(instance => instance.start()))
    const leader = await leaderOf(cluster)
    const follower = cluster.find(instance => instance !== leader)
    const clients = {
      single: await subscriber(WebSocket, single.url, 5),
      leader: await subscriber(WebSocket, leader.url, 5),
      follower: await subscriber(WebSocket, follower.url, 5),
    }
    sockets.push(...Object.values(clients))
    for (const name of ['single', 'cluster']) {
      writers[name] = new pg.Client(databases[name])
      await writers[name].connect()
    }
    const samples = { single: [], leader: [], follower: [] }
    for (let i = 0; i < count; i++) {
      {
        const arrived = clients.single.next()
        await writers.single.query(`INSERT INTO tasks (organization_id, title) VALUES (5, 'single')`)
        const committed = performance.now()
        samples.single.push(Math.max(0, (await arrived) - committed))
      }
      {
        const arrived = [clients.leader.next(), clients.follower.next()]
        await writers.cluster.query(`INSERT INTO tasks (organization_id, title) VALUES (5, 'cluster')`)
        const committed = performance.now()
        const [atLeader, atFollower] = await Promise.all(arrived)
        samples.leader.push(Math.max(0, atLeader - committed))
        samples.follower.push(Math.max(0, atFollower - committed))
      }
    }
    for (const list of Object.values(samples)) list.sort((a, b) => a - b)
    const stats = list => ({ p50: quantile(list, 0.5), p99: quantile(list, 0.99) })
    console.log(`cluster     commit → WebSocket client over ${count} single-row commits each, interleaved: single instance ${summary(samples.single)}; three instances on Redis, client on the leader ${summary(samples.leader)}, on a follower ${summary(samples.follower)} (+${fmt(quantile(samples.follower, 0.5) - quantile(samples.single, 0.5))} ms median for the trip through Redis)`)
    return { samples: count, single: stats(samples.single), leader: stats(samples.leader), follower: stats(samples.follower) }
  }
  finally {
    for (const socket of sockets) socket.close()
    for (const writer of Object.values(writers)) await writer.end()
    await Promise.all([single, ...cluster].map(instance => instance.kill('SIGTERM')))
    for (const name of Object.keys(databases)) await dropDatabase(adminUrl, `live_sync_bench_${name}`)
  }
}

/** Publishes the bench's transactions from a child process, so that this process's CPU is the readers' alone. */
const PUBLISHER = `
import { Redis } from 'ioredis'
const { URL, MODE, TXS, KEYS } = process.env
const frame = '{"type":"tx","key":"KEY","cursor":"0/1","changes":[{"op":"update","model":"Task","row":{"id":1,"title":"' + 'x'.repeat(300) + '"}}]}'
const order = Array.from({ length: Number(TXS) }, (_, i) => String((i * 7919) % Number(KEYS)))
const publisher = new Redis(URL)
for (let i = 0; i < order.length; i += 500) {
  const pipeline = publisher.pipeline()
  for (const key of order.slice(i, i + 500)) {
    const message = frame.replace('KEY', key)
    pipeline.xadd('h:' + key, 'MAXLEN', '~', '100', '*', 'f', message)
    if (MODE === 'channels') pipeline.publish('k:' + key, message)
    else pipeline.xadd('log', 'MAXLEN', '~', '100000', '*', 'k', key, 'f', message)
  }
  await pipeline.exec()
}
publisher.disconnect()
`

/**
 * The fan-out choice, on Redis alone: 2 000 keys, three readers ("instances")
 * whose sockets hold 100 keys each, 20 000 one-key transactions of ~400-byte
 * frames (each also appended to its key's history, as live sync does).
 * Per-key channels: each reader subscribes to its keys and gets only theirs.
 * One stream: each reader reads everything and keeps its keys' entries.
 */
async function fanoutChoice(redis) {
  const { Redis } = await import('ioredis')
  const { spawn } = await import('node:child_process')
  const KEYS = 2000
  const READERS = 3
  const HELD = 100
  const TXS = 20_000
  const admin = new Redis(redis.url)
  const stats = async () => {
    const info = await admin.info()
    const field = name => Number(new RegExp(`^${name}:([\\d.]+)`, 'm').exec(info)[1])
    return { cpu: field('used_cpu_user') + field('used_cpu_sys'), out: field('total_net_output_bytes') }
  }
  const held = Array.from({ length: READERS }, (_, r) => new Set(Array.from({ length: HELD }, (_, i) => String((r * 661 + i * 17) % KEYS))))
  const order = Array.from({ length: TXS }, (_, i) => String((i * 7919) % KEYS))
  const relevant = held.map(keys => order.filter(key => keys.has(key)).length)

  async function run(label, mode, setup) {
    await admin.flushall()
    const readers = await setup()
    const before = await stats()
    const cpu = process.cpuUsage()
    const started = performance.now()
    const child = spawn(process.execPath, ['--input-type=module', '-e', PUBLISHER], { cwd: root, env: { ...process.env, URL: redis.url, MODE: mode, TXS: String(TXS), KEYS: String(KEYS) }, stdio: 'inherit' })
    await new Promise(resolve => child.once('exit', resolve))
    await Promise.all(readers.map(reader => reader.done))
    const elapsed = performance.now() - started
    const used = process.cpuUsage(cpu)
    const after = await stats()
    for (const reader of readers) reader.close()
    console.log(`fan-out     ${label}: Redis sent ${fmt((after.out - before.out) / 1048576)} MiB and used ${fmt((after.cpu - before.cpu) * 1000)} ms CPU; the ${READERS} readers used ${fmt((used.user + used.system) / 1000)} ms CPU; all delivered ${fmt(elapsed)} ms after publishing began`)
  }

  await run(`per-key channels (${READERS} instances holding ${HELD} of ${KEYS} keys each, ${fmt(TXS)} transactions, ${relevant.join('/')} of them for each)`, 'channels', async () => Promise.all(held.map(async (keys, r) => {
    const reader = new Redis(redis.url)
    let got = 0
    let finish
    const done = new Promise(resolve => (finish = resolve))
    reader.on('messageBuffer', () => {
      if (++got === relevant[r]) finish()
    })
    await reader.subscribe(...[...keys].map(key => `k:${key}`))
    return { done, close: () => reader.disconnect() }
  })))

  await run(`one stream read by every instance (XREAD BLOCK, filtered by key)`, 'stream', async () => held.map((keys, r) => {
    const reader = new Redis(redis.url)
    let got = 0
    let seen = 0
    let last = '0'
    let stopped = false
    const done = (async () => {
      while (!stopped && seen < TXS) {
        const reply = await reader.xreadBuffer('COUNT', 1000, 'BLOCK', 0, 'STREAMS', 'log', last)
        for (const [id, fields] of reply[0][1]) {
          last = id.toString()
          seen++
          if (keys.has(fields[1].toString())) got++
        }
      }
      if (got !== relevant[r]) throw new Error('lost entries')
    })()
    const close = () => {
      stopped = true
      reader.disconnect()
    }
    return { done, close }
  }))
  admin.disconnect()
}

/**
 * Runs the cluster scenarios; returns the latency figures (null when the
 * test app is not built). `npm run bench` calls it with its sizes.
 */
export async function clusterBench(adminUrl, { samples = SAMPLES, fanout = true } = {}) {
  const { startRedis } = await jiti.import(`${root}test/support/redis.ts`)
  const { existsSync } = await import('node:fs')
  const redis = await startRedis()
  try {
    let result = null
    if (existsSync(`${root}test/fixtures/app/.output/server/index.mjs`)) result = await latency(adminUrl, redis, samples)
    else console.log('cluster     skipped: the test app is not built (node test/scripts/prepare.mjs)')
    if (fanout) await fanoutChoice(redis)
    return result
  }
  finally {
    await redis.close()
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const server = await startPostgres({ sources: ['env', 'system', 'embedded'] })
  try {
    await clusterBench(server.url)
  }
  finally {
    await server.stop()
  }
}
