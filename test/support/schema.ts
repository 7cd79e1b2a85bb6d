/**
 * The fixture app's database (test/fixtures/app/server/utils/db.ts): its
 * tables in a fresh database on the run's PostgreSQL, seeded organizations,
 * and the live sync migration. Each end-to-end test file makes its own.
 */
import { inject } from 'vitest'
import pg from 'pg'
import { Sequelize } from 'sequelize'
import { createDatabase, dropDatabase } from './postgres.mjs'
import { up } from '../../src/migration'
import { FIXTURE_SCHEMA } from './fixture-schema'

export interface SeedTask {
  organizationId: number
  title: string
  done?: boolean
}

export interface FixtureDatabaseOptions {
  /** Organizations created with ids 1..n (default 3: "Org 1", "Org 2", "Org 3"). */
  organizations?: number
  tasks?: SeedTask[]
}

export interface TaskRow {
  id: number
  organizationId: number | null
  title: string
  done: boolean
}

export interface FixtureDatabase {
  name: string
  /** Connection URL of the new database (superuser: may replicate). */
  url: string
  /** A pool for plain SQL writes and reads in tests. */
  pool: pg.Pool
  /** One statement through the pool. */
  sql: <R extends pg.QueryResultRow = Record<string, unknown>>(text: string, values?: unknown[]) => Promise<R[]>
  /** Inserts a task with plain SQL and returns its id. */
  insertTask: (task: SeedTask) => Promise<number>
  /** The tasks of an organization, ordered by id. */
  tasksOf: (organizationId: number) => Promise<TaskRow[]>
  /** Closes the pool and drops the database (its replication slots first). */
  drop: () => Promise<void>
}

/** Creates the database `name` (dropped first if it exists) with the fixture's schema, seeds and publication. */
export async function createFixtureDatabase(name: string, options: FixtureDatabaseOptions = {}): Promise<FixtureDatabase> {
  const adminUrl = inject('pgAdminUrl')
  const url = await createDatabase(adminUrl, name)
  const sequelize = new Sequelize(url, { logging: false })
  try {
    await sequelize.query(FIXTURE_SCHEMA)
    const organizations = options.organizations ?? 3
    for (let id = 1; id <= organizations; id++) {
      await sequelize.query('INSERT INTO organizations (id, name) VALUES ($1, $2)', { bind: [id, `Org ${id}`] })
    }
    await sequelize.query(`SELECT setval('organizations_id_seq', GREATEST($1::int, 1))`, { bind: [organizations] })
    for (const task of options.tasks ?? []) {
      await sequelize.query('INSERT INTO tasks (organization_id, title, done) VALUES ($1, $2, $3)', { bind: [task.organizationId, task.title, task.done ?? false] })
    }
    // The live sync migration, as an app would run it: publication FOR ALL TABLES + REPLICA IDENTITY FULL.
    await up(sequelize.getQueryInterface())
  }
  finally {
    await sequelize.close()
  }

  const pool = new pg.Pool({ connectionString: url, max: 4 })
  pool.on('error', () => {}) // a connection killed by the drop is not a test failure
  const sql = async <R extends pg.QueryResultRow>(text: string, values?: unknown[]) => (await pool.query<R>(text, values)).rows
  let dropped = false
  return {
    name,
    url,
    pool,
    sql,
    async insertTask(task) {
      const [row] = await sql<{ id: number }>('INSERT INTO tasks (organization_id, title, done) VALUES ($1, $2, $3) RETURNING id', [task.organizationId, task.title, task.done ?? false])
      return row!.id
    },
    tasksOf(organizationId) {
      return sql<TaskRow>('SELECT id, organization_id AS "organizationId", title, done FROM tasks WHERE organization_id = $1 ORDER BY id', [organizationId])
    },
    async drop() {
      if (dropped) return
      dropped = true
      await pool.end().catch(() => {})
      await dropDatabase(adminUrl, name)
    },
  }
}
