/**
 * The wire protocol against the built fixture server: a real Nitro/crossws
 * route, a real replication stream, plain `ws` clients.
 */
import { $fetch } from '@nuxt/test-utils/e2e'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { isLsn, compareLsn } from '../../src/runtime/shared/lsn'
import type { Change, TxMessage } from '../../src/runtime/shared/protocol'
import { frameOf, LiveSyncTestClient, setupFixtureServer, waitForLiveSync } from '../support/fixture-server'
import { createFixtureDatabase } from '../support/schema'

const db = await createFixtureDatabase('e2e_websocket')
afterAll(() => db.drop()) // registered first, so it runs after the server stopped
await setupFixtureServer({ databaseUrl: db.url })
beforeAll(async () => {
  await waitForLiveSync()
})

/** A client that got its hello. */
async function connect(): Promise<LiveSyncTestClient> {
  const client = await LiveSyncTestClient.connect()
  await client.next(frameOf('hello'))
  return client
}

/** Subscribes and returns the `subscribed` answer. */
function subscribe(client: LiveSyncTestClient, key: string | number, since?: string) {
  return client.request(since ? { type: 'sub', key, since } : { type: 'sub', key }, frameOf('subscribed', frame => frame.key === String(key)))
}

/** The next `tx` of `key` that carries a change of the task `id`. */
function txOfTask(client: LiveSyncTestClient, key: string | number, id: number) {
  return client.next(frameOf('tx', frame => frame.key === String(key) && frame.changes.some(change => change.model === 'Task' && change.id === id)))
}

/** The task's JSON as the app's own API serves it (Sequelize's toJSON). */
function apiTask(id: number) {
  return $fetch<Record<string, unknown>>(`/api/tasks/${id}`)
}

