/**
 * The Redis side of cluster mode on a real Redis, without Postgres: a
 * transaction is published once however often a leader streams it again,
 * never after one that failed, and reaches the key's channel and history;
 * the history is bounded by rows and age, with a floor below which
 * cursors get resync; a new slot or a position Redis never heard of
 * starts a new floor and tells subscribers to resync.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Redis } from 'ioredis'
import { startRedis, type RunningRedis } from '../support/redis'
import { waitFor } from '../support/wait'
import { connectionOptions, loadRedis, type RedisConnection } from '../../src/runtime/server/cluster/redis-client'
import { RedisHistory } from '../../src/runtime/server/cluster/redis-history'
import { decodeFrameMessage, keyChannel, lsnDecimal, PUBLISH_SCRIPT, redisLayout, type PositionMessage } from '../../src/runtime/server/cluster/redis-layout'
import { RedisPublisher } from '../../src/runtime/server/cluster/redis-publisher'
import { KeyedChanges } from '../../src/runtime/server/engine/change-router'
import type { ClusterTransaction } from '../../src/runtime/server/engine/engine-cluster'
import { encodeChange } from '../../src/runtime/server/engine/key-batch'
import { numberToLsn } from '../../src/runtime/shared/lsn'

let redis: RunningRedis
let connection: RedisConnection
let listener: Redis
const messages: Array<{ channel: string, message: Buffer }> = []

beforeAll(async () => {
  redis = await startRedis()
  const Redis = await loadRedis()
  connection = new Redis(redis.url, connectionOptions('test'))
  await connection.connect()
  listener = redis.client()
  listener.on('pmessageBuffer', (_pattern: string, channel: Buffer, message: Buffer) => messages.push({ channel: channel.toString(), message }))
  await listener.psubscribe('live-sync:*')
})

afterAll(async () => {
  await connection?.quit()
  await redis?.close()
})

let databases = 0
/** A fresh layout (its own keys) per test. */
function fresh(bounds = { maxRows: 1000, maxAgeMs: 60_000 }) {
  const layout = redisLayout(`db${++databases}`, 'live_sync')
  return { layout, publisher: new RedisPublisher(connection, layout, bounds), history: new RedisHistory(connection, layout) }
}

const lsn = (n: number) => numberToLsn(0x1000000 + n * 0x100)
function tx(n: number, keys: Record<string, string[]>, extra: Partial<ClusterTransaction> = {}): ClusterTransaction {
  const keyed = new KeyedChanges()
  for (const [key, titles] of Object.entries(keys)) for (const title of titles) keyed.push(key, encodeChange({ op: 'insert', model: 'Task', id: n, row: { id: n, title } }))
  return { cursor: lsn(n), xid: 700 + n, keyed, truncated: null, broken: false, ...extra }
}
async function titles(history: RedisHistory, key: string, since: string): Promise<string[][] | null> {
  const batches = await history.since(key, since)
  return batches && batches.map(batch => batch.changes.map(change => (change.row as { title: string }).title))
}
const positions = (layout: ReturnType<typeof redisLayout>) => messages.filter(m => m.channel === layout.positions).map(m => JSON.parse(m.message.toString()) as PositionMessage)

