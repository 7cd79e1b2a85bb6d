/**
 * Owns the replication engine for the lifetime of the Nitro server: started
 * with it, stopped (slot dropped) when it closes. A missing or broken
 * configuration is reported once and the app keeps serving pages. Also
 * bounds the size of client frames (frame-limit.ts) and says at start when
 * subscriptions have no authorizer.
 */
import type { AdapterOptions } from 'crossws'
import type { Sequelize } from 'sequelize'
import { defineNitroPlugin, useRuntimeConfig } from '#imports'
import { createLiveSyncEngine, type LiveSyncEngine } from '../engine/live-sync-engine'
import { installFrameLimit } from '../frame-limit'
import { defaultAccessNotice } from '../default-access'
import { liveSyncAccess } from '../utils/live-sync-authorize'
import { setLiveSyncEngine } from '../utils/live-sync-engine'
import { useLiveSyncSettings } from '../utils/live-sync-settings'
import { countLiveSync } from '../utils/live-sync-stats'

interface LiveSyncRuntimeConfig {
  databaseUrl?: string
  publication?: string
  manageTables?: boolean
  replay?: { maxRows?: number, maxAgeMs?: number }
}

async function loadSequelize(): Promise<{ configured: string | null, sequelize: Sequelize | null }> {
  // Imported lazily so that an app module that throws (no DATABASE_URL …)
  // costs live sync, not the whole server.
  const mod = await import('#live-sync/sequelize') as { configured: string | null, default: unknown }
  let instance = mod.default as Sequelize | (() => Sequelize | Promise<Sequelize>) | null | undefined
  if (typeof instance === 'function') instance = await instance()
  return { configured: mod.configured, sequelize: instance ?? null }
}

export default defineNitroPlugin((nitroApp) => {
  const config = (useRuntimeConfig() as { liveSync?: LiveSyncRuntimeConfig }).liveSync ?? {}
  let engine: LiveSyncEngine | null = null
  let closing = false
  // Reports wrong limits or origins once, now.
  useLiveSyncSettings()
  // Nitro's Node presets build the ws server from this object after the plugins ran.
  installFrameLimit(nitroApp.h3App.websocket as AdapterOptions, () => countLiveSync('framesTooLarge'))

  const ready = (async () => {
    let loaded: Awaited<ReturnType<typeof loadSequelize>>
    try {
      loaded = await loadSequelize()
    }
    catch (error) {
      console.error(`[live-sync] could not load the Sequelize instance named by liveSync.sequelize: ${(error as Error).message}. Live updates are off; pages are still served.`)
      return
    }
    const { configured, sequelize } = loaded
    if (!configured) {
      console.warn('[live-sync] liveSync.sequelize is not set in nuxt.config (it names the module exporting your Sequelize instance). Live updates are off; pages are still served.')
      return
    }
    if (!sequelize) {
      console.warn(`[live-sync] ${configured} exported no Sequelize instance (no database configured?). Live updates are off; pages are still served.`)
      return
    }
    try {
      engine = createLiveSyncEngine({ sequelize, connection: config.databaseUrl || null, publication: config.publication, manageTables: config.manageTables, replay: config.replay })
    }
    catch (error) {
      console.error(`${(error as Error).message}\nLive updates are off; pages are still served.`)
      return
    }
    if (closing) return
    setLiveSyncEngine(engine)
    // Every plugin has registered its hooks by now (this runs after an await).
    const notice = defaultAccessNotice(liveSyncAccess(nitroApp))
    if (notice) console[notice.level](notice.message)
    await engine.start()
  })()

  // The cursor a server-rendered page's data is at least as new as.
  nitroApp.hooks.hook('request', (event) => {
    event.context.liveSyncCursor = engine?.snapshotCursor() ?? null
  })

  nitroApp.hooks.hook('close', async () => {
    closing = true
    await ready.catch(() => {})
    setLiveSyncEngine(null)
    await engine?.stop()
  })
})
