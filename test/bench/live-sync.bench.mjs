#!/usr/bin/env node
/**
 * Benchmark: prints figures, asserts nothing (timed assertions are flaky;
 * CI runs the tests, people run this). `npm run bench:engine`: the engine
 * alone, in this process (`npm run bench` measures the built server).
 *
 *   throughput  rows/s from the first commit to the last batch dispatched
 *               (100 000 rows in 10 transactions, one subscribed key)
 *   latency     commit → subscriber callback, single-row transactions
 *   view        the same for a model on a view (each transaction read back
 *               through the view before dispatch), beside a plain model
 *   fan-out     one 1 000-row transaction to 1 000 subscribers of its key:
 *               encoded frames (must be 1) and time to hand it to all of them
 *   socket      commit → a WebSocket client of the built test app (needs
 *               `node test/scripts/prepare.mjs`, which `npm test` runs)
 *   cluster     the same through Redis with three instances, and the fan-out
 *               choice (test/bench/cluster.bench.mjs)
 *
 * Starts its own PostgreSQL (same launcher as the tests).
 */
import { performance } from 'node:perf_hooks'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { createJiti } from 'jiti'
import { createDatabase, startPostgres } from '../support/postgres.mjs'

const root = fileURLToPath(new URL('../..', import.meta.url))
const jiti = createJiti(import.meta.url)
const require = createRequire(import.meta.url)
const { Sequelize, DataTypes, Model } = require('sequelize')
const pg = require('pg')

const { createLiveSyncEngine } = await jiti.import(`${root}src/runtime/server/engine/live-sync-engine.ts`)
const { up } = await jiti.import(`${root}src/migration.ts`)

const ROWS = Number(process.env.BENCH_ROWS ?? 100_000)
const TXNS = 10
const LATENCY_SAMPLES = Number(process.env.BENCH_SAMPLES ?? 500)

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]
const fmt = n => n.toLocaleString('en-US', { maximumFractionDigits: 2 })

/** Commit → WebSocket message through the built fixture app (a real Nitro server and crossws route). */
async function socketLatency(adminUrl) {
  const entry = `${root}test/fixtures/app/.output/server/index.mjs`
  const { existsSync } = await import('node:fs')
  if (!existsSync(entry)) {
    console.log('socket      skipped: the test app is not built (node test/scripts/prepare.mjs)')
    return
  }
  const { spawn } = await import('node:child_process')
  const { default: WebSocket } = await import('ws')
  const { freePort } = await import('../support/postgres.mjs')
  const { FIXTURE_SCHEMA } = await jiti.import(`${root}test/support/fixture-schema.ts`)
  const dbUrl = await createDatabase(adminUrl, 'live_sync_bench_socket')
  const schema = new Sequelize(dbUrl, { logging: false })
  await schema.query(`${FIXTURE_SCHEMA}; INSERT INTO organizations (id, name) VALUES (5, 'bench')`)
  await up(schema.getQueryInterface())
  await schema.close()
  const setup = new pg.Client(dbUrl)
  await setup.connect()
  const port = await freePort()
  const app = spawn(process.execPath, [entry], { env: { ...process.env, DATABASE_URL: dbUrl, PORT: String(port), HOST: '127.0.0.1', NUXT_LIVE_SYNC_PUBLIC: 'true' }, stdio: 'ignore' })
  try {
    const deadline = Date.now() + 30_000
    for (;;) {
      const state = await fetch(`http://127.0.0.1:${port}/api/test-support/live-sync`).then(r => r.json()).catch(() => null)
      if (state?.status === 'streaming') break
      if (Date.now() > deadline) throw new Error('the test app did not start streaming')
      await new Promise(resolve => setTimeout(resolve, 50))
    }
    const socket = new WebSocket(`ws://127.0.0.1:${port}/_live_sync?v=1`)
    let waiter = null
    socket.on('message', (data) => {
      const message = JSON.parse(data.toString())
      if (message.type === 'subscribed' || message.type === 'tx') waiter?.()
    })
    await new Promise(resolve => socket.once('open', resolve))
    const subscribed = new Promise(resolve => (waiter = resolve))
    socket.send(JSON.stringify({ type: 'sub', key: 5 }))
    await subscribed
    // tasks: a plain model; todos: OpenTodo, a model on a view of it (read back per transaction).
    const samples = { tasks: [], todos: [] }
    for (let i = 0; i < LATENCY_SAMPLES; i++) {
      for (const table of ['tasks', 'todos']) {
        const arrived = new Promise(resolve => (waiter = resolve))
        await setup.query(`INSERT INTO ${table} (organization_id, title) VALUES (5, 'socket')`)
        const committed = performance.now()
        await arrived
        samples[table].push(Math.max(0, performance.now() - committed))
      }
    }
    for (const list of Object.values(samples)) list.sort((a, b) => a - b)
    console.log(`socket      commit → WebSocket client (built Nitro server) over ${LATENCY_SAMPLES} single-row commits each: plain model median ${fmt(quantile(samples.tasks, 0.5))} ms, p99 ${fmt(quantile(samples.tasks, 0.99))} ms; model on a view median ${fmt(quantile(samples.todos, 0.5))} ms, p99 ${fmt(quantile(samples.todos, 0.99))} ms`)
    socket.close()
  }
  finally {
    app.kill('SIGTERM')
    await new Promise(resolve => app.once('exit', resolve))
    await setup.end()
  }
}

