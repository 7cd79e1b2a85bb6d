import type { PeerStats } from '../engine/engine-stats'

/** Counters of the live sync socket, e.g. for a health check (the metrics endpoint reports them too). */
export type LiveSyncStats = PeerStats

/** A subscription refused, or a socket closed over a bound (the DevTools tab lists the last ones). */
export interface LiveSyncPeerEvent {
  /** ms since the epoch. */
  at: number
  /** `forbidden`, `too-many-keys`, `unavailable`; or the close code of a dropped socket (4008, 1008, 1009). */
  code: string | number
  /** The key, for a refused subscription (and for a dropped socket, the keys it held, up to 20). */
  keys: string[]
  reason: string
}

const stats: LiveSyncStats = {
  sockets: 0,
  socketsOpened: 0,
  refusedOrigins: 0,
  refusedSubscriptions: 0,
  tooManyKeys: 0,
  unavailable: 0,
  slowConsumers: 0,
  tooManyFrames: 0,
  framesTooLarge: 0,
}

/** The last refusals and drops, oldest first (bounded: clients choose the keys they send). */
const events: LiveSyncPeerEvent[] = []
const MAX_EVENTS = 50

/**
 * The live sync socket's counters for this Nitro instance (read-only
 * snapshot): `useLiveSyncStats().slowConsumers`.
 */
export function useLiveSyncStats(): Readonly<LiveSyncStats> {
  return { ...stats }
}

/** For the route: counts an event. */
export function countLiveSync(name: keyof LiveSyncStats, by = 1): void {
  stats[name] += by
}

/** For the route: remembers a refused subscription or a dropped socket. */
export function recordLiveSyncEvent(event: LiveSyncPeerEvent): void {
  events.push(event)
  if (events.length > MAX_EVENTS) events.shift()
}

/** The last refused subscriptions and dropped sockets, oldest first. */
export function recentLiveSyncEvents(): LiveSyncPeerEvent[] {
  return events.slice()
}
