/**
 * The metrics endpoint's text: live sync's counters and gauges as metric
 * families named the way Prometheus users expect (`live_sync_…_total`
 * counters, base units `_seconds` and `_bytes`), written in the Prometheus
 * text format 0.0.4 or, when the scraper asks for it (Prometheus does by
 * default), OpenMetrics 1.0.0. Framework-free: the route feeds it numbers.
 */
import type { LiveSyncEngineStats, PeerStats } from './engine/engine-stats'

export type MetricType = 'counter' | 'gauge' | 'histogram'

export interface MetricSample {
  labels?: Record<string, string>
  value: number
}

export interface MetricFamily {
  /** Without `_total` for counters: the family name OpenMetrics uses. */
  name: string
  type: MetricType
  help: string
  /** A base unit the name ends with (`seconds`, `bytes`). */
  unit?: 'seconds' | 'bytes'
  /** Counters and gauges. */
  samples?: MetricSample[]
  /** Histograms: cumulative counts by upper bound (the last one +Inf), their sum and count. */
  histogram?: { buckets: Array<{ le: number, count: number }>, sum: number, count: number }
}

export const OPENMETRICS_CONTENT_TYPE = 'application/openmetrics-text; version=1.0.0; charset=utf-8'
export const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

/** Whether a scraper's `Accept` header asks for OpenMetrics (Prometheus sends it first). */
export function acceptsOpenMetrics(accept: string | null | undefined): boolean {
  return /application\/openmetrics-text/i.test(accept ?? '')
}

const one = (value: number): MetricSample[] => [{ value }]

/** The metric families of an engine's stats (null: live sync is off) and the socket counters. */
export function liveSyncMetricFamilies(stats: LiveSyncEngineStats | null, peers: PeerStats): MetricFamily[] {
  const resyncs = stats?.resyncs ?? { 'gap': 0, 'truncate': 0, 'too-old': 0 }
  return [
    { name: 'live_sync_streaming', type: 'gauge', help: 'Whether the replication stream is streaming (1) or not (0: starting, reconnecting, failing, or live sync off).', samples: one(stats?.status === 'streaming' ? 1 : 0) },
    { name: 'live_sync_replication_lag_bytes', type: 'gauge', unit: 'bytes', help: 'WAL written and not yet confirmed by the replication slot (pg_current_wal_lsn() minus its confirmed position).', samples: stats?.lag.bytes == null ? [] : one(stats.lag.bytes) },
    { name: 'live_sync_replication_lag_seconds', type: 'gauge', unit: 'seconds', help: 'How long the oldest transaction received and not yet dispatched has waited since its commit (0 when none waits).', samples: one(stats?.lag.seconds ?? 0) },
    { name: 'live_sync_transactions', type: 'counter', help: 'Committed transactions dispatched to subscribers.', samples: one(stats?.transactions.total ?? 0) },
    { name: 'live_sync_rows', type: 'counter', help: 'Row changes dispatched (a change counts once per key it went to).', samples: one(stats?.rows.total ?? 0) },
    {
      name: 'live_sync_commit_dispatch_latency_seconds',
      type: 'histogram',
      unit: 'seconds',
      help: 'Time from a transaction\'s commit (the database\'s timestamp) to its dispatch to subscribers.',
      histogram: stats?.latency ?? { buckets: [{ le: Number.POSITIVE_INFINITY, count: 0 }], sum: 0, count: 0 },
    },
    { name: 'live_sync_keys', type: 'gauge', help: 'Subscription keys with at least one subscriber.', samples: one(stats?.keys ?? 0) },
    { name: 'live_sync_subscribers', type: 'gauge', help: 'Subscriptions (a socket subscribed to a key counts once).', samples: one(stats?.subscribers ?? 0) },
    { name: 'live_sync_replay_history_batches', type: 'gauge', help: 'Batches (one transaction\'s changes for one key) kept to replay to late and reconnecting subscribers.', samples: one(stats?.replay.batches ?? 0) },
    { name: 'live_sync_replay_history_rows', type: 'gauge', help: 'Row changes kept in the replay history.', samples: one(stats?.replay.rows ?? 0) },
    {
      name: 'live_sync_resyncs',
      type: 'counter',
      help: 'Resync notices delivered to subscribers (their data may be stale: reload or snapshot), by reason.',
      samples: (['gap', 'truncate', 'too-old'] as const).map(reason => ({ labels: { reason }, value: resyncs[reason] })),
    },
    { name: 'live_sync_reconnects', type: 'counter', help: 'Replication sessions started again after the previous one failed.', samples: one(stats?.reconnects ?? 0) },
    { name: 'live_sync_sockets', type: 'gauge', help: 'Live sync WebSockets open.', samples: one(peers.sockets) },
    { name: 'live_sync_sockets_opened', type: 'counter', help: 'Live sync WebSockets opened (a tab reconnecting opens another).', samples: one(peers.socketsOpened) },
    { name: 'live_sync_origins_refused', type: 'counter', help: 'WebSocket upgrades refused (403) for their Origin.', samples: one(peers.refusedOrigins) },
    {
      name: 'live_sync_subscriptions_refused',
      type: 'counter',
      help: 'Subscriptions refused, by reason: forbidden (the authorizer), too-many-keys (limits.maxKeysPerSocket), unavailable (live sync off).',
      samples: [
        { labels: { reason: 'forbidden' }, value: peers.refusedSubscriptions },
        { labels: { reason: 'too-many-keys' }, value: peers.tooManyKeys },
        { labels: { reason: 'unavailable' }, value: peers.unavailable },
      ],
    },
    {
      name: 'live_sync_sockets_closed',
      type: 'counter',
      help: 'Sockets the server closed over a bound, by reason: slow-consumer (4008, dropped for not reading), too-many-frames (1008), frame-too-large (1009).',
      samples: [
        { labels: { reason: 'slow-consumer' }, value: peers.slowConsumers },
        { labels: { reason: 'too-many-frames' }, value: peers.tooManyFrames },
        { labels: { reason: 'frame-too-large' }, value: peers.framesTooLarge },
      ],
    },
  ]
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN'
  if (value === Number.POSITIVE_INFINITY) return '+Inf'
  if (value === Number.NEGATIVE_INFINITY) return '-Inf'
  return String(value)
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')
}

