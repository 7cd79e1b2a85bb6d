/**
 * The metrics text, read back with a real Prometheus text-format parser
 * (parse-prometheus-text-format, a port of Prometheus's own): names, types,
 * help, units in the names, labels and values; and the OpenMetrics variant's
 * own rules (families without `_total`, `# UNIT`, `# EOF`).
 */
import parsePrometheusTextFormat from 'parse-prometheus-text-format'
import { describe, expect, it } from 'vitest'
import { EngineMetrics } from '../../src/runtime/server/engine/engine-metrics'
import type { LiveSyncEngineStats, PeerStats } from '../../src/runtime/server/engine/engine-stats'
import { acceptsOpenMetrics, liveSyncMetricFamilies, renderMetrics } from '../../src/runtime/server/metrics-exposition'

const peers: PeerStats = { sockets: 3, socketsOpened: 9, refusedOrigins: 1, refusedSubscriptions: 2, tooManyKeys: 0, unavailable: 4, slowConsumers: 5, tooManyFrames: 6, framesTooLarge: 7 }

function engineStats(): LiveSyncEngineStats {
  const metrics = new EngineMetrics()
  const now = Date.now()
  metrics.dispatched(now - 0.3, 4, now) // 0.3 ms
  metrics.dispatched(now - 20, 1, now) // 20 ms
  metrics.dispatched(now - 60_000, 2, now) // beyond the last bucket
  metrics.resynced('gap', 2)
  return {
    status: 'streaming',
    cursor: '0/16B3F80',
    epoch: 'abc',
    slot: 'live_sync_1_abcd',
    lag: { bytes: 4096, seconds: 0.25 },
    transactions: { total: metrics.transactions, perSecond: 0 },
    rows: { total: metrics.rows, perSecond: 0 },
    latency: metrics.latency(),
    keys: 2,
    subscribers: 5,
    replay: { batches: 3, rows: 7, keys: 2 },
    resyncs: { ...metrics.resyncs },
    reconnects: 1,
  }
}

describe('metrics exposition', () => {
  it('parses as Prometheus text with the expected names, types and values', () => {
    const families = parsePrometheusTextFormat(renderMetrics(liveSyncMetricFamilies(engineStats(), peers)))
    const byName = new Map(families.map(family => [family.name, family]))
    const value = (name: string, labels?: Record<string, string>) => {
      const family = byName.get(name)
      expect(family, name).toBeDefined()
      const sample = family!.metrics.find(metric => JSON.stringify(metric.labels ?? {}) === JSON.stringify(labels ?? {}))
      return Number(sample?.value)
    }
    expect(Object.fromEntries(families.map(family => [family.name, family.type]))).toEqual({
      live_sync_streaming: 'GAUGE',
      live_sync_replication_lag_bytes: 'GAUGE',
      live_sync_replication_lag_seconds: 'GAUGE',
      live_sync_transactions_total: 'COUNTER',
      live_sync_rows_total: 'COUNTER',
      live_sync_commit_dispatch_latency_seconds: 'HISTOGRAM',
      live_sync_keys: 'GAUGE',
      live_sync_subscribers: 'GAUGE',
      live_sync_replay_history_batches: 'GAUGE',
      live_sync_replay_history_rows: 'GAUGE',
      live_sync_resyncs_total: 'COUNTER',
      live_sync_reconnects_total: 'COUNTER',
      live_sync_sockets: 'GAUGE',
      live_sync_sockets_opened_total: 'COUNTER',
      live_sync_origins_refused_total: 'COUNTER',
      live_sync_subscriptions_refused_total: 'COUNTER',
      live_sync_sockets_closed_total: 'COUNTER',
    })
    for (const family of families) expect(family.help, family.name).not.toBe('')
    expect(value('live_sync_streaming')).toBe(1)
    expect(value('live_sync_replication_lag_bytes')).toBe(4096)
    expect(value('live_sync_replication_lag_seconds')).toBe(0.25)
    expect(value('live_sync_transactions_total')).toBe(3)
    expect(value('live_sync_rows_total')).toBe(7)
    expect(value('live_sync_resyncs_total', { reason: 'gap' })).toBe(2)
    expect(value('live_sync_resyncs_total', { reason: 'too-old' })).toBe(0)
    expect(value('live_sync_subscriptions_refused_total', { reason: 'forbidden' })).toBe(2)
    expect(value('live_sync_subscriptions_refused_total', { reason: 'unavailable' })).toBe(4)
    expect(value('live_sync_sockets_closed_total', { reason: 'slow-consumer' })).toBe(5)
    expect(value('live_sync_sockets_closed_total', { reason: 'frame-too-large' })).toBe(7)
    expect(value('live_sync_sockets')).toBe(3)
    expect(value('live_sync_replay_history_rows')).toBe(7)

    const histogram = byName.get('live_sync_commit_dispatch_latency_seconds')!.metrics[0]!
    expect(histogram.count).toBe('3')
    expect(Number(histogram.sum)).toBeCloseTo(60.0203, 3)
    expect(histogram.buckets).toMatchObject({ '0.00025': '0', '0.0005': '1', '0.025': '2', '10': '2', '+Inf': '3' })
  })

  it('leaves out the lag in bytes when it is unknown, and reports zeros when live sync is off', () => {
    const families = parsePrometheusTextFormat(renderMetrics(liveSyncMetricFamilies(null, peers)))
    const byName = new Map(families.map(family => [family.name, family]))
    expect(byName.get('live_sync_streaming')!.metrics).toEqual([{ value: '0' }])
    expect(byName.get('live_sync_replication_lag_bytes')!.metrics).toEqual([])
    expect(byName.get('live_sync_transactions_total')!.metrics).toEqual([{ value: '0' }])
    expect(byName.get('live_sync_commit_dispatch_latency_seconds')!.metrics).toEqual([{ buckets: { '+Inf': '0' }, count: '0', sum: '0' }])
    expect(byName.get('live_sync_sockets')!.metrics).toEqual([{ value: '3' }])
  })

  it('writes OpenMetrics when asked: counter families without _total, units declared, # EOF last', () => {
    expect(acceptsOpenMetrics('application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1')).toBe(true)
    expect(acceptsOpenMetrics('text/plain')).toBe(false)
    expect(acceptsOpenMetrics(undefined)).toBe(false)
    const text = renderMetrics(liveSyncMetricFamilies(engineStats(), peers), { openMetrics: true })
    const lines = text.trimEnd().split('\n')
    expect(lines.at(-1)).toBe('# EOF')
    expect(lines).toContain('# TYPE live_sync_transactions counter')
    expect(lines).toContain('live_sync_transactions_total 3')
    expect(lines).toContain('# UNIT live_sync_replication_lag_bytes bytes')
    expect(lines).toContain('# UNIT live_sync_commit_dispatch_latency_seconds seconds')
    expect(lines).toContain('live_sync_commit_dispatch_latency_seconds_bucket{le="+Inf"} 3')
    // Every sample belongs to the family declared last, under its name or a suffix of its type.
    let family = ''
    let type = ''
    for (const line of lines) {
      const declared = /^# TYPE (\S+) (\S+)$/.exec(line)
      if (declared) [, family, type] = declared as unknown as [string, string, string]
      if (line.startsWith('#')) continue
      const name = /^[a-z_]+/.exec(line)![0]
      const suffixes = type === 'counter' ? ['_total'] : type === 'histogram' ? ['_bucket', '_sum', '_count'] : ['']
      expect(suffixes.map(suffix => family + suffix), line).toContain(name)
    }
  })
})
