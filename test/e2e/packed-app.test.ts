/**
 * The module as it is published, used the way the README says. `npm pack` of
 * a clean copy of the repository (no dist/: prepack builds it) is installed
 * into a brand-new Nuxt app in a temporary folder outside the repository,
 * whose files are the README's code blocks as written (each block whose first
 * line names a file). The app is typechecked (`nuxi typecheck`) and built
 * (`nuxi build`); its migrations run through sequelize-cli as the README's
 * non-superuser role, the live sync migration first and the table after it;
 * the built server runs as that role against the test cluster, and rows
 * inserted, updated and deleted with `psql` reach the page in headless
 * Chromium.
 *
 * Slow by nature (an npm install and a Nuxt build): the steps run in order,
 * each with a deadline sized for a cold npm cache on a busy 2-core machine.
 * Everything it makes (temporary folder, server, database, role) is removed
 * afterwards, and removed first if an earlier run left it.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, readFileSync, rmSync } from 'node:fs'
import { cp, mkdir, mkdtemp, readdir, symlink, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import type { Browser } from 'playwright-core'
import { afterAll, describe, expect, inject, it } from 'vitest'
import { launchBrowser, newTestPage, type TestPage } from '../support/browser'
import { dropDatabase, freePort } from '../support/postgres.mjs'
import { waitFor } from '../support/wait'

const ROOT = fileURLToPath(new URL('../..', import.meta.url))
const README = readFileSync(path.join(ROOT, 'README.md'), 'utf8')
const MINUTE = 60_000

/** The names the README uses, and the ones this test uses on the shared cluster instead. */
const README_ROLE = 'app'
const README_DATABASE = 'myapp'
const ROLE = 'packed_app_role'
const DATABASE = 'packed_app'
const PASSWORD = 'change-me'

/** The files of the app that come from the README, by the path named on a block's first line. */
const README_FILES = [
  '.sequelizerc',
  'server/migrations/20260101000000-live-sync-publication.cjs',
  'server/migrations/20260702000000-create-tasks.cjs',
  'server/utils/db.ts',
  'nuxt.config.ts',
  'server/api/organizations/[id]/tasks.get.ts',
  'server/api/tasks/[id].get.ts',
  'server/plugins/live-sync-auth.ts',
  'app/pages/organizations/[id].vue',
]

/** Fenced code blocks of a Markdown text. */
function codeBlocks(markdown: string): Array<{ lang: string, code: string }> {
  return [...markdown.matchAll(/^```(\w*)\n([\s\S]*?)^```$/gm)].map(match => ({ lang: match[1]!, code: match[2]! }))
}

/** The numbered steps of the README's walk-through (`### 1. Install` …). */
function walkThrough(): string {
  return README.split(/^(?=#{1,6} )/m).filter(section => /^### \d+\. /.test(section)).join('')
}

/** The walk-through's files: code blocks whose first line is `// path` or `<!-- path -->`. */
function readmeFiles(): Map<string, string> {
  const files = new Map<string, string>()
  for (const { code } of codeBlocks(walkThrough())) {
    const file = /^(?:\/\/|<!--) *(\S+?) *(?:-->)?\n/.exec(code)?.[1]
    // A path: no spaces, a folder or an extension (`// FOR ALL TABLES` is prose).
    if (!file || !/^\.?[\w[\]-]+(?:[/.][\w[\]-]+)+$|^\.\w+$/.test(file)) continue
    if (files.has(file)) throw new Error(`[packed-app] README.md has two code blocks for ${file}`)
    files.set(file, code)
  }
  return files
}

/** The versions the repository itself builds and tests with (package-lock.json). */
function repoVersion(name: string): string {
  const lock = JSON.parse(readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version: string }> }
  const version = lock.packages[`node_modules/${name}`]?.version
  if (!version) throw new Error(`[packed-app] ${name} is not in package-lock.json`)
  return version
}

/**
 * The environment of a command a user would type: without what vitest and
 * `npm test` set (NODE_ENV=test and TEST/VITEST put Nuxt in test mode; the
 * npm_package_/npm_lifecycle_ variables describe this repository).
 */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [name, value] of Object.entries(process.env)) {
    if (/^(?:NODE_ENV|TEST|VITEST.*|DATABASE_URL|NODE_OPTIONS|INIT_CWD|npm_package_.*|npm_lifecycle_.*|npm_config_local_prefix|npm_command)$/i.test(name)) continue
    env[name] = value
  }
  return { ...env, NUXT_TELEMETRY_DISABLED: '1', CI: process.env.CI ?? '1', ...extra }
}

