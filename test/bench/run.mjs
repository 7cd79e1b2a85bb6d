#!/usr/bin/env node
/**
 * `npm run bench`: live sync at production load, against the built fixture
 * app (a real Nitro server, whose `tasks` table the Task model watches) and a
 * real PostgreSQL, with the clients in processes of their own (their CPU is
 * printed too). Prints a markdown table; `--json FILE` writes the figures;
 * `--quick` runs small sizes (what CI runs, so the bench cannot rot);
 * `--only a,b` runs some scenarios. Figures are printed, never asserted.
 *
 * The comparison is the trigger + `pg_notify` + LISTEN design live sync
 * replaces, built here (notify-server.mjs) and measured in the same run:
 * other sync layers (Zero, Electric) cannot be installed offline.
 *
 * `BENCH_COMPARE=<dir>/server/index.mjs` adds, to the writer scenario, the
 * same phase against another build of the fixture server (e.g. a copy of
 * `.output` made before a change), interleaved with the others: a change's
 * effect measured in one run.
 *
 * Latency is from the moment the writer's COMMIT returned to the moment a
 * client process read the frame, on one monotonic clock (`process.hrtime`).
 */
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import os from 'node:os'
import pg from 'pg'
import { freePort, startPostgres } from '../support/postgres.mjs'
import { openClients } from './clients.mjs'
import { DROP_TRIGGER_SQL, TRIGGER_SQL } from './notify-server.mjs'
import { cpuMs, findRecvlogical, fixtureDatabase, fmt, MiB, nowMs, quantile, ROOT, rssBytes, sleep, startRecvlogical, startServer, watchWalsender } from './support.mjs'

const args = process.argv.slice(2)
const QUICK = args.includes('--quick')
const JSON_FILE = args.includes('--json') ? args[args.indexOf('--json') + 1] : null
const ONLY = args.includes('--only') ? args[args.indexOf('--only') + 1].split(',') : null

/** Sizes: full run, and the --quick one CI runs. */
const SIZE = QUICK
  ? { lightTx: 60, loadSockets: 100, loadKeys: 10, loadRate: 200, loadSeconds: 2, fanSockets: 300, fanRate: 50, fanSeconds: 2, large: [10_000, 50_000], notifyLarge: 10_000, idle: 500, writerSeconds: 1.5, writerRounds: 1, browserRows: 2000, browserTx: 200, browserRounds: 2, clusterTx: 50 }
  : { lightTx: 500, loadSockets: 1000, loadKeys: 100, loadRate: 1000, loadSeconds: 10, fanSockets: 5000, fanRate: 100, fanSeconds: 5, large: [100_000, 1_000_000], notifyLarge: 100_000, idle: 10_000, writerSeconds: 5, writerRounds: 3, browserRows: 10_000, browserTx: 1000, browserRounds: 5, clusterTx: 500 }

/** Organizations: keys of the load scenario, then one each for fan-out, large transactions, the browser and the writer. */
const ORG = { fan: 201, large: 202, browser: 203, writer: 204, light: 205, browserCv: 206 }
const ORGANIZATIONS = 210

const results = {}
const rows = []
const log = line => console.log(line)
const wanted = name => !ONLY || ONLY.includes(name)

/** Latencies (ms) from commit times and [seq, arrival, …] pairs; counts per seq. */
function latencies(commits, arrivals) {
  const list = []
  const perSeq = new Map()
  for (let i = 0; i < arrivals.length; i += 2) {
    const seq = arrivals[i]
    const committed = commits.get(seq)
    if (committed === undefined) continue
    const latency = Math.max(0, arrivals[i + 1] - committed)
    list.push(latency)
    const last = perSeq.get(seq)
    perSeq.set(seq, last === undefined ? latency : Math.max(last, latency))
  }
  list.sort((a, b) => a - b)
  return { list, perSeq }
}

/** `+1.5` / `−3.2` */
const signed = n => `${n < 0 ? '−' : '+'}${fmt(Math.abs(n))}`

const summary = sorted => ({ p50: quantile(sorted, 0.5), p99: quantile(sorted, 0.99), max: sorted.at(-1) ?? Number.NaN })

/**
 * Waits until `collect()` has gathered what `expected` wants, or nothing more arrived for `quietMs`, or
 * `timeout` passed; returns what it gathered (`closed`: sockets the server closed meanwhile).
 */
