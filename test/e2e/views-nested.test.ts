/**
 * useLiveSync without a ref (rows read by live sync itself, on the server for
 * the first render), a model on a view that honours the view, projects whose
 * nested tasks stay live, and the snapshot frames of the built server.
 */
import { $fetch, url } from '@nuxt/test-utils/e2e'
import type { Browser, Page } from 'playwright-core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isLsn } from '../../src/runtime/shared/lsn'
import { launchBrowser, newTestPage, shownTasks, waitForLive, waitForPageRows, type TestPage } from '../support/browser'
import { frameOf, LiveSyncTestClient, setupFixtureServer, waitForLiveSync } from '../support/fixture-server'
import { createFixtureDatabase } from '../support/schema'
import { waitFor } from '../support/wait'

const db = await createFixtureDatabase('e2e_views_nested', { tasks: [{ organizationId: 2, title: 'a task of 2' }] })
afterAll(() => db.drop())
// To-dos: the model OpenTodo reads the view open_todos (the to-dos not done).
await db.sql(`INSERT INTO todos (organization_id, title, done) VALUES
  (1, 'open one', false), (1, 'done one', true), (1, 'open two', false), (2, 'open elsewhere', false)`)
await setupFixtureServer({ databaseUrl: db.url })

let browser: Browser
beforeAll(async () => {
  await waitForLiveSync()
  browser = await launchBrowser()
})
afterAll(async () => {
  await browser?.close()
})

const openTodosOf = async (org: number) => (await db.sql<{ id: number, title: string }>('SELECT id, title FROM todos WHERE organization_id = $1 AND NOT done ORDER BY id', [org]))
  .map(todo => ({ id: todo.id, title: todo.title, done: 'false' }))

async function insertTodo(org: number, title: string, done = false): Promise<number> {
  const [row] = await db.sql<{ id: number }>('INSERT INTO todos (organization_id, title, done) VALUES ($1, $2, $3) RETURNING id', [org, title, done])
  return row!.id
}

async function open(path: string, prepare?: (page: Page) => void): Promise<TestPage & { html: string }> {
  const page = await newTestPage(browser)
  prepare?.(page.page)
  const response = await page.page.goto(url(path))
  expect(response?.status()).toBe(200)
  return { ...page, html: await response!.text() }
}

/** Waits for the page's row `id` to be shown (with `title`) or gone. */
async function waitForRow(page: Page, id: number, state: { title: string } | 'absent'): Promise<void> {
  await page.waitForFunction(([id, state]) => {
    const li = document.querySelector(`#tasks > li[data-id="${id}"]`)
    return state === 'absent' ? li === null : li?.textContent?.trim() === state.title
  }, [id, state] as const, { timeout: 10_000 })
}

describe('a list of a model on a view, without a ref of its own', () => {
  it('is rendered on the server from a snapshot and goes live with no request of its own', async () => {
    const sent: Array<{ type: string, since?: string }> = []
    const { page, html, errors } = await open('/open/1', page => page.on('websocket', socket => socket.on('framesent', frame => sent.push(JSON.parse(String(frame.payload))))))
    expect(html).toContain('>open one</li>')
    expect(html).toContain('>open two</li>')
    expect(html).not.toContain('done one')
    expect(html).not.toContain('open elsewhere')
    // The snapshot travels in the payload with its cursor: hydration shows it at once.
    expect(html).toMatch(/live-sync:snapshot:1:/)
    await waitForLive(page)
    expect(await shownTasks(page)).toEqual(await openTodosOf(1))
    // Subscribed from the snapshot's cursor; no snapshot asked for over the socket.
    expect(sent.filter(frame => frame.type !== 'ping')).toEqual([{ type: 'sub', key: 1, since: expect.any(String) }])
    // The payload spells "/" as \u002F.
    expect(html).toContain(sent[0]!.since!.replace('/', '\\u002F'))
    const id = await insertTodo(1, 'added live')
    await waitForRow(page, id, { title: 'added live' })
    expect(errors).toEqual([])
    await page.context().close()
  })

  it('drops a row set to done, gets it back when undone, and never shows rows outside the view', async () => {
    const { page, errors } = await open('/open/1')
    await waitForLive(page)
    const rows = () => openTodosOf(1)
    await db.sql('UPDATE todos SET done = true, updated_at = now() WHERE id = 1')
    await waitForRow(page, 1, 'absent')
    await waitForPageRows(page, rows)
    await db.sql('UPDATE todos SET done = false, title = $2, updated_at = now() WHERE id = $1', [1, 'open one again'])
    await waitForRow(page, 1, { title: 'open one again' })
    const doneId = await insertTodo(1, 'inserted done', true)
    const openId = await insertTodo(1, 'inserted open')
    await waitForRow(page, openId, { title: 'inserted open' })
    expect(await page.locator(`#tasks > li[data-id="${doneId}"]`).count()).toBe(0)
    await waitForPageRows(page, rows)
    expect(errors).toEqual([])
    await page.context().close()
  })

  it('loads its rows over the socket after a client-side navigation to it, and stays live', async () => {
    const { page, errors } = await open('/open/2')
    await waitForLive(page)
    expect(await shownTasks(page)).toEqual(await openTodosOf(2))
    await page.click('#link-org-1')
    await page.waitForSelector('#tasks[data-org="1"]')
    await waitForPageRows(page, () => openTodosOf(1))
    await waitForLive(page)
    const id = await insertTodo(1, 'after navigating')
    await waitForRow(page, id, { title: 'after navigating' })
    await waitForPageRows(page, () => openTodosOf(1))
    expect(errors).toEqual([])
    await page.context().close()
  })
})

