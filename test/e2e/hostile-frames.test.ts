/**
 * 100 000 random and hostile frames (binary, giant, deeply nested JSON,
 * prototype keys, unknown types, wrong types, valid ones mixed in) over a
 * few sockets of a built server: it stays up, answers each bad frame with an
 * error frame (never an internal error), closes only the sockets that sent a
 * frame over the size limit (1009), and holds no more memory afterwards.
 * The rate limit is raised for this server, so that the frames reach the
 * parser rather than the token bucket (tested in security-public).
 */
import { fetch } from '@nuxt/test-utils/e2e'
import WebSocket from 'ws'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { DEFAULT_LIMITS } from '../../src/runtime/server/security-settings'
import { MAX_CLIENT_FRAME, type ServerMessage } from '../../src/runtime/shared/protocol'
import { frameOf, liveSyncState, LiveSyncTestClient, liveSyncUrl, setupFixtureServer, waitForLiveSync } from '../support/fixture-server'
import { prng } from '../support/prng'
import { createFixtureDatabase } from '../support/schema'
import { collectGarbage, describeMemory, GC_ENV, MiB } from '../support/server-memory'

const FRAMES = 100_000
const SOCKETS = 4
/** Frames sent before waiting for the server to answer a ping (flow control). */
const BATCH = 500

const db = await createFixtureDatabase('e2e_hostile_frames', { tasks: [{ organizationId: 1, title: 'seed' }] })
afterAll(() => db.drop())
await setupFixtureServer({
  databaseUrl: db.url,
  access: 'public',
  env: { ...GC_ENV, NUXT_LIVE_SYNC_LIMITS_FRAMES_PER_SECOND: '100000000', NUXT_LIVE_SYNC_LIMITS_FRAME_BURST: '100000000' },
})
let pid = 0
beforeAll(async () => {
  pid = (await waitForLiveSync()).pid
})

type Frame = { data: string | Buffer, binary?: boolean, kind: string }

/** The generator of hostile frames, reproducible from its seed. */
function hostileFrames(random: () => number) {
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!
  const text = (length: number) => Array.from({ length }, () => String.fromCharCode(32 + Math.floor(random() * 95))).join('')
  const key = () => pick<unknown>([1, 2, 3, '1', 'k' + Math.floor(random() * 40), true, -0, 1e308, '', 'x'.repeat(257), null, {}, [1], { id: 1 }])
  const nest = (depth: number) => `${'['.repeat(depth)}${']'.repeat(depth)}`
  const generators: Array<[number, () => Frame]> = [
    [10, () => ({ kind: 'binary', binary: true, data: Buffer.from(Array.from({ length: 1 + Math.floor(random() * 512) }, () => Math.floor(random() * 256))) })],
    [4, () => ({ kind: 'binary-json', binary: true, data: Buffer.from(JSON.stringify({ type: 'ping', t: 1 })) })],
    [10, () => ({ kind: 'garbage', data: text(1 + Math.floor(random() * 200)) })],
    [8, () => ({ kind: 'truncated', data: JSON.stringify({ type: 'sub', key: key() }).slice(0, Math.floor(random() * 20)) })],
    [8, () => ({ kind: 'deep', data: `{"type":"sub","key":1,"x":${nest(5 + Math.floor(random() * 1500))}}` })],
    [3, () => ({ kind: 'deep-array', data: nest(1 + Math.floor(random() * 2000)) })],
    [8, () => ({ kind: 'proto', data: pick([
      '{"type":"sub","key":1,"__proto__":{"admin":true}}',
      '{"__proto__":{"type":"sub"},"key":2}',
      '{"type":"ping","constructor":{"prototype":{"polluted":1}}}',
      '{"type":"unsub","key":"k1","x":[{"__proto__":null}]}',
      '{"type":"ping","t":1e400}',
      '{"type":"sub","key":1e400}',
    ]) })],
    [8, () => ({ kind: 'unknown-type', data: JSON.stringify({ type: pick(['subscribe', 'SUB', '', null, 1, 'hello', 'tx', 'toString', '__proto__']), key: key() }) })],
    [12, () => ({ kind: 'wrong-types', data: JSON.stringify(pick([
      { type: 'sub', key: key(), since: pick([1, 'yesterday', '0/', 'G/0', {}, ['0/1']]) },
      { type: 'replay', key: key(), since: '0/1', ref: pick(['1', 1.5, null, Number.MAX_SAFE_INTEGER + 2]) },
      { type: 'unsub', key: key() },
      { type: 'ping', t: pick(['now', null, {}, []]) },
    ])) })],
    [3, () => ({ kind: 'long', data: JSON.stringify({ type: 'ping', pad: text(MAX_CLIENT_FRAME + Math.floor(random() * 8000)) }) })],
    [20, () => ({ kind: 'valid', data: JSON.stringify(pick([
      { type: 'sub', key: key() },
      { type: 'sub', key: pick([1, 2, 3]), since: pick(['0/0', '0/1', 'FFFFFFFF/FFFFFFFF']) },
      { type: 'unsub', key: key() },
      { type: 'replay', key: pick([1, 2, 3]), since: '0/1', ref: Math.floor(random() * 1000) },
      { type: 'ping', t: Math.floor(random() * 1000) },
    ])) })],
    [0.01, () => ({ kind: 'giant', data: 'x'.repeat(DEFAULT_LIMITS.maxFrameBytes + 1 + Math.floor(random() * 1024 * 1024)) })],
  ]
  const total = generators.reduce((sum, [weight]) => sum + weight, 0)
  return (): Frame => {
    let roll = random() * total
    for (const [weight, generate] of generators) {
      roll -= weight
      if (roll < 0) return generate()
    }
    return generators[0]![1]()
  }
}

