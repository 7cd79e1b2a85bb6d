/**
 * The permanent, named slot of cluster mode. Unlike the temporary slot of a
 * single instance it outlives the session that streams it, so the next
 * leader continues from the position the last one acknowledged; it keeps
 * WAL while nobody streams it (bounded by `max_slot_wal_keep_size`), and is
 * dropped by the migration's `down` or `SELECT pg_drop_replication_slot('live_sync')`.
 */
import pg from 'pg'
import { normalizeLsn, type Lsn } from '../../shared/lsn'
import { LiveSyncError } from './errors'

/** Slot names Postgres accepts: lower-case letters, digits and underscores. */
export const SLOT_NAME_RE = /^[a-z0-9_]{1,63}$/

interface SlotRow {
  slot_type: string
  plugin: string | null
  database: string | null
  current: string
  active: boolean
  active_pid: number | null
  confirmed_flush_lsn: string | null
  wal_status?: string | null
}

/**
 * Opens the slot on the replication connection (simple queries only):
 * created if missing; waited for while another session (a leader that just
 * died, whose walsender has not noticed yet) still holds it; made anew if
 * Postgres invalidated it (it fell behind `max_slot_wal_keep_size`).
 * `created` tells the caller that nothing before `point` can be replayed.
 */
export async function openPermanentSlot(client: pg.Client, slotName: string, waitMs = 10_000): Promise<{ point: Lsn, created: boolean }> {
  if (!SLOT_NAME_RE.test(slotName)) throw new LiveSyncError('CONFIG', `replication slot name ${JSON.stringify(slotName)} is not valid: use lower-case letters, digits and _ (liveSync.slotName).`)
  const deadline = Date.now() + waitMs
  for (;;) {
    const { rows: [slot] } = await client.query<SlotRow>(`SELECT s.*, current_database() AS current FROM pg_replication_slots s WHERE slot_name = '${slotName}'`)
    if (!slot) break
    if (slot.slot_type !== 'logical' || slot.plugin !== 'pgoutput' || slot.database !== slot.current) {
      throw new LiveSyncError('CONFIG', `replication slot "${slotName}" exists but is not a pgoutput slot of database "${slot.current}" (it is a ${slot.slot_type} slot of ${slot.plugin ?? 'no plugin'} in database ${slot.database ?? '(none)'}). Set another liveSync.slotName (NUXT_LIVE_SYNC_SLOT_NAME), or drop it: SELECT pg_drop_replication_slot('${slotName}');`)
    }
    if (slot.wal_status === 'lost') {
      // Postgres removed WAL it still needed: it cannot stream from it any more.
      await client.query(`DROP_REPLICATION_SLOT "${slotName}"`)
      break
    }
    if (!slot.active) return { point: normalizeLsn(slot.confirmed_flush_lsn!), created: false }
    if (Date.now() > deadline) {
      throw new LiveSyncError('REPLICATION', `replication slot "${slotName}" is held by another session (PID ${slot.active_pid}) for more than ${Math.round(waitMs / 1000)} s. Does another deployment stream it? Give each its own liveSync.slotName (NUXT_LIVE_SYNC_SLOT_NAME).`)
    }
    await new Promise(resolve => setTimeout(resolve, 50))
  }
  const { rows } = await client.query(`CREATE_REPLICATION_SLOT "${slotName}" LOGICAL pgoutput NOEXPORT_SNAPSHOT`)
  return { point: normalizeLsn(rows[0].consistent_point), created: true }
}

/** Waits (on a normal connection) until no session holds the slot, so the next leader may start it at once. */
export async function waitUntilInactive(config: pg.ClientConfig, slotName: string, deadlineMs = 5000): Promise<void> {
  const client = new pg.Client(config)
  client.on('error', () => {})
  try {
    await client.connect()
    const deadline = Date.now() + deadlineMs
    while (Date.now() < deadline) {
      const { rows } = await client.query<{ active: boolean }>('SELECT active FROM pg_replication_slots WHERE slot_name = $1', [slotName])
      if (!rows[0]?.active) return
      await new Promise(resolve => setTimeout(resolve, 20))
    }
  }
  catch {
    // The database is unreachable: the next leader waits for the slot itself.
  }
  finally {
    await client.end().catch(() => {})
  }
}
