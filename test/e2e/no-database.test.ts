/**
 * The built app without a database: pages are still served, live sync says
 * so once in the log, and a subscription is answered with an error instead
 * of a crash.
 */
import { $fetch, fetch } from '@nuxt/test-utils/e2e'
import { describe, expect, it } from 'vitest'
import { flushServerLogs, frameOf, LiveSyncTestClient, serverLogs, setupFixtureServer } from '../support/fixture-server'
import { waitFor } from '../support/wait'

await setupFixtureServer({ databaseUrl: null })

const liveSyncLines = (lines: string[]) => lines.filter(line => line.includes('[live-sync]'))

describe('the built app started without DATABASE_URL', () => {
  it('serves the home page', async () => {
    const response = await fetch('/')
    expect(response.status).toBe(200)
    expect(response.headers.get('content-type')).toMatch(/text\/html/)
    const html = await response.text()
    expect(html).toMatch(/<p id="home">\s*live sync test app\s*<\/p>/)
  })

  it('says once that live sync is off (one [live-sync] line), and stays quiet after requests and subscriptions', async () => {
    await waitFor(() => liveSyncLines(serverLogs()).length >= 1, { timeout: 10_000, message: 'no [live-sync] line in the server output' })
    const client = await LiveSyncTestClient.connect()
    await client.next(frameOf('hello'))
    await client.request({ type: 'sub', key: 1 }, frameOf('error'))
    await $fetch('/')
    const lines = await flushServerLogs()
    expect(liveSyncLines(lines), `server output:\n${lines.join('\n')}`).toHaveLength(1)
    expect(liveSyncLines(lines)[0]).toMatch(/Live updates are off; pages are still served\./)
    await client.close()
  })

  it('answers a WebSocket sub with an unavailable error; the socket and the server keep working', async () => {
    const client = await LiveSyncTestClient.connect()
    const hello = await client.next(frameOf('hello'))
    expect(hello).toEqual({ type: 'hello', v: 1, epoch: '', cursor: null })

    const error = await client.request({ type: 'sub', key: 1 }, frameOf('error'))
    expect(error).toEqual({ type: 'error', code: 'unavailable', message: expect.stringMatching(/^\[live-sync\] /), key: '1' })
    const pong = await client.request({ type: 'ping', t: 7 }, frameOf('pong'))
    expect(pong).toEqual({ type: 'pong', cursor: null, t: 7 })
    expect(client.received(frameOf('subscribed'))).toEqual([])

    // No crash: the server still answers, over HTTP and on a new socket.
    expect((await fetch('/')).status).toBe(200)
    const second = await LiveSyncTestClient.connect()
    await second.next(frameOf('hello'))
    expect(await second.request({ type: 'sub', key: 'abc' }, frameOf('error'))).toMatchObject({ code: 'unavailable', key: 'abc' })
    await second.close()
    await client.close()
  })
})
