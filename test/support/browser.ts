/**
 * Headless Chromium for the browser tests: the system's Debian build driven by
 * playwright-core (never a downloaded browser). A missing Chromium fails the
 * tests with the fix, it never skips them.
 */
import { existsSync } from 'node:fs'
import { chromium, type Browser, type Page } from 'playwright-core'
import { CHROMIUM_ARGS, CHROMIUM_PATH } from './chromium.mjs'
import { waitFor } from './wait'

export { CHROMIUM_ARGS, CHROMIUM_PATH }

/** Launches Chromium; throws (failing the test file) when it is not installed. */
export async function launchBrowser(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(
      `[e2e] Chromium is not installed at ${CHROMIUM_PATH}, so the browser tests cannot run (they fail rather than skip). `
      + 'Install it with `apt-get update && apt-get install -y --no-install-recommends chromium`, '
      + 'or point CHROMIUM_PATH at a Chromium binary.',
    )
  }
  try {
    return await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS, headless: true, timeout: 30_000 })
  }
  catch (error) {
    throw new Error(`[e2e] Chromium at ${CHROMIUM_PATH} failed to start: ${(error as Error).message}`, { cause: error })
  }
}

export interface TestPage {
  page: Page
  /** Uncaught exceptions and console errors of the page, for asserting there were none. */
  errors: string[]
}

/** A new page (own context: own cookies, own WebSocket) that records its errors. */
export async function newTestPage(browser: Browser): Promise<TestPage> {
  const context = await browser.newContext()
  const page = await context.newPage()
  page.setDefaultTimeout(15_000)
  const errors: string[] = []
  page.on('pageerror', error => errors.push(`pageerror: ${error.message}`))
  page.on('console', (message) => {
    // The fixture has no favicon; the browser's 404 for it is not the app's error.
    if (message.type() === 'error' && !message.location().url.endsWith('/favicon.ico')) errors.push(`console.error: ${message.text()}`)
  })
  return { page, errors }
}

/** Waits until the page's live sync status badge says `live`. */
export async function waitForLive(page: Page, timeout = 15_000): Promise<void> {
  try {
    await page.waitForSelector('#status[data-status="live"]', { timeout })
  }
  catch (error) {
    const status = await page.locator('#status').getAttribute('data-status').catch(() => null)
    throw new Error(`[e2e] ${page.url()} did not go live within ${timeout} ms (status ${JSON.stringify(status)})`, { cause: error })
  }
}

export interface ShownTask {
  id: number
  title: string
  done: string | null
}

/** The tasks the page's list shows, in DOM order. */
export function shownTasks(page: Page): Promise<ShownTask[]> {
  return page.$$eval('#tasks > li', items => items.map(item => ({
    id: Number(item.getAttribute('data-id')),
    title: item.textContent?.trim() ?? '',
    done: item.getAttribute('data-done'),
  })))
}

/**
 * Waits until the page's list equals `expected()` (re-read on every attempt);
 * on the deadline fails with the difference between the two.
 */
export async function waitForPageRows(page: Page, expected: () => Promise<ShownTask[]>, options: { timeout?: number, label?: string } = {}): Promise<void> {
  const { timeout = 10_000, label = page.url() } = options
  try {
    await waitFor(async () => JSON.stringify(await shownTasks(page)) === JSON.stringify(await expected()), { timeout, interval: 25 })
  }
  catch (error) {
    const [shown, wanted] = [await shownTasks(page), await expected()]
    const missing = wanted.filter(row => !shown.some(other => JSON.stringify(other) === JSON.stringify(row)))
    const extra = shown.filter(row => !wanted.some(other => JSON.stringify(other) === JSON.stringify(row)))
    throw new Error(`[e2e] ${label}: the page did not come to show the expected rows within ${timeout} ms; `
      + `it shows ${shown.length}, expected ${wanted.length}; missing or different: ${JSON.stringify(missing)}; unexpected: ${JSON.stringify(extra)}`, { cause: error })
  }
}
