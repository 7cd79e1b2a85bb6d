/**
 * Snapshots are authorized exactly as subscriptions: a server render that
 * reads a key's rows itself asks the app's `live-sync:authorize` handler with
 * the page's request, and shows nothing of a key the visitor may not read.
 */
import { url } from '@nuxt/test-utils/e2e'
import type { Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { launchBrowser, newTestPage, shownTasks, waitForLive } from '../support/browser'
import { setupFixtureServer, waitForLiveSync } from '../support/fixture-server'
import { createFixtureDatabase } from '../support/schema'

const db = await createFixtureDatabase('e2e_snapshot_access', {
  tasks: [{ organizationId: 1, title: 'only for members of 1' }, { organizationId: 2, title: 'for members of 2' }],
})
afterAll(() => db.drop())
// The app's handler reads the organizations a visitor may read from a cookie.
await setupFixtureServer({ databaseUrl: db.url, access: 'cookie' })

let browser: Browser
beforeAll(async () => {
  await waitForLiveSync()
  browser = await launchBrowser()
})
afterAll(async () => {
  await browser?.close()
})

async function visit(orgs: string, path: string) {
  const page = await newTestPage(browser)
  await page.page.context().addCookies([{ name: 'orgs', value: orgs, url: url('/') }])
  const response = await page.page.goto(url(path))
  expect(response?.status()).toBe(200)
  return { ...page, html: await response!.text() }
}

describe('a page that lets live sync read its rows', () => {
  it('is rendered with the rows of a key the visitor may read, and goes live', async () => {
    const { page, html, errors } = await visit('1', '/live/1')
    expect(html).toContain('>only for members of 1</li>')
    await waitForLive(page)
    expect(errors).toEqual([])
    await page.context().close()
  })

  it('shows nothing of a key the visitor may not read, on the server or in the browser', async () => {
    const { page, html } = await visit('2', '/live/1')
    expect(html).not.toContain('only for members of 1')
    await page.waitForSelector('#status[data-status="error"]')
    expect(await shownTasks(page)).toEqual([])
    await page.context().close()
  })
})
