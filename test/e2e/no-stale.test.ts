/**
 * Nothing stale, ever: after a gap the server cannot replay, pages that
 * passed no `refresh` (one with its own useFetch data, one whose rows live
 * sync reads itself) are brought back to the database's rows by a snapshot.
 * The server keeps a small history here (30 rows), so a tab offline for a
 * while falls out of it.
 */
import { $fetch, url } from '@nuxt/test-utils/e2e'
import pg from 'pg'
import type { Browser, Page, WebSocketRoute } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { compareLsn } from '../../src/runtime/shared/lsn'
import { launchBrowser, newTestPage, waitForLive, waitForPageRows, type TestPage } from '../support/browser'
import { setupFixtureServer, waitForLiveSync } from '../support/fixture-server'
import { createFixtureDatabase } from '../support/schema'
import { waitFor } from '../support/wait'
import { Writer } from '../support/writer'

const ORG = 1
const db = await createFixtureDatabase('e2e_no_stale', {
  tasks: Array.from({ length: 20 }, (_, i) => ({ organizationId: i % 4 === 3 ? 2 : ORG, title: `seed ${i + 1}` })),
})
afterAll(() => db.drop())
await setupFixtureServer({ databaseUrl: db.url, env: { NUXT_LIVE_SYNC_REPLAY_MAX_ROWS: '30' } })

let browser: Browser
beforeAll(async () => {
  await waitForLiveSync()
  browser = await launchBrowser()
})
afterAll(async () => {
  await browser?.close()
})

interface EngineState {
  status: string
  cursor: string | null
  epoch: string
}
const engineState = () => $fetch<EngineState>('/api/test-support/live-sync')

const rowsOfOrg = async () => (await db.tasksOf(ORG)).map(task => ({ id: task.id, title: task.title, done: String(task.done) }))

/** The two pages without `refresh`: their own useFetch data, and rows live sync reads itself. */
const PAGES = [`/fresh/${ORG}`, `/live/${ORG}`]

async function openPages(prepare?: (page: Page) => Promise<void>): Promise<TestPage[]> {
  const pages: TestPage[] = []
  for (const path of PAGES) {
    const page = await newTestPage(browser)
    await prepare?.(page.page)
    const response = await page.page.goto(url(path))
    expect(response?.status()).toBe(200)
    pages.push(page)
  }
  await Promise.all(pages.map(({ page }) => waitForLive(page)))
  return pages
}

/** Waits until every page shows exactly the organization's rows of the database, live and without errors. */
async function expectPagesToMatchDb(pages: TestPage[], label: string): Promise<void> {
  for (const [i, { page, errors }] of pages.entries()) {
    await waitForPageRows(page, rowsOfOrg, { timeout: 20_000, label: `${label}, ${PAGES[i]}` })
    await waitForLive(page)
    expect(errors).toEqual([])
  }
}

/** Closes the pages' contexts. */
async function closePages(pages: TestPage[]): Promise<void> {
  await Promise.all(pages.map(({ page }) => page.context().close()))
}

describe('pages without refresh after a gap the server cannot replay', () => {
  it('equal the database after the replication connection is killed three times under writes', async () => {
    const pages = await openPages()
    const writer = new Writer({ url: db.url, organizations: [ORG], label: 'gap' })
    try {
      for (let round = 1; round <= 3; round++) {
        const before = await engineState()
        await writer.commitsMore(5)
        const [killed] = await db.sql<{ killed: number }>(`SELECT count(pg_terminate_backend(active_pid))::int AS killed FROM pg_replication_slots WHERE database = current_database() AND active_pid IS NOT NULL`)
        expect(killed!.killed, `round ${round}: a walsender to kill`).toBe(1)
        // A new replication session (a new temporary slot) streams again; what was committed meanwhile was never streamed.
        await waitFor(async () => {
          const state = await engineState()
          return state.status === 'streaming' && state.epoch !== before.epoch
        }, { timeout: 20_000, message: `round ${round}: the engine did not stream again` })
        await writer.commitsMore(5)
      }
    }
    finally {
      await writer.stop()
    }
    expect(writer.commits).toBeGreaterThanOrEqual(30)
    await expectPagesToMatchDb(pages, 'after three walsender kills')
    await closePages(pages)
  })

  it('equal the database after a tab was offline for longer than the server\'s history', async () => {
    // The tab's live sync socket passes through a route the test can cut, like a network would
    // (context.setOffline does not reach WebSockets; it would only make Nuxt's own fetches fail).
    let offline = false
    const routes = new Set<{ page: WebSocketRoute, server: WebSocketRoute }>()
    const pages = await openPages(page => page.context().routeWebSocket(/\/_live_sync/, (socket) => {
      if (offline) return socket.close({ code: 4000, reason: 'offline' })
      const pair = { page: socket, server: socket.connectToServer() }
      routes.add(pair)
      socket.onClose(() => routes.delete(pair))
    }))
    offline = true
    for (const pair of [...routes]) {
      await pair.server.close()
      await pair.page.close({ code: 4000, reason: 'offline' })
    }
    await waitFor(async () => (await Promise.all(pages.map(({ page }) => page.locator('#status').getAttribute('data-status')))).every(status => status === 'reconnecting'))

    // Twice as many rows as the server keeps, one transaction each, and a row of another key.
    const client = new pg.Client(db.url)
    await client.connect()
    try {
      for (let i = 0; i < 60; i++) {
        if (i % 10 === 0) await client.query(`DELETE FROM tasks WHERE id = (SELECT min(id) FROM tasks WHERE organization_id = $1)`, [ORG])
        else await client.query('INSERT INTO tasks (organization_id, title, done) VALUES ($1, $2, $3)', [i % 7 === 0 ? 2 : ORG, `while offline ${i}`, i % 2 === 0])
      }
      const lsn = (await client.query<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn')).rows[0]!.lsn
      await waitFor(async () => {
        const { cursor } = await engineState()
        return cursor !== null && compareLsn(cursor, lsn) >= 0
      }, { timeout: 15_000, message: 'the server did not dispatch the writes' })
    }
    finally {
      await client.end()
    }

    offline = false
    await expectPagesToMatchDb(pages, 'back online')
    await closePages(pages)
  })

  it('equal the database after TRUNCATE and inserts in the same and later transactions', async () => {
    const pages = await openPages()
    const client = new pg.Client(db.url)
    await client.connect()
    try {
      await client.query('BEGIN')
      await client.query('TRUNCATE tasks')
      await client.query(`INSERT INTO tasks (organization_id, title) VALUES ($1, 'after truncate 1'), ($1, 'after truncate 2'), (2, 'elsewhere')`, [ORG])
      await client.query('COMMIT')
      for (let i = 3; i <= 6; i++) await client.query('INSERT INTO tasks (organization_id, title, done) VALUES ($1, $2, $3)', [ORG, `after truncate ${i}`, i % 2 === 0])
    }
    finally {
      await client.end()
    }
    expect((await rowsOfOrg()).map(row => row.title)).toEqual(['after truncate 1', 'after truncate 2', 'after truncate 3', 'after truncate 4', 'after truncate 5', 'after truncate 6'])
    await expectPagesToMatchDb(pages, 'after TRUNCATE')
    await closePages(pages)
  })
})
