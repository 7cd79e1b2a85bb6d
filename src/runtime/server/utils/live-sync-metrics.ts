/**
 * Who may scrape the metrics endpoint (`liveSync.metrics`): the
 * `live-sync:metrics-authorize` Nitro hook, and deny by default like
 * subscriptions (a production server without a handler refuses, unless
 * `liveSync.metrics.public` says the app or its proxy protects the route).
 */
import { createError, type H3Event } from 'h3'
import { useNitroApp, useRuntimeConfig } from 'nitropack/runtime'
import { defaultAccess, type DefaultAccess } from '../default-access'
import { hasHookHandler } from './live-sync-authorize'

/** What a `live-sync:metrics-authorize` handler is given. */
export interface LiveSyncMetricsAuthorizeContext {
  /** The scrape's request (headers such as `Authorization`, the client's address through h3's helpers). */
  event: H3Event
}

const HOOK = 'live-sync:metrics-authorize'

function flag(value: unknown): boolean {
  return value === true || value === 'true' || value === '1'
}

/** Whether the app registered a `live-sync:metrics-authorize` handler. */
export function hasLiveSyncMetricsAuthorizer(nitroApp = useNitroApp()): boolean {
  return hasHookHandler(nitroApp, HOOK)
}

/** How scrapes are decided on this server. */
export function liveSyncMetricsAccess(nitroApp = useNitroApp()): DefaultAccess {
  const config = (useRuntimeConfig() as { liveSync?: { metrics?: { public?: boolean | string } } }).liveSync
  return defaultAccess({ hasHandler: hasLiveSyncMetricsAuthorizer(nitroApp), public: flag(config?.metrics?.public), dev: Boolean(import.meta.dev) })
}

/** Resolves when `event` may read the metrics; throws an h3 error (403 by default) when not. */
export async function authorizeLiveSyncMetrics(event: H3Event): Promise<void> {
  const nitroApp = useNitroApp()
  switch (liveSyncMetricsAccess(nitroApp)) {
    case 'handler':
      await nitroApp.hooks.callHook(HOOK, { event })
      return
    case 'public':
    case 'dev-open':
      return
    case 'closed':
      throw createError({ statusCode: 403, statusMessage: 'metrics not authorized' })
  }
}
