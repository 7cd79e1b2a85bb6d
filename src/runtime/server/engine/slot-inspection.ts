/**
 * What Postgres says about our slot and publication, read on a short-lived
 * plain connection (never the replication connection, so a slow or failing
 * query cannot hold up the stream): how many bytes of WAL the slot has not
 * confirmed yet, and which tables the publication streams.
 */
import pg from 'pg'

export interface SlotInspection {
  /** WAL written and not confirmed by the slot yet (`pg_current_wal_lsn() - confirmed_flush_lsn`); null when the slot is not there. */
  lagBytes: number | null
  /** The publication's tables (`schema.table`), when asked for. */
  publicationTables?: string[]
  /** The publication is `FOR ALL TABLES`. */
  allTables?: boolean
}

const LAG_SQL = `SELECT pg_wal_lsn_diff(
    CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END,
    confirmed_flush_lsn)::float8 AS bytes
  FROM pg_replication_slots WHERE slot_name = $1`

/** Reads the slot's lag (and, with `publication`, its tables); throws when the database cannot be asked. */
export async function inspectSlot(config: pg.ClientConfig, slotName: string, publication?: string, timeoutMs = 2000): Promise<SlotInspection> {
  const client = new pg.Client({ ...config, connectionTimeoutMillis: timeoutMs, statement_timeout: timeoutMs, query_timeout: timeoutMs })
  client.on('error', () => {})
  try {
    await client.connect()
    const { rows } = await client.query<{ bytes: number | null }>(LAG_SQL, [slotName])
    const result: SlotInspection = { lagBytes: rows[0]?.bytes ?? null }
    if (publication) {
      const { rows: [pub] } = await client.query<{ all: boolean }>('SELECT puballtables AS all FROM pg_publication WHERE pubname = $1', [publication])
      const { rows: tables } = await client.query<{ name: string }>(
        `SELECT schemaname || '.' || tablename AS name FROM pg_publication_tables WHERE pubname = $1 ORDER BY 1`,
        [publication],
      )
      result.allTables = pub?.all ?? false
      result.publicationTables = tables.map(table => table.name)
    }
    return result
  }
  finally {
    await client.end().catch(() => {})
  }
}
