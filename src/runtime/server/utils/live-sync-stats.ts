/** Counters of the live sync socket, e.g. for a health check or metrics endpoint. */
export interface LiveSyncStats {
  /** Sockets open now. */
  sockets: number
  /** Upgrades refused with 403 because of their Origin. */
  refusedOrigins: number
  /** Sockets closed with 4008: they did not read what was sent to them fast enough. */
  slowConsumers: number
  /** Sockets closed with 1008: frames faster than the rate limit, or too many waiting. */
  tooManyFrames: number
  /** Sockets closed with 1009: a frame longer than `limits.maxFrameBytes`. */
  framesTooLarge: number
}

const stats: LiveSyncStats = { sockets: 0, refusedOrigins: 0, slowConsumers: 0, tooManyFrames: 0, framesTooLarge: 0 }

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