const children = new Set<ChildProcess>()

/** Kills a child's whole process group (npx → npm → node …). */
function killGroup(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): void {
  if (child.exitCode !== null || child.signalCode !== null || !child.pid) return
  try {
    process.kill(-child.pid, signal)
  }
  catch {
    // already gone
  }
}

/** Runs a command to completion; rejects with its output's tail on failure or after `timeout` ms. */
function run(command: string, args: string[], options: { cwd: string, timeout: number, env?: NodeJS.ProcessEnv }): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd: options.cwd, env: options.env ?? userEnv(), stdio: ['ignore', 'pipe', 'pipe'], detached: true })
    children.add(child)
    let output = ''
    child.stdout!.on('data', (chunk: Buffer) => output += chunk)
    child.stderr!.on('data', (chunk: Buffer) => output += chunk)
    const timer = setTimeout(() => killGroup(child, 'SIGKILL'), options.timeout)
    const label = `\`${[command, ...args].join(' ')}\` in ${options.cwd}`
    child.on('error', (error) => {
      clearTimeout(timer)
      children.delete(child)
      reject(new Error(`[packed-app] ${label} could not start: ${error.message}`))
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      children.delete(child)
      if (code === 0) return resolve(output)
      const why = signal === 'SIGKILL' ? `did not finish within ${options.timeout / 1000} s` : `failed (exit ${code ?? signal})`
      reject(new Error(`[packed-app] ${label} ${why}; its output ends with:\n${output.slice(-6000)}`))
    })
  })
}

/** The `psql` binary, or null when the machine has none. */
function findPsql(): string | null {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && existsSync(path.join(dir, 'psql'))) return path.join(dir, 'psql')
  }
  return null
}

