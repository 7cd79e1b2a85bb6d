/**
 * What the benchmark's scenarios share: the fixture app's database, the
 * built fixture server as a child process, the CPU time of a process from
 * /proc, and one monotonic clock (`process.hrtime`: CLOCK_MONOTONIC, the
 * same in every process of the machine, unlike `performance.timeOrigin`).
 */
import { execFileSync, spawn } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { createDatabase, freePort } from '../support/postgres.mjs'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const SERVER_ENTRY = `${ROOT}test/fixtures/app/.output/server/index.mjs`

/** Monotonic nanoseconds, comparable across the processes of this machine. */
export const nowNs = () => process.hrtime.bigint()
/** Monotonic milliseconds (a float), comparable across processes. */
export const nowMs = () => Number(process.hrtime.bigint()) / 1e6

const TICKS_PER_SECOND = 100 // getconf CLK_TCK on Linux

/**
 * CPU time a process has used, in ms: the scheduler's own count of each of
 * its threads' time on a CPU (/proc/<pid>/task/<tid>/schedstat, in ns). Not
 * utime + stime, which are sampled at each 10 ms tick: a process woken by the
 * same timer tick as the writer is charged far from what it ran.
 */
export function cpuMs(pid) {
  let ns = 0
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0])
    }
    catch {
      // The thread ended meanwhile.
    }
  }
  return ns / 1e6
}

/** User and system CPU time of a process, in ms. */
export function cpuSplitMs(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return { user: Number(fields[11]) * 1000 / TICKS_PER_SECOND, system: Number(fields[12]) * 1000 / TICKS_PER_SECOND }
}

/** Resident memory of a process, bytes. */
export function rssBytes(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  return Number(/^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1] ?? 0) * 1024
}

/** The tables of the fixture app (test/support/fixture-schema.ts), read without a TypeScript loader. */
function fixtureSchema() {
  const source = readFileSync(`${ROOT}test/support/fixture-schema.ts`, 'utf8')
  return /FIXTURE_SCHEMA = `([\s\S]*?)`/.exec(source)?.[1] ?? ''
}

/**
 * A fresh database of the fixture app with `organizations` organizations,
 * its publication made by the module's own migration SQL (superuser form).
 */
export async function fixtureDatabase(adminUrl, name, organizations) {
  const url = await createDatabase(adminUrl, name)
  const client = new pg.Client(url)
  await client.connect()
  try {
    await client.query(fixtureSchema())
    await client.query(`INSERT INTO organizations (id, name) SELECT n, 'Org ' || n FROM generate_series(1, $1) n`, [organizations])
    await client.query(`SELECT setval('organizations_id_seq', $1)`, [organizations])
    await client.query('CREATE PUBLICATION live_sync FOR ALL TABLES')
    for (const table of ['organizations', 'tasks', 'users', 'projects', 'todos']) await client.query(`ALTER TABLE ${table} REPLICA IDENTITY FULL`)
  }
  finally {
    await client.end()
  }
  return url
}

/**
 * The built fixture app (a real Nitro server) on a free port, public access,
 * with `--expose-gc` so memory can be measured after a collection.
 */
export async function startServer(databaseUrl, env = {}, nodeArgs = [], entry = SERVER_ENTRY) {
  if (!existsSync(entry)) throw new Error(`[bench] the fixture app is not built (${entry}); run \`node test/scripts/prepare.mjs\` first.`)
  const port = await freePort()
  const child = spawn(process.execPath, ['--expose-gc', ...nodeArgs, entry], {
    env: { ...process.env, DATABASE_URL: databaseUrl, PORT: String(port), HOST: '127.0.0.1', NUXT_LIVE_SYNC_PUBLIC: 'true', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  })
  let stderr = ''
  child.stderr.on('data', (chunk) => {
    stderr = (stderr + chunk).slice(-4000)
  })
  const exited = new Promise(resolve => child.once('exit', resolve))
  const base = `http://127.0.0.1:${port}`
  const deadline = Date.now() + 60_000
  for (;;) {
    const state = await fetch(`${base}/api/test-support/live-sync`).then(r => r.json()).catch(() => null)
    if (state?.status === 'streaming') break
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL')
      throw new Error(`[bench] the fixture server did not start streaming: ${stderr}`)
    }
    await sleep(50)
  }
  return {
    port,
    pid: /** @type {number} */ (child.pid),
    url: base,
    wsUrl: `ws://127.0.0.1:${port}/_live_sync?v=1`,
    stderr: () => stderr,
    state: key => fetch(`${base}/api/test-support/live-sync${key === undefined ? '' : `?key=${key}`}`).then(r => r.json()),
    /** Full garbage collection in the server; its memory after. */
    gc: async () => {
      await fetch(`${base}/api/test-support/gc`, { method: 'POST' })
      return rssBytes(/** @type {number} */ (child.pid))
    },
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM')
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000)
      await exited
      clearTimeout(timer)
    },
  }
}

