/**
 * Two real Chromium pages on the built fixture app, one per organization:
 * inserts, updates, deletes and a key change made through the app's API and
 * with plain SQL show up in the right page's DOM, rows are patched in place,
 * and a page never shows another key's rows. Subscriptions pass the app's
 * cookie-reading `live-sync:authorize` handler.
 */
import { $fetch, url } from '@nuxt/test-utils/e2e'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { launchBrowser, newTestPage, shownTasks, waitForLive, waitForPageRows, type TestPage } from '../support/browser'
import { setupFixtureServer, waitForLiveSync } from '../support/fixture-server'
import { createFixtureDatabase } from '../support/schema'

const db = await createFixtureDatabase('e2e_browser', {
  tasks: [
    { organizationId: 1, title: 'alpha' }, // id 1
    { organizationId: 1, title: 'bravo' }, // id 2
    { organizationId: 2, title: 'charlie' }, // id 3
    { organizationId: 1, title: 'delta' }, // id 4
  ],
})
afterAll(() => db.drop())
// The app authorizes subscriptions from a cookie: each page may read its own organization only.
await setupFixtureServer({ databaseUrl: db.url, access: 'cookie' })

let browser: Browser
let one: TestPage
let two: TestPage
const ssrHtml: Record<string, string> = {}
/** Tasks the tests inserted into organization 2. */
const insertedIntoTwo: number[] = []

beforeAll(async () => {
  await waitForLiveSync()
  browser = await launchBrowser()
  one = await newTestPage(browser)
  two = await newTestPage(browser)
  await one.page.context().addCookies([{ name: 'orgs', value: '1', url: url('/') }])
  await two.page.context().addCookies([{ name: 'orgs', value: '2', url: url('/') }])
  for (const [page, org, query] of [[one.page, 1, '?focus=4'], [two.page, 2, '']] as const) {
    const response = await page.goto(url(`/org/${org}${query}`))
    expect(response?.status()).toBe(200)
    ssrHtml[org] = await response!.text()
  }
  await Promise.all([waitForLive(one.page), waitForLive(two.page)])
  // Every task id the org 2 page ever renders, however briefly.
  await two.page.evaluate(() => {
    const seen = new Set<string>()
    const record = (node: Node) => {
      if (node instanceof HTMLElement && node.dataset.id) seen.add(node.dataset.id)
    }
    document.querySelectorAll('#tasks > li').forEach(record)
    new MutationObserver((mutations) => {
      for (const mutation of mutations) {
        mutation.addedNodes.forEach(record)
        record(mutation.target)
      }
    }).observe(document.querySelector('#tasks')!, { childList: true, subtree: true, attributes: true, attributeFilter: ['data-id'] })
    ;(window as unknown as { __seenIds: Set<string> }).__seenIds = seen
  })
})

afterAll(async () => {
  await browser?.close()
})

const seenOnTwo = () => two.page.evaluate(() => [...(window as unknown as { __seenIds: Set<string> }).__seenIds].map(Number).sort((a, b) => a - b))

/** Waits until the page shows exactly the organization's rows of the database (ids, titles, done, in id order). */
async function expectPageToMatchDb(page: Page, org: number): Promise<void> {
  await waitForPageRows(page, async () => (await db.tasksOf(org)).map(task => ({ id: task.id, title: task.title, done: String(task.done) })), { label: `org ${org} page` })
}

/** Waits for the page's row `id` to satisfy `state`. */
async function waitForRow(page: Page, id: number, state: { title?: string, done?: boolean } | 'absent'): Promise<void> {
  await page.waitForFunction(([id, state]) => {
    const li = document.querySelector(`#tasks > li[data-id="${id}"]`)
    if (state === 'absent') return li === null
    if (!li) return false
    return (state.title === undefined || li.textContent?.trim() === state.title)
      && (state.done === undefined || li.getAttribute('data-done') === String(state.done))
  }, [id, state] as const, { timeout: 10_000 })
}

