/**
 * The built fixture app with `liveSync.metrics`: GET /_live_sync/metrics
 * passes the app's `live-sync:metrics-authorize` handler (a bearer token),
 * parses with a real Prometheus text-format parser, speaks OpenMetrics to a
 * scraper that asks for it, and its counters move with the traffic:
 * transactions and rows after an insert, the latency histogram, sockets,
 * keys and subscribers, refused subscriptions, the slot's lag. And the
 * DevTools tab left nothing in the production build.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fetch } from '@nuxt/test-utils/e2e'
import parsePrometheusTextFormat, { type ParsedFamily } from 'parse-prometheus-text-format'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FIXTURE_OUTPUT_DIR, frameOf, LiveSyncTestClient, setupFixtureServer, waitForLiveSync } from '../support/fixture-server'
import { createFixtureDatabase } from '../support/schema'
import { waitFor } from '../support/wait'

const TOKEN = 'scrape-secret'

const db = await createFixtureDatabase('e2e_metrics')
afterAll(() => db.drop())
await setupFixtureServer({ databaseUrl: db.url, access: 'cookie', env: { LIVE_SYNC_FIXTURE_METRICS_TOKEN: TOKEN } })
beforeAll(async () => {
  await waitForLiveSync()
})

const scrape = (headers: Record<string, string> = { authorization: `Bearer ${TOKEN}` }) => fetch('/_live_sync/metrics', { headers })

/** The metric families by name, parsed from a scrape. */
async function metrics(): Promise<Map<string, ParsedFamily>> {
  const response = await scrape()
  expect(response.status).toBe(200)
  return new Map(parsePrometheusTextFormat(await response.text()).map(family => [family.name, family]))
}

function value(families: Map<string, ParsedFamily>, name: string, labels: Record<string, string> = {}): number {
  const sample = families.get(name)?.metrics.find(metric => JSON.stringify(metric.labels ?? {}) === JSON.stringify(labels))
  if (!sample) throw new Error(`no sample ${name}${JSON.stringify(labels)}`)
  return Number(sample.value ?? sample.count)
}

describe('a production build', () => {
  it('has none of the DevTools tab\'s routes', async () => {
    expect((await fetch('/_live_sync/devtools')).status).toBe(404)
    expect((await fetch('/_live_sync/devtools/state')).status).toBe(404)
  })

  it('ships none of the tab\'s code: no inspector in the browser bundle, no DevTools handler on the server', () => {
    const files = (dir: string): string[] => readdirSync(dir, { recursive: true, withFileTypes: true })
      .filter(entry => entry.isFile() && /\.m?js$/.test(entry.name))
      .map(entry => join(entry.parentPath, entry.name))
    const client = files(join(FIXTURE_OUTPUT_DIR, 'public/_nuxt'))
    expect(client.length).toBeGreaterThan(0)
    // The inspector's own text, and the client's code (so the search reads the right files).
    expect(client.filter(file => readFileSync(file, 'utf8').includes('asked to reload the key\'s data'))).toEqual([])
    expect(client.some(file => readFileSync(file, 'utf8').includes('this tab did not keep up with its updates'))).toBe(true)
    const server = files(join(FIXTURE_OUTPUT_DIR, 'server'))
    expect(server.filter(file => readFileSync(file, 'utf8').includes('live-sync-devtools'))).toEqual([])
  })
})