describe('the live sync WebSocket route of a built app', () => {
  it('greets with a hello: protocol version, epoch and cursor, nothing about models or tables', async () => {
    const client = await LiveSyncTestClient.connect()
    const hello = await client.next(frameOf('hello'))
    expect(client.frames[0]).toBe(hello) // the very first frame
    expect(hello).toEqual({
      type: 'hello',
      v: 1,
      epoch: expect.stringMatching(/^[0-9a-f]+$/),
      cursor: expect.any(String),
    })
    expect(isLsn(hello.cursor)).toBe(true)
    await client.close()
  })

  it('answers sub with subscribed (key as a string, the current cursor, nothing replayed, the watched models\' id attributes)', async () => {
    const client = await connect()
    const subscribed = await subscribe(client, 1)
    expect(subscribed).toEqual({
      type: 'subscribed',
      key: '1',
      cursor: expect.any(String),
      replayed: 0,
      models: {
        Organization: { id: ['id'] },
        Task: { id: ['id'] },
        User: { id: ['id'] },
        Project: { id: ['id'] },
        OpenTodo: { id: ['id'] },
      },
    })
    expect(isLsn(subscribed.cursor)).toBe(true)
    // A string key and a number key are the same subscription.
    expect(await subscribe(client, '1')).toMatchObject({ type: 'subscribed', key: '1', replayed: 0 })
    await client.close()
  })

  it('streams rows inserted through the API and with plain SQL as tx frames holding the model JSON; other keys get nothing', async () => {
    const subscriber = await connect()
    const other = await connect()
    const subscribed = await subscribe(subscriber, 1)
    await subscribe(other, 2)

    // Through the app's API (Sequelize's Task.create).
    const created = await $fetch<{ id: number }>('/api/tasks', { method: 'POST', body: { organizationId: 1, title: 'created through the API' } })
    const viaApi = await txOfTask(subscriber, 1, created.id)
    const apiJson = await apiTask(created.id)
    expect(apiJson).toMatchObject({ id: created.id, organizationId: 1, title: 'created through the API', done: false })
    expect(viaApi).toEqual({
      type: 'tx',
      key: '1',
      cursor: expect.any(String),
      changes: [{ op: 'insert', model: 'Task', id: created.id, row: apiJson }],
    })
    expect(compareLsn(viaApi.cursor, subscribed.cursor!)).toBeGreaterThan(0)

    // With plain SQL, bypassing the app (column defaults fill done and the timestamps).
    const sqlId = await db.insertTask({ organizationId: 1, title: 'inserted with SQL' })
    const viaSql = await txOfTask(subscriber, 1, sqlId)
    const sqlJson = await apiTask(sqlId)
    expect(viaSql).toEqual({
      type: 'tx',
      key: '1',
      cursor: expect.any(String),
      changes: [{ op: 'insert', model: 'Task', id: sqlId, row: sqlJson }],
    })
    expect(compareLsn(viaSql.cursor, viaApi.cursor)).toBeGreaterThan(0)

    // The subscriber of key 2: once a later marker transaction on its own key
    // arrived, everything committed before it would have arrived too.
    const markerId = await db.insertTask({ organizationId: 2, title: 'marker for key 2' })
    const marker = await txOfTask(other, 2, markerId)
    expect(compareLsn(marker.cursor, viaSql.cursor)).toBeGreaterThan(0)
    const otherTx = other.received(frameOf('tx'))
    expect(otherTx).toEqual([marker])
    expect(other.received(frame => frame.type !== 'hello' && frame.type !== 'subscribed' && frame.type !== 'tx')).toEqual([])
    // And the key 1 subscriber did not get the key 2 marker.
    expect(subscriber.received(frameOf('tx', frame => frame.key !== '1'))).toEqual([])

    await subscriber.close()
    await other.close()
  })

  it('routes updates, deletes and key changes: a task moved to another organization leaves one key and enters the other', async () => {
    const one = await connect()
    const two = await connect()
    await subscribe(one, 1)
    await subscribe(two, 2)
    const id = await db.insertTask({ organizationId: 1, title: 'to be moved' })
    await txOfTask(one, 1, id)

    const updated = await $fetch<Record<string, unknown>>(`/api/tasks/${id}`, { method: 'PATCH', body: { title: 'renamed', done: true } })
    const update = await txOfTask(one, 1, id)
    expect(update.changes).toEqual([{ op: 'update', model: 'Task', id, row: await apiTask(id) }])
    expect(update.changes[0]!.row).toMatchObject({ title: 'renamed', done: true, updatedAt: updated.updatedAt })

    const before = await apiTask(id)
    await db.sql('UPDATE tasks SET organization_id = 2 WHERE id = $1', [id])
    const left = await txOfTask(one, 1, id)
    const entered = await txOfTask(two, 2, id)
    expect(left.changes).toEqual([{ op: 'delete', model: 'Task', id, row: before }])
    expect(entered.changes).toEqual([{ op: 'insert', model: 'Task', id, row: await apiTask(id) }])
    expect(entered.cursor).toBe(left.cursor) // one transaction

    await $fetch(`/api/tasks/${id}`, { method: 'DELETE' })
    const deleted = await txOfTask(two, 2, id)
    expect(deleted.changes).toEqual([{ op: 'delete', model: 'Task', id, row: expect.objectContaining({ id, organizationId: 2, title: 'renamed' }) }])
    await one.close()
    await two.close()
  })

  it('answers malformed frames with a bad-request error and keeps the connection working', async () => {
    const client = await connect()
    const badFrames = [
      'this is not JSON',
      '[1, 2, 3]',
      JSON.stringify({ type: 'subscribe-me', key: 1 }),
      JSON.stringify({ key: 1 }),
      JSON.stringify({ type: 'sub', key: { id: 1 } }),
      JSON.stringify({ type: 'sub', key: '' }),
      JSON.stringify({ type: 'sub', key: 'x'.repeat(257) }),
      JSON.stringify({ type: 'sub', key: 1, since: 'yesterday' }),
      JSON.stringify({ type: 'replay', key: 1, since: '0/1' }), // no ref
    ]
    for (const frame of badFrames) {
      const error = await client.request(frame, frameOf('error'))
      expect(error, `answer to ${frame.slice(0, 40)}`).toEqual({ type: 'error', code: 'bad-request', message: expect.stringMatching(/^\[live-sync\] /) })
    }
    expect(client.socket.readyState).toBe(client.socket.OPEN)
    const pong = await client.request({ type: 'ping', t: 42 }, frameOf('pong'))
    expect(pong).toEqual({ type: 'pong', cursor: expect.any(String), t: 42 })
    // Still subscribes and streams.
    await subscribe(client, 3)
    const id = await db.insertTask({ organizationId: 3, title: 'after the errors' })
    await txOfTask(client, 3, id)
    expect(client.received(frameOf('error'))).toHaveLength(badFrames.length)
    expect(client.invalid).toEqual([])
    await client.close()
  })

  it('refuses an unsupported protocol version with an error and closes', async () => {
    const client = await LiveSyncTestClient.connect('?v=999')
    const error = await client.next(frameOf('error'))
    expect(error).toEqual({ type: 'error', code: 'unsupported-version', message: expect.stringContaining('999') })
    expect(client.frames[0]).toBe(error) // no hello before it
    const closed = await client.closed
    expect(closed.code).toBe(1002)
  })

  it('replays what a subscriber missed when it subscribes again with an older cursor, before subscribed', async () => {
    const client = await connect()
    const watcher = await connect() // stays subscribed: shows when the server has dispatched the writes
    await subscribe(watcher, 1)
    const first = await subscribe(client, 1)
    expect(first.replayed).toBe(0)
    const cursor = first.cursor!
    await client.request({ type: 'unsub', key: 1 }, frameOf('unsubscribed', frame => frame.key === '1'))

    const ids: number[] = []
    for (let i = 1; i <= 3; i++) ids.push(await db.insertTask({ organizationId: 1, title: `missed ${i}` }))
    for (const id of ids) await txOfTask(watcher, 1, id)
    const seen = client.frames.length

    const again = await subscribe(client, 1, cursor)
    expect(again).toMatchObject({ type: 'subscribed', key: '1', replayed: 3 })
    const after = client.frames.slice(seen)
    const subscribedAt = after.indexOf(again)
    const replayed = after.slice(0, subscribedAt) as TxMessage[]
    expect(replayed.map(frame => frame.type)).toEqual(['tx', 'tx', 'tx'])
    const changes = replayed.flatMap(frame => frame.changes)
    expect(changes.map((change: Change) => [change.op, change.id])).toEqual(ids.map(id => ['insert', id]))
    for (const [i, change] of changes.entries()) expect(change.row).toEqual(await apiTask(ids[i]!))
    // The same frames the live watcher got, and the cursor of the last one.
    expect(replayed.map(frame => frame.cursor)).toEqual(watcher.received(frameOf('tx', frame => ids.includes(frame.changes[0]!.id as number))).map(frame => frame.cursor))
    expect(compareLsn(again.cursor!, replayed.at(-1)!.cursor)).toBeGreaterThanOrEqual(0)
    await client.close()
    await watcher.close()
  })
  it('sends a large transaction in parts as it is read: the last part has the commit\'s cursor, all rows in order', async () => {
    const client = await connect()
    await subscribe(client, 3)
    const seen = client.frames.length
    await db.sql(`INSERT INTO tasks (organization_id, title) SELECT 3, 'part ' || n FROM generate_series(1, 5000) n`)
    const last = await client.next(frameOf('tx', frame => frame.key === '3' && frame.last === true), 20_000)
    const parts = client.frames.slice(seen).filter((frame): frame is TxMessage => frame.type === 'tx' && frame.key === '3')
    expect(parts.length).toBeGreaterThan(1)
    expect(parts.map(frame => [frame.part, frame.last])).toEqual(parts.map((_, i) => [i, i === parts.length - 1]))
    expect(parts.flatMap(frame => frame.changes).map(change => (change.row as { title: string }).title)).toEqual(Array.from({ length: 5000 }, (_, i) => `part ${i + 1}`))
    // Earlier parts carry one cursor, before the commit's; the last one's is where the server is now.
    for (const part of parts.slice(0, -1)) expect(compareLsn(part.cursor, last.cursor)).toBeLessThan(0)
    const { cursor } = await client.request({ type: 'ping' }, frameOf('pong'))
    expect(compareLsn(cursor!, last.cursor)).toBeGreaterThanOrEqual(0)
    await client.close()
  })
})
