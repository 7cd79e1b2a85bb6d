/**
 * Owns the replication engine for the lifetime of the Nitro server: started
 * with it, stopped (slot dropped) when it closes. A missing or broken
 * configuration is reported once and the app keeps serving pages. Also
 * bounds the size of client frames (frame-limit.ts) and says at start when
 * subscriptions have no authorizer.
 */
import type { AdapterOptions } from 'crossws'
import type { Sequelize } from 'sequelize'
import { getRequestURL, type H3Event } from 'h3'
import { defineNitroPlugin, useRuntimeConfig } from '#imports'
import { keyString, type KeyValue, type Row, type SnapshotModel } from '../../shared/protocol'
import type { ServerSnapshot } from '../../shared/server-snapshot'
import { createRedisCluster } from '../cluster/redis-cluster'
import { resolveConnectionConfig } from '../engine/connection-config'
import { createLiveSyncEngine, type LiveSyncEngine } from '../engine/live-sync-engine'
import { createLiveSyncLogger, liveSyncLogger } from '../engine/logger'
import { installFrameLimit } from '../frame-limit'
import { defaultAccessNotice, metricsAccessNotice } from '../default-access'
import { authorizeLiveSync, liveSyncAccess } from '../utils/live-sync-authorize'
import { setLiveSyncEngine } from '../utils/live-sync-engine'
import { liveSyncMetricsAccess } from '../utils/live-sync-metrics'
import { useLiveSyncSettings } from '../utils/live-sync-settings'
import { countLiveSync, useLiveSyncStats } from '../utils/live-sync-stats'

interface LiveSyncRuntimeConfig {
  databaseUrl?: string
  publication?: string
  manageTables?: boolean
  replay?: { maxRows?: number, maxAgeMs?: number }
  /** Keys whose routing is logged at debug level (comma separated from NUXT_LIVE_SYNC_DEBUG_KEYS). */
  debugKeys?: string | string[]
  metrics?: { enabled?: boolean, path?: string }
  /** Cluster mode when set (NUXT_LIVE_SYNC_REDIS_URL). */
  redisUrl?: string
  slotName?: string
  /** logical_decoding_work_mem of the replication session; '' keeps the server's. */
  decodingWorkMem?: string
}

/** `liveSync.debugKeys` as runtime config has it: an array, or a comma-separated string from the environment. */
function debugKeysOf(value: LiveSyncRuntimeConfig['debugKeys']): string[] {
  const list = Array.isArray(value) ? value.map(String) : typeof value === 'string' ? value.split(',') : []
  return list.map(key => key.trim()).filter(key => key !== '')
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
  const logger = liveSyncLogger()
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
      logger.error(`[live-sync] could not load the Sequelize instance named by liveSync.sequelize: ${(error as Error).message}. Live updates are off; pages are still served.`)
      return
    }
    const { configured, sequelize } = loaded
    if (!configured) {
      logger.warn('[live-sync] liveSync.sequelize is not set in nuxt.config (it names the module exporting your Sequelize instance). Live updates are off; pages are still served.')
      return
    }
    if (!sequelize) {
      logger.warn(`[live-sync] ${configured} exported no Sequelize instance (no database configured?). Live updates are off; pages are still served.`)
      return
    }
    const debugKeys = debugKeysOf(config.debugKeys)
    try {
      const connection = config.databaseUrl || null
      const engineLogger = debugKeys.length > 0 ? createLiveSyncLogger({ debug: true }) : logger
      // Several instances: one streams, Redis carries the changes and the history to all.
      const cluster = config.redisUrl
        ? createRedisCluster({ url: config.redisUrl, slotName: config.slotName || undefined, connection: resolveConnectionConfig(sequelize, connection), replay: config.replay, logger: engineLogger })
        : null
      engine = createLiveSyncEngine({
        sequelize,
        connection,
        publication: config.publication,
        manageTables: config.manageTables,
        replay: config.replay,
        cluster,
        logger: engineLogger,
        debugKeys,
        // The DevTools tab shows the last transactions dispatched; nothing is kept in production.
        feedSize: import.meta.dev ? 200 : 0,
        peerStats: useLiveSyncStats,
        streaming: { decodingWorkMem: config.decodingWorkMem || null },
      })
    }
    catch (error) {
      logger.error(`${(error as Error).message}\nLive updates are off; pages are still served.`)
      return
    }
    if (closing) return
    setLiveSyncEngine(engine)
    // Every plugin has registered its hooks by now (this runs after an await).
    const notice = defaultAccessNotice(liveSyncAccess(nitroApp))
    if (notice) logger[notice.level](notice.message)
    if (config.metrics?.enabled) {
      const metricsNotice = metricsAccessNotice(liveSyncMetricsAccess(nitroApp), config.metrics.path ?? '/_live_sync/metrics')
      if (metricsNotice) logger[metricsNotice.level](metricsNotice.message)
    }
    if (debugKeys.length > 0) logger.info(`[live-sync] explaining the routing of keys ${debugKeys.map(key => JSON.stringify(key)).join(', ')} at debug level (liveSync.debugKeys).`)
    await engine.start()
  })()

  /**
   * A snapshot for a server-rendered page (`useLiveSync` without a `ref`),
   * authorized by the same hook as a subscription, with the page's request.
   */
  const snapshotFor = async (event: H3Event, key: KeyValue, models: SnapshotModel[]): Promise<ServerSnapshot> => {
    await ready
    if (!engine) throw new Error('[live-sync] live sync is not configured on this server (its log says why)')
    try {
      // The page's request, with the event's context (h3 session helpers read it), as a socket's upgrade request is.
      const request = Object.assign(new Request(getRequestURL(event), { headers: event.headers }), { context: event.context })
      await authorizeLiveSync({ key, request, event })
    }
    catch (error) {
      const reason = (error as { statusMessage?: string, message?: string })?.statusMessage ?? (error as Error)?.message
      throw Object.assign(new Error(`[live-sync] subscription to ${JSON.stringify(keyString(key))} refused${reason ? `: ${reason}` : ''}`), { code: 'forbidden' })
    }
    const rows: Row[][] = models.map(() => [])
    const result = await engine.snapshot(key, models, (index, page) => {
      for (const row of page) rows[index]!.push(row)
    })
    return { cursor: result.cursor, models: result.models, rows }
  }

  nitroApp.hooks.hook('request', (event) => {
    // The cursor a server-rendered page's data is at least as new as.
    event.context.liveSyncCursor = engine?.snapshotCursor() ?? null
    event.context.liveSyncSnapshot = (key, models) => snapshotFor(event, key, models)
  })

  nitroApp.hooks.hook('close', async () => {
    closing = true
    await ready.catch(() => {})
    setLiveSyncEngine(null)
    await engine?.stop()
  })
})
