/**
 * Checks made before opening the replication stream, so that a database that
 * is not set up for live sync gets one error that says how to fix it instead
 * of an obscure protocol failure.
 */
import pg from 'pg'
import { LiveSyncError } from './errors'
import { describeConnection } from './connection-config'

export interface PreflightOptions {
  /**
   * Add each watched table to the publication and make it REPLICA IDENTITY
   * FULL where the connecting role may (default true); otherwise only warn.
   */
  manageTables?: boolean
  /** Cluster mode's permanent slot: when it exists already it needs no free slot. */
  slotName?: string
}

export interface PreflightResult {
  /** Things that work but not as well as they should (said once at start). */
  warnings: string[]
  /** What the checks changed in the database (said once, when it happens). */
  changes: string[]
  serverVersion: number
}

const quote = (name: string) => `"${name.replaceAll('"', '""')}"`

/** Runs the checks on a normal (non-replication) connection. Throws a `LiveSyncError`. */
export async function preflight(config: pg.ClientConfig, publication: string, tables: string[], options: PreflightOptions = {}): Promise<PreflightResult> {
  const client = new pg.Client(config)
  client.on('error', () => {}) // reported through the failing query instead
  try {
    await client.connect()
  }
  catch (error) {
    throw new LiveSyncError('CONNECT', `cannot connect to PostgreSQL at ${describeConnection(config)}: ${(error as Error).message}. Check liveSync.databaseUrl / NUXT_LIVE_SYNC_DATABASE_URL or the Sequelize connection settings.`, { cause: error })
  }
  try {
    return await check(client, publication, tables, options)
  }
  finally {
    await client.end().catch(() => {})
  }
}

async function check(client: pg.Client, publication: string, tables: string[], options: PreflightOptions): Promise<PreflightResult> {
  const { rows: [settings] } = await client.query<{ wal_level: string, max_replication_slots: string, max_wal_senders: string, version: string, user: string, superuser: boolean, replication: boolean, used_slots: string }>(`
    SELECT current_setting('wal_level') AS wal_level,
           current_setting('max_replication_slots') AS max_replication_slots,
           current_setting('max_wal_senders') AS max_wal_senders,
           current_setting('server_version_num') AS version,
           current_user AS user,
           r.rolsuper AS superuser,
           r.rolreplication AS replication,
           (SELECT count(*) FROM pg_replication_slots WHERE slot_name IS DISTINCT FROM $1) AS used_slots
      FROM pg_roles r WHERE r.rolname = current_user`, [options.slotName ?? null])
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

  const { warnings, changes } = tables.length > 0
    ? await checkTables(client, publication, tables, options.manageTables ?? true)
    : { warnings: [], changes: [] }
  return { warnings, changes, serverVersion: Number(settings.version) }
}

interface WatchedTableState {
  table: string
  /** The name as SQL (quoted where needed), or null when there is no such relation. */
  sql: string | null
  kind: string | null
  published: boolean
  identity: string | null
  owner: string | null
  /** The connecting role may alter it (owns it, through membership, or is a superuser). */
  owned: boolean
}

/**
 * Each watched table must be in the publication (or its changes never
 * arrive) and REPLICA IDENTITY FULL (or deletes and key changes cannot be
 * routed by the old row). With `manage`, fixes what the connecting role may
 * fix; everything else becomes one warning per table with the SQL that fixes it.
 */
async function checkTables(client: pg.Client, publication: string, tables: string[], manage: boolean): Promise<{ warnings: string[], changes: string[] }> {
  const { rows: [pub] } = await client.query<{ all_tables: boolean, owner: string, owned: boolean }>(
    `SELECT puballtables AS all_tables, pg_get_userbyid(pubowner) AS owner, pg_has_role(pubowner, 'USAGE') AS owned FROM pg_publication WHERE pubname = $1`, [publication])
  const { rows } = await client.query<WatchedTableState>(`
    SELECT t.name AS table,
           CASE WHEN c.oid IS NULL THEN NULL ELSE format('%I.%I', n.nspname, c.relname) END AS sql,
           c.relkind::text AS kind,
           EXISTS (SELECT 1 FROM pg_publication_tables p WHERE p.pubname = $1 AND p.schemaname = n.nspname AND p.tablename = c.relname) AS published,
           c.relreplident::text AS identity,
           pg_get_userbyid(c.relowner) AS owner,
           coalesce(pg_has_role(c.relowner, 'USAGE'), false) AS owned
      FROM unnest($2::text[]) AS t(name)
      LEFT JOIN pg_namespace n ON n.nspname = split_part(t.name, '.', 1)
      LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = split_part(t.name, '.', 2)`, [publication, tables])

  const warnings: string[] = []
  const changes: string[] = []
  const pubSql = quote(publication)
  // A migration may hold a lock on a table for long: never make start-up wait on it.
  if (manage) await client.query(`SET lock_timeout = '5s'`)
  for (const row of rows) {
    if (row.sql === null) {
      warnings.push(`[live-sync] watched table ${row.table} does not exist; check the model's tableName or liveSync.table (or run your migrations).`)
      continue
    }
    if (row.kind !== 'r' && row.kind !== 'p') {
      warnings.push(`[live-sync] watched relation ${row.sql} is not a table (a view?); its changes cannot be streamed. Set the model's liveSync.table to the table behind it.`)
      continue
    }
    const fixes: Array<{ sql: string, done: string, problem: string, may: boolean, who: string }> = []
    if (!row.published && pub) {
      fixes.push({
        sql: `ALTER PUBLICATION ${pubSql} ADD TABLE ${row.sql}`,
        done: `added ${row.sql} to publication ${pubSql}`,
        problem: `is not in publication ${pubSql}: its changes will not arrive`,
        may: pub.owned && row.owned,
        who: `the owner of publication ${pubSql} (role ${quote(pub.owner)}) if it also owns the table (role ${quote(row.owner!)}), or a superuser`,
      })
    }
    if (row.identity !== 'f') {
      fixes.push({
        sql: `ALTER TABLE ${row.sql} REPLICA IDENTITY FULL`,
        done: `set REPLICA IDENTITY FULL on ${row.sql}`,
        problem: `has REPLICA IDENTITY ${identityName(row.identity)}: deletes and key changes cannot be routed by the old row, and unchanged large values may be missing`,
        may: row.owned,
        who: `the table's owner (role ${quote(row.owner!)}) or a superuser`,
      })
    }
    const left: typeof fixes = []
    for (const fix of fixes) {
      if (!manage || !fix.may) {
        left.push(fix)
        continue
      }
      try {
        await client.query(fix.sql)
        changes.push(fix.done)
      }
      catch (error) {
        // Another instance starting at the same moment added it first.
        if ((error as { code?: string }).code === '42710') continue
        left.push({ ...fix, problem: `${fix.problem} (fixing it failed: ${(error as Error).message})` })
      }
    }
    for (const fix of left) {
      warnings.push(`[live-sync] watched table ${row.sql} ${fix.problem}. Fix, as ${fix.who}:   ${fix.sql};${manage ? '' : '   (liveSync.manageTables is off, so the server leaves this to you.)'}`)
    }
  }
  return {
    warnings,
    changes: changes.length > 0 ? [`[live-sync] prepared the watched tables for live sync: ${changes.join('; ')} (liveSync.manageTables: false leaves this to you).`] : [],
  }
}

function identityName(identity: string | null): string {
  switch (identity) {
    case 'd': return 'DEFAULT'
    case 'n': return 'NOTHING'
    case 'i': return 'USING INDEX'
    default: return String(identity)
  }
}
