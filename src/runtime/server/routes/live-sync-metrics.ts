/**
 * `GET /_live_sync/metrics` (with `liveSync.metrics`): live sync's metrics
 * for Prometheus and other scrapers. Each scrape passes
 * `authorizeLiveSyncMetrics` (the `live-sync:metrics-authorize` hook; deny
 * by default in production). The slot's lag is asked of Postgres at most
 * once a second, on a connection of its own, never the stream's.
 */
import { defineEventHandler, getRequestHeader, setResponseHeader } from 'h3'
import { acceptsOpenMetrics, liveSyncMetricFamilies, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE, renderMetrics } from '../metrics-exposition'
import { useLiveSyncEngine } from '../utils/live-sync-engine'
import { authorizeLiveSyncMetrics } from '../utils/live-sync-metrics'
import { useLiveSyncStats } from '../utils/live-sync-stats'

export default defineEventHandler(async (event) => {
  await authorizeLiveSyncMetrics(event)
  const stats = await useLiveSyncEngine()?.stats() ?? null
  const openMetrics = acceptsOpenMetrics(getRequestHeader(event, 'accept'))
  setResponseHeader(event, 'content-type', openMetrics ? OPENMETRICS_CONTENT_TYPE : PROMETHEUS_CONTENT_TYPE)
  setResponseHeader(event, 'cache-control', 'no-store')
  return renderMetrics(liveSyncMetricFamilies(stats, useLiveSyncStats()), { openMetrics })
})