async function gather(clients, expected, timeout = 60_000, quietMs = 5000) {
  const merged = { arrivals: [], txs: [], frames: 0, rows: 0, closed: 0, cpuMs: 0 }
  let quietSince = Date.now()
  for (const deadline = Date.now() + timeout; ;) {
    const part = await clients.collect()
    for (const value of part.arrivals) merged.arrivals.push(value)
    merged.txs.push(...part.txs)
    merged.frames += part.frames
    merged.rows += part.rows
    merged.closed = Math.max(merged.closed, part.closed)
    merged.cpuMs += part.cpuMs
    if (part.frames > 0) quietSince = Date.now()
    if (expected(merged) || Date.now() > deadline || Date.now() - quietSince > quietMs) return merged
    await sleep(50)
  }
}

/** The notify comparison server with its trigger; stop() drops both. */
async function startNotify(url, admin) {
  await admin.query(TRIGGER_SQL)
  const port = await freePort()
  const child = spawn(process.execPath, [`${ROOT}test/bench/notify-server.mjs`, url, String(port)], { stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise((resolve, reject) => {
    child.stdout.on('data', chunk => String(chunk).includes('listening') && resolve(undefined))
    child.once('exit', code => reject(new Error(`[bench] the notify server exited (${code})`)))
  })
  return {
    pid: /** @type {number} */ (child.pid),
    wsUrl: `ws://127.0.0.1:${port}/`,
    async stop() {
      const exited = new Promise(resolve => child.once('exit', resolve))
      child.kill('SIGTERM')
      await exited
      await admin.query(DROP_TRIGGER_SQL)
    },
  }
}

/** Single-row updates of `taskId`, `count` of them `gapMs` apart; commit times by seq. */
async function paced(writer, taskId, count, gapMs, seq) {
  const commits = new Map()
  for (let i = 0; i < count; i++) {
    const s = seq.next++
    await writer.query('UPDATE tasks SET title = $1 WHERE id = $2', [`s${s}`, taskId])
    commits.set(s, nowMs())
    await sleep(gapMs)
  }
  return commits
}

// ── scenarios ───────────────────────────────────────────────────────────────

/** Writers' single-row commits/s with no consumer, with this server, with trigger + NOTIFY; interleaved rounds. */
async function writerOverhead(ctx) {
  const { url, admin } = ctx
  // Updates cycle over many rows: one row updated 50 000 times in a row grows a chain of dead versions.
  const { rows: tasks } = await admin.query(`INSERT INTO tasks (organization_id, title) SELECT $1, 's0' FROM generate_series(1, 1000) RETURNING id`, [ORG.writer])
  const ids = tasks.map(task => task.id)
  // Four connections writing at once keep both cores busy: commits/s then measure the CPU a consumer takes
  // away. (One connection is bound by round-trip wake-ups instead, which other processes' activity shortens
  // on a virtual machine: a consumer could even seem to speed it up.)
  const writers = await Promise.all(Array.from({ length: 4 }, async () => {
    const client = new pg.Client(url)
    await client.connect()
    return client
  }))
  const compare = process.env.BENCH_COMPARE
  const recvlogical = findRecvlogical()
  const rate = { none: [], live: [], notify: [], ...(recvlogical ? { floor: [] } : {}), ...(compare ? { compare: [] } : {}) }
  const compareCpuPerTx = []
  const serverCpuPerTx = []
  const notifyCpuPerTx = []
  const clientCpu = { live: 0, notify: 0 }
  const run = async () => {
    const end = performance.now() + SIZE.writerSeconds * 1000
    let commits = 0
    await Promise.all(writers.map(async (writer, w) => {
      for (let i = w; performance.now() < end; i += writers.length) {
        await writer.query('UPDATE tasks SET title = $1 WHERE id = $2', [`w${i}`, ids[i % ids.length]])
        commits++
      }
    }))
    await admin.query('VACUUM tasks')
    return commits
  }
  /** One phase with a live sync server (this build, or `entry`) and a subscribed socket. */
  const liveSync = async (entry) => {
    const server = await startServer(url, {}, [], entry)
    const clients = await openClients(server.wsUrl, [ORG.writer])
    await sleep(500)
    await clients.collect()
    const cpu = cpuMs(server.pid)
    const commits = await run()
    const perTx = (cpuMs(server.pid) - cpu) * 1000 / commits
    clientCpu.live += (await clients.collect()).cpuMs
    await clients.close()
    await server.stop()
    return { rate: commits / SIZE.writerSeconds, perTx }
  }
  const phases = {
    none: async () => {
      await sleep(500)
      rate.none.push(await run() / SIZE.writerSeconds)
    },
    live: async () => {
      const live = await liveSync(undefined)
      rate.live.push(live.rate)
      serverCpuPerTx.push(live.perTx)
    },
    compare: async () => {
      const other = await liveSync(compare)
      rate.compare.push(other.rate)
      compareCpuPerTx.push(other.perTx)
    },
    floor: async () => {
      const consumer = await startRecvlogical(/** @type {string} */ (recvlogical), url, admin, { publication: 'live_sync' })
      await sleep(500)
      rate.floor.push(await run() / SIZE.writerSeconds)
      await consumer.stop()
    },
    notify: async () => {
      const notify = await startNotify(url, admin)
      const notifyClients = await openClients(notify.wsUrl, [ORG.writer])
      await sleep(500)
      await notifyClients.collect()
      const cpu = cpuMs(notify.pid)
      const commits = await run()
      notifyCpuPerTx.push((cpuMs(notify.pid) - cpu) * 1000 / commits)
      rate.notify.push(commits / SIZE.writerSeconds)
      clientCpu.notify += (await notifyClients.collect()).cpuMs
      await notifyClients.close()
      await notify.stop()
    },
  }
  const order = Object.keys(rate)
  await run() // warm-up: JIT, caches, the table's pages
  for (let round = 0; round < SIZE.writerRounds; round++) {
    // Each round starts with another phase, so that none gains from its place in the round.
    for (let i = 0; i < order.length; i++) await phases[order[(round + i) % order.length]]()
  }
  await Promise.all(writers.map(writer => writer.end()))
  const median = list => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)]
  const none = median(rate.none)
  const live = median(rate.live)
  const notify = median(rate.notify)
  // Each round's phases ran back to back: their ratio is less at the mercy of other jobs on the machine than the rates.
  const loss = phase => 100 * (1 - median(rate[phase].map((value, round) => value / rate.none[round])))
  const result = {
    rounds: SIZE.writerRounds,
    seconds: SIZE.writerSeconds,
    commitsPerSecond: { none, liveSync: live, triggerNotify: notify, all: rate },
    lossPercent: { liveSync: loss('live'), triggerNotify: loss('notify'), ...(recvlogical ? { pgRecvlogical: loss('floor') } : {}), ...(compare ? { compare: loss('compare') } : {}) },
    serverCpuUsPerTx: median(serverCpuPerTx),
    ...(compare ? { compareServerCpuUsPerTx: median(compareCpuPerTx), compareCommitsPerSecond: median(rate.compare) } : {}),
    notifyServerCpuUsPerTx: median(notifyCpuPerTx),
    clientCpuMs: clientCpu,
  }
  results.writer = result
  rows.push(['writers\' single-row commits/s (4 connections) while we stream (1 socket)', `${fmt(live, 0)}/s vs ${fmt(none, 0)}/s with no consumer (medians): **${signed(-result.lossPercent.liveSync)} %** (median of rounds); server CPU ${fmt(result.serverCpuUsPerTx, 0)} µs/tx, its client ${fmt(100 * clientCpu.live / (SIZE.writerSeconds * SIZE.writerRounds * 1000), 0)} % of a core${recvlogical ? `; Postgres's own \`pg_recvlogical\` discarding the same stream: ${signed(-result.lossPercent.pgRecvlogical)} %` : ''}`, `${fmt(notify, 0)}/s: ${signed(-result.lossPercent.triggerNotify)} %; LISTEN process ${fmt(result.notifyServerCpuUsPerTx, 0)} µs/tx, its client ${fmt(100 * clientCpu.notify / (SIZE.writerSeconds * SIZE.writerRounds * 1000), 0)} % of a core`, '≤ 10 %, ≤ trigger + NOTIFY'])
  log(`writer      ${JSON.stringify(result.commitsPerSecond.all)}; live sync server ${fmt(result.serverCpuUsPerTx)} µs CPU/tx${compare ? ` (compared build ${fmt(result.compareServerCpuUsPerTx)} µs/tx)` : ''}, LISTEN server ${fmt(result.notifyServerCpuUsPerTx)} µs/tx`)
}

/** One socket, single-row updates 20 ms apart: commit → socket; then the same through trigger + NOTIFY. */
async function light(ctx) {
  const { server, admin, writer, url, seq } = ctx
  const { rows: [task] } = await admin.query(`INSERT INTO tasks (organization_id, title) VALUES ($1, 's0') RETURNING id`, [ORG.light])
  const measure = async (wsUrl, pid) => {
    const clients = await openClients(wsUrl, [ORG.light])
    await paced(writer, task.id, 20, 5, seq) // warm-up
    await gather(clients, () => true, 0)
    const cpu = cpuMs(pid)
    const commits = await paced(writer, task.id, SIZE.lightTx, 20, seq)
    const got = await gather(clients, m => m.arrivals.length / 2 >= SIZE.lightTx)
    const used = cpuMs(pid) - cpu
    await clients.close()
    const { list } = latencies(commits, got.arrivals)
    return { ...summary(list), received: list.length, sent: SIZE.lightTx, serverCpuUsPerTx: used * 1000 / SIZE.lightTx, clientCpuMs: got.cpuMs }
  }
  const live = await measure(server.wsUrl, server.pid)
  const notify = await startNotify(url, admin)
  const alternative = await measure(notify.wsUrl, notify.pid)
  await notify.stop()
  results.light = { liveSync: live, triggerNotify: alternative }
  rows.push(['1 socket, single-row updates 20 ms apart', `commit → socket p50 **${fmt(live.p50, 2)} ms**, p99 ${fmt(live.p99, 2)} ms (${live.received}/${live.sent}); server CPU ${fmt(live.serverCpuUsPerTx, 0)} µs/tx`, `p50 ${fmt(alternative.p50, 2)} ms, p99 ${fmt(alternative.p99, 2)} ms`, '—'])
  log(`light       live sync ${JSON.stringify(live)}\n            trigger+notify ${JSON.stringify(alternative)}`)
}

/** `sockets` sockets over `keys` keys, `rate` single-row tx/s spread over the keys, for `seconds`. */
async function load(ctx) {
  const { server, admin, url, seq } = ctx
  const keys = Array.from({ length: SIZE.loadKeys }, (_, i) => i + 1)
  const { rows: tasks } = await admin.query(`INSERT INTO tasks (organization_id, title) SELECT k, 's0' FROM unnest($1::int[]) k RETURNING id, organization_id`, [keys])
  const taskOf = new Map(tasks.map(t => [t.organization_id, t.id]))
  const clients = await openClients(server.wsUrl, Array.from({ length: SIZE.loadSockets }, (_, i) => keys[i % keys.length]), { processes: 2 })
  await sleep(300)
  await clients.collect()
  const total = SIZE.loadRate * SIZE.loadSeconds
  const commits = new Map()
  const keyOfSeq = new Map()
  const writers = await Promise.all(Array.from({ length: 4 }, async () => {
    const client = new pg.Client(url)
    await client.connect()
    return client
  }))
  const cpu = cpuMs(server.pid)
  const started = nowMs()
  let next = 0
  await Promise.all(writers.map(async (writer) => {
    for (;;) {
      const i = next++
      if (i >= total) return
      const due = started + i * 1000 / SIZE.loadRate
      const wait = due - nowMs()
      if (wait > 1) await sleep(wait)
      const s = seq.next++
      const key = keys[i % keys.length]
      keyOfSeq.set(s, key)
      await writer.query('UPDATE tasks SET title = $1 WHERE id = $2', [`s${s}`, taskOf.get(key)])
      commits.set(s, nowMs())
    }
  }))
  const wall = nowMs() - started
  const perKey = SIZE.loadSockets / SIZE.loadKeys
  const expected = total * perKey
  const got = await gather(clients, m => m.arrivals.length / 2 >= expected)
  const used = cpuMs(server.pid) - cpu
  const elapsed = nowMs() - started
  await Promise.all(writers.map(w => w.end()))
  await clients.close()
  const { list } = latencies(commits, got.arrivals)
  const result = {
    sockets: clients.opened,
    failedSockets: clients.failed,
    keys: SIZE.loadKeys,
    txPerSecond: total / (wall / 1000),
    ...summary(list),
    delivered: list.length,
    expected,
    lost: expected - list.length,
    closedSockets: got.closed,
    serverCpuPercent: 100 * used / elapsed,
    serverCpuUsPerTx: used * 1000 / total,
    clientCpuPercent: 100 * got.cpuMs / elapsed,
  }
  results.load = result
  rows.push([`${fmt(SIZE.loadSockets, 0)} sockets / ${SIZE.loadKeys} keys / ${fmt(SIZE.loadRate, 0)} tx/s`, `p50 **${fmt(result.p50, 2)} ms**, p99 **${fmt(result.p99, 2)} ms**, ${result.lost} lost of ${fmt(expected, 0)}, server ${fmt(result.serverCpuPercent, 0)} % CPU (${fmt(result.serverCpuUsPerTx, 0)} µs/tx); clients ${fmt(result.clientCpuPercent, 0)} %`, '—', 'p50 ≤ 1 ms, p99 ≤ 10 ms, 0 lost'])
  log(`load        ${JSON.stringify(result)}`)
}

/** One key, `fanSockets` sockets, `fanRate` tx/s: latency of the last socket to get each transaction. */
async function fanout(ctx) {
  const { server, admin, writer, seq } = ctx
  const { rows: [task] } = await admin.query(`INSERT INTO tasks (organization_id, title) VALUES ($1, 's0') RETURNING id`, [ORG.fan])
  const clients = await openClients(server.wsUrl, Array.from({ length: SIZE.fanSockets }, () => ORG.fan), { processes: 4 })
  await sleep(300)
  await clients.collect()
  const count = SIZE.fanRate * SIZE.fanSeconds
  const cpu = cpuMs(server.pid)
  const started = nowMs()
  const commits = await paced(writer, task.id, count, 1000 / SIZE.fanRate - 0.5, seq)
  // A server that falls behind sends in bursts (every socket's frames of all the transactions it read at once): wait long.
  const got = await gather(clients, m => m.arrivals.length / 2 >= count * SIZE.fanSockets, 120_000, 20_000)
  const used = cpuMs(server.pid) - cpu
  const elapsed = nowMs() - started
  const state = await server.state(ORG.fan)
  const { rows: [replication] } = await admin.query(`SELECT pg_current_wal_lsn()::text AS wal, sent_lsn::text AS sent, flush_lsn::text AS flushed FROM pg_stat_replication`)
  if (process.env.BENCH_DEBUG) {
    const { execFileSync } = await import('node:child_process')
    const queues = execFileSync('ss', ['-tnH', 'state', 'established']).toString().trim().split('\n').map(line => line.trim().split(/\s+/))
    const toServer = queues.filter(q => q[3]?.endsWith(`:${server.port}`))
    const fromServer = queues.filter(q => q[2]?.endsWith(`:${server.port}`))
    const sum = (list, i) => list.reduce((n, q) => n + Number(q[i]), 0)
    log(`fanout      server cursor ${state.cursor}; ${JSON.stringify(replication)}; server sockets send-q ${sum(fromServer, 1)} B recv-q ${sum(fromServer, 0)} B; client sockets recv-q ${sum(toServer, 0)} B`)
  }
  await clients.close()
  const { list, perSeq } = latencies(commits, got.arrivals)
  const last = [...perSeq.values()].sort((a, b) => a - b)
  const result = {
    sockets: clients.opened,
    txs: count,
    lastSocket: summary(last),
    anySocket: summary(list),
    lost: count * SIZE.fanSockets - list.length,
    closedSockets: got.closed,
    subscribedAfter: state.subscribers,
    serverStats: state.stats,
    serverCpuPercent: 100 * used / elapsed,
    clientCpuPercent: 100 * got.cpuMs / elapsed,
  }
  results.fanout = result
  rows.push([`1 key, ${fmt(SIZE.fanSockets, 0)} sockets, ${SIZE.fanRate} tx/s`, `last socket p50 ${fmt(result.lastSocket.p50, 1)} ms, **p99 ${fmt(result.lastSocket.p99, 1)} ms**; any socket p50 ${fmt(result.anySocket.p50, 1)} ms; ${fmt(result.lost, 0)} frames missing, ${result.closedSockets} sockets closed as slow; server ${fmt(result.serverCpuPercent, 0)} % CPU, clients ${fmt(result.clientCpuPercent, 0)} %`, '—', '—'])
  log(`fanout      ${JSON.stringify(result)}`)
}

/** One transaction of `count` rows to one socket: throughput, first part after COMMIT, server memory. */
async function largeTx(ctx, count) {
  const { server, writer } = ctx
  const clients = await openClients(server.wsUrl, [ORG.large])
  await sleep(200)
  await clients.collect()
  const before = await server.gc()
  const walsender = await watchWalsender(ctx.url)
  await writer.query('BEGIN')
  await writer.query(`INSERT INTO tasks (organization_id, title) SELECT $1, 'large ' || n FROM generate_series(1, $2) n`, [ORG.large, count])
  // Where the commit record will start (nothing else writes now).
  const { rows: [{ lsn: commitLsn }] } = await writer.query('SELECT pg_current_wal_insert_lsn()::text AS lsn')
  let peak = rssBytes(server.pid)
  const sampler = setInterval(() => {
    peak = Math.max(peak, rssBytes(server.pid))
  }, 10)
  const cpu = cpuMs(server.pid)
  await writer.query('COMMIT')
  const committed = nowMs()
  const decoding = walsender.reaches(commitLsn)
  const got = await gather(clients, m => m.rows >= count, 120_000)
  const decoded = await decoding
  await walsender.close()
  clearInterval(sampler)
  const used = cpuMs(server.pid) - cpu
  await sleep(200)
  const after = await server.gc()
  await clients.close()
  const tx = got.txs.find(t => t.rows === count) ?? got.txs[0]
  const result = {
    rows: count,
    received: got.rows,
    parts: tx?.parts,
    rowsPerSecond: tx ? count / ((tx.last - committed) / 1000) : Number.NaN,
    firstFrameMs: tx ? tx.first - committed : Number.NaN,
    lastFrameMs: tx ? tx.last - committed : Number.NaN,
    serverCpuUsPerRow: used * 1000 / count,
    rssBeforeMiB: before / MiB,
    rssPeakDeltaMiB: (peak - before) / MiB,
    rssAfterDeltaMiB: (after - before) / MiB,
    clientCpuMs: got.cpuMs,
    walsenderReachedCommitMs: decoded.reachedAt - committed,
    walsenderBehindMiB: decoded.behindBytes / MiB,
  }
  log(`large       ${JSON.stringify(result)}`)
  return result
}

/** The same through trigger + NOTIFY: one notification per row. */
async function notifyLargeTx(ctx, count) {
  const { admin, url, writer } = ctx
  const notify = await startNotify(url, admin)
  const clients = await openClients(notify.wsUrl, [ORG.large])
  await sleep(200)
  await clients.collect()
  await writer.query('BEGIN')
  await writer.query(`INSERT INTO tasks (organization_id, title) SELECT $1, 's' || n FROM generate_series(1, $2) n`, [ORG.large, count])
  await writer.query('COMMIT')
  const committed = nowMs()
  const got = await gather(clients, m => m.arrivals.length / 2 >= count, 300_000)
  await clients.close()
  await notify.stop()
  let first = Number.POSITIVE_INFINITY
  let last = 0
  for (let i = 1; i < got.arrivals.length; i += 2) {
    first = Math.min(first, got.arrivals[i])
    last = Math.max(last, got.arrivals[i])
  }
  const result = { rows: count, received: got.arrivals.length / 2, rowsPerSecond: count / ((last - committed) / 1000), firstFrameMs: first - committed, lastFrameMs: last - committed }
  log(`large       trigger+notify ${JSON.stringify(result)}`)
  return result
}

async function large(ctx) {
  const [small, big] = SIZE.large
  await largeTx(ctx, Math.min(small, 20_000)) // warm-up (JIT), not reported
  const smallResult = await largeTx(ctx, small)
  const alternative = await notifyLargeTx(ctx, SIZE.notifyLarge)
  const bigResult = await largeTx(ctx, big)
  results.large = { [small]: smallResult, [big]: bigResult, triggerNotify: alternative }
  const cell = r => `**${fmt(r.rowsPerSecond, 0)} rows/s**, first part ${fmt(r.firstFrameMs, 0)} ms after COMMIT (${r.parts} parts; Postgres's walsender, ${fmt(r.walsenderBehindMiB)} MiB of WAL behind, reached the COMMIT at ${fmt(r.walsenderReachedCommitMs, 0)} ms); server RSS peak ${signed(r.rssPeakDeltaMiB)} MiB, ${signed(r.rssAfterDeltaMiB)} MiB after a GC`
  rows.push([`${fmt(small, 0)}-row transaction, 1 socket`, cell(smallResult), `${fmt(alternative.rowsPerSecond, 0)} rows/s (${fmt(SIZE.notifyLarge, 0)} rows), first row ${fmt(alternative.firstFrameMs, 0)} ms after COMMIT returned`, '≥ 150 000 rows/s, first part ≤ 100 ms'])
  rows.push([`${fmt(big, 0)}-row transaction, 1 socket`, cell(bigResult), '—', 'first part ≤ 100 ms; bounded memory, returned'])
}

/** Idle subscribed sockets: the server's memory per socket. */
async function idle(ctx) {
  const { server } = ctx
  const before = await server.gc()
  const heapBefore = await fetch(`${server.url}/api/test-support/gc`, { method: 'POST' }).then(r => r.json())
  const clients = await openClients(server.wsUrl, Array.from({ length: SIZE.idle }, (_, i) => 1 + (i % 100)), { processes: 4 })
  await sleep(1000)
  const after = await server.gc()
  const heapAfter = await fetch(`${server.url}/api/test-support/gc`, { method: 'POST' }).then(r => r.json())
  const { cpuMs: clientCpu } = await clients.collect()
  await clients.close()
  const result = {
    sockets: clients.opened,
    failed: clients.failed,
    rssBytesPerSocket: (after - before) / clients.opened,
    heapBytesPerSocket: (heapAfter.heapUsed + heapAfter.external - heapBefore.heapUsed - heapBefore.external) / clients.opened,
    clientCpuMs: clientCpu,
  }
  results.idle = result
  rows.push([`${fmt(SIZE.idle, 0)} idle sockets (subscribed)`, `**${fmt(result.rssBytesPerSocket / 1024)} KiB** RSS per socket (JS heap + buffers ${fmt(result.heapBytesPerSocket / 1024)} KiB)`, '—', '≤ 8 KiB'])
  log(`idle        ${JSON.stringify(result)}`)
}

/**
 * A transaction of `browserTx` rows patched into a `browserRows`-row list in Chromium (/bench/[id]: the
 * whole list in one component over `useFetch`'s data): frame arrival → patched → Vue re-rendered → painted.
 * Twice: the plain list, and the same list with `content-visibility: auto` on its rows (`?cv`), which
 * lets Chromium skip laying out and painting the rows off screen. A warm-up round first, not counted.
 */
async function browser(ctx) {
  const { server, admin, writer } = ctx
  const { chromium } = await import('playwright-core')
  const { CHROMIUM_ARGS, CHROMIUM_PATH } = await import('../support/chromium.mjs')
  const variants = [{ name: 'plain', org: ORG.browser, query: '' }, { name: 'contentVisibility', org: ORG.browserCv, query: '?cv' }]
  for (const { org } of variants) await admin.query(`INSERT INTO tasks (organization_id, title) SELECT $1, 'row ' || n FROM generate_series(1, $2) n`, [org, SIZE.browserRows])
  const instance = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, headless: true })
  try {
    const result = { listRows: SIZE.browserRows, txRows: SIZE.browserTx }
    for (const variant of variants) {
      const page = await instance.newPage()
      await page.addInitScript(() => {
        const bench = { frames: /** @type {number[]} */ ([]), patched: [], flushed: [], rendered: [] }
        Object.assign(window, { __liveSyncBench: bench })
        const Native = window.WebSocket
        window.WebSocket = class extends Native {
          constructor(...params) {
            // @ts-expect-error forwarded as given
            super(...params)
            this.addEventListener('message', (event) => {
              if (typeof event.data === 'string' && event.data.startsWith('{"type":"tx"')) bench.frames.push(performance.now())
            })
          }
        }
      })
      await page.goto(`${server.url}/bench/${variant.org}${variant.query}`)
      await page.waitForSelector('#status[data-status="live"]', { timeout: 60_000 })
      const samples = []
      // Round 0 warms up (JIT, first layout of the rows touched); the last round inserts.
      for (let round = 0; round <= SIZE.browserRounds; round++) {
        await page.evaluate(() => {
          const bench = /** @type {any} */ (window).__liveSyncBench
          bench.frames.length = 0
          bench.patched.length = 0
          bench.flushed.length = 0
          bench.rendered.length = 0
        })
        const insert = round === SIZE.browserRounds
        await (insert
          ? writer.query(`INSERT INTO tasks (organization_id, title) SELECT $1, 'new ' || n FROM generate_series(1, $2) n`, [variant.org, SIZE.browserTx])
          : writer.query(`UPDATE tasks SET title = title || '.' WHERE id IN (SELECT id FROM tasks WHERE organization_id = $1 ORDER BY id LIMIT $2 OFFSET $3)`, [variant.org, SIZE.browserTx, round * SIZE.browserTx]))
        await page.waitForFunction(() => /** @type {any} */ (window).__liveSyncBench.rendered.length > 0, undefined, { timeout: 30_000 })
        const times = await page.evaluate(() => /** @type {any} */ (window).__liveSyncBench)
        const count = await page.locator('#tasks > li').count()
        // lastFrameToPatchedMs: the client's own work once the transaction's last part arrived (parse, patch, sync).
        if (round > 0) samples.push({ kind: insert ? 'insert' : 'update', patchedMs: times.patched[0] - times.frames[0], lastFrameToPatchedMs: times.patched[0] - times.frames.at(-1), vueRenderedMs: times.flushed[0] - times.frames[0], renderedMs: times.rendered[0] - times.frames[0], frames: times.frames.length, listLength: count })
      }
      await page.close()
      const updates = samples.filter(s => s.kind === 'update')
      const sorted = key => updates.map(s => s[key]).sort((a, b) => a - b)
      result[variant.name] = {
        samples,
        updateRenderedMs: summary(sorted('renderedMs')),
        updatePatchedMs: summary(sorted('patchedMs')),
        updateLastFrameToPatchedMs: summary(sorted('lastFrameToPatchedMs')),
        updateVueRenderedMs: summary(sorted('vueRenderedMs')),
        insertRenderedMs: samples.find(s => s.kind === 'insert')?.renderedMs,
      }
    }
    results.browser = result
    const { plain, contentVisibility: cv } = result
    const p50 = (r, key) => fmt(r[key].p50, 1)
    rows.push([`${fmt(SIZE.browserTx, 0)}-row transaction into a ${fmt(SIZE.browserRows, 0)}-row list, Chromium`, `first part → painted: updates median **${p50(plain, 'updateRenderedMs')} ms** (max ${fmt(plain.updateRenderedMs.max, 1)}), inserts ${fmt(plain.insertRenderedMs, 1)} ms; of an update: patched at ${p50(plain, 'updatePatchedMs')} ms (the client's own work after the last part ${p50(plain, 'updateLastFrameToPatchedMs')} ms), Vue re-rendered at ${p50(plain, 'updateVueRenderedMs')} ms, the rest is Chromium's layout and paint. The same list with \`content-visibility: auto\` on its rows: updates median **${p50(cv, 'updateRenderedMs')} ms** (max ${fmt(cv.updateRenderedMs.max, 1)}), inserts ${fmt(cv.insertRenderedMs, 1)} ms`, '—', '≤ 50 ms'])
    log(`browser     ${JSON.stringify(result)}`)
  }
  finally {
    await instance.close()
  }
}

