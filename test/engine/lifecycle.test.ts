/**
 * Start-up checks, stopping without leftovers, reconnecting after the
 * replication connection drops, and replaying from a cursor.
 */
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest'
import pg from 'pg'
import { DataTypes, Model, Sequelize } from 'sequelize'
import { captureLogger, Collector, startHarness, type Harness } from '../support/engine-harness'
import { createDatabase, dropDatabase, startPostgres } from '../support/postgres.mjs'
import { waitFor } from '../support/wait'
import { up } from '../../src/migration'
import { createLiveSyncEngine } from '../../src/runtime/server/engine/live-sync-engine'
import { LiveSyncError } from '../../src/runtime/server/engine/errors'

const SCHEMA = `CREATE TABLE items (id serial PRIMARY KEY, owner integer, name text)`

function defineItem(sequelize: Sequelize, options: Record<string, unknown> = { subscriptionKey: 'owner' }) {
  class Item extends Model {}
  Item.init({
    id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
    owner: DataTypes.INTEGER,
    name: DataTypes.TEXT,
  }, { sequelize, tableName: 'items', timestamps: false, liveSync: options as never })
  return Item
}

async function slotsOf(url: string): Promise<Array<{ slot_name: string, active: boolean }>> {
  const client = new pg.Client(url)
  await client.connect()
  try {
    return (await client.query('SELECT slot_name, active FROM pg_replication_slots')).rows
  }
  finally {
    await client.end()
  }
}

describe('a misconfigured database is reported once, with the fix, without a crash', () => {
  it('wal_level=replica', async () => {
    const server = await startPostgres({ walLevel: 'replica', sources: ['system', 'embedded'], log: () => {} })
    const sequelize = new Sequelize(server.url, { logging: false })
    try {
      await sequelize.query(SCHEMA)
      defineItem(sequelize)
      const logs = captureLogger()
      const engine = createLiveSyncEngine({ sequelize, logger: logs.logger, retry: { minDelayMs: 20, maxDelayMs: 40 } })
      await engine.start() // resolves: the app keeps running
      expect(engine.status).toBe('error')
      expect(engine.lastError).toBeInstanceOf(LiveSyncError)
      expect(engine.lastError!.code).toBe('WAL_LEVEL')
      expect(logs.error).toHaveLength(1)
      expect(logs.error[0]).toMatch(/^\[live-sync\] PostgreSQL runs with wal_level=replica/)
      expect(logs.error[0]).toContain('ALTER SYSTEM SET wal_level = logical;')
      expect(logs.error[0]).toContain('restart PostgreSQL')
      // Retries go on quietly: still one line after several attempts.
      await waitFor(() => (engine as unknown as { attempt: number }).attempt >= 3)
      expect(logs.error).toHaveLength(1)
      // Subscribing still works (nothing arrives, nothing throws).
      expect(engine.subscribe(1, () => {}).tooOld).toBe(false)
      await engine.stop()
      expect(engine.status).toBe('stopped')
    }
    finally {
      await sequelize.close()
      await server.stop()
    }
  })

  it('missing publication', async () => {
    const adminUrl = inject('pgAdminUrl')
    const url = await createDatabase(adminUrl, 'engine_no_publication')
    const sequelize = new Sequelize(url, { logging: false })
    try {
      await sequelize.query(SCHEMA)
      defineItem(sequelize)
      const logs = captureLogger()
      const engine = createLiveSyncEngine({ sequelize, logger: logs.logger })
      await engine.start()
      expect(engine.lastError?.code).toBe('NO_PUBLICATION')
      expect(logs.error).toEqual([expect.stringContaining('publication "live_sync" does not exist')])
      expect(logs.error[0]).toContain('nuxt-live-sync/migration')
      await engine.stop()
    }
    finally {
      await sequelize.close()
      await dropDatabase(adminUrl, 'engine_no_publication')
    }
  })

  it('a role without the REPLICATION attribute', async () => {
    const adminUrl = inject('pgAdminUrl')
    const url = await createDatabase(adminUrl, 'engine_no_privilege')
    const admin = new Sequelize(url, { logging: false })
    await admin.query(`${SCHEMA}; DROP ROLE IF EXISTS plain_app; CREATE ROLE plain_app LOGIN PASSWORD 'secret'; GRANT ALL ON items TO plain_app`)
    await up(admin.getQueryInterface())
    const appUrl = new URL(url)
    appUrl.username = 'plain_app'
    appUrl.password = 'secret'
    const sequelize = new Sequelize(appUrl.toString(), { logging: false })
    try {
      defineItem(sequelize)
      const logs = captureLogger()
      const engine = createLiveSyncEngine({ sequelize, logger: logs.logger })
      await engine.start()
      expect(engine.lastError?.code).toBe('NO_PRIVILEGE')
      expect(logs.error).toEqual([expect.stringContaining('ALTER ROLE "plain_app" WITH REPLICATION;')])
      await engine.stop()
    }
    finally {
      await sequelize.close()
      await admin.query('DROP OWNED BY plain_app').catch(() => {})
      await admin.close()
      await dropDatabase(adminUrl, 'engine_no_privilege')
      const cleanup = new Sequelize(adminUrl, { logging: false })
      await cleanup.query('DROP ROLE IF EXISTS plain_app')
      await cleanup.close()
    }
  })

  it('an unreachable server', async () => {
    const sequelize = new Sequelize('postgres://nobody@127.0.0.1:1/none', { logging: false })
    defineItem(sequelize)
    const logs = captureLogger()
    const engine = createLiveSyncEngine({ sequelize, logger: logs.logger })
    await engine.start()
    expect(engine.status).toBe('error')
    expect(logs.error).toHaveLength(1)
    await engine.stop()
    await sequelize.close()
  })
})

