/**
 * Large transactions are sent in parts as they are read: a key's changes go
 * out once they reach the chunk size, the last part carries the commit's
 * cursor, commit order holds across keys, a transaction too large for the
 * replay history is not replayed (resync instead), and the stream waits for
 * a subscriber that drains, closing one that does not.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DataTypes, Model, type Sequelize } from 'sequelize'
import { compareLsn } from '../../src/runtime/shared/lsn'
import type { Congestion, Delivery, KeyBatch } from '../../src/runtime/server/engine/key-batch'
import { Collector, startHarness, type Harness } from '../support/engine-harness'
import { waitFor } from '../support/wait'

class Row extends Model {}

const SCHEMA = `CREATE TABLE rows (id serial PRIMARY KEY, org integer, title text NOT NULL)`

function defineModels(sequelize: Sequelize) {
  Row.init({
    id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
    org: DataTypes.INTEGER,
    title: DataTypes.TEXT,
  }, { sequelize, tableName: 'rows', timestamps: false, liveSync: { subscriptionKey: 'org' } })
}

/** Inserts `count` rows into `org` in one transaction. */
const insertRows = (harness: Harness, org: number, count: number, label = 'row') =>
  harness.sql(`INSERT INTO rows (org, title) SELECT $1, $2 || ' ' || n FROM generate_series(1, $3) n`, [org, label, count])

function partsOf(batches: KeyBatch[]) {
  return batches.map(batch => batch.part ? `${batch.part.index}${batch.part.last ? ' last' : ''}` : 'whole')
}

