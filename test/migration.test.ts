/**
 * The migration that sets a database up for live sync, through both runners
 * people use: sequelize-cli and umzug, against a real database; run by a
 * superuser (FOR ALL TABLES) and by the application role the README sets up
 * (a publication it owns).
 */
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterEach, describe, expect, inject, it } from 'vitest'
import { Sequelize } from 'sequelize'
import { SequelizeStorage, Umzug } from 'umzug'
import { createDatabase, dropDatabase } from './support/postgres.mjs'
import { down, up } from '../src/migration'

const root = fileURLToPath(new URL('..', import.meta.url))
const run = promisify(execFile)
const SCHEMA = `CREATE TABLE tasks (id serial PRIMARY KEY, org integer); CREATE TABLE notes (id serial PRIMARY KEY, org integer); CREATE SCHEMA app; CREATE TABLE app.projects (id serial PRIMARY KEY)`

interface State {
  publication: { puballtables: boolean } | null
  published: string[]
  identities: Record<string, string>
}

async function state(sequelize: Sequelize): Promise<State> {
  const [[publication]] = await sequelize.query(`SELECT puballtables FROM pg_publication WHERE pubname = 'live_sync'`) as [Array<{ puballtables: boolean }>, unknown]
  const [published] = await sequelize.query(`SELECT schemaname || '.' || tablename AS name FROM pg_publication_tables WHERE pubname = 'live_sync' ORDER BY 1`) as [Array<{ name: string }>, unknown]
  const [identities] = await sequelize.query(`SELECT n.nspname || '.' || c.relname AS name, c.relreplident AS identity FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname IN ('tasks', 'notes', 'projects') ORDER BY 1`) as [Array<{ name: string, identity: string }>, unknown]
  return {
    publication: publication ?? null,
    published: published.map(row => row.name),
    identities: Object.fromEntries(identities.map(row => [row.name, row.identity])),
  }
}

const ALL_FULL = { 'app.projects': 'f', 'public.notes': 'f', 'public.tasks': 'f' }
const ALL_DEFAULT = { 'app.projects': 'd', 'public.notes': 'd', 'public.tasks': 'd' }

