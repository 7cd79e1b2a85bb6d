import type { LiveSyncEngine } from '../engine/live-sync-engine'

let current: LiveSyncEngine | null = null
const listeners = new Set<(engine: LiveSyncEngine) => void>()

/** Set by the Nitro plugin that owns the engine. */
export function setLiveSyncEngine(engine: LiveSyncEngine | null): void {
  current = engine
  if (engine) for (const listener of listeners) listener(engine)
}

/**
 * The running replication engine of this Nitro instance, or `null` when live
 * sync is not configured. Useful for health checks
 * (`useLiveSyncEngine()?.status === 'streaming'`) and numbers
 * (`await useLiveSyncEngine()?.stats()`).
 */
export function useLiveSyncEngine(): LiveSyncEngine | null {
  return current
}

/** Calls `listener` with the engine once the Nitro plugin created it (at once if it did). */
export function onLiveSyncEngine(listener: (engine: LiveSyncEngine) => void): void {
  listeners.add(listener)
  if (current) listener(current)
}