/** A raw socket that counts what the server answers, by type and error code. */
class CountingSocket {
  readonly answers = new Map<string, number>()
  readonly invalid: string[] = []
  closed: { code: number } | null = null
  private pongWaiters = new Map<number, () => void>()
  private constructor(readonly socket: WebSocket) {
    socket.on('message', (data, isBinary) => {
      let frame: ServerMessage
      try {
        frame = JSON.parse(data.toString())
      }
      catch {
        this.invalid.push(`${isBinary ? 'binary' : 'text'}: ${data.toString().slice(0, 100)}`)
        return
      }
      const label = frame.type === 'error' ? `error:${frame.code}` : frame.type
      this.answers.set(label, (this.answers.get(label) ?? 0) + 1)
      if (frame.type === 'pong' && typeof frame.t === 'number') this.pongWaiters.get(frame.t)?.()
    })
    socket.on('close', code => (this.closed = { code }))
    socket.on('error', () => {})
  }

  static open(): Promise<CountingSocket> {
    const socket = new WebSocket(liveSyncUrl('?v=1'))
    return new Promise((resolve, reject) => {
      socket.once('open', () => resolve(new CountingSocket(socket)))
      socket.once('error', reject)
    })
  }

  get isOpen(): boolean {
    return this.socket.readyState === WebSocket.OPEN
  }

  /** Sends a ping marked `t` and waits for its pong (everything sent before is handled by then), or for the close. */
  async sync(t: number): Promise<void> {
    if (!this.isOpen) return
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`[e2e] no pong ${t} within 20 s`)), 20_000)
      const done = () => {
        clearTimeout(timer)
        this.pongWaiters.delete(t)
        // A listener per sync would pile up on a socket that lives through many of them.
        this.socket.off('close', done)
        resolve()
      }
      this.pongWaiters.set(t, done)
      this.socket.once('close', done)
      this.socket.send(JSON.stringify({ type: 'ping', t }))
    })
  }
}

describe('100 000 random and hostile frames', () => {
  it('leave the server alive, answered with error frames, and with bounded memory', async () => {
    const before = await collectGarbage(pid)
    const statsBefore = (await liveSyncState()).stats
    const next = hostileFrames(prng(8_2026))
    const sockets = await Promise.all(Array.from({ length: SOCKETS }, () => CountingSocket.open()))
    const retired: CountingSocket[] = []
    const sent = new Map<string, number>()
    let giants = 0
    let marker = 1_000_000
    const started = Date.now()
    for (let count = 0; count < FRAMES;) {
      for (const [index, socket] of sockets.entries()) {
        for (let i = 0; i < BATCH / SOCKETS && count < FRAMES; i++, count++) {
          const frame = next()
          sent.set(frame.kind, (sent.get(frame.kind) ?? 0) + 1)
          if (frame.kind === 'giant') giants++
          if (socket.isOpen) socket.socket.send(frame.data, { binary: frame.binary ?? false })
          if (frame.kind === 'giant') break // the server closes this socket: the next batch goes to a fresh one
        }
        await socket.sync(marker++)
        if (!socket.isOpen) {
          retired.push(socket)
          sockets[index] = await CountingSocket.open()
        }
      }
    }
    await Promise.all(sockets.map(socket => socket.sync(marker++)))
    const elapsed = Date.now() - started
    const after = await collectGarbage(pid)
    const stats = (await liveSyncState()).stats

    const all = [...retired, ...sockets]
    const answers = new Map<string, number>()
    for (const socket of all) for (const [label, n] of socket.answers) answers.set(label, (answers.get(label) ?? 0) + n)
    console.log(`[hostile frames] ${FRAMES} frames in ${elapsed} ms over ${all.length} sockets; sent ${JSON.stringify(Object.fromEntries(sent))}; `
      + `answers ${JSON.stringify(Object.fromEntries(answers))}; server after GC: ${describeMemory(before)} before, ${describeMemory(after)} after`)

    // Nothing the server sent was malformed, and no frame made it fail inside.
    expect(all.flatMap(socket => socket.invalid)).toEqual([])
    expect(answers.get('error:internal') ?? 0).toBe(0)
    expect(answers.get('error:bad-request')).toBeGreaterThan(FRAMES / 2)
    // Only giant frames closed sockets, each with 1009.
    expect(retired.map(socket => socket.closed?.code)).toEqual(Array(giants).fill(1009))
    expect(stats.framesTooLarge - statsBefore.framesTooLarge).toBe(giants)
    expect(stats.tooManyFrames - statsBefore.tooManyFrames).toBe(0)
    expect(stats.slowConsumers - statsBefore.slowConsumers).toBe(0)
    // Prototypes are intact in the server: a fresh socket and HTTP work as before.
    expect((await fetch('/')).status).toBe(200)
    const client = await LiveSyncTestClient.greeted()
    await client.request({ type: 'sub', key: 1 }, frameOf('subscribed'))
    const id = await db.insertTask({ organizationId: 1, title: 'after the storm' })
    expect((await client.next(frameOf('tx'))).changes[0]).toMatchObject({ op: 'insert', id })
    await client.close()
    for (const socket of sockets) socket.socket.close()
    // Memory: what the frames left behind is garbage, not held (a generous bound for a busy machine).
    expect(after.rss - before.rss).toBeLessThan(64 * MiB)
    expect(after.heapUsed + after.external - before.heapUsed - before.external).toBeLessThan(16 * MiB)
  }, 120_000)
})
