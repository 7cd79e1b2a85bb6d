/**
 * Checks made before opening the replication stream, so that a database that
 * is not set up for live sync gets one error that says how to fix it instead
 * of an obscure protocol failure.
 */
import pg from 'pg'
import { LiveSyncError } from './errors'
import { describeConnection } from './connection-config'

export interface PreflightResult {
  /** Things that work but not as well as they should (said once at start). */
  warnings: string[]
  serverVersion: number
}

const quote = (name: string) => `"${name.replaceAll('"', '""')}"`

/** Runs the checks on a normal (non-replication) connection. Throws a `LiveSyncError`. */
export async function preflight(config: pg.ClientConfig, publication: string, tables: string[]): Promise<PreflightResult> {
  const client = new pg.Client(config)
  client.on('error', () => {}) // reported through the failing query instead
  try {
    await client.connect()
  }
  catch (error) {
    throw new LiveSyncError('CONNECT', `cannot connect to PostgreSQL at ${describeConnection(config)}: ${(error as Error).message}. Check liveSync.databaseUrl / NUXT_LIVE_SYNC_DATABASE_URL or the Sequelize connection settings.`, { cause: error })
  }
  try {
    return await check(client, publication, tables)
  }
  finally {
    await client.end().catch(() => {})
  }
}

async function check(client: pg.Client, publication: string, tables: string[]): Promise<PreflightResult> {
  const { rows: [settings] } = await client.query<{ wal_level: string, max_replication_slots: string, max_wal_senders: string, version: string, user: string, superuser: boolean, replication: boolean, used_slots: string }>(`
    SELECT current_setting('wal_level') AS wal_level,
           current_setting('max_replication_slots') AS max_replication_slots,
           current_setting('max_wal_senders') AS max_wal_senders,
           current_setting('server_version_num') AS version,
           current_user AS user,
           r.rolsuper AS superuser,
           r.rolreplication AS replication,
           (SELECT count(*) FROM pg_replication_slots) AS used_slots
      FROM pg_roles r WHERE r.rolname = current_user`)
  if (!settings) throw new LiveSyncError('CONNECT', 'could not read the current role from pg_roles.')

  if (settings.wal_level !== 'logical') {
    throw new LiveSyncError('WAL_LEVEL', [
      `PostgreSQL runs with wal_level=${settings.wal_level}; live sync needs wal_level=logical. Live updates are off; pages are still served.`,
      'Fix: as a superuser run',
      '    ALTER SYSTEM SET wal_level = logical;',
      ...(Number(settings.max_replication_slots) < 1 ? ['    ALTER SYSTEM SET max_replication_slots = 10;'] : []),
      ...(Number(settings.max_wal_senders) < 1 ? ['    ALTER SYSTEM SET max_wal_senders = 10;'] : []),
      'then restart PostgreSQL (a reload is not enough). Managed services call this "logical replication" (e.g. rds.logical_replication = 1).',
    ].join('\n'))
  }
  if (!settings.superuser && !settings.replication) {
    throw new LiveSyncError('NO_PRIVILEGE', [
      `role ${quote(settings.user)} may not start logical replication. Live updates are off; pages are still served.`,
      `Fix: as a superuser run   ALTER ROLE ${quote(settings.user)} WITH REPLICATION;`,
      'or point liveSync.databaseUrl (NUXT_LIVE_SYNC_DATABASE_URL) at a role that has it.',
    ].join('\n'))
  }
  if (Number(settings.max_wal_senders) < 1 || Number(settings.used_slots) >= Number(settings.max_replication_slots)) {
    throw new LiveSyncError('NO_SLOTS', [
      `PostgreSQL has no free replication slot (${settings.used_slots} of max_replication_slots=${settings.max_replication_slots} in use, max_wal_senders=${settings.max_wal_senders}).`,
      'Fix: drop unused slots (SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE NOT active;)',
      'or raise the limits: ALTER SYSTEM SET max_replication_slots = 20; ALTER SYSTEM SET max_wal_senders = 20; then restart PostgreSQL.',
    ].join('\n'))
  }

  const { rows: publications } = await client.query<{ puballtables: boolean }>('SELECT puballtables FROM pg_publication WHERE pubname = $1', [publication])
  if (publications.length === 0) {
    throw new LiveSyncError('NO_PUBLICATION', [
      `publication ${quote(publication)} does not exist in database ${quote((await client.query('SELECT current_database() AS db')).rows[0].db)}. Live updates are off; pages are still served.`,
      'Fix: run the migration that creates it, e.g. `npx sequelize-cli db:migrate` with the migration from node_modules/nuxt-live-sync/migrations,',
      'or call `up(queryInterface)` from \'nuxt-live-sync/migration\' in one of your own migrations.',
    ].join('\n'))
  }

  const warnings: string[] = []
  if (tables.length > 0) {
    const { rows } = await client.query<{ table: string, published: boolean, identity: string | null }>(`
      SELECT t.name AS table,
             EXISTS (SELECT 1 FROM pg_publication_tables p WHERE p.pubname = $1 AND p.schemaname || '.' || p.tablename = t.name) AS published,
             (SELECT c.relreplident::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname || '.' || c.relname = t.name) AS identity
        FROM unnest($2::text[]) AS t(name)`, [publication, tables])
    for (const row of rows) {
      if (row.identity === null) warnings.push(`[live-sync] watched table ${row.table} does not exist; check the model's tableName or liveSync.table.`)
      else if (!row.published) warnings.push(`[live-sync] watched table ${row.table} is not in publication ${quote(publication)}: its changes will not arrive. Fix: ALTER PUBLICATION ${quote(publication)} ADD TABLE ${row.table};`)
      else if (row.identity !== 'f') warnings.push(`[live-sync] table ${row.table} has REPLICA IDENTITY ${row.identity === 'd' ? 'DEFAULT' : row.identity}: deletes and key changes cannot be routed by the old row, and unchanged large values may be missing. Fix: ALTER TABLE ${row.table} REPLICA IDENTITY FULL;`)
    }
  }
  return { warnings, serverVersion: Number(settings.version) }
}
