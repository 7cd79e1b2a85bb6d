/**
 * A production build with `liveSync.public` (NUXT_LIVE_SYNC_PUBLIC) and
 * `trustProxy`, and the default limits: subscriptions are allowed without a
 * handler, and what one socket may send is bounded (frame size, frame rate,
 * keys); crossing a bound closes that socket only.
 */
import type { Socket } from 'node:net'
import { fetch } from '@nuxt/test-utils/e2e'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DEFAULT_LIMITS } from '../../src/runtime/server/security-settings'
import { MAX_CLIENT_FRAME } from '../../src/runtime/shared/protocol'
import { appOrigin, flushServerLogs, frameOf, liveSyncState, LiveSyncTestClient, setupFixtureServer, tryUpgrade, waitForLiveSync } from '../support/fixture-server'
import { createFixtureDatabase } from '../support/schema'
import { waitFor } from '../support/wait'

const db = await createFixtureDatabase('e2e_security_public')
afterAll(() => db.drop())
await setupFixtureServer({ databaseUrl: db.url, access: 'public', env: { NUXT_LIVE_SYNC_TRUST_PROXY: 'true' } })
beforeAll(async () => {
  await waitForLiveSync()
})

/** The header of a masked client text frame announcing `length` bytes of payload. */
function frameHeader(length: number): Buffer {
  const header = Buffer.alloc(14)
  header[0] = 0x81 // FIN, text
  header[1] = 0x80 | 127 // masked, 64-bit length
  header.writeBigUInt64BE(BigInt(length), 2)
  header.writeUInt32BE(0x12345678, 10) // mask key
  return header
}

describe('liveSync.public', () => {
  it('lets anyone who can open the socket subscribe, without a handler, and logs nothing about it', async () => {
    const client = await LiveSyncTestClient.greeted()
    await client.request({ type: 'sub', key: 1 }, frameOf('subscribed'))
    const id = await db.insertTask({ organizationId: 1, title: 'public row' })
    const tx = await client.next(frameOf('tx'))
    expect(tx.changes).toEqual([expect.objectContaining({ op: 'insert', model: 'Task', id })])
    await client.close()
    const lines = await flushServerLogs()
    expect(lines.filter(line => line.includes('live-sync:authorize'))).toEqual([])
  })
})

describe('bounded input', () => {
  it('closes a socket with 1009 as soon as a frame announces more than maxFrameBytes, without waiting for (or buffering) it', async () => {
    const before = (await liveSyncState()).stats.framesTooLarge
    const client = await LiveSyncTestClient.greeted()
    // 16 MiB announced; only the header and 1 KiB of it are ever sent.
    const socket = (client.socket as unknown as { _socket: Socket })._socket
    socket.write(Buffer.concat([frameHeader(16 * 1024 * 1024), Buffer.alloc(1024, 0x20)]))
    const closed = await client.closed
    expect(closed.code).toBe(1009)
    await waitFor(async () => (await liveSyncState()).stats.framesTooLarge === before + 1, { message: 'framesTooLarge was not counted' })
  })

  it('closes with 1009 for a whole frame one byte over the limit, and takes one right at it (answered with an error frame)', async () => {
    const atLimit = await LiveSyncTestClient.greeted()
    const error = await atLimit.request('{"type":"ping"}'.padEnd(DEFAULT_LIMITS.maxFrameBytes, ' '), frameOf('error'))
    expect(error).toMatchObject({ code: 'bad-request', message: expect.stringContaining(`frame longer than ${MAX_CLIENT_FRAME} characters`) })
    expect(atLimit.socket.readyState).toBe(atLimit.socket.OPEN)
    await atLimit.close()
    const over = await LiveSyncTestClient.greeted()
    over.send('x'.repeat(DEFAULT_LIMITS.maxFrameBytes + 1))
    expect((await over.closed).code).toBe(1009)
    expect(over.received(frameOf('error'))).toEqual([])
  })

  it('closes a socket that floods frames faster than its token bucket allows with 1008; other sockets are untouched', async () => {
    const bystander = await LiveSyncTestClient.greeted()
    await bystander.request({ type: 'sub', key: 2 }, frameOf('subscribed'))
    const before = (await liveSyncState()).stats.tooManyFrames
    const flooder = await LiveSyncTestClient.greeted()
    for (let i = 0; i < DEFAULT_LIMITS.frameBurst * 2; i++) flooder.send(i % 2 ? { type: 'sub', key: `k${i % 50}` } : { type: 'unsub', key: `k${i % 50}` })
    const closed = await flooder.closed
    expect(closed).toEqual({ code: 1008, reason: 'too many frames' })
    expect((await liveSyncState()).stats.tooManyFrames).toBe(before + 1)
    // Its subscriptions ended with it; the bystander still streams.
    await waitFor(async () => (await liveSyncState('k1')).subscribers === 0, { message: 'the flooder\'s keys were not dropped' })
    const id = await db.insertTask({ organizationId: 2, title: 'for the bystander' })
    expect((await bystander.next(frameOf('tx'))).changes[0]!.id).toBe(id)
    await bystander.close()
  })

  it('answers the key past maxKeysPerSocket with a too-many-keys error, and keeps the socket', async () => {
    const client = await LiveSyncTestClient.greeted()
    const max = DEFAULT_LIMITS.maxKeysPerSocket
    for (let i = 0; i < max; i++) client.send({ type: 'sub', key: `key-${i}` })
    await waitFor(() => client.received(frameOf('subscribed')).length === max, { timeout: 20_000, message: `not all ${max} keys were subscribed` })
    const error = await client.request({ type: 'sub', key: 'one too many' }, frameOf('error'))
    expect(error).toEqual({ type: 'error', code: 'too-many-keys', message: `[live-sync] a socket may subscribe to at most ${max} keys`, key: 'one too many' })
    // Subscribing again to a key it holds is not one more.
    client.send({ type: 'sub', key: 'key-0' })
    await waitFor(() => client.received(frameOf('subscribed')).length === max + 1, { message: 'the second sub of key-0 was not answered' })
    expect(client.received(frameOf('error'))).toHaveLength(1)
    expect(client.socket.readyState).toBe(client.socket.OPEN)
    await client.close()
  })
})

describe('behind a trusted proxy (liveSync.trustProxy)', () => {
  it('takes the app\'s origin from X-Forwarded-Host and -Proto', async () => {
    const forwarded = { 'x-forwarded-host': 'app.example.test', 'x-forwarded-proto': 'https' }
    expect((await tryUpgrade({ origin: 'https://app.example.test', ...forwarded })).status).toBe(101)
    expect((await tryUpgrade({ origin: 'http://app.example.test', ...forwarded })).status).toBe(403)
    expect((await tryUpgrade({ origin: appOrigin(), ...forwarded })).status).toBe(403)
    // Straight to the app (no forwarded headers): its Host.
    expect((await tryUpgrade({ origin: appOrigin() })).status).toBe(101)
  })

  it('keeps serving pages', async () => {
    expect((await fetch('/')).status).toBe(200)
  })
})
