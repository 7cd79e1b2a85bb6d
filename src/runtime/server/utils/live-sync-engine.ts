import type { LiveSyncEngine } from '../engine/live-sync-engine'

let current: LiveSyncEngine | null = null

/** Set by the Nitro plugin that owns the engine. */
export function setLiveSyncEngine(engine: LiveSyncEngine | null): void {
  current = engine
}

/**
 * The running replication engine of this Nitro instance, or `null` when live
 * sync is not configured. Useful for health checks:
 * `useLiveSyncEngine()?.status === 'streaming'`.
 */
export function useLiveSyncEngine(): LiveSyncEngine | null {
  return current
}
