/**
 * The database side of nuxt-live-sync (the `LiveSync.Migration` of the Elixir
 * original): a publication the replication stream reads, and
 * `REPLICA IDENTITY FULL` on the published tables, so that deletes and
 * key-changing updates carry the old row (needed to route them by its
 * subscription key) and unchanged large values can be filled in.
 *
 * ```js
 * // a Sequelize migration
 * const liveSync = require('nuxt-live-sync/migration')
 * module.exports = {
 *   up: queryInterface => liveSync.up(queryInterface),            // FOR ALL TABLES
 *   // up: queryInterface => liveSync.up(queryInterface, ['tasks', 'app.projects']),
 *   down: queryInterface => liveSync.down(queryInterface),
 * }
 * ```
 */
import type { QueryInterface } from 'sequelize'

export interface MigrationOptions {
  /** Publication name; must match the module's `liveSync.publication`. */
  publication?: string
}

/** The smallest part of Sequelize's QueryInterface these functions use. */
type QueryRunner = Pick<QueryInterface, 'sequelize'>

const IDENTIFIER = /^[A-Z_][\w$]*$/i

function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`
}

/** `tasks` → `"public"."tasks"`, `app.tasks` → `"app"."tasks"`. */
function quoteTable(table: string): string {
  const parts = table.split('.')
  if (parts.length > 2 || parts.some(part => !IDENTIFIER.test(part))) {
    throw new Error(`[live-sync] migration: ${JSON.stringify(table)} is not a table name (expected "table" or "schema.table").`)
  }
  return (parts.length === 1 ? ['public', parts[0]!] : parts).map(quoteIdent).join('.')
}

function publicationName(options?: MigrationOptions): string {
  const name = options?.publication ?? 'live_sync'
  if (!IDENTIFIER.test(name)) throw new Error(`[live-sync] migration: publication ${JSON.stringify(name)} is not a plain identifier.`)
  return name
}

async function run(queryInterface: QueryRunner, sql: string): Promise<Array<Record<string, unknown>>> {
  const [rows] = await queryInterface.sequelize.query(sql)
  return rows as Array<Record<string, unknown>>
}

async function publishedTables(queryInterface: QueryRunner, publication: string): Promise<string[]> {
  const rows = await run(queryInterface, `SELECT format('%I.%I', schemaname, tablename) AS name FROM pg_publication_tables WHERE pubname = '${publication}'`)
  return rows.map(row => String(row.name))
}

/**
 * Creates the publication `live_sync` FOR ALL TABLES, or FOR TABLE … when a
 * list is given, and sets REPLICA IDENTITY FULL on the published tables.
 * Running it again replaces an existing publication of the same name.
 */
export async function up(queryInterface: QueryRunner, tables?: string[] | null, options?: MigrationOptions): Promise<void> {
  const publication = quoteIdent(publicationName(options))
  if (tables && tables.length === 0) throw new Error('[live-sync] migration: the table list is empty; pass no list to publish all tables.')
  const target = tables ? `FOR TABLE ${tables.map(quoteTable).join(', ')}` : 'FOR ALL TABLES'
  await run(queryInterface, `DROP PUBLICATION IF EXISTS ${publication}`)
  await run(queryInterface, `CREATE PUBLICATION ${publication} ${target}`)
  for (const table of await publishedTables(queryInterface, publicationName(options))) {
    await run(queryInterface, `ALTER TABLE ${table} REPLICA IDENTITY FULL`)
  }
}

/** Drops the publication and gives its tables back their DEFAULT replica identity. */
export async function down(queryInterface: QueryRunner, options?: MigrationOptions): Promise<void> {
  const name = publicationName(options)
  const exists = await run(queryInterface, `SELECT 1 FROM pg_publication WHERE pubname = '${name}'`)
  if (exists.length === 0) return
  for (const table of await publishedTables(queryInterface, name)) {
    await run(queryInterface, `ALTER TABLE ${table} REPLICA IDENTITY DEFAULT`)
  }
  await run(queryInterface, `DROP PUBLICATION ${quoteIdent(name)}`)
}
