/**
 * What the engine tells operators: `stats()` (counters that move with each
 * transaction, the latency histogram, keys and subscribers, the replay
 * history, the slot's lag asked of Postgres), and debug lines explaining the
 * routing of the keys in `debugKeys` only.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DataTypes, Model, type Sequelize } from 'sequelize'
import { LATENCY_BUCKETS } from '../../src/runtime/server/engine/engine-metrics'
import type { ReplicationStream } from '../../src/runtime/server/engine/replication-stream'
import { startHarness, type Harness } from '../support/engine-harness'
import { waitFor } from '../support/wait'

class Item extends Model {}

const SCHEMA = `CREATE TABLE items (id serial PRIMARY KEY, owner integer, name text NOT NULL);`

function defineModels(sequelize: Sequelize) {
  Item.init({
    id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
    owner: DataTypes.INTEGER,
    name: DataTypes.TEXT,
  }, { sequelize, tableName: 'items', timestamps: false, liveSync: { subscriptionKey: 'owner' } })
}

describe('engine stats and debug lines', () => {
  let harness: Harness

  beforeAll(async () => {
    harness = await startHarness({ name: 'engine_observability', schema: SCHEMA, models: defineModels, engine: { debugKeys: [1] } })
  })
  afterAll(async () => {
    await harness?.close()
  })

  it('counts transactions, rows, keys, subscribers and latency; the histogram is cumulative and ends at +Inf', async () => {
    const before = await harness.engine.stats()
    expect(before.status).toBe('streaming')
    expect(before.slot).toMatch(/^live_sync_\d+_[0-9a-f]{8}$/)
    const one = harness.collect(1)
    const two = harness.collect(2)
    harness.collect(2)
    await harness.sql(`INSERT INTO items (owner, name) SELECT owner, 'x' FROM (VALUES (1), (1), (1), (2)) AS v(owner)`)
    await one.changeCount(3)
    await two.changeCount(1)

    const after = await harness.engine.stats()
    expect(after.transactions.total - before.transactions.total).toBe(1)
    expect(after.rows.total - before.rows.total).toBe(4)
    expect(after.keys).toBe(2)
    expect(after.subscribers).toBe(3)
    expect(after.replay.rows - before.replay.rows).toBe(4)
    expect(after.latency.count - before.latency.count).toBe(1)
    expect(after.latency.buckets.map(bucket => bucket.le)).toEqual([...LATENCY_BUCKETS, Number.POSITIVE_INFINITY])
    const counts = after.latency.buckets.map(bucket => bucket.count)
    expect(counts).toEqual([...counts].sort((a, b) => a - b))
    expect(counts.at(-1)).toBe(after.latency.count)
    expect(after.latency.sum).toBeGreaterThanOrEqual(0)
    // Nothing waits to be dispatched: no time lag.
    expect(after.lag.seconds).toBe(0)
    expect(after.lag.bytes).toEqual(expect.any(Number))
    // The rate is averaged over the last complete seconds: it shows once the current one is over.
    await waitFor(async () => (await harness.engine.stats()).transactions.perSecond > 0, { timeout: 5000, message: 'transactions per second stayed 0' })
    expect((await harness.engine.stats()).rows.perSecond).toBeGreaterThan(0)
  })

  it('reports the WAL the slot has not confirmed while the stream is held up', async () => {
    const stream = (harness.engine as unknown as { stream: ReplicationStream }).stream
    const collector = harness.collect(3)
    stream.pause()
    try {
      await harness.sql(`INSERT INTO items (owner, name) SELECT 3, repeat('y', 200) FROM generate_series(1, 2000)`)
      // ~0.5 MB of WAL that Postgres cannot send while the connection is not read.
      await waitFor(async () => ((await harness.engine.stats()).lag.bytes ?? 0) > 300_000, { timeout: 10_000, interval: 200, message: 'the lag in bytes did not grow' })
      expect(collector.changes).toHaveLength(0)
    }
    finally {
      stream.resume()
    }
    await collector.changeCount(2000)
  })

  it('explains the routing of debugKeys at debug level, and of no other key', async () => {
    const logs = harness.logs.debug
    const start = logs.length
    harness.collect(1)
    harness.collect(4)
    await harness.sql(`INSERT INTO items (owner, name) VALUES (1, 'debugged'), (4, 'not debugged')`)
    const { rows: [{ id }] } = await harness.sql(`SELECT id FROM items WHERE name = 'debugged'`)
    await waitFor(() => logs.slice(start).some(line => line.includes('transaction')), { message: 'no debug line about the transaction' })
    const lines = logs.slice(start)
    expect(lines).toContainEqual(expect.stringMatching(/^\[live-sync\] key "1": subscribed: replayed 0 batch\(es\); \d+ subscriber\(s\), live from /))
    expect(lines).toContainEqual(expect.stringMatching(new RegExp(`^\\[live-sync\\] key "1": transaction \\d+/[0-9A-F]+ \\(xid \\d+\\): 1 change\\(s\\): Item insert ${id} → \\d+ subscriber\\(s\\), [\\d.]+ ms after its commit\\.$`)))
    expect(lines.filter(line => line.includes('key "4"'))).toEqual([])
  })
})