describe('watch options are checked at start-up', () => {
  // Never connected: discovery needs no database.
  const offline = () => new Sequelize('postgres://nobody@127.0.0.1:1/none', { logging: false })

  it('rejects a subscriptionKey that is not an attribute, naming the attributes', () => {
    const sequelize = offline()
    class Broken extends Model {}
    Broken.init({ id: { type: DataTypes.INTEGER, primaryKey: true }, organizationId: { type: DataTypes.INTEGER, field: 'organization_id' } }, { sequelize, tableName: 'broken', timestamps: false, liveSync: { subscriptionKey: 'organization_id' } })
    expect(() => createLiveSyncEngine({ sequelize })).toThrowError(/model Broken: liveSync.subscriptionKey names "organization_id", which is not an attribute of the model \(attributes: id, organizationId\)/)
  })

  it('rejects an id that is not an attribute', () => {
    const sequelize = offline()
    class BadId extends Model {}
    BadId.init({ id: { type: DataTypes.INTEGER, primaryKey: true }, owner: DataTypes.INTEGER }, { sequelize, tableName: 'bad_id', liveSync: { subscriptionKey: 'owner', id: 'uuid' } })
    expect(() => createLiveSyncEngine({ sequelize })).toThrowError(/liveSync.id names "uuid"/)
  })

  it('rejects a streaming.decodingWorkMem that is not a size Postgres reads (it is inlined into SET)', () => {
    const sequelize = offline()
    expect(() => createLiveSyncEngine({ sequelize, streaming: { decodingWorkMem: `4MB'; DROP TABLE x; --` } })).toThrowError(/streaming.decodingWorkMem must be a size such as '4MB'/)
    expect(() => createLiveSyncEngine({ sequelize, streaming: { decodingWorkMem: '4 MB' } })).toThrowError(/decodingWorkMem/)
    expect(createLiveSyncEngine({ sequelize, streaming: { decodingWorkMem: '512kB' } })).toBeTruthy()
    expect(createLiveSyncEngine({ sequelize, streaming: { decodingWorkMem: null } })).toBeTruthy()
  })

  it('discovers every watched model with schema-qualified tables and column names', () => {
    const sequelize = offline()
    class Watched extends Model {}
    Watched.init({ id: { type: DataTypes.INTEGER, primaryKey: true }, orgId: { type: DataTypes.INTEGER, field: 'org_id' } }, { sequelize, tableName: 'watched', schema: 'app', liveSync: { subscriptionKey: 'orgId' } })
    class OnView extends Model {}
    OnView.init({ id: { type: DataTypes.INTEGER, primaryKey: true }, orgId: { type: DataTypes.INTEGER, field: 'org_id' } }, { sequelize, tableName: 'watched_view', liveSync: { subscriptionKey: 'orgId', table: 'app.watched' } })
    class Unwatched extends Model {}
    Unwatched.init({ id: { type: DataTypes.INTEGER, primaryKey: true } }, { sequelize, tableName: 'unwatched' })
    const engine = createLiveSyncEngine({ sequelize })
    expect(engine.watched.map(w => [w.name, w.table, w.key.field, w.id.map(i => i.field)])).toEqual([
      ['Watched', 'app.watched', 'org_id', ['id']],
      ['OnView', 'app.watched', 'org_id', ['id']],
    ])
    expect(engine.models).toEqual({ Watched: { id: ['id'] }, OnView: { id: ['id'] } })
  })
})

