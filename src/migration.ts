/**
 * The database side of nuxt-live-sync (the `LiveSync.Migration` of the Elixir
 * original): the publication the replication stream reads, and
 * `REPLICA IDENTITY FULL` on the published tables, so that deletes and
 * key-changing updates carry the old row (needed to route them by its
 * subscription key) and unchanged large values can be filled in.
 *
 * ```js
 * // a Sequelize migration (sequelize-cli)
 * const liveSync = require('nuxt-live-sync/migration')
 * module.exports = {
 *   up: queryInterface => liveSync.up(queryInterface),
 *   // up: queryInterface => liveSync.up(queryInterface, ['tasks', 'app.projects']),
 *   down: queryInterface => liveSync.down(queryInterface),
 * }
 * ```
 *
 * Which publication `up(queryInterface)` makes depends on the role running it:
 * - a superuser gets `FOR ALL TABLES` (only a superuser may create one);
 * - any other role gets a publication it owns, without tables: the server adds
 *   each watched table to it at start-up and makes it REPLICA IDENTITY FULL
 *   (`liveSync.manageTables`), so the order of migrations does not matter.
 *   The role needs the CREATE privilege on the database (its owner has it).
 *
 * `up(queryInterface, tables)` publishes exactly those tables (the role must
 * own them) and sets REPLICA IDENTITY FULL on them.
 */
import type { QueryInterface } from 'sequelize'

export interface MigrationOptions {
  /** Publication name; must match the module's `liveSync.publication`. */
  publication?: string
  /** The permanent replication slot of several instances (`liveSync.slotName`), dropped by `down`; default `live_sync`. */
  slotName?: string
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

/** Runs a statement; a missing privilege becomes an error that says who may run it. */
async function runAs(queryInterface: QueryRunner, role: Role, sql: string, fix: string): Promise<void> {
  try {
    await run(queryInterface, sql)
  }
  catch (error) {
    const cause = (error as { parent?: { code?: string } }).parent ?? error
    if ((cause as { code?: string }).code !== '42501') throw error // insufficient_privilege
    throw new Error(`[live-sync] migration: \`${sql}\` failed for role ${quoteIdent(role.name)}: ${(error as Error).message}. ${fix}`, { cause: error })
  }
}

interface Role {
  name: string
  superuser: boolean
  database: string
}

async function currentRole(queryInterface: QueryRunner): Promise<Role> {
  const [row] = await run(queryInterface, `SELECT current_user AS name, r.rolsuper AS superuser, current_database() AS database FROM pg_roles r WHERE r.rolname = current_user`)
  return { name: String(row!.name), superuser: row!.superuser === true, database: String(row!.database) }
}

async function publishedTables(queryInterface: QueryRunner, publication: string): Promise<string[]> {
  const rows = await run(queryInterface, `SELECT format('%I.%I', schemaname, tablename) AS name FROM pg_publication_tables WHERE pubname = '${publication}'`)
  return rows.map(row => String(row.name))
}

/**
 * Creates the publication (`live_sync` unless `options.publication` says
 * otherwise) and sets REPLICA IDENTITY FULL on the tables it publishes:
 * - with a table list: `FOR TABLE …` those tables;
 * - without, run by a superuser: `FOR ALL TABLES`;
 * - without, run by any other role: a publication that role owns, with no
 *   tables yet; the server adds the watched tables at start-up.
 *
 * Running it again replaces an existing publication of the same name.
 */
export async function up(queryInterface: QueryRunner, tables?: string[] | null, options?: MigrationOptions): Promise<void> {
  const name = publicationName(options)
  const publication = quoteIdent(name)
  if (tables && tables.length === 0) throw new Error('[live-sync] migration: the table list is empty; pass no list to publish all tables (or, for a role that is not a superuser, the watched ones).')
  const role = await currentRole(queryInterface)
  const target = tables
    ? ` FOR TABLE ${tables.map(quoteTable).join(', ')}`
    : role.superuser ? ' FOR ALL TABLES' : ''
  await runAs(queryInterface, role, `DROP PUBLICATION IF EXISTS ${publication}`, `Run the migration as the role that owns publication ${publication}, or drop it as a superuser.`)
  await runAs(queryInterface, role, `CREATE PUBLICATION ${publication}${target}`, tables
    ? `Publishing a table needs the CREATE privilege on the database and ownership of the table: run the migration as the tables' owner.`
    : `Creating a publication needs the CREATE privilege on the database: as a superuser run   GRANT CREATE ON DATABASE ${quoteIdent(role.database)} TO ${quoteIdent(role.name)};   (or make the role the database's owner).`)
  for (const table of await publishedTables(queryInterface, name)) {
    await runAs(queryInterface, role, `ALTER TABLE ${table} REPLICA IDENTITY FULL`, `Only the table's owner (or a superuser) may change its replica identity: run the migration as that role.`)
  }
}

/**
 * Drops the publication, gives its tables back their DEFAULT replica
 * identity, and drops the permanent replication slot that running several
 * instances (`liveSync.redis`) leaves in this database, so no WAL is kept
 * for it. Stop the app first: a slot in use cannot be dropped.
 */
export async function down(queryInterface: QueryRunner, options?: MigrationOptions): Promise<void> {
  const name = publicationName(options)
  const slot = options?.slotName ?? 'live_sync'
  if (!/^[a-z0-9_]{1,63}$/.test(slot)) throw new Error(`[live-sync] migration: ${JSON.stringify(slot)} is not a replication slot name.`)
  const [held] = await run(queryInterface, `SELECT active_pid FROM pg_replication_slots WHERE slot_name = '${slot}' AND database = current_database() AND active`)
  if (held) throw new Error(`[live-sync] migration: replication slot "${slot}" is in use (by PID ${held.active_pid}): stop every instance of the app, then run the migration down again.`)
  await run(queryInterface, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '${slot}' AND database = current_database()`)
  const exists = await run(queryInterface, `SELECT 1 FROM pg_publication WHERE pubname = '${name}'`)
  if (exists.length === 0) return
  const role = await currentRole(queryInterface)
  for (const table of await publishedTables(queryInterface, name)) {
    await runAs(queryInterface, role, `ALTER TABLE ${table} REPLICA IDENTITY DEFAULT`, `Only the table's owner (or a superuser) may change its replica identity: run the migration as that role.`)
  }
  await runAs(queryInterface, role, `DROP PUBLICATION ${quoteIdent(name)}`, `Only the publication's owner (or a superuser) may drop it: run the migration as that role.`)
}
