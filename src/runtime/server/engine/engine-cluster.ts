/**
 * The seam between the engine and cluster mode (src/runtime/server/cluster/).
 * In cluster mode one instance, the leader, streams the replication slot
 * and hands each committed transaction's per-key batches to the cluster
 * (Redis) instead of its own hub; every instance, the leader too, feeds its
 * hub from Redis. Single-instance mode has no cluster and keeps its direct
 * path: nothing here costs it anything.
 */
import type { Lsn } from '../../shared/lsn'
import type { ResyncReason } from '../../shared/protocol'
import type { KeyedChanges } from './change-router'
import type { KeyBatch, Subscriber } from './key-batch'
import type { EngineStatus, EngineSubscription } from './live-sync-engine'
import type { SubscriptionHub } from './subscription-hub'

/** A committed transaction as the leader hands it over. */
export interface ClusterTransaction {
  cursor: Lsn
  xid: number
  /** Each key's changes, serialized with `encodeChange`. */
  keyed: KeyedChanges | null
  /** Tables it truncated: every subscriber must resync. */
  truncated: string[] | null
  /** A change could not be processed: every subscriber must resync. */
  broken: boolean
  /**
   * The transaction outgrew what the leader holds of one (`keyed` is then
   * null): the subscribers of these keys must resync; `all`: of every key.
   */
  oversized?: readonly string[] | 'all' | null
}

/** What the cluster may do to the engine it serves. */
export interface ClusterHost {
  readonly hub: SubscriptionHub
  /** This instance now leads: start streaming the slot. */
  lead: () => void
  /** This instance no longer leads: stop streaming at once. */
  follow: () => Promise<void>
  /** Everything up to `cursor` has been handed to this instance's hub. */
  advance: (cursor: Lsn) => void
  /** What this instance's sockets get: Redis reachable ('streaming') or not; the shared history's epoch. */
  serve: (status: EngineStatus, epoch: string) => void
  /** Tells every subscriber of this instance (or those of `keys`) that it may have missed changes. */
  resyncAll: (reason: ResyncReason, cursor: Lsn | null, tables?: string[], keys?: readonly string[]) => void
  readonly cursor: Lsn | null
}

/** A subscription whose history came from the cluster. */
export interface ClusterSubscription extends EngineSubscription {
  /** Delivers what arrived while the history was read; call once the subscriber was told it is subscribed. */
  live: () => void
}

export interface EngineCluster {
  /** The permanent slot the leader streams. */
  readonly slotName: string
  /** Connects to Redis and joins the leader election; calls `host.lead()` when this instance wins. */
  start: (host: ClusterHost) => Promise<void>
  /** Leaves the election (after the engine stopped streaming) and closes the connections. */
  stop: () => Promise<void>
  /** The leader's stream begins at `point` (`created`: the slot was just made). Resolves before anything is streamed. */
  begin: (point: Lsn, created: boolean) => Promise<void>
  /** Publishes a transaction; resolves once Redis has it (only then is it acknowledged to Postgres). */
  publish: (tx: ClusterTransaction) => Promise<void>
  /** Publishes a position without a transaction (keepalives, unwatched tables); resolves once Redis has it. */
  publishPosition: (lsn: Lsn) => Promise<void>
  /**
   * Subscribes to a key: its history after `since` from Redis, delivered
   * inside `burst`, then what arrives live (held until `live()`).
   */
  subscribe: (key: string, subscriber: Subscriber, since: Lsn | null | undefined, burst: (deliver: () => void) => void) => Promise<ClusterSubscription>
  /** The key's batches after `since` from the shared history, or `null` when it does not reach back that far. */
  replay: (key: string, since: Lsn) => Promise<KeyBatch[] | null>
}