export const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

/** The q-quantile of an ascending array. */
export const quantile = (sorted, q) => sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]

/** `1 234.5` */
export const fmt = (n, digits = 1) => Number.isFinite(n) ? n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 }) : '–'

export const MiB = 1024 * 1024

/**
 * `pg_recvlogical` streaming `publication` with pgoutput (protocol 1 unless `options` say otherwise) from a
 * slot of its own, made here and dropped by `stop()`. Into /dev/null: the walsender decodes every
 * transaction as for live sync and the client does nothing with it, so what a writer loses to that is what
 * any logical-replication consumer costs it before doing any work of its own. With `onData` the stream
 * goes to a pipe instead, and `onData` hears when each piece arrived (the output has no framing to parse).
 * `env` adds to its environment (e.g. `PGOPTIONS`). Resolves once its slot is active.
 * @param {string} binary
 * @param {string} url
 * @param {pg.Client} admin
 * @param {{ publication: string, options?: string[], env?: Record<string, string>, onData?: (at: number, bytes: number) => void }} settings
 */
export async function startRecvlogical(binary, url, admin, { publication, options = ['proto_version=1'], env = {}, onData }) {
  const slot = `bench_recvlogical_${process.pid}`
  const child = spawn(binary, ['-d', url, '-S', slot, '-P', 'pgoutput', '--create-slot', '--if-not-exists', '--start', '--no-loop',
    '-o', `publication_names=${publication}`, ...options.flatMap(option => ['-o', option]), '-f', onData ? '-' : '/dev/null', '-F', '0', '-s', '1'], { env: { ...process.env, ...env }, stdio: ['ignore', onData ? 'pipe' : 'ignore', 'pipe'] })
  child.stdout?.on('data', chunk => onData?.(nowMs(), chunk.length))
  let stderr = ''
  child.stderr.on('data', (chunk) => {
    stderr += chunk
  })
  const exited = new Promise(resolve => child.once('exit', resolve))
  for (const deadline = Date.now() + 30_000; ;) {
    const { rows } = await admin.query('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [slot])
    if (rows[0]?.active) break
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`[bench] pg_recvlogical did not start streaming: ${stderr.trim() || `exit ${child.exitCode}`}`)
    await sleep(50)
  }
  return {
    pid: /** @type {number} */ (child.pid),
    async stop() {
      child.kill('SIGINT')
      await exited
      await admin.query('SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1', [slot])
    },
  }
}

/** Postgres's own logical replication client, if it is on the PATH (Debian's postgresql-client puts it there). */
export function findRecvlogical() {
  try {
    return execFileSync('which', ['pg_recvlogical'], { encoding: 'utf8' }).trim() || null
  }
  catch {
    return null
  }
}

/**
 * Watches the walsender of the database's one active slot on a connection of its own (opened before the
 * transaction, so that connecting does not count): when it has decoded every WAL record before `commitLsn`
 * (its `sent_lsn` got there), no consumer of the replication stream can hear of the transaction earlier.
 * Also how much WAL it still had to decode when COMMIT returned.
 */
export async function watchWalsender(url) {
  const monitor = new pg.Client(url)
  await monitor.connect()
  const sql = `SELECT pg_wal_lsn_diff($1::pg_lsn, r.sent_lsn)::float8 AS behind FROM pg_stat_replication r
    JOIN pg_replication_slots s ON s.active_pid = r.pid WHERE s.database = current_database()`
  return {
    /** Polls until the walsender got to `commitLsn`: { behindBytes at the first poll, reachedAt (nowMs) }. */
    async reaches(commitLsn) {
      let behindBytes = Number.NaN
      for (const deadline = Date.now() + 120_000; Date.now() < deadline;) {
        const { rows } = await monitor.query(sql, [commitLsn])
        const behind = rows[0]?.behind ?? Number.NaN
        if (Number.isNaN(behindBytes)) behindBytes = behind
        if (behind <= 0) return { behindBytes, reachedAt: nowMs() }
        await sleep(1)
      }
      return { behindBytes, reachedAt: Number.NaN }
    },
    close: () => monitor.end(),
  }
}
