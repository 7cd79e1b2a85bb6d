/**
 * No change is lost between the server-side data load and the browser's
 * subscription: a writer commits every 20 ms from before the page is
 * requested until after it is live, and the page must end up showing exactly
 * the database's rows.
 */
import { url } from '@nuxt/test-utils/e2e'
import pg from 'pg'
import type { Browser } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { launchBrowser, newTestPage, waitForLive, waitForPageRows } from '../support/browser'
import { setupFixtureServer, waitForLiveSync } from '../support/fixture-server'
import { createFixtureDatabase } from '../support/schema'
import { waitFor } from '../support/wait'

const ORG = 1
const db = await createFixtureDatabase('e2e_no_gap', {
  tasks: [
    // Rows for the writers to update, each once (see Writer).
    ...Array.from({ length: 80 }, (_, i) => ({ organizationId: ORG, title: `seed ${i + 1}` })),
    { organizationId: 2, title: 'elsewhere' },
  ],
})
afterAll(() => db.drop())
await setupFixtureServer({ databaseUrl: db.url })

let browser: Browser
beforeAll(async () => {
  await waitForLiveSync()
  untouched.push(...(await db.tasksOf(ORG)).map(task => task.id))
  browser = await launchBrowser()
})
afterAll(async () => {
  await browser?.close()
})

/** Rows of the organization no writer has updated yet (each row is updated at most once). */
const untouched: number[] = []

/**
 * Commits one change every `intervalMs` on its own connection, alternating
 * an insert into the organization with an update, until stopped.
 *
 * No change is ever repaired by a later one: an inserted row is never
 * updated by the same writer, and an update goes to a row nobody updated
 * before. An update carries the whole row, so a lost insert would otherwise
 * be healed by a later update of the same row and go unnoticed.
 */
class Writer {
  commits = 0
  private running = true
  private readonly done: Promise<void>
  private readonly client: pg.Client
  private readonly inserted: number[] = []

  constructor(url: string, private readonly label: string, private readonly intervalMs = 20) {
    this.client = new pg.Client(url)
    this.done = this.run()
    this.done.catch(() => {}) // surfaces through stop() and commitsMore()'s deadline
  }

  /** Resolves once `count` more commits than now went through. */
  async commitsMore(count: number): Promise<void> {
    const target = this.commits + count
    await waitFor(() => this.commits >= target, { timeout: 10_000, message: `the writer did not commit ${count} more changes` })
  }

  /** Stops after the commit in flight; resolves when it is committed. */
  async stop(): Promise<number> {
    this.running = false
    await this.done
    // What it inserted is for later writers to update.
    untouched.push(...this.inserted)
    return this.commits
  }

  private async run(): Promise<void> {
    await this.client.connect()
    try {
      let n = 0
      while (this.running) {
        const started = Date.now()
        n++
        const id = n % 2 === 0 ? untouched.shift() : undefined
        if (id === undefined) {
          const { rows } = await this.client.query<{ id: number }>('INSERT INTO tasks (organization_id, title) VALUES ($1, $2) RETURNING id', [ORG, `${this.label} insert ${n}`])
          this.inserted.push(rows[0]!.id)
        }
        else {
          await this.client.query('UPDATE tasks SET title = $2, done = true, updated_at = now() WHERE id = $1', [id, `${this.label} update ${n}`])
        }
        this.commits++
        const wait = this.intervalMs - (Date.now() - started)
        if (wait > 0 && this.running) await new Promise(resolve => setTimeout(resolve, wait))
      }
    }
    finally {
      await this.client.end()
    }
  }
}

const rowsOfOrg = async () => (await db.tasksOf(ORG)).map(task => ({ id: task.id, title: task.title, done: String(task.done) }))

describe('a page loading while changes are committed', () => {
  // Three rounds, each with a fresh page (a fresh tab: new socket, new SSR cursor).
  for (const round of [1, 2, 3]) {
    it(`ends up with exactly the database's rows (round ${round})`, async () => {
      const writer = new Writer(db.url, `r${round}`)
      let stopped = false
      const { page, errors } = await newTestPage(browser)
      try {
        // The writer is committing before the page is requested …
        await writer.commitsMore(5)
        const response = await page.goto(url(`/org/${ORG}`))
        expect(response?.status()).toBe(200)
        // … and all the while it loads, hydrates and subscribes.
        await waitForLive(page)
        await writer.commitsMore(10)
        const commits = await writer.stop()
        stopped = true
        expect(commits).toBeGreaterThanOrEqual(15)
        await waitForPageRows(page, rowsOfOrg, { timeout: 15_000, label: `round ${round}` })
        expect(await page.locator('#status').getAttribute('data-status')).toBe('live')
        expect(errors).toEqual([])
      }
      finally {
        if (!stopped) await writer.stop().catch(() => {})
        await page.context().close()
      }
    })
  }

  it('ends up with exactly the database\'s rows after a client-side navigation to the page', async () => {
    const { page, errors } = await newTestPage(browser)
    await page.goto(url('/org/2'))
    await waitForLive(page)
    const writer = new Writer(db.url, 'nav')
    let stopped = false
    try {
      await writer.commitsMore(5)
      // The new page loads its data over the existing socket's session and subscribes from the navigation's cursor.
      await page.click('#link-org-1')
      await page.waitForSelector(`#tasks[data-org="${ORG}"]`)
      await waitForLive(page)
      expect(await page.evaluate(() => window.location.pathname)).toBe(`/org/${ORG}`)
      await writer.commitsMore(10)
      await writer.stop()
      stopped = true
      await waitForPageRows(page, rowsOfOrg, { timeout: 15_000, label: 'after navigation' })
      expect(errors).toEqual([])
    }
    finally {
      if (!stopped) await writer.stop().catch(() => {})
      await page.context().close()
    }
  })
})