function escapeHelp(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')
}

function labelText(labels: Record<string, string> | undefined): string {
  const entries = Object.entries(labels ?? {})
  return entries.length === 0 ? '' : `{${entries.map(([name, value]) => `${name}="${escapeLabel(value)}"`).join(',')}}`
}

/** The families as exposition text: Prometheus 0.0.4, or OpenMetrics 1.0.0 (with `# UNIT` lines and `# EOF`). */
export function renderMetrics(families: readonly MetricFamily[], options: { openMetrics?: boolean } = {}): string {
  const openMetrics = options.openMetrics ?? false
  const lines: string[] = []
  for (const family of families) {
    // Prometheus 0.0.4 names a counter's family by its sample (`…_total`); OpenMetrics without the suffix.
    const described = family.type === 'counter' && !openMetrics ? `${family.name}_total` : family.name
    lines.push(`# HELP ${described} ${escapeHelp(family.help)}`)
    lines.push(`# TYPE ${described} ${family.type}`)
    if (openMetrics && family.unit) lines.push(`# UNIT ${family.name} ${family.unit}`)
    if (family.histogram) {
      for (const bucket of family.histogram.buckets) lines.push(`${family.name}_bucket{le="${formatValue(bucket.le)}"} ${bucket.count}`)
      lines.push(`${family.name}_sum ${formatValue(family.histogram.sum)}`)
      lines.push(`${family.name}_count ${family.histogram.count}`)
      continue
    }
    const sampleName = family.type === 'counter' ? `${family.name}_total` : family.name
    for (const sample of family.samples ?? []) lines.push(`${sampleName}${labelText(sample.labels)} ${formatValue(sample.value)}`)
  }
  if (openMetrics) lines.push('# EOF')
  return `${lines.join('\n')}\n`
}
