/**
 * `manageTables` (default on): at start-up the engine adds each watched table
 * to the publication and makes it REPLICA IDENTITY FULL where the connecting
 * role may, says once what it changed, and warns with the exact SQL where it
 * may not; so a database set up by the README's steps, whatever the order of
 * its migrations, ends with deletes reaching subscribers.
 */
import { afterEach, describe, expect, inject, it } from 'vitest'
import { DataTypes, Model, Sequelize } from 'sequelize'
import { captureLogger, Collector } from '../support/engine-harness'
import { createDatabase, dropDatabase } from '../support/postgres.mjs'
import { up } from '../../src/migration'
import { createLiveSyncEngine, type LiveSyncEngine } from '../../src/runtime/server/engine/live-sync-engine'

// Role names are global to the cluster: unique to this file.
const APP = 'manage_tables_app'
/** The line the engine logs when it starts streaming (one per state change). */
const STREAMING = expect.stringMatching(/^\[live-sync\] streaming 2 watched table\(s\) of publication "live_sync" from \d+\/[0-9A-F]+ \(slot live_sync_\d+_[0-9a-f]{8}\)\.$/)
const adminUrl = () => inject('pgAdminUrl')

async function asAdmin(url: string, sql: string): Promise<void> {
  const sequelize = new Sequelize(url, { logging: false })
  try {
    await sequelize.query(sql)
  }
  finally {
    await sequelize.close()
  }
}

function defineModels(sequelize: Sequelize) {
  class Item extends Model {}
  Item.init({
    id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
    owner: DataTypes.INTEGER,
    name: DataTypes.TEXT,
  }, { sequelize, tableName: 'items', timestamps: false, liveSync: { subscriptionKey: 'owner' } })
  // A watched table the application role does not own (made by the admin).
  class Audit extends Model {}
  Audit.init({
    id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
    owner: DataTypes.INTEGER,
  }, { sequelize, tableName: 'audits', timestamps: false, liveSync: { subscriptionKey: 'owner' } })
}

interface TableState { published: string[], identities: Record<string, string> }

async function tableState(sequelize: Sequelize): Promise<TableState> {
  const [published] = await sequelize.query(`SELECT tablename AS name FROM pg_publication_tables WHERE pubname = 'live_sync' ORDER BY 1`) as [Array<{ name: string }>, unknown]
  const [identities] = await sequelize.query(`SELECT relname AS name, relreplident AS identity FROM pg_class WHERE relname IN ('items', 'audits') ORDER BY 1`) as [Array<{ name: string, identity: string }>, unknown]
  return { published: published.map(row => row.name), identities: Object.fromEntries(identities.map(row => [row.name, row.identity])) }
}

