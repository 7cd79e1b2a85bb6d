/**
 * The migration that sets a database up for live sync, through both runners
 * people use: sequelize-cli and umzug, against a real database.
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
  afterEach(async () => {
    for (const { sequelize, name } of opened.splice(0)) {
      await sequelize.close()
      await dropDatabase(adminUrl, name)
    }
  })

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

  it('rejects a table name that is not one', async () => {
    const { sequelize } = await database('migration_bad')
    await expect(up(sequelize.getQueryInterface(), ['tasks; DROP TABLE notes'])).rejects.toThrow(/\[live-sync\] migration: "tasks; DROP TABLE notes" is not a table name/)
    expect((await state(sequelize)).publication).toBeNull()
  })
})