describe('the packed module in a new Nuxt app, following the README', () => {
  const adminUrl = inject('pgAdminUrl')
  const appUrl = Object.assign(new URL(adminUrl), { username: ROLE, password: PASSWORD, pathname: `/${DATABASE}` }).toString()
  let work = ''
  let tarball = ''
  let appDir = ''
  let server: ChildProcess | null = null
  let baseUrl = ''
  let serverOutput = ''
  let browser: Browser | null = null

  const admin = async <T>(use: (client: pg.Client) => Promise<T>, url = adminUrl): Promise<T> => {
    const client = new pg.Client(url)
    await client.connect()
    try {
      return await use(client)
    }
    finally {
      await client.end()
    }
  }
  const forgetDatabase = async () => {
    await dropDatabase(adminUrl, DATABASE)
    await admin(client => client.query(`DROP ROLE IF EXISTS ${ROLE}`))
  }

  // Whatever happens, no server, process or folder outlives the test process.
  const onExit = () => {
    for (const child of children) killGroup(child, 'SIGKILL')
    if (work) rmSync(work, { recursive: true, force: true })
  }
  process.once('exit', onExit)

  afterAll(async () => {
    await browser?.close()
    if (server) {
      const stopped = new Promise(resolve => server!.once('close', resolve))
      killGroup(server)
      await Promise.race([stopped, new Promise(resolve => setTimeout(resolve, 10_000).unref())])
      killGroup(server, 'SIGKILL')
    }
    await forgetDatabase()
    process.removeListener('exit', onExit)
    onExit()
  }, 60_000)

  /** Waits for the server to print a line matching `pattern`. */
  const serverSays = (pattern: RegExp, timeout: number) => waitFor(() => pattern.test(serverOutput), {
    timeout, interval: 50, message: `[packed-app] the server did not print ${pattern} (its output so far:\n${serverOutput.slice(-4000)})`,
  })

  it('README: names every file of the app once, and the commands and SQL the test follows', () => {
    expect(walkThrough()).toMatch(/^### 1\. Install/)
    expect([...readmeFiles().keys()].sort()).toEqual([...README_FILES].sort())
    for (const command of [
      'npx nuxi module add nuxt-live-sync', 'npm install sequelize pg', 'npm install -D sequelize-cli',
      'npx sequelize-cli db:migrate', 'npx nuxi build', 'node .output/server/index.mjs',
    ]) expect(walkThrough()).toContain(command)
    expect(codeBlocks(walkThrough()).filter(block => block.lang === 'sql' && block.code.includes('CREATE ROLE'))).toHaveLength(1)
  })

  // Waits for: copying the repository without node_modules/dist/build output, then
  // `npm pack`, whose prepack builds the module (nuxt-module-build, ~25 s here).
  it('npm pack of a clean checkout builds dist/ and ships dist, migrations, README and LICENSE, nothing of test or playground', async () => {
    work = await mkdtemp(path.join(os.tmpdir(), 'live-sync-packed-app-'))
    const checkout = path.join(work, 'checkout')
    const skip = new Set(['node_modules', '.git', 'dist', '.nuxt', '.output', '.data', 'coverage'])
    await cp(ROOT, checkout, { recursive: true, filter: source => !skip.has(path.basename(source)) })
    expect(existsSync(path.join(checkout, 'dist'))).toBe(false)
    // The dependencies a clean checkout gets from `npm ci`, without installing them again.
    await symlink(path.join(ROOT, 'node_modules'), path.join(checkout, 'node_modules'))
    await run('npm', ['pack', '--pack-destination', work], { cwd: checkout, timeout: 5 * MINUTE, env: userEnv({ JITI_FS_CACHE: 'false' }) })
    const [name] = (await readdir(work)).filter(file => file.endsWith('.tgz'))
    expect(name).toBeDefined()
    tarball = path.join(work, name!)

    const files = (await run('tar', ['-tzf', tarball], { cwd: work, timeout: MINUTE })).trim().split('\n').map(file => file.replace(/^package\//, ''))
    expect(files).toEqual(expect.arrayContaining(['package.json', 'README.md', 'LICENSE', 'dist/module.mjs', 'dist/types.d.mts', 'dist/migration.cjs', 'dist/migration.mjs', 'dist/runtime/server/plugins/live-sync.js', 'migrations/20260101000000-live-sync-publication.cjs']))
    expect(files.filter(file => !/^(?:dist\/|migrations\/|package\.json$|README\.md$|LICENSE$)/.test(file))).toEqual([])
  }, 6 * MINUTE)

  // Waits for: `npm install` of nuxt and its ~700 packages (from the npm cache
  // when warm, from the registry when cold), then the app's postinstall `nuxt prepare`.
  it('installs into a new Nuxt app outside the repository, with no second copy of a shared dependency', async () => {
    expect(tarball, 'npm pack did not succeed').not.toBe('')
    appDir = path.join(work, 'app')
    expect(path.relative(ROOT, appDir).startsWith('..')).toBe(true)
    // What `npx nuxi init` makes (minimal template) ...
    await mkdir(path.join(appDir, 'app'), { recursive: true })
    await writeFile(path.join(appDir, 'package.json'), `${JSON.stringify({
      name: 'packed-app',
      private: true,
      type: 'module',
      scripts: { build: 'nuxt build', dev: 'nuxt dev', postinstall: 'nuxt prepare' },
      dependencies: {
        'nuxt': repoVersion('nuxt'),
        'vue': repoVersion('vue'),
        'vue-router': repoVersion('vue-router'),
        // ... `npx nuxi module add nuxt-live-sync` and `npm install sequelize pg` (README) ...
        'nuxt-live-sync': `file:${tarball}`,
        'pg': repoVersion('pg'),
        'sequelize': repoVersion('sequelize'),
      },
      // ... `npm install -D sequelize-cli` (README), and what `nuxi typecheck` needs.
      devDependencies: {
        'sequelize-cli': repoVersion('sequelize-cli'),
        'typescript': repoVersion('typescript'),
        'vue-tsc': repoVersion('vue-tsc'),
      },
    }, null, 2)}\n`)
    await writeFile(path.join(appDir, 'tsconfig.json'), `${JSON.stringify({
      files: [],
      references: ['app', 'server', 'shared', 'node'].map(part => ({ path: `./.nuxt/tsconfig.${part}.json` })),
    }, null, 2)}\n`)
    await writeFile(path.join(appDir, 'app/app.vue'), '<template>\n  <NuxtPage />\n</template>\n')
    // ... and the README's files, as written.
    for (const [file, code] of readmeFiles()) {
      await mkdir(path.dirname(path.join(appDir, file)), { recursive: true })
      await writeFile(path.join(appDir, file), code)
    }

    await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund'], { cwd: appDir, timeout: 12 * MINUTE })
    expect(existsSync(path.join(appDir, 'node_modules/nuxt-live-sync/dist/module.mjs'))).toBe(true)
    // Caret ranges let the module share the app's copies.
    for (const shared of ['pg', '@nuxt/kit', 'h3', 'crossws', 'defu']) {
      expect(existsSync(path.join(appDir, 'node_modules/nuxt-live-sync/node_modules', shared)), `a second ${shared} under nuxt-live-sync`).toBe(false)
    }
  }, 13 * MINUTE)

  // Waits for: vue-tsc over the app, its server routes and the module's types.
  it('nuxi typecheck passes: the README\'s code compiles as written', async () => {
    expect(appDir, 'the app was not installed').not.toBe('')
    await run('npx', ['nuxi', 'typecheck'], { cwd: appDir, timeout: 5 * MINUTE })
  }, 6 * MINUTE)

  // Waits for: the Vite client and server builds and Nitro's bundle (~15 s here).
  it('nuxi build', async () => {
    expect(appDir, 'the app was not installed').not.toBe('')
    await run('npx', ['nuxi', 'build'], { cwd: appDir, timeout: 5 * MINUTE })
    expect(existsSync(path.join(appDir, '.output/server/index.mjs'))).toBe(true)
  }, 6 * MINUTE)

  // Waits for: sequelize-cli running the two migrations as the README's role.
  it('the README\'s role runs the migrations; the live sync one comes first and makes a publication it owns', async () => {
    expect(appDir, 'the app was not installed').not.toBe('')
    await forgetDatabase()
    const [setup] = codeBlocks(walkThrough()).filter(block => block.lang === 'sql' && block.code.includes('CREATE ROLE'))
    const statements = setup!.code.split(';').map(statement => statement.trim()).filter(Boolean)
      .map(statement => statement.replaceAll(new RegExp(`\\b${README_DATABASE}\\b`, 'g'), DATABASE).replaceAll(new RegExp(`\\b${README_ROLE}\\b`, 'g'), ROLE))
    await admin(async (client) => {
      for (const statement of statements) await client.query(statement)
    })
    const { rows: [role] } = await admin(client => client.query(`SELECT rolsuper, rolreplication FROM pg_roles WHERE rolname = $1`, [ROLE]))
    expect(role).toEqual({ rolsuper: false, rolreplication: true })

    await run('npx', ['sequelize-cli', 'db:migrate'], { cwd: appDir, timeout: 2 * MINUTE, env: userEnv({ DATABASE_URL: appUrl }) })
    const state = await admin(async client => ({
      publication: (await client.query(`SELECT puballtables, pg_get_userbyid(pubowner) AS owner FROM pg_publication WHERE pubname = 'live_sync'`)).rows,
      published: (await client.query(`SELECT tablename FROM pg_publication_tables WHERE pubname = 'live_sync'`)).rows,
      identity: (await client.query(`SELECT relreplident AS identity FROM pg_class WHERE relname = 'tasks'`)).rows,
    }), appUrl)
    // The table came after the publication: not in it, and REPLICA IDENTITY DEFAULT, until the server starts.
    expect(state).toEqual({ publication: [{ puballtables: false, owner: ROLE }], published: [], identity: [{ identity: 'd' }] })
  }, 3 * MINUTE)

  // Waits for: the built server to listen and its live sync engine to prepare the table.
  it('the built server, started as that role, publishes the table and makes it REPLICA IDENTITY FULL', async () => {
    expect(existsSync(path.join(appDir, '.output/server/index.mjs')), 'the app was not built').toBe(true)
    const port = await freePort()
    server = spawn(process.execPath, ['.output/server/index.mjs'], {
      cwd: appDir,
      env: userEnv({ DATABASE_URL: appUrl, PORT: String(port), HOST: '127.0.0.1' }),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    })
    children.add(server)
    server.once('close', () => children.delete(server!))
    server.stdout!.on('data', (chunk: Buffer) => serverOutput += chunk)
    server.stderr!.on('data', (chunk: Buffer) => serverOutput += chunk)
    await serverSays(/Listening on/, MINUTE)
    await serverSays(/\[live-sync\] prepared the watched tables for live sync: added public\.tasks to publication "live_sync"; set REPLICA IDENTITY FULL on public\.tasks/, MINUTE)
    expect(serverOutput).not.toMatch(/\[live-sync\].*(?:error|warn|not |cannot)/i)
    baseUrl = `http://127.0.0.1:${port}`
  }, 3 * MINUTE)

  // Waits for: Chromium, the page going live, then each change reaching the DOM.
  it('inserts, updates and deletes made with psql reach the page', async () => {
    expect(baseUrl, 'the server did not start').not.toBe('')
    const psql = findPsql()
    /** A write from outside the app, as the README's example does it. */
    const write = async (sql: string) => {
      if (psql) await run(psql, [appUrl, '-v', 'ON_ERROR_STOP=1', '-c', sql], { cwd: work, timeout: MINUTE })
      else await admin(client => client.query(sql), appUrl)
    }
    await write(`INSERT INTO tasks (organization_id, title) VALUES (1, 'delta'), (1, 'bravo'), (2, 'elsewhere')`)
    const [selected] = await admin(async client => (await client.query<{ id: number }>(`SELECT id FROM tasks WHERE title = 'delta'`)).rows, appUrl)

    browser = await launchBrowser()
    const { page, errors }: TestPage = await newTestPage(browser)
    const response = await page.goto(`${baseUrl}/organizations/1?task=${selected!.id}`)
    expect(response?.status()).toBe(200)
    const shows = async (titles: string[], selectedTitle: string | null, what: string) => {
      try {
        await waitFor(async () => {
          const list = await page.locator('ul > li').allTextContents()
          const paragraphs = await page.locator('p').allTextContents()
          return JSON.stringify(list.map(text => text.trim())) === JSON.stringify(titles)
            && (selectedTitle === null ? paragraphs.length === 1 : paragraphs[1]?.trim() === `Selected: ${selectedTitle}`)
        }, { timeout: 20_000, interval: 50 })
      }
      catch (error) {
        throw new Error(`[packed-app] ${what}: the page shows ${JSON.stringify(await page.locator('body').textContent())}; expected tasks ${JSON.stringify(titles)} and selected ${JSON.stringify(selectedTitle)}`, { cause: error })
      }
    }

    await waitFor(async () => (await page.locator('p').first().textContent())?.trim() === 'live', { timeout: 20_000, interval: 50, message: '[packed-app] the page did not go live' })
    await shows(['bravo', 'delta'], 'delta', 'the server-rendered page')

    await write(`INSERT INTO tasks (organization_id, title) VALUES (2, 'not for this page')`)
    await write(`INSERT INTO tasks (organization_id, title) VALUES (1, 'alpha')`)
    await shows(['alpha', 'bravo', 'delta'], 'delta', 'after an INSERT (sorted by the page\'s sync)')

    await write(`UPDATE tasks SET title = 'charlie' WHERE title = 'delta'`)
    await shows(['alpha', 'bravo', 'charlie'], 'charlie', 'after an UPDATE')

    await write(`DELETE FROM tasks WHERE title = 'charlie'`)
    await shows(['alpha', 'bravo'], null, 'after a DELETE')

    expect(errors).toEqual([])
    expect(serverOutput).not.toMatch(/\[live-sync\].*(?:error|warn|not |cannot)/i)
  }, 2 * MINUTE)
})