/** Marks the row's <li> and its object in the page's data, to check later that both are the same ones. */
function markRow(page: Page, id: number, token: string) {
  return page.evaluate(([id, token]) => {
    const li = document.querySelector(`#tasks > li[data-id="${id}"]`) as (HTMLElement & { __e2eMark?: string }) | null
    const row = (window as unknown as { __tasks: { value: Array<{ id: number }> } }).__tasks.value.find(task => task.id === id)
    if (!li || !row) throw new Error(`row ${id} is not on the page`)
    li.__e2eMark = token
    Object.defineProperty(row, '__e2eMark', { value: token, enumerable: false, configurable: true })
  }, [id, token] as const)
}

function marksOf(page: Page, id: number) {
  return page.evaluate((id) => {
    const li = document.querySelector(`#tasks > li[data-id="${id}"]`) as (HTMLElement & { __e2eMark?: string }) | null
    const row = (window as unknown as { __tasks: { value: Array<{ id: number, __e2eMark?: string }> } }).__tasks.value.find(task => task.id === id)
    return { li: li?.__e2eMark ?? null, row: row?.__e2eMark ?? null }
  }, id)
}

/** Waits until the element shows exactly `text`. */
async function waitForText(page: Page, selector: string, text: string): Promise<void> {
  await page.waitForFunction(([sel, wanted]) => document.querySelector(sel)?.textContent?.trim() === wanted, [selector, text] as const, { timeout: 10_000 })
}