describe('projects with their tasks nested', () => {
  interface ShownProject {
    id: number
    name: string
    tasks: number[]
  }
  const shownProjects = (page: Page): Promise<ShownProject[]> => page.$$eval('#projects > li', items => items.map(item => ({
    id: Number(item.getAttribute('data-id')),
    name: item.querySelector('.name')?.textContent?.trim() ?? '',
    tasks: Array.from(item.querySelectorAll('.tasks > li')).map(task => Number(task.getAttribute('data-id'))),
  })))
  async function projectsOf(org: number): Promise<ShownProject[]> {
    const projects = await db.sql<{ id: number, name: string }>('SELECT id, name FROM projects WHERE organization_id = $1 ORDER BY id', [org])
    const tasks = await db.sql<{ id: number, project_id: number }>('SELECT id, project_id FROM tasks WHERE organization_id = $1 AND project_id IS NOT NULL ORDER BY id', [org])
    return projects.map(project => ({ ...project, tasks: tasks.filter(task => task.project_id === project.id).map(task => task.id) }))
  }
  /** Nested rows keep the order they arrived in; compare them as sets. */
  const sorted = (projects: ShownProject[]) => projects.map(project => ({ ...project, tasks: [...project.tasks].sort((a, b) => a - b) }))
  async function waitForProjects(page: Page, org: number): Promise<void> {
    let last: unknown
    try {
      await waitFor(async () => {
        const [shown, wanted] = [sorted(await shownProjects(page)), await projectsOf(org)]
        last = { shown, wanted }
        return JSON.stringify(shown) === JSON.stringify(wanted)
      }, { timeout: 10_000, interval: 25 })
    }
    catch (error) {
      throw new Error(`[e2e] the projects page did not come to show the database's projects: ${JSON.stringify(last)}`, { cause: error })
    }
  }

  it('keeps the nested tasks live: a task moved between projects leaves one list and joins the other', async () => {
    const [alpha, beta] = await db.sql<{ id: number }>(`INSERT INTO projects (organization_id, name) VALUES (1, 'alpha'), (1, 'beta') RETURNING id`)
    const [a1, a2, b1] = await db.sql<{ id: number }>(`INSERT INTO tasks (organization_id, project_id, title) VALUES (1, $1, 'a1'), (1, $1, 'a2'), (1, $2, 'b1') RETURNING id`, [alpha!.id, beta!.id])
    const { page, html, errors } = await open('/projects/1')
    expect(html).toContain('alpha')
    expect(html).toContain('>a1</li>')
    await waitForLive(page)
    await waitForProjects(page, 1)

    await db.sql('UPDATE tasks SET project_id = $2, updated_at = now() WHERE id = $1', [a2!.id, beta!.id])
    await waitFor(async () => JSON.stringify(sorted(await shownProjects(page)).map(project => project.tasks)) === JSON.stringify([[a1!.id], [a2!.id, b1!.id].sort((a, b) => a - b)]))
    await waitForProjects(page, 1)

    // A task inserted into a project, a project renamed, a nested task deleted, a project added with a task.
    const [a3] = await db.sql<{ id: number }>(`INSERT INTO tasks (organization_id, project_id, title) VALUES (1, $1, 'a3') RETURNING id`, [alpha!.id])
    await db.sql(`UPDATE projects SET name = 'alpha (renamed)', updated_at = now() WHERE id = $1`, [alpha!.id])
    await db.sql('DELETE FROM tasks WHERE id = $1', [b1!.id])
    await db.sql(`WITH p AS (INSERT INTO projects (organization_id, name) VALUES (1, 'gamma') RETURNING id) INSERT INTO tasks (organization_id, project_id, title) SELECT 1, id, 'g1' FROM p`)
    await waitForProjects(page, 1)
    expect((await shownProjects(page))[0]).toMatchObject({ name: 'alpha (renamed)', tasks: [a1!.id, a3!.id] })
    expect(errors).toEqual([])
    await page.context().close()
  })
})

describe('the snapshot frames of the built server', () => {
  it('answers a subscribed key\'s snapshot request with its rows and a cursor, and refuses one for a key not subscribed', async () => {
    const client = await LiveSyncTestClient.connect()
    await client.next(frameOf('hello'))
    await client.request({ type: 'sub', key: 2 }, frameOf('subscribed'))
    const done = await client.request({ type: 'snapshot', key: 2, models: [{ model: 'Task' }, { model: 'OpenTodo' }], ref: 1 }, frameOf('snapshotted'))
    expect(done).toEqual({ type: 'snapshotted', key: '2', ref: 1, cursor: expect.any(String), models: { Task: { id: ['id'] }, OpenTodo: { id: ['id'] } } })
    expect(isLsn(done.cursor)).toBe(true)
    const pages = client.received(frameOf('snapshot'))
    const api = await $fetch<Array<Record<string, unknown>>>('/api/organizations/2/tasks')
    expect(pages.filter(frame => frame.index === 0).flatMap(frame => frame.rows)).toEqual(api)
    expect(pages.filter(frame => frame.index === 1).flatMap(frame => frame.rows).map(row => row.id)).toEqual((await openTodosOf(2)).map(todo => todo.id))

    const refused = await client.request({ type: 'snapshot', key: 3, models: [{ model: 'Task' }], ref: 2 }, frameOf('error'))
    expect(refused).toEqual({ type: 'error', code: 'bad-request', key: '3', ref: 2, message: expect.stringContaining('has not subscribed to') })
    await client.close()
  })
})
