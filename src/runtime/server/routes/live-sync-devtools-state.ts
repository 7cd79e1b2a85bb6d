/**
 * `nuxi dev` only (`<path>/devtools/state`, registered only when Nuxt runs
 * in development): what the Nuxt DevTools tab shows of the server — the
 * engine's state and numbers, the publication's tables, the watched models
 * and their options, the keys subscribed, the last transactions dispatched,
 * and the last refused subscriptions and dropped sockets.
 */
import { defineEventHandler, setResponseHeader } from 'h3'
import { preciseNow } from '../engine/engine-metrics'
import type { WatchedModel } from '../engine/watch-registry'
import { liveSyncAccess } from '../utils/live-sync-authorize'
import { useLiveSyncEngine } from '../utils/live-sync-engine'
import { recentLiveSyncEvents, useLiveSyncStats } from '../utils/live-sync-stats'

function describeModel(watch: WatchedModel) {
  return {
    name: watch.name,
    table: watch.table,
    readBack: watch.readBack,
    subscriptionKey: watch.key.attribute,
    id: watch.id.map(each => each.attribute),
    attributes: watch.attributes.map(each => each.attribute),
    buildThroughModel: watch.buildThroughModel,
    options: (watch.model.options as { liveSync?: unknown }).liveSync ?? null,
  }
}

export default defineEventHandler(async (event) => {
  setResponseHeader(event, 'cache-control', 'no-store')
  const engine = useLiveSyncEngine()
  const [stats, publication] = engine ? await Promise.all([engine.stats(), engine.publicationTables()]) : [null, null]
  return {
    now: preciseNow(),
    access: liveSyncAccess(),
    engine: engine && {
      status: engine.status,
      lastError: engine.lastError?.message ?? null,
      epoch: engine.epoch,
      cursor: engine.cursor,
      publication: engine.publication,
      stats,
    },
    peers: useLiveSyncStats(),
    publication: publication && engine && { name: engine.publication, ...publication },
    models: engine?.watched.map(describeModel) ?? [],
    keys: engine?.hub.keys() ?? [],
    feed: engine?.feed?.slice(-100) ?? [],
    events: recentLiveSyncEvents(),
  }
})