describe('two browser pages on two keys', () => {
  it('render the server-side list and go live', async () => {
    expect(ssrHtml[1]).toContain('>alpha</li>')
    expect(ssrHtml[1]).toContain('>delta</li>')
    expect(ssrHtml[1]).not.toContain('>charlie</li>')
    expect(ssrHtml[2]).toContain('>charlie</li>')
    expect(ssrHtml[2]).not.toContain('>alpha</li>')
    expect(await shownTasks(one.page)).toEqual([
      { id: 1, title: 'alpha', done: 'false' },
      { id: 2, title: 'bravo', done: 'false' },
      { id: 4, title: 'delta', done: 'false' },
    ])
    expect(await shownTasks(two.page)).toEqual([{ id: 3, title: 'charlie', done: 'false' }])
  })

  it('show inserts on the inserted row\'s key only (through the API and with SQL)', async () => {
    const echo = await $fetch<{ id: number }>('/api/tasks', { method: 'POST', body: { organizationId: 1, title: 'echo' } })
    await waitForRow(one.page, echo.id, { title: 'echo', done: false })
    const foxtrot = await db.insertTask({ organizationId: 2, title: 'foxtrot' })
    insertedIntoTwo.push(foxtrot)
    await waitForRow(two.page, foxtrot, { title: 'foxtrot', done: false })
    await expectPageToMatchDb(one.page, 1)
    await expectPageToMatchDb(two.page, 2)
  })

  it('patch updates into the same row object and the same <li> element', async () => {
    await markRow(one.page, 2, 'bravo-before-update')
    await markRow(one.page, 1, 'alpha-before-update')
    const liCount = await one.page.locator('#tasks > li').count()

    await $fetch('/api/tasks/2', { method: 'PATCH', body: { title: 'bravo (renamed)', done: true } })
    await waitForRow(one.page, 2, { title: 'bravo (renamed)', done: true })
    expect(await marksOf(one.page, 2)).toEqual({ li: 'bravo-before-update', row: 'bravo-before-update' })

    await db.sql(`UPDATE tasks SET title = 'alpha (SQL)', updated_at = now() WHERE id = 1`)
    await waitForRow(one.page, 1, { title: 'alpha (SQL)' })
    expect(await marksOf(one.page, 1)).toEqual({ li: 'alpha-before-update', row: 'alpha-before-update' })

    expect(await one.page.locator('#tasks > li').count()).toBe(liCount)
    await expectPageToMatchDb(one.page, 1)

    // Refs patched in place with no `sync` result (Nuxt 4 useFetch data) re-render too.
    await db.sql(`UPDATE tasks SET title = 'delta (SQL)', updated_at = now() WHERE id = 4`)
    await waitForText(one.page, '#focused', 'delta (SQL)')
    await waitForText(one.page, '#unsorted > li[data-id="4"]', 'delta (SQL)')
    await waitForText(one.page, '#unsorted > li[data-id="2"]', 'bravo (renamed)')
  })

  it('remove deleted rows (through the API and with SQL)', async () => {
    await $fetch('/api/tasks/4', { method: 'DELETE' })
    await waitForRow(one.page, 4, 'absent')
    await waitForText(one.page, '#focused', 'none') // the single-row ref became null
    expect(await one.page.locator('#unsorted > li[data-id="4"]').count()).toBe(0)
    const [foxtrot] = await db.sql<{ id: number }>(`DELETE FROM tasks WHERE title = 'foxtrot' RETURNING id`)
    await waitForRow(two.page, foxtrot!.id, 'absent')
    await expectPageToMatchDb(one.page, 1)
    await expectPageToMatchDb(two.page, 2)
  })

  it('apply a large transaction, sent in parts, once: every row at once, in order', async () => {
    // Counts how often the page's list changed while the parts arrived: once, at the last part.
    await two.page.evaluate(() => {
      const list = document.querySelector('#unsorted')!
      const counts: number[] = []
      Object.assign(window, { __e2eCounts: counts })
      new MutationObserver(() => counts.push(list.children.length)).observe(list, { childList: true })
    })
    const before = (await shownTasks(two.page)).length
    const bulk = await db.sql<{ id: number }>(`INSERT INTO tasks (organization_id, title) SELECT 2, 'bulk ' || lpad(n::text, 4, '0') FROM generate_series(1, 3000) n RETURNING id`)
    insertedIntoTwo.push(...bulk.map(row => row.id))
    await two.page.waitForFunction(n => document.querySelectorAll('#unsorted > li').length === n, before + 3000, { timeout: 20_000 })
    await expectPageToMatchDb(two.page, 2)
    expect(await two.page.evaluate(() => (window as unknown as { __e2eCounts: number[] }).__e2eCounts)).toEqual([before + 3000])
    await db.sql(`DELETE FROM tasks WHERE title LIKE 'bulk %'`)
    await two.page.waitForFunction(n => document.querySelectorAll('#unsorted > li').length === n, before, { timeout: 20_000 })
  })

  it('move a row whose key changed (UPDATE organization_id) from one page to the other', async () => {
    expect(await seenOnTwo()).not.toContain(1)
    await markRow(one.page, 2, 'bravo-before-move')
    await db.sql('UPDATE tasks SET organization_id = 2, updated_at = now() WHERE id = 1')
    await waitForRow(one.page, 1, 'absent')
    await waitForRow(two.page, 1, { title: 'alpha (SQL)' })
    await expectPageToMatchDb(one.page, 1)
    await expectPageToMatchDb(two.page, 2)
    // The rows that stayed were left alone.
    expect(await marksOf(one.page, 2)).toEqual({ li: 'bravo-before-move', row: 'bravo-before-move' })
  })

  it('reload their data when the table is truncated (resync → refresh)', async () => {
    await db.sql('TRUNCATE tasks')
    await Promise.all([waitForRow(one.page, 2, 'absent'), waitForRow(two.page, 3, 'absent')])
    const after = await db.insertTask({ organizationId: 2, title: 'golf' })
    insertedIntoTwo.push(after)
    await waitForRow(two.page, after, { title: 'golf' })
    await expectPageToMatchDb(one.page, 1)
    await expectPageToMatchDb(two.page, 2)
  })

  it('never showed another key\'s rows, stayed live, and logged no errors', async () => {
    // The ids that were ever in organization 2: charlie (3), foxtrot, and alpha (1) once it moved there.
    const everInTwo = new Set([3, 1, ...insertedIntoTwo])
    const seen = await seenOnTwo()
    expect(seen.filter(id => !everInTwo.has(id))).toEqual([])
    expect(seen).toContain(1)
    for (const page of [one.page, two.page]) expect(await page.locator('#status').getAttribute('data-status')).toBe('live')
    expect(one.errors).toEqual([])
    expect(two.errors).toEqual([])
  })
})