/** Three instances on Redis vs one, interleaved (test/bench/cluster.bench.mjs; its own databases and servers). */
async function cluster(ctx) {
  log('[bench] cluster: commit → socket through Redis (three instances) vs a single instance …')
  const { clusterBench } = await import('./cluster.bench.mjs')
  const result = await clusterBench(ctx.adminUrl, { samples: SIZE.clusterTx, fanout: false })
  if (!result) return
  results.cluster = result
  rows.push([`3 instances on Redis, 1 socket, ${SIZE.clusterTx} single-row commits`, `commit → socket on a follower p50 **${fmt(result.follower.p50, 2)} ms**, p99 ${fmt(result.follower.p99, 2)} ms (on the leader p50 ${fmt(result.leader.p50, 2)} ms); a single instance, same run: p50 ${fmt(result.single.p50, 2)} ms, p99 ${fmt(result.single.p99, 2)} ms`, '—', '—'])
}

// ── run ─────────────────────────────────────────────────────────────────────

const startedAt = Date.now()
const postgres = await startPostgres({ sources: ['env', 'system', 'embedded'], log: () => {} })
let server = null
try {
  const url = await fixtureDatabase(postgres.url, 'live_sync_bench_run', ORGANIZATIONS)
  const admin = new pg.Client(url)
  admin.on('error', () => {})
  await admin.connect()
  const { rows: [{ server_version: pgVersion }] } = await admin.query('SHOW server_version')
  const machine = { cpus: os.cpus().length, cpu: os.cpus()[0]?.model, memoryGiB: Math.round(os.totalmem() / 2 ** 30), node: process.version, postgres: pgVersion, loadAverage: os.loadavg() }
  log(`[bench] ${QUICK ? 'quick' : 'full'} run on ${machine.cpus} × ${machine.cpu}, ${machine.memoryGiB} GiB, Node ${machine.node}, PostgreSQL ${pgVersion} (fsync off), load ${machine.loadAverage.map(n => n.toFixed(2)).join(' ')}`)
  const seq = { next: 1 }
  const ctx = { url, adminUrl: postgres.url, admin, seq, server: /** @type {any} */ (null), writer: /** @type {any} */ (null) }
  if (wanted('writer')) await writerOverhead(ctx)
  server = await startServer(url, {}, [], process.env.BENCH_ENTRY || undefined)
  ctx.server = server
  ctx.writer = new pg.Client(url)
  ctx.writer.on('error', () => {})
  await ctx.writer.connect()
  for (const [name, scenario] of /** @type {const} */ ([['light', light], ['load', load], ['fanout', fanout], ['large', large], ['idle', idle], ['browser', browser], ['cluster', cluster]])) {
    if (wanted(name)) await scenario(ctx)
  }
  await ctx.writer.end()
  await admin.end()
  const table = [
    '| scenario | live sync | trigger + `pg_notify` + LISTEN, same run | target |',
    '|---|---|---|---|',
    ...rows.map(cells => `| ${cells.join(' | ')} |`),
  ].join('\n')
  console.log(`\n${table}\n\n(${QUICK ? 'quick' : 'full'} run, ${((Date.now() - startedAt) / 1000).toFixed(0)} s; ${machine.cpus} cores, Node ${machine.node}, PostgreSQL ${pgVersion})`)
  if (JSON_FILE) writeFileSync(JSON_FILE, `${JSON.stringify({ quick: QUICK, machine, scenarios: results, table }, null, 2)}\n`)
}
finally {
  await server?.stop()
  await postgres.stop()
}
