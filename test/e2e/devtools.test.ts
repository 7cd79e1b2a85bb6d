/**
 * The Nuxt DevTools tab "Live Sync", against the fixture app under
 * `nuxi dev` (it exists only there) and in a real Chromium: the tab is
 * registered with Nuxt DevTools in development only; its page, opened
 * directly, shows the server (engine streaming, the publication's tables,
 * the watched models, a key an open page subscribes to, a transaction
 * after an insert, a refused subscription); opened from the app's tab (as
 * Nuxt DevTools embeds it) it shows that tab's subscriptions, the
 * transactions it received with their latency, and what was refused; and
 * it opens inside Nuxt DevTools itself.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { loadNuxt } from '@nuxt/kit'
import { readCachedModelTypes } from '../../src/model-types'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { launchBrowser, newTestPage, waitForLive } from '../support/browser'
import { startDevServer, type DevServer } from '../support/dev-server'
import { FIXTURE_DIR } from '../support/fixture-server'
import { createFixtureDatabase } from '../support/schema'
import { waitFor } from '../support/wait'

const db = await createFixtureDatabase('e2e_devtools', { tasks: [{ organizationId: 1, title: 'alpha' }, { organizationId: 2, title: 'bravo' }] })
let server: DevServer
let browser: Browser
const startedAt = Date.now()

beforeAll(async () => {
  // The fixture's authorize handler: a page's cookie `orgs=1` lets it read organization 1 only.
  server = await startDevServer(FIXTURE_DIR, { DATABASE_URL: db.url, LIVE_SYNC_FIXTURE_AUTH: 'cookie', NUXT_LIVE_SYNC_PUBLIC: 'false' })
  await waitFor(async () => {
    const state = await (await fetch(`${server.origin}/_live_sync/devtools/state`)).json() as { engine: { status: string } | null }
    return state.engine?.status === 'streaming'
  }, { timeout: 60_000, interval: 250, message: 'the dev server\'s engine did not stream' })
  browser = await launchBrowser()
}, 240_000)

afterAll(async () => {
  await browser?.close()
  await server?.stop()
  await db.drop()
})

const devtoolsUrl = () => `${server.origin}/_live_sync/devtools`

/** A page of the app for organization 1, live, in a context whose cookie lets it read organization 1. */
async function appPage(): Promise<Page> {
  const { page } = await newTestPage(browser)
  page.setDefaultTimeout(60_000)
  await page.context().addCookies([{ name: 'orgs', value: '1', url: server.origin }])
  await page.goto(`${server.origin}/org/1`, { timeout: 120_000 })
  await waitForLive(page, 60_000)
  return page
}

/** Goes to organization 2 inside the app (client-side): its subscription is refused. */
async function visitForbiddenOrganization(page: Page): Promise<void> {
  await page.click('#link-org-2')
  await page.waitForSelector('#status[data-status="error"]')
}