describe('GET /_live_sync/metrics', () => {
  it('refuses a scrape the app\'s handler refuses', async () => {
    expect((await scrape({})).status).toBe(401)
    expect((await scrape({ authorization: 'Bearer wrong' })).status).toBe(401)
  })

  it('serves the Prometheus text format, with the types and units Prometheus users expect', async () => {
    const response = await scrape()
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toBe('text/plain; version=0.0.4; charset=utf-8')
    expect(response.headers.get('cache-control')).toBe('no-store')
    const families = parsePrometheusTextFormat(await response.text())
    const types = Object.fromEntries(families.map(family => [family.name, family.type]))
    expect(types).toMatchObject({
      live_sync_streaming: 'GAUGE',
      live_sync_replication_lag_bytes: 'GAUGE',
      live_sync_replication_lag_seconds: 'GAUGE',
      live_sync_transactions_total: 'COUNTER',
      live_sync_rows_total: 'COUNTER',
      live_sync_commit_dispatch_latency_seconds: 'HISTOGRAM',
      live_sync_sockets: 'GAUGE',
      live_sync_keys: 'GAUGE',
      live_sync_subscribers: 'GAUGE',
      live_sync_replay_history_rows: 'GAUGE',
      live_sync_resyncs_total: 'COUNTER',
      live_sync_subscriptions_refused_total: 'COUNTER',
      live_sync_sockets_closed_total: 'COUNTER',
      live_sync_reconnects_total: 'COUNTER',
    })
    for (const family of families) {
      expect(family.name).toMatch(/^live_sync_[a-z_]+$/)
      if (family.type === 'COUNTER') expect(family.name).toMatch(/_total$/)
      else expect(family.name).not.toMatch(/_total$/)
    }
    const byName = new Map(families.map(family => [family.name, family]))
    expect(value(byName, 'live_sync_streaming')).toBe(1)
    // Asked of Postgres at the scrape: a number of bytes.
    expect(value(byName, 'live_sync_replication_lag_bytes')).toBeGreaterThanOrEqual(0)
  })

  it('speaks OpenMetrics to a scraper that asks for it (as Prometheus does)', async () => {
    const response = await fetch('/_live_sync/metrics', {
      headers: { authorization: `Bearer ${TOKEN}`, accept: 'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1' },
    })
    expect(response.headers.get('content-type')).toBe('application/openmetrics-text; version=1.0.0; charset=utf-8')
    const lines = (await response.text()).trimEnd().split('\n')
    expect(lines.at(-1)).toBe('# EOF')
    expect(lines).toContain('# TYPE live_sync_transactions counter')
    expect(lines).toContain('# UNIT live_sync_commit_dispatch_latency_seconds seconds')
  })

  it('moves its counters with the traffic: a subscriber, a transaction, a refusal', async () => {
    const before = await metrics()
    const client = await LiveSyncTestClient.greeted({ headers: { cookie: 'orgs=1' } })
    await client.request({ type: 'sub', key: 1 }, frameOf('subscribed'))
    expect(await client.request({ type: 'sub', key: 2 }, frameOf('error'))).toMatchObject({ code: 'forbidden' })
    await db.sql(`INSERT INTO tasks (organization_id, title) VALUES (1, 'counted'), (1, 'counted too')`)
    await client.next(frameOf('tx'))

    const after = await metrics()
    expect(value(after, 'live_sync_transactions_total') - value(before, 'live_sync_transactions_total')).toBeGreaterThanOrEqual(1)
    expect(value(after, 'live_sync_rows_total') - value(before, 'live_sync_rows_total')).toBeGreaterThanOrEqual(2)
    const latency = (families: Map<string, ParsedFamily>) => families.get('live_sync_commit_dispatch_latency_seconds')!.metrics[0]!
    expect(Number(latency(after).count) - Number(latency(before).count)).toBeGreaterThanOrEqual(1)
    expect(Number(latency(after).buckets!['+Inf'])).toBe(Number(latency(after).count))
    expect(value(after, 'live_sync_sockets')).toBeGreaterThanOrEqual(1)
    expect(value(after, 'live_sync_sockets_opened_total') - value(before, 'live_sync_sockets_opened_total')).toBeGreaterThanOrEqual(1)
    expect(value(after, 'live_sync_keys')).toBeGreaterThanOrEqual(1)
    expect(value(after, 'live_sync_subscribers')).toBeGreaterThanOrEqual(1)
    expect(value(after, 'live_sync_replay_history_rows') - value(before, 'live_sync_replay_history_rows')).toBeGreaterThanOrEqual(2)
    expect(value(after, 'live_sync_subscriptions_refused_total', { reason: 'forbidden' }) - value(before, 'live_sync_subscriptions_refused_total', { reason: 'forbidden' })).toBe(1)
    await client.close()
    // The socket is gone from the gauges once the server saw it close.
    await waitFor(async () => value(await metrics(), 'live_sync_subscribers') === value(before, 'live_sync_subscribers'), { message: 'the subscriber stayed counted' })
  })
})