const server = await startPostgres({ sources: ['env', 'system', 'embedded'] })
try {
  const url = await createDatabase(server.url, 'live_sync_bench')
  const sequelize = new Sequelize(url, { logging: false })
  await sequelize.query(`CREATE TABLE tasks (id serial PRIMARY KEY, organization_id integer, title text NOT NULL, done boolean NOT NULL DEFAULT false, priority integer, created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now())`)
  // A second table watched by a plain model and by a model on a view of it (read back per transaction).
  await sequelize.query(`CREATE TABLE items (id serial PRIMARY KEY, organization_id integer, title text NOT NULL, done boolean NOT NULL DEFAULT false)`)
  await sequelize.query(`CREATE VIEW open_items AS SELECT id, organization_id, title FROM items WHERE NOT done`)
  class Item extends Model {}
  Item.init({
    id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
    organizationId: DataTypes.INTEGER,
    title: DataTypes.TEXT,
    done: DataTypes.BOOLEAN,
  }, { sequelize, tableName: 'items', underscored: true, timestamps: false, liveSync: { subscriptionKey: 'organizationId' } })
  class OpenItem extends Model {}
  OpenItem.init({
    id: { type: DataTypes.INTEGER, primaryKey: true },
    organizationId: DataTypes.INTEGER,
    title: DataTypes.TEXT,
  }, { sequelize, tableName: 'open_items', underscored: true, timestamps: false, liveSync: { subscriptionKey: 'organizationId', table: 'items' } })
  class Task extends Model {}
  Task.init({
    id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
    organizationId: DataTypes.INTEGER,
    title: DataTypes.TEXT,
    done: DataTypes.BOOLEAN,
    priority: DataTypes.INTEGER,
  }, { sequelize, tableName: 'tasks', underscored: true, liveSync: { subscriptionKey: 'organizationId' } })
  await up(sequelize.getQueryInterface())
  const engine = createLiveSyncEngine({ sequelize, replay: { maxRows: 50_000 } })
  await engine.start()
  const writer = new pg.Client(url)
  await writer.connect()

  // ── throughput ──
  let received = 0
  let lastAt = 0
  let done
  const finished = new Promise(resolve => (done = resolve))
  const unsubscribe = engine.subscribe(1, (batch) => {
    received += batch.size
    lastAt = performance.now()
    if (received >= ROWS) done()
  }).unsubscribe
  const heapBefore = process.memoryUsage().heapUsed
  const started = performance.now()
  for (let t = 0; t < TXNS; t++) {
    await writer.query(`INSERT INTO tasks (organization_id, title, priority) SELECT 1, 'task ' || n, n % 5 FROM generate_series(1, $1) AS n`, [ROWS / TXNS])
  }
  const committed = performance.now()
  await finished
  const seconds = (lastAt - started) / 1000
  unsubscribe()
  console.log(`throughput  ${fmt(ROWS)} rows in ${TXNS} transactions: ${fmt(ROWS / seconds)} rows/s end to end (writes took ${fmt((committed - started) / 1000)} s, last batch ${fmt(lastAt - committed)} ms after the last commit); heap +${fmt((process.memoryUsage().heapUsed - heapBefore) / 1048576)} MiB (replay history ${engine.hub.buffer.size.rows} rows)`)

  // ── one large transaction: commit → everything dispatched (no write overlap) ──
  {
    let got = 0
    let finish
    const all = new Promise(resolve => (finish = resolve))
    const sub = engine.subscribe(4, (batch) => {
      batch.frame() // a WebSocket subscriber serializes it
      got += batch.size
      if (got >= ROWS) finish(performance.now())
    })
    await writer.query('BEGIN')
    await writer.query(`INSERT INTO tasks (organization_id, title, priority) SELECT 4, 'big ' || n, n % 5 FROM generate_series(1, $1) AS n`, [ROWS])
    const t0 = performance.now()
    const cpu0 = process.cpuUsage()
    await writer.query('COMMIT')
    const t1 = await all
    const cpu = process.cpuUsage(cpu0)
    sub.unsubscribe()
    console.log(`large tx    one ${fmt(ROWS)}-row transaction: ${fmt(ROWS / ((t1 - t0) / 1000))} rows/s from COMMIT to the batch dispatched (${fmt(t1 - t0)} ms; this process used ${fmt((cpu.user + cpu.system) / ROWS)} µs CPU per row)`)
  }

  // ── latency ──
  const samples = []
  let pending = null
  const unsubscribeLatency = engine.subscribe(2, () => pending?.())
  for (let i = 0; i < LATENCY_SAMPLES; i++) {
    const arrived = new Promise(resolve => (pending = resolve))
    const t0 = performance.now()
    await writer.query(`INSERT INTO tasks (organization_id, title) VALUES (2, 'latency')`)
    const t1 = performance.now()
    await arrived
    // Commit → callback: from the moment the commit returned, bounded below by 0.
    samples.push(Math.max(0, performance.now() - t1))
    void t0
  }
  unsubscribeLatency.unsubscribe()
  samples.sort((a, b) => a - b)
  console.log(`latency     commit → subscriber over ${LATENCY_SAMPLES} single-row commits: median ${fmt(quantile(samples, 0.5))} ms, p99 ${fmt(quantile(samples, 0.99))} ms, max ${fmt(samples.at(-1))} ms`)

  // ── view: commit → the view model's change dispatched, vs the plain model's ──
  {
    const plain = []
    const view = []
    let waiting = null
    const sub = engine.subscribe(6, (batch) => {
      if (batch.type === 'tx' && batch.changes.some(change => change.model === 'OpenItem')) waiting?.()
    })
    const tasksSub = engine.subscribe(7, () => waiting?.())
    for (let i = 0; i < LATENCY_SAMPLES; i++) {
      for (const [table, org, into] of [['items', 6, view], ['tasks', 7, plain]]) {
        const arrived = new Promise(resolve => (waiting = resolve))
        await writer.query(`INSERT INTO ${table} (organization_id, title) VALUES ($1, 'view latency')`, [org])
        const committed = performance.now()
        await arrived
        into.push(Math.max(0, performance.now() - committed))
      }
    }
    sub.unsubscribe()
    tasksSub.unsubscribe()
    for (const list of [plain, view]) list.sort((a, b) => a - b)
    console.log(`view        commit → subscriber, ${LATENCY_SAMPLES} single-row commits each, interleaved: plain model median ${fmt(quantile(plain, 0.5))} ms (p99 ${fmt(quantile(plain, 0.99))} ms); model on a view median ${fmt(quantile(view, 0.5))} ms (p99 ${fmt(quantile(view, 0.99))} ms), +${fmt(quantile(view, 0.5) - quantile(plain, 0.5))} ms for the read-back`)
  }

  // ── fan-out ──
  const SUBSCRIBERS = 1000
  const frames = new Set()
  let deliveries = 0
  let fanoutDone
  const fanout = new Promise(resolve => (fanoutDone = resolve))
  let fanoutStart = 0
  const subs = Array.from({ length: SUBSCRIBERS }, () => engine.subscribe(3, (batch) => {
    if (deliveries === 0) fanoutStart = performance.now()
    frames.add(batch.frameBytes()) // what the WebSocket route writes to each socket
    // A large transaction arrives in parts: the last one completes it.
    if ((!batch.part || batch.part.last) && ++deliveries === SUBSCRIBERS) fanoutDone(performance.now())
  }))
  await writer.query(`INSERT INTO tasks (organization_id, title) SELECT 3, 'fan ' || n FROM generate_series(1, 1000) AS n`)
  const fanoutEnd = await fanout
  subs.forEach(sub => sub.unsubscribe())
  console.log(`fan-out     1 000-row transaction to ${SUBSCRIBERS} subscribers: ${frames.size} encoded frame(s) (its parts, each encoded once), handed to all in ${fmt(fanoutEnd - fanoutStart)} ms`)

  await writer.end()
  await engine.stop()
  await sequelize.close()

  await socketLatency(server.url)
  // Several instances on Redis (its own file: test/bench/cluster.bench.mjs).
  const { clusterBench } = await import('./cluster.bench.mjs')
  await clusterBench(server.url)
}
finally {
  await server.stop()
}