describe('the Live Sync tab of Nuxt DevTools', () => {
  it('is registered with Nuxt DevTools in development, and exists nowhere in a production build', async () => {
    const buildDir = mkdtempSync(join(tmpdir(), 'live-sync-devtools-'))
    try {
      for (const dev of [true, false]) {
        // DevTools itself stays off here: the module registers its tab through the hook DevTools calls.
        const nuxt = await loadNuxt({ cwd: FIXTURE_DIR, dev, overrides: { buildDir, devtools: { enabled: false } } })
        try {
          const tabs: Array<{ name: string, title: string, view: { type: string, src?: string } }> = []
          await nuxt.callHook('devtools:customTabs' as never, tabs as never)
          const routes = (nuxt.options.serverHandlers as Array<{ route?: string }>).map(handler => handler.route)
          if (dev) {
            expect(tabs).toContainEqual(expect.objectContaining({ name: 'live-sync', title: 'Live Sync', view: expect.objectContaining({ type: 'iframe', src: '/_live_sync/devtools' }) }))
            expect(routes).toEqual(expect.arrayContaining(['/_live_sync/devtools', '/_live_sync/devtools/state']))
          }
          else {
            expect(tabs.filter(tab => tab.name === 'live-sync')).toEqual([])
            expect(routes.filter(route => route?.includes('devtools'))).toEqual([])
            expect(routes).toContain('/_live_sync/metrics')
          }
        }
        finally {
          await nuxt.close()
        }
      }
    }
    finally {
      rmSync(buildDir, { recursive: true, force: true })
    }
  }, 120_000)

  it('has the dev server write the model types it discovered (for the editor) and cache them for the next build', async () => {
    const cache = join(FIXTURE_DIR, '.nuxt-dev/cache/nuxt-live-sync/models.json')
    const cached = await waitFor(() => readCachedModelTypes(cache), { message: `no ${cache}` })
    expect(cached.writtenAt).toBeGreaterThanOrEqual(startedAt)
    expect(cached.models.map(model => model.name)).toEqual(['Organization', 'Task', 'User', 'Project', 'OpenTodo'])
    const declaration = readFileSync(join(FIXTURE_DIR, '.nuxt-dev/types/live-sync-models.d.ts'), 'utf8')
    expect(declaration).toContain('interface LiveSyncWatchedModels {')
    expect(declaration).toContain('    Task: {\n      id: number\n')
  })

  it('shows the server when opened directly: streaming, the publication, the models, subscribed keys, transactions, refusals', async () => {
    const app = await appPage()
    const { page: tab } = await newTestPage(browser)
    await tab.goto(devtoolsUrl())
    await tab.waitForSelector('#engine-status[data-status="streaming"]')
    await tab.waitForSelector('#publication-tables li[data-table="public.tasks"][data-watched="true"]')
    await tab.waitForSelector('#publication-tables li[data-table="public.organizations"][data-watched="true"]')
    expect(await tab.locator('#publication-name').textContent()).toBe('live_sync')
    const task = tab.locator('#models tr[data-model="Task"]')
    await task.waitFor()
    expect(await task.textContent()).toContain('public.tasks')
    expect(await task.textContent()).toContain('organizationId')
    await tab.waitForSelector('#models tr[data-model="OpenTodo"] >> text=view, read back')
    // The open app page's subscription, as the server sees it.
    await tab.waitForSelector('#server-keys tr[data-key="1"]')
    expect(await tab.locator('#note').textContent()).toMatch(/server only/)

    const id = await db.insertTask({ organizationId: 1, title: 'charlie' })
    await app.waitForSelector(`#tasks > li[data-id="${id}"]`)
    await tab.waitForSelector('#server-feed tr span[data-key="1"]')

    await visitForbiddenOrganization(app)
    await tab.waitForSelector('#server-events tr[data-code="forbidden"] span[data-key="2"]')
    expect(await tab.locator('#server-events tr[data-code="forbidden"]').first().textContent()).toContain('not a member of organization 2')
    await app.context().close()
    await tab.context().close()
  })

  it('shows the app tab\'s own subscriptions, the transactions it received with their latency, and what was refused', async () => {
    const app = await appPage()
    // Opened from the app's tab, as Nuxt DevTools embeds it: the page finds that tab's live sync client.
    const [tab] = await Promise.all([
      app.context().waitForEvent('page'),
      app.evaluate(url => window.open(url, '_blank'), devtoolsUrl()),
    ])
    tab.setDefaultTimeout(30_000)
    const subscription = tab.locator('#subscriptions tr[data-key="1"][data-phase="live"]')
    await subscription.waitFor()
    const text = await subscription.textContent()
    expect(text).toContain('tasks: Task')
    expect(text).toContain('unsorted: Task')
    expect(text).toContain('focused: Task')
    expect(text).toMatch(/live/)
    expect(await subscription.locator('td').nth(2).textContent()).toMatch(/^\d+\/[0-9A-F]+$/)
    expect(await tab.locator('#tab-socket').getAttribute('data-status')).toBe('open')

    const id = await db.insertTask({ organizationId: 1, title: 'delta' })
    await app.waitForSelector(`#tasks > li[data-id="${id}"]`)
    const delivered = tab.locator('#feed tr[data-key="1"]').first()
    await delivered.waitFor()
    expect(await delivered.locator('td.ops').textContent()).toBe('insert 1')
    // commit → this tab, from the server's commit time for the same cursor.
    await waitFor(async () => /\d ms|\d s/.test(await delivered.locator('td.latency').textContent() ?? ''), { message: 'no latency shown' })

    await visitForbiddenOrganization(app)
    await tab.waitForSelector('#refusals tr[data-code="forbidden"][data-key="2"]')
    expect(await tab.locator('#refusals tr[data-code="forbidden"][data-key="2"]').textContent()).toContain('not a member of organization 2')
    await tab.waitForSelector('#subscriptions tr[data-key="2"][data-phase="failed"]')
    await app.context().close()
  })

  it('opens inside Nuxt DevTools and reads the app tab through it', async () => {
    const app = await appPage()
    // Not a first visit: DevTools would show its welcome screen instead of the tab.
    await app.context().addInitScript(() => localStorage.setItem('nuxt-devtools-first-visit', 'false'))
    // DevTools' floating button, in its shadow root (clicked in the page: the panel moves while it settles).
    const button = await app.waitForFunction(() => document.querySelector('nuxt-devtools-frame')?.shadowRoot?.querySelector('button[title="Toggle Nuxt DevTools"]'), undefined, { timeout: 60_000 })
    await button.evaluate(element => (element as HTMLButtonElement).click())
    const devtools = await waitFor(() => app.frames().find(frame => frame.url().includes('/__nuxt_devtools__/client')), { timeout: 60_000, message: 'Nuxt DevTools did not open' })
    await devtools.waitForFunction(() => Boolean((window as unknown as { useNuxtApp?: () => { $router?: unknown } }).useNuxtApp?.().$router), undefined, { timeout: 60_000 })
    // The tab's own route in DevTools (its sidebar lists custom tabs under the overflow menu).
    await devtools.evaluate(() => (window as unknown as { useNuxtApp: () => { $router: { push: (path: string) => Promise<unknown> } } }).useNuxtApp().$router.push('/modules/custom-live-sync'))
    const tab = await waitFor(() => app.frames().find(frame => frame.url().endsWith('/_live_sync/devtools')), { timeout: 60_000, message: 'the Live Sync tab\'s iframe did not load' })
    await tab.waitForSelector('#engine-status[data-status="streaming"]', { timeout: 30_000 })
    await tab.waitForSelector('#subscriptions tr[data-key="1"][data-phase="live"]', { timeout: 30_000 })
    expect(await tab.locator('#note').textContent()).toBe('')
    await app.context().close()
  }, 240_000)
})