describe('a running engine', () => {
  let harness: Harness
  let Item: ReturnType<typeof defineItem>

  beforeAll(async () => {
    harness = await startHarness({
      name: 'engine_lifecycle',
      schema: SCHEMA,
      models: (sequelize) => { Item = defineItem(sequelize) },
      engine: { retry: { minDelayMs: 50, maxDelayMs: 200 } },
    })
  })
  afterAll(async () => {
    await harness?.close()
  })

  it('holds one temporary slot while streaming and confirms progress', async () => {
    const slots = await slotsOf(harness.url)
    expect(slots).toEqual([{ slot_name: expect.stringMatching(/^live_sync_/), active: true }])
    const collector = harness.collect(1)
    await Item.create({ owner: 1, name: 'ack me' })
    const [batch] = await collector.batchCount(1)
    // Acknowledged after dispatch: the slot's confirmed position reaches the commit.
    await waitFor(async () => {
      const client = new pg.Client(harness.url)
      await client.connect()
      const { rows: [row] } = await client.query(`SELECT pg_wal_lsn_diff(confirmed_flush_lsn, $1::pg_lsn) >= 0 AS confirmed FROM pg_replication_slots`, [batch!.cursor])
      await client.end()
      return row?.confirmed === true
    })
  })

  it('confirms exactly the position Postgres sent, so a fast shutdown is not kept waiting', async () => {
    await Item.create({ owner: 9, name: 'position' })
    // Idle: the walsender's keepalives are answered with their own position, not one byte past it.
    await waitFor(async () => {
      const client = new pg.Client(harness.url)
      await client.connect()
      const { rows: [row] } = await client.query(`SELECT sent_lsn = flush_lsn AS exact FROM pg_stat_replication WHERE application_name <> 'walreceiver'`)
      await client.end()
      return row?.exact === true
    }, { timeout: 15_000 })
  })

  it('replays what a subscriber missed since its cursor', async () => {
    const cursor = harness.engine.cursor!
    const live = harness.collect(2)
    await Item.bulkCreate([{ owner: 2, name: 'a' }, { owner: 2, name: 'b' }])
    await Item.create({ owner: 3, name: 'other key' })
    await Item.create({ owner: 2, name: 'c' })
    await live.changeCount(3)
    const late = new Collector()
    const subscription = harness.engine.subscribe(2, late.receive, cursor)
    expect(subscription.replayed).toBe(2)
    expect(late.changes.map(change => change.row.name)).toEqual(['a', 'b', 'c'])
    subscription.unsubscribe()
    // A cursor older than the history says so instead of replaying a partial history.
    const old = harness.engine.subscribe(2, () => {}, '0/1')
    expect(old.tooOld).toBe(true)
    old.unsubscribe()
  })

  it('reconnects after the replication connection drops and tells subscribers about the gap', async () => {
    const collector = harness.collect(4)
    const epoch = harness.engine.epoch
    const client = new pg.Client(harness.url)
    await client.connect()
    await client.query(`SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots WHERE slot_name LIKE 'live_sync_%'`)
    await waitFor(() => harness.engine.status === 'streaming' && harness.engine.epoch !== epoch, { timeout: 15_000 })
    expect(collector.resyncs.map(resync => resync.reason)).toEqual(['gap'])
    expect(harness.logs.error.some(line => line.startsWith('[live-sync] replication stream failed'))).toBe(true)
    await Item.create({ owner: 4, name: 'after reconnect' })
    await collector.changeCount(1)
    expect(collector.changes[0]!.row.name).toBe('after reconnect')
    await waitFor(async () => (await slotsOf(harness.url)).length === 1)
    await client.end()
  })

  it('leaves no replication slot behind when stopped', async () => {
    await harness.engine.stop()
    expect(await slotsOf(harness.url)).toEqual([])
    expect(harness.engine.status).toBe('stopped')
    await harness.engine.start()
    expect(harness.engine.status).toBe('streaming')
  })
})