describe('migration', () => {
  const adminUrl = inject('pgAdminUrl')
  const opened: Array<{ sequelize: Sequelize, name: string }> = []
  async function database(name: string) {
    const url = await createDatabase(adminUrl, name)
    const sequelize = new Sequelize(url, { logging: false })
    await sequelize.query(SCHEMA)
    opened.push({ sequelize, name })
    return { url, sequelize }
  }
  async function closeAll() {
    for (const { sequelize, name } of opened.splice(0)) {
      await sequelize.close()
      await dropDatabase(adminUrl, name)
    }
  }
  afterEach(closeAll)

  it('runs and reverts with sequelize-cli', async () => {
    const { url, sequelize } = await database('migration_cli')
    const cli = ['sequelize-cli', '--url', url, '--migrations-path', 'migrations']
    await run('npx', [...cli.slice(0, 1), 'db:migrate', ...cli.slice(1)], { cwd: root })
    expect(await state(sequelize)).toEqual({ publication: { puballtables: true }, published: ['app.projects', 'public.SequelizeMeta', 'public.notes', 'public.tasks'], identities: ALL_FULL })
    await run('npx', [...cli.slice(0, 1), 'db:migrate:undo', ...cli.slice(1)], { cwd: root })
    expect(await state(sequelize)).toEqual({ publication: null, published: [], identities: ALL_DEFAULT })
  })

  it('runs and reverts with umzug', async () => {
    const { sequelize } = await database('migration_umzug')
    const umzug = new Umzug({
      migrations: { glob: ['migrations/*.cjs', { cwd: root }] },
      context: sequelize.getQueryInterface(),
      storage: new SequelizeStorage({ sequelize }),
      logger: undefined,
    })
    expect((await umzug.up()).map(m => m.name)).toEqual(['20260101000000-live-sync-publication.cjs'])
    expect(await state(sequelize)).toEqual({ publication: { puballtables: true }, published: ['app.projects', 'public.SequelizeMeta', 'public.notes', 'public.tasks'], identities: ALL_FULL })
    await umzug.down()
    expect(await state(sequelize)).toEqual({ publication: null, published: [], identities: ALL_DEFAULT })
  })

  it('publishes only the listed tables when given a list', async () => {
    const { sequelize } = await database('migration_list')
    await up(sequelize.getQueryInterface(), ['tasks', 'app.projects'])
    expect(await state(sequelize)).toEqual({
      publication: { puballtables: false },
      published: ['app.projects', 'public.tasks'],
      identities: { 'app.projects': 'f', 'public.notes': 'd', 'public.tasks': 'f' },
    })
    await down(sequelize.getQueryInterface())
    expect(await state(sequelize)).toEqual({ publication: null, published: [], identities: ALL_DEFAULT })
  })

  it('down drops the permanent slot that several instances leave, and only its own', async () => {
    const { sequelize } = await database('migration_slot')
    await up(sequelize.getQueryInterface())
    // Slot names are global to the cluster: unique to this test.
    const slots = ['migration_test_cluster', 'migration_test_other']
    for (const slot of slots) await sequelize.query(`SELECT pg_create_logical_replication_slot('${slot}', 'pgoutput')`)
    const remaining = async () => (await sequelize.query(`SELECT slot_name FROM pg_replication_slots WHERE slot_name LIKE 'migration_test_%' ORDER BY 1`) as [Array<{ slot_name: string }>, unknown])[0].map(row => row.slot_name)
    try {
      await down(sequelize.getQueryInterface(), { slotName: 'migration_test_cluster' })
      expect(await remaining()).toEqual(['migration_test_other'])
      expect(await state(sequelize)).toEqual({ publication: null, published: [], identities: ALL_DEFAULT })
      // Nothing left to drop: down runs again without complaint.
      await down(sequelize.getQueryInterface(), { slotName: 'migration_test_cluster' })
    }
    finally {
      await sequelize.query(`SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 'migration_test_%'`)
    }
  })

  describe('run by a role that is not a superuser (the README\'s `app` role)', () => {
    // Role names are global to the cluster: unique to this file.
    const APP = 'migration_test_app'
    const PLAIN = 'migration_test_plain'
    async function asAdmin(sql: string) {
      const sequelize = new Sequelize(adminUrl, { logging: false })
      try {
        await sequelize.query(sql)
      }
      finally {
        await sequelize.close()
      }
    }
    const as = (url: string, role: string) => new Sequelize(Object.assign(new URL(url), { username: role, password: 'secret' }).toString(), { logging: false })
    // Before the outer afterEach: the databases (owned by the role) go first.
    afterEach(async () => {
      await closeAll()
      await asAdmin(`DROP ROLE IF EXISTS ${APP}; DROP ROLE IF EXISTS ${PLAIN}`)
    })

    /** A database owned by a LOGIN REPLICATION role, as the README creates it, connected as that role. */
    async function appDatabase(name: string) {
      const url = await createDatabase(adminUrl, name)
      await asAdmin(`DROP ROLE IF EXISTS ${APP}; CREATE ROLE ${APP} WITH LOGIN REPLICATION PASSWORD 'secret'; ALTER DATABASE ${name} OWNER TO ${APP}`)
      const sequelize = as(url, APP)
      opened.push({ sequelize, name })
      return { url, appUrl: Object.assign(new URL(url), { username: APP, password: 'secret' }).toString(), sequelize }
    }

    it('creates a publication the role owns, before any table exists, and reverts it (sequelize-cli)', async () => {
      const { appUrl, sequelize } = await appDatabase('migration_app_cli')
      const cli = ['--url', appUrl, '--migrations-path', 'migrations']
      // Before the app's own tables: the order a fresh database sees when the table migrations are newer.
      await run('npx', ['sequelize-cli', 'db:migrate', ...cli], { cwd: root })
      const [[publication]] = await sequelize.query(`SELECT puballtables, pg_get_userbyid(pubowner) AS owner FROM pg_publication WHERE pubname = 'live_sync'`) as [Array<{ puballtables: boolean, owner: string }>, unknown]
      expect(publication).toEqual({ puballtables: false, owner: APP })
      await sequelize.query(SCHEMA)
      expect(await state(sequelize)).toMatchObject({ published: [], identities: ALL_DEFAULT })
      // What the server does at start-up for a watched table (see preflight): the role may, as it owns both.
      await sequelize.query(`ALTER PUBLICATION live_sync ADD TABLE tasks; ALTER TABLE tasks REPLICA IDENTITY FULL`)
      await run('npx', ['sequelize-cli', 'db:migrate:undo', ...cli], { cwd: root })
      expect(await state(sequelize)).toEqual({ publication: null, published: [], identities: ALL_DEFAULT })
    })

    it('publishes a given list of tables the role owns', async () => {
      const { sequelize } = await appDatabase('migration_app_list')
      await sequelize.query(SCHEMA)
      await up(sequelize.getQueryInterface(), ['tasks', 'app.projects'])
      expect(await state(sequelize)).toEqual({
        publication: { puballtables: false },
        published: ['app.projects', 'public.tasks'],
        identities: { 'app.projects': 'f', 'public.notes': 'd', 'public.tasks': 'f' },
      })
    })

    it('says what to grant when the role may not create a publication', async () => {
      const { url, sequelize: owner } = await appDatabase('migration_app_denied')
      await asAdmin(`DROP ROLE IF EXISTS ${PLAIN}; CREATE ROLE ${PLAIN} WITH LOGIN PASSWORD 'secret'`)
      const plain = as(url, PLAIN)
      try {
        await expect(up(plain.getQueryInterface())).rejects.toThrow(`GRANT CREATE ON DATABASE "migration_app_denied" TO "${PLAIN}";`)
        expect((await state(owner)).publication).toBeNull()
      }
      finally {
        await plain.close()
      }
    })
  })

  it('rejects a table name that is not one', async () => {
    const { sequelize } = await database('migration_bad')
    await expect(up(sequelize.getQueryInterface(), ['tasks; DROP TABLE notes'])).rejects.toThrow(/\[live-sync\] migration: "tasks; DROP TABLE notes" is not a table name/)
    expect((await state(sequelize)).publication).toBeNull()
  })
})