describe('large transactions', () => {
  let harness: Harness

  beforeAll(async () => {
    harness = await startHarness({
      name: 'engine_large_tx',
      schema: SCHEMA,
      models: defineModels,
      engine: { replay: { maxRows: 8000 }, streaming: { chunkChars: 16 * 1024, maxHeldChars: 64 * 1024, stallMs: 300, drainTimeoutMs: 2000 } },
    })
  })
  afterAll(async () => {
    await harness?.close()
  })

  it('sends a key\'s changes in parts as they arrive; the last part carries the commit\'s cursor', async () => {
    const collector = harness.collect(1)
    const before = harness.engine.cursor!
    await insertRows(harness, 1, 3000)
    await collector.changeCount(3000)
    const batches = collector.batches
    expect(batches.length).toBeGreaterThan(3)
    expect(partsOf(batches)).toEqual(batches.map((_, i) => `${i}${i === batches.length - 1 ? ' last' : ''}`))
    // Every part but the last carries one cursor past everything before the transaction, and before its commit.
    const last = batches.at(-1)!
    expect(last.cursor).toBe(harness.engine.cursor)
    for (const part of batches.slice(0, -1)) {
      expect(part.cursor).toBe(batches[0]!.cursor)
      expect(compareLsn(part.cursor, before)).toBeGreaterThan(0)
      expect(compareLsn(part.cursor, last.cursor)).toBeLessThan(0)
    }
    expect(collector.changes.map(change => (change.row as { title: string }).title)).toEqual(Array.from({ length: 3000 }, (_, i) => `row ${i + 1}`))
    // Frames say which part they are.
    expect(JSON.parse(batches[0]!.frame())).toMatchObject({ type: 'tx', key: '1', part: 0, last: false })
    expect(JSON.parse(last.frame())).toMatchObject({ type: 'tx', key: '1', part: batches.length - 1, last: true, cursor: last.cursor })
  })

  it('keeps commit order across keys: a later transaction arrives after every part of an earlier one', async () => {
    const order: string[] = []
    const record = (key: number) => (delivery: Delivery) => {
      if (delivery.type === 'tx') order.push(`${key}:${delivery.part ? (delivery.part.last ? 'last' : 'part') : 'whole'}`)
    }
    const a = harness.engine.subscribe(2, record(2))
    const b = harness.engine.subscribe(3, record(3))
    try {
      await harness.sql('BEGIN')
      await insertRows(harness, 2, 2000)
      await insertRows(harness, 3, 5)
      await harness.sql('COMMIT')
      await insertRows(harness, 3, 1, 'after')
      await waitFor(() => order.filter(entry => entry === '3:whole').length === 2)
      // Key 2 went out in parts ending with its last; key 3's five rows stayed held (small) and went
      // out whole with the commit; the later transaction came after all of it.
      expect(order.at(-1)).toBe('3:whole')
      expect(order.filter(entry => entry.startsWith('2:')).at(-1)).toBe('2:last')
      expect(order.filter(entry => entry === '2:part').length).toBeGreaterThan(1)
      expect(order.indexOf('2:last')).toBeLessThan(order.length - 1)
    }
    finally {
      a.unsubscribe()
      b.unsubscribe()
    }
  })

  it('has Postgres spill a transaction beyond streaming.decodingWorkMem (4MB by default) to disk while decoding, not hold 64MB of it', async () => {
    // At COMMIT Postgres writes out what it still holds of a spilled transaction before sending its first
    // row: the less it holds, the sooner the first part leaves. pg_stat_replication_slots counts the spills.
    const slot = harness.engine.slotName!
    const spills = async () => (await harness.sql('SELECT spill_txns::int AS n, spill_bytes::float8 AS bytes FROM pg_stat_replication_slots WHERE slot_name = $1', [slot])).rows[0] ?? { n: 0, bytes: 0 }
    const before = await spills()
    const collector = harness.collect(8)
    // About 10 MB of decoded changes: over 4MB, well under the server's 64MB.
    await insertRows(harness, 8, 60_000)
    await collector.changeCount(60_000)
    const after = await waitFor(async () => {
      const now = await spills()
      return now.n > before.n && now
    }, { message: 'the transaction was not spilled' })
    expect(after.bytes - before.bytes).toBeGreaterThan(4 * 1024 * 1024)
    expect(collector.batches.at(-1)!.part?.last).toBe(true)
  })

  it('replays a streamed transaction in its parts to a subscriber arriving with an older cursor', async () => {
    const since = harness.engine.cursor!
    await insertRows(harness, 4, 2000)
    await waitFor(() => harness.engine.hub.buffer.since('4', since)?.at(-1)?.part?.last === true)
    const late = new Collector()
    const subscription = harness.engine.subscribe(4, late.receive, since)
    subscription.unsubscribe()
    expect(subscription.tooOld).toBe(false)
    expect(late.changes).toHaveLength(2000)
    expect(late.batches.at(-1)!.part?.last).toBe(true)
  })

  it('does not keep a transaction larger than half the replay history: older cursors get resync', async () => {
    const collector = harness.collect(5)
    const since = harness.engine.cursor!
    await insertRows(harness, 5, 6000)
    await collector.changeCount(6000)
    // All of it reached the live subscriber …
    expect(collector.batches.at(-1)!.part?.last).toBe(true)
    // … but none of it is held for replay, and a cursor from before it cannot be resumed.
    expect(harness.engine.hub.buffer.size.rows).toBeLessThanOrEqual(8000)
    expect(harness.engine.hub.buffer.since('5', harness.engine.hub.buffer.floor!)).toEqual([])
    expect(harness.engine.replay(5, since)).toBeNull()
    const late = new Collector()
    const subscription = harness.engine.subscribe(5, late.receive, since)
    subscription.unsubscribe()
    expect(subscription.tooOld).toBe(true)
    // Later transactions are replayable again from the new floor.
    const after = harness.engine.cursor!
    await insertRows(harness, 5, 3, 'small')
    await collector.changeCount(6003)
    expect(harness.engine.replay(5, after)?.flatMap(batch => batch.changes)).toHaveLength(3)
  })

  it('waits while a subscriber drains, and closes one that takes nothing for stallMs or drains slower than drainTimeoutMs', async () => {
    let backlog = 0
    let stalled = 0
    const congestion: Congestion = { drained: () => backlog === 0, backlog: () => backlog, stall: () => stalled++ }
    const slow = harness.engine.subscribe(6, (delivery: Delivery) => {
      if (delivery.type !== 'tx' || !delivery.part) return undefined
      backlog = 1000
      return congestion
    })
    const watcher = harness.collect(6)
    let timer: NodeJS.Timeout | undefined
    try {
      // A healthy slower socket: it drains a little every 100 ms, for longer than stallMs in all.
      timer = setInterval(() => (backlog = Math.max(0, backlog - 250)), 100)
      await insertRows(harness, 6, 2000)
      await watcher.changeCount(2000)
      expect(stalled).toBe(0)
      clearInterval(timer)
      // A stalled one (takes nothing): closed after stallMs, and the transaction still gets through.
      const started = Date.now()
      await insertRows(harness, 6, 2000, 'second')
      await watcher.changeCount(4000)
      expect(stalled).toBeGreaterThanOrEqual(1)
      expect(Date.now() - started).toBeGreaterThanOrEqual(250)
      // One that keeps taking a little, too slowly: closed after drainTimeoutMs.
      stalled = 0
      timer = setInterval(() => (backlog = Math.max(1, backlog - 1)), 50)
      const slowStart = Date.now()
      await insertRows(harness, 6, 2000, 'third')
      await watcher.changeCount(6000, 15_000)
      expect(stalled).toBeGreaterThanOrEqual(1)
      expect(Date.now() - slowStart).toBeGreaterThanOrEqual(1900)
    }
    finally {
      clearInterval(timer)
      slow.unsubscribe()
    }
  })
})
