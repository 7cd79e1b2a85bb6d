/**
 * A production build of the fixture app with no `live-sync:authorize`
 * handler and `liveSync.public` off: every subscription is refused (and the
 * server says once, at start, what to add); pages from a foreign origin
 * cannot open the socket at all; the metrics endpoint refuses every scrape.
 */
import { fetch } from '@nuxt/test-utils/e2e'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { appOrigin, flushServerLogs, frameOf, liveSyncState, LiveSyncTestClient, setupFixtureServer, tryUpgrade, waitForDispatch, waitForLiveSync } from '../support/fixture-server'
import { createFixtureDatabase } from '../support/schema'

const LISTED = 'https://admin.example.test'

const db = await createFixtureDatabase('e2e_security_closed')
afterAll(() => db.drop())
await setupFixtureServer({ databaseUrl: db.url, access: 'closed', env: { NUXT_LIVE_SYNC_ALLOWED_ORIGINS: `${LISTED}, https://other.example.test` } })
beforeAll(async () => {
  await waitForLiveSync()
})

const currentLsn = async () => (await db.sql<{ lsn: string }>('SELECT pg_current_wal_lsn()::text AS lsn'))[0]!.lsn

describe('a production server with no authorize handler', () => {
  it('refuses every subscription with a forbidden error, and sends no rows', async () => {
    const client = await LiveSyncTestClient.connect()
    const hello = await client.next(frameOf('hello'))
    expect(Object.keys(hello).sort()).toEqual(['cursor', 'epoch', 'type', 'v'])
    for (const key of [1, '2', true]) {
      const error = await client.request({ type: 'sub', key }, frameOf('error'))
      expect(error).toEqual({ type: 'error', code: 'forbidden', message: `[live-sync] subscription to ${JSON.stringify(key)} refused: not authorized`, key: String(key) })
    }
    await db.insertTask({ organizationId: 1, title: 'never sent' })
    await waitForDispatch(await currentLsn())
    await client.request({ type: 'ping', t: 1 }, frameOf('pong'))
    expect(client.received(frameOf('tx'))).toEqual([])
    expect(client.received(frameOf('subscribed'))).toEqual([])
    expect(JSON.stringify(client.frames)).not.toContain('never sent')
    expect((await liveSyncState(1)).subscribers).toBe(0)
    await client.close()
  })

  it('said once, at start, what to add; refusals log nothing more', async () => {
    const client = await LiveSyncTestClient.greeted()
    await client.request({ type: 'sub', key: 3 }, frameOf('error'))
    await client.close()
    const lines = await flushServerLogs()
    const notices = lines.filter(line => line.includes('[live-sync] no \'live-sync:authorize\' handler'))
    expect(notices, lines.join('\n')).toHaveLength(1)
    expect(notices[0]).toMatch(/every subscription is refused/)
    // What to add: a handler (the example follows on the next lines), or public.
    const text = lines.join('\n')
    expect(text).toContain('nitroApp.hooks.hook(\'live-sync:authorize\', async ({ key, request }) =>')
    expect(text).toContain('liveSync: { public: true }')
  })
})

describe('the metrics endpoint of a production server with no metrics-authorize handler', () => {
  it('refuses every scrape with 403, and said once, at start, what to add', async () => {
    const response = await fetch('/_live_sync/metrics')
    expect(response.status).toBe(403)
    expect(await response.text()).not.toContain('live_sync_')
    const lines = await flushServerLogs()
    const notices = lines.filter(line => line.includes('[live-sync] no \'live-sync:metrics-authorize\' handler'))
    expect(notices, lines.join('\n')).toHaveLength(1)
    expect(notices[0]).toMatch(/GET \/_live_sync\/metrics refuses every scrape \(403\)/)
    expect(lines.join('\n')).toContain('liveSync: { metrics: { public: true } }')
  })
})

describe('the Origin of the upgrade', () => {
  it('refuses a foreign origin with HTTP 403, before any frame', async () => {
    const before = (await liveSyncState()).stats.refusedOrigins
    for (const origin of ['https://evil.example.test', 'null', `${appOrigin()}.evil.example.test`, appOrigin().replace(/:(\d+)$/, (_, port) => `:${Number(port) + 1}`)]) {
      const result = await tryUpgrade({ origin })
      expect(result, origin).toEqual({ status: 403, body: '[live-sync] origin not allowed', frames: [] })
    }
    expect((await liveSyncState()).stats.refusedOrigins).toBe(before + 4)
  })

  it('ignores X-Forwarded-Host unless told to trust the proxy', async () => {
    const result = await tryUpgrade({ 'origin': 'https://evil.example.test', 'x-forwarded-host': 'evil.example.test', 'x-forwarded-proto': 'https' })
    expect(result.status).toBe(403)
  })

  it('accepts the app\'s own origin and the listed ones (NUXT_LIVE_SYNC_ALLOWED_ORIGINS)', async () => {
    for (const origin of [appOrigin(), LISTED, 'https://other.example.test']) {
      const result = await tryUpgrade({ origin })
      expect(result.status, origin).toBe(101)
      expect(JSON.parse(result.frames[0]!)).toMatchObject({ type: 'hello', v: 1 })
    }
  })

  it('lets an upgrade without an Origin (not a browser) through, to the authorizer', async () => {
    const client = await LiveSyncTestClient.greeted()
    expect(await client.request({ type: 'sub', key: 1 }, frameOf('error'))).toMatchObject({ code: 'forbidden' })
    await client.close()
  })

  it('logged the first refusal with the fix, and no more', async () => {
    const lines = (await flushServerLogs()).filter(line => line.includes('[live-sync] refused a WebSocket upgrade'))
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatch(/liveSync\.trustProxy.*liveSync\.allowedOrigins/)
  })

  it('keeps serving pages', async () => {
    expect((await fetch('/')).status).toBe(200)
  })
})
