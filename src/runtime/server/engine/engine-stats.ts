/**
 * What `LiveSyncEngine.stats()` reports, and small helpers for the engine's
 * debug lines and DevTools feed.
 */
import type { Lsn } from '../../shared/lsn'
import type { Change, ResyncReason } from '../../shared/protocol'
import type { LatencyHistogram } from './engine-metrics'
import type { EngineStatus } from './live-sync-engine'

/** The counters of the live sync sockets (kept by the Nitro route; see `useLiveSyncStats()`). */
export interface PeerStats {
  /** Sockets open now. */
  sockets: number
  /** Sockets opened since start (reconnects included). */
  socketsOpened: number
  /** Upgrades refused with 403 because of their Origin. */
  refusedOrigins: number
  /** Subscriptions refused by the authorizer (`forbidden`). */
  refusedSubscriptions: number
  /** Subscriptions refused over `limits.maxKeysPerSocket` (`too-many-keys`). */
  tooManyKeys: number
  /** Subscriptions answered `unavailable` (live sync not configured or not streaming). */
  unavailable: number
  /** Sockets closed with 4008: they did not read what was sent to them fast enough. */
  slowConsumers: number
  /** Sockets closed with 1008: frames faster than the rate limit, or too many waiting. */
  tooManyFrames: number
  /** Sockets closed with 1009: a frame longer than `limits.maxFrameBytes`. */
  framesTooLarge: number
}

export interface LiveSyncEngineStats extends Partial<PeerStats> {
  status: EngineStatus
  /** Everything up to here has been dispatched. */
  cursor: Lsn | null
  epoch: string
  /** The current replication session's (temporary) slot. */
  slot: string | null
  lag: {
    /** WAL bytes the slot has not confirmed (`pg_current_wal_lsn()` − its confirmed position); null when unknown (not streaming, or Postgres could not be asked). */
    bytes: number | null
    /** How long the oldest transaction received and not dispatched yet has waited since its commit, in seconds (0 when nothing waits). */
    seconds: number
  }
  /** Transactions dispatched (total, and per second over the last 10 s). */
  transactions: { total: number, perSecond: number }
  /** Row changes dispatched (one per key a change went to). */
  rows: { total: number, perSecond: number }
  /** Commit (Postgres's timestamp) → dispatch latency of each transaction. */
  latency: LatencyHistogram
  /** Keys with at least one subscriber. */
  keys: number
  /** Subscriptions (a socket subscribed to a key counts once). */
  subscribers: number
  /** The replay history: batches, rows and keys held. */
  replay: { batches: number, rows: number, keys: number }
  /** Resync notices delivered to subscribers, by reason. */
  resyncs: Record<ResyncReason, number>
  /** Replication sessions started again after the previous one failed. */
  reconnects: number
}

/** A dispatched transaction, as the DevTools tab shows it. */
export interface EngineFeedEntry {
  cursor: Lsn
  /** Postgres's commit timestamp (ms since the epoch). */
  commitTime: number
  /** When it was dispatched (ms since the epoch, sub-millisecond). */
  dispatchedAt: number
  rows: number
  /** Rows per key. */
  keys: Record<string, number>
  /** Tables truncated (their subscribers were told to resync). */
  truncated: string[]
}

/** `3 change(s): Task insert 12, Task update 4, …` (for debug lines: parses the serialized changes). */
export function describeChanges(encoded: readonly string[], listed = 10): string {
  const parts = encoded.slice(0, listed).map((text) => {
    const change = JSON.parse(text) as Change
    return `${change.model} ${change.op} ${JSON.stringify(change.id)}`
  })
  if (encoded.length > listed) parts.push(`… ${encoded.length - listed} more`)
  return `${encoded.length} change(s): ${parts.join(', ')}`
}