describe('publishing to Redis', () => {
  it('reaches the key\'s channel and history once, however often it is published again', async () => {
    const { layout, publisher, history } = fresh()
    await publisher.begin(lsn(0), true)
    await publisher.publish(tx(1, { 5: ['a'], 6: ['b', 'c'] }))
    await publisher.publish(tx(2, { 5: ['d'] }))
    // A new leader streams again from an older confirmed position: Redis skips what it has.
    const next = new RedisPublisher(connection, layout, { maxRows: 1000, maxAgeMs: 60_000 })
    await next.begin(lsn(1), false)
    await next.publish(tx(1, { 5: ['a'], 6: ['b', 'c'] }))
    await next.publish(tx(2, { 5: ['d'] }))
    await next.publish(tx(3, { 5: ['e'] }))
    expect(await titles(history, '5', lsn(0))).toEqual([['a'], ['d'], ['e']])
    expect(await titles(history, '6', lsn(0))).toEqual([['b', 'c']])
    expect(await titles(history, '5', lsn(2))).toEqual([['e']])
    await waitFor(() => messages.filter(m => m.channel === keyChannel(layout, '5')).length === 3)
    const published = messages.filter(m => m.channel === keyChannel(layout, '5')).map(m => decodeFrameMessage(m.message))
    expect(published.map(m => [m.cursor, m.changes, m.last])).toEqual([[lsn(1), 1, true], [lsn(2), 1, true], [lsn(3), 1, true]])
    // The frame is the socket's `tx` frame, as is.
    expect(JSON.parse(published[0]!.frame.toString())).toEqual({ type: 'tx', key: '5', cursor: lsn(1), changes: [{ op: 'insert', model: 'Task', id: 1, row: { id: 1, title: 'a' } }] })
    expect(positions(layout).map(p => p.c)).toEqual([lsn(0), lsn(1), lsn(2), lsn(3)])
  })

  it('refuses a transaction whose predecessor did not reach Redis, and one of another epoch', async () => {
    const { layout, publisher } = fresh()
    await publisher.begin(lsn(0), true)
    await publisher.publish(tx(1, { 1: ['a'] }))
    const call = (prev: number, epoch: string) => connection.evalsha(PUBLISH_SCRIPT.sha, 2, layout.meta, layout.log, epoch, lsnDecimal(lsn(3)), lsnDecimal(lsn(prev)), Date.now(), 1000, 60_000, '{}', '', '[]', layout.keys, layout.positions)
    const [epoch] = await connection.hmget(layout.meta, 'epoch')
    expect(await call(2, epoch!)).toBe(-2)
    expect(await call(1, 'another')).toBe(-1)
    expect(await call(1, epoch!)).toBe(1)
  })

  it('keeps the history within maxRows, with a floor below which cursors are too old', async () => {
    const { layout, publisher, history } = fresh({ maxRows: 3, maxAgeMs: 60_000 })
    await publisher.begin(lsn(0), true)
    for (let n = 1; n <= 5; n++) await publisher.publish(tx(n, { [n % 2]: [`row ${n}`] }))
    expect(await titles(history, '1', lsn(1))).toBeNull()
    expect(await titles(history, '1', lsn(2))).toEqual([['row 3'], ['row 5']])
    expect(await titles(history, '0', lsn(2))).toEqual([['row 4']])
    expect(await redis.client().xlen(keyChannel(layout, '1'))).toBe(2)
    expect(await redis.client().xlen(layout.log)).toBe(3)
  })

  it('drops transactions older than maxAgeMs', async () => {
    const { publisher, history } = fresh({ maxRows: 1000, maxAgeMs: 0 })
    await publisher.begin(lsn(0), true)
    await publisher.publish(tx(1, { 1: ['old'] }))
    const published = Date.now()
    await waitFor(() => Date.now() > published)
    await publisher.publish(tx(2, { 1: ['new'] }))
    expect(await titles(history, '1', lsn(0))).toBeNull()
    expect(await titles(history, '1', lsn(1))).toEqual([['new']])
  })

  it('a TRUNCATE raises the floor and tells every instance to resync', async () => {
    const { layout, publisher, history } = fresh()
    await publisher.begin(lsn(0), true)
    await publisher.publish(tx(1, { 1: ['a'] }))
    await publisher.publish(tx(2, {}, { truncated: ['public.tasks'] }))
    expect(await titles(history, '1', lsn(1))).toBeNull()
    expect(await titles(history, '1', lsn(2))).toEqual([])
    await waitFor(() => positions(layout).some(p => p.r === 'truncate'))
    expect(positions(layout).at(-1)).toMatchObject({ c: lsn(2), r: 'truncate', t: ['public.tasks'] })
  })

  it('a transaction too large to publish raises the floor and tells only its keys to resync (or every key, past the bound)', async () => {
    const { layout, publisher, history } = fresh()
    await publisher.begin(lsn(0), true)
    await publisher.publish(tx(1, { 1: ['a'] }))
    await publisher.publish({ ...tx(2, {}), keyed: null, oversized: ['1', '2'] })
    expect(await titles(history, '1', lsn(1))).toBeNull()
    expect(await titles(history, '1', lsn(2))).toEqual([])
    await publisher.publish({ ...tx(3, {}), keyed: null, oversized: 'all' })
    await waitFor(() => positions(layout).filter(p => p.r === 'gap').length === 2)
    const [some, all] = positions(layout).filter(p => p.r === 'gap')
    expect(some).toEqual({ e: expect.any(String), c: lsn(2), r: 'gap', k: ['1', '2'] })
    expect(all).toEqual({ e: expect.any(String), c: lsn(3), r: 'gap' })
    // The chain goes on after them.
    await publisher.publish(tx(4, { 1: ['b'] }))
    expect(await titles(history, '1', lsn(3))).toEqual([['b']])
  })

  it('a new slot, or a position Redis never heard of, starts a new floor with a resync', async () => {
    const { layout, publisher, history } = fresh()
    await publisher.begin(lsn(0), true)
    await publisher.publish(tx(1, { 1: ['a'] }))
    await publisher.begin(lsn(5), false)
    expect(await titles(history, '1', lsn(1))).toBeNull()
    await publisher.begin(lsn(5), true)
    await publisher.publish(tx(6, { 1: ['b'] }))
    expect(await titles(history, '1', lsn(5))).toEqual([['b']])
    await waitFor(() => positions(layout).filter(p => p.r === 'gap').length === 2)
  })

  it('a new slot behind what Redis has (the database moved to another server) starts a history without the old rows', async () => {
    const { layout, publisher, history } = fresh()
    await publisher.begin(lsn(0), true)
    await publisher.publish(tx(10, { 1: ['old'], 2: ['old too'] }))
    const [before] = await connection.hmget(layout.meta, 'epoch')
    await publisher.begin(lsn(3), true)
    const [after] = await connection.hmget(layout.meta, 'epoch')
    expect(after).not.toBe(before)
    await publisher.publish(tx(4, { 1: ['new'] }))
    expect(await titles(history, '1', lsn(3))).toEqual([['new']])
    expect(await titles(history, '2', lsn(3))).toEqual([])
    expect(await titles(history, '1', lsn(2))).toBeNull()
    expect(await redis.client().exists(keyChannel(layout, '2'))).toBe(0)
  })

  it('has no history without a leader having begun one (a Redis that restarted empty)', async () => {
    const { history } = fresh()
    expect(await history.since('1', lsn(0))).toBeNull()
  })
})