describe('watched tables are prepared at start-up', () => {
  const cleanups: Array<() => Promise<unknown>> = []
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {})
  })

  /**
   * The README's order at its worst: the application role (LOGIN REPLICATION,
   * owner of the database) runs the live sync migration first, then creates
   * its table; `audits` belongs to the admin.
   */
  async function database(name: string): Promise<{ sequelize: Sequelize }> {
    const url = await createDatabase(adminUrl(), name)
    cleanups.push(() => asAdmin(adminUrl(), `DROP ROLE IF EXISTS ${APP}`))
    cleanups.push(() => dropDatabase(adminUrl(), name))
    await asAdmin(adminUrl(), `DROP ROLE IF EXISTS ${APP}; CREATE ROLE ${APP} WITH LOGIN REPLICATION PASSWORD 'secret'; ALTER DATABASE ${name} OWNER TO ${APP}`)
    await asAdmin(url, `CREATE TABLE audits (id serial PRIMARY KEY, owner integer); GRANT ALL ON audits TO ${APP}`)
    const sequelize = new Sequelize(Object.assign(new URL(url), { username: APP, password: 'secret' }).toString(), { logging: false })
    cleanups.push(() => sequelize.close())
    await up(sequelize.getQueryInterface())
    await sequelize.query(`CREATE TABLE items (id serial PRIMARY KEY, owner integer, name text)`)
    defineModels(sequelize)
    return { sequelize }
  }

  async function start(sequelize: Sequelize, manageTables?: boolean): Promise<{ engine: LiveSyncEngine, logs: ReturnType<typeof captureLogger> }> {
    const logs = captureLogger()
    const engine = createLiveSyncEngine({ sequelize, logger: logs.logger, manageTables })
    cleanups.push(() => engine.stop())
    await engine.start()
    expect(engine.lastError).toBeNull()
    expect(engine.status).toBe('streaming')
    return { engine, logs }
  }

  it('publishes the tables the role owns, makes them REPLICA IDENTITY FULL, says so once, and deletes arrive', async () => {
    const { sequelize } = await database('manage_tables_on')
    expect(await tableState(sequelize)).toEqual({ published: [], identities: { audits: 'd', items: 'd' } })

    const { engine, logs } = await start(sequelize)
    expect(await tableState(sequelize)).toEqual({ published: ['items'], identities: { audits: 'd', items: 'f' } })
    expect(logs.info).toEqual([
      '[live-sync] prepared the watched tables for live sync: added public.items to publication "live_sync"; set REPLICA IDENTITY FULL on public.items (liveSync.manageTables: false leaves this to you).',
      STREAMING,
    ])
    // The table it may not change: one warning per fix, with the SQL and who may run it.
    const admin = decodeURIComponent(new URL(adminUrl()).username)
    expect(logs.warn).toEqual([
      expect.stringContaining(`[live-sync] watched table public.audits is not in publication "live_sync": its changes will not arrive. Fix, as the owner of publication "live_sync" (role "manage_tables_app") if it also owns the table (role "${admin}"), or a superuser:   ALTER PUBLICATION "live_sync" ADD TABLE public.audits;`),
      expect.stringContaining(`[live-sync] watched table public.audits has REPLICA IDENTITY DEFAULT: deletes and key changes cannot be routed by the old row, and unchanged large values may be missing. Fix, as the table's owner (role "${admin}") or a superuser:   ALTER TABLE public.audits REPLICA IDENTITY FULL;`),
    ])

    const collector = new Collector()
    engine.subscribe(7, collector.receive)
    await sequelize.query(`INSERT INTO items (owner, name) VALUES (7, 'a')`)
    await sequelize.query(`UPDATE items SET name = 'b' WHERE owner = 7`)
    await sequelize.query(`DELETE FROM items WHERE owner = 7`)
    const changes = await collector.changeCount(3)
    expect(changes.map(change => change.op)).toEqual(['insert', 'update', 'delete'])

    // A second start finds nothing to change and says nothing about it.
    await engine.stop()
    const again = await start(sequelize)
    expect(again.logs.info).toEqual([STREAMING])
  })

  it('with a FOR ALL TABLES publication (a superuser\'s migration), makes a table created later REPLICA IDENTITY FULL', async () => {
    const url = await createDatabase(adminUrl(), 'manage_tables_all')
    cleanups.push(() => dropDatabase(adminUrl(), 'manage_tables_all'))
    const sequelize = new Sequelize(url, { logging: false })
    cleanups.push(() => sequelize.close())
    await up(sequelize.getQueryInterface())
    await sequelize.query(`CREATE TABLE items (id serial PRIMARY KEY, owner integer, name text); CREATE TABLE audits (id serial PRIMARY KEY, owner integer)`)
    defineModels(sequelize)
    expect(await tableState(sequelize)).toEqual({ published: ['audits', 'items'], identities: { audits: 'd', items: 'd' } })
    const { logs } = await start(sequelize)
    expect(await tableState(sequelize)).toEqual({ published: ['audits', 'items'], identities: { audits: 'f', items: 'f' } })
    expect(logs.info).toEqual([expect.stringMatching(/: set REPLICA IDENTITY FULL on public\.(items|audits); set REPLICA IDENTITY FULL on public\.(items|audits) \(/), STREAMING])
    expect(logs.warn).toEqual([])
  })

  it('with manageTables: false, changes nothing and warns with the SQL', async () => {
    const { sequelize } = await database('manage_tables_off')
    const { logs } = await start(sequelize, false)
    expect(await tableState(sequelize)).toEqual({ published: [], identities: { audits: 'd', items: 'd' } })
    expect(logs.info).toEqual([STREAMING])
    expect(logs.warn).toContainEqual(expect.stringContaining('ALTER PUBLICATION "live_sync" ADD TABLE public.items;   (liveSync.manageTables is off, so the server leaves this to you.)'))
    expect(logs.warn).toContainEqual(expect.stringContaining('ALTER TABLE public.items REPLICA IDENTITY FULL;'))
    expect(logs.warn).toHaveLength(4)
  })
})
