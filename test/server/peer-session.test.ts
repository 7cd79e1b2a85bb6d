/**
 * A peer's conversation, without a socket: frames in, frames out.
 */
import { describe, expect, it } from 'vitest'
import { DataTypes, Model, Sequelize } from 'sequelize'
import { createLiveSyncEngine, type LiveSyncEngine } from '../../src/runtime/server/engine/live-sync-engine'
import { encodeChange } from '../../src/runtime/server/engine/key-batch'
import { PeerSession } from '../../src/runtime/server/peer-session'
import type { ServerMessage } from '../../src/runtime/shared/protocol'

function offlineEngine(): LiveSyncEngine {
  const sequelize = new Sequelize('postgres://nobody@127.0.0.1:1/none', { logging: false })
  class Task extends Model {}
  Task.init({ id: { type: DataTypes.INTEGER, primaryKey: true }, orgId: DataTypes.INTEGER }, { sequelize, tableName: 'tasks', liveSync: { subscriptionKey: 'orgId' } })
  const engine = createLiveSyncEngine({ sequelize })
  // As if streaming had started at 0/10 (the hub is exercised directly).
  engine.cursor = '0/10'
  engine.status = 'streaming'
  engine.hub.buffer.reset('0/10')
  return engine
}

function session(engine: LiveSyncEngine | null, options: Partial<ConstructorParameters<typeof PeerSession>[0]> = {}) {
  const frames: ServerMessage[] = []
  const peer = new PeerSession({ engine, send: frame => frames.push(JSON.parse(frame)), ...options })
  return { peer, frames, last: () => frames.at(-1)! }
}

/** What `subscribed` tells an authorized subscriber about the watched models. */
const models = { Task: { id: ['id'] } }

const change = (id: number) => ({ op: 'insert' as const, model: 'Task', id, row: { id, orgId: 1 } })

describe('peer session', () => {
  it('says hello with the protocol version and cursor, nothing about models or tables', () => {
    const { peer, frames } = session(offlineEngine())
    peer.hello()
    expect(frames).toEqual([{ type: 'hello', v: 1, epoch: '', cursor: '0/10' }])
  })

  it('answers malformed frames with an error frame and keeps going', async () => {
    const { peer, frames } = session(offlineEngine())
    for (const bad of ['not json', '[]', '{"type":"nope"}', '{"type":"sub","key":{}}', '{"type":"sub","key":1,"since":"yesterday"}', 'x'.repeat(5000)]) await peer.receive(bad)
    expect(frames.map(frame => frame.type === 'error' && frame.code)).toEqual(Array(6).fill('bad-request'))
    expect(frames.every(frame => frame.type === 'error' && frame.message.startsWith('[live-sync] '))).toBe(true)
    await peer.receive('{"type":"ping","t":5}')
    expect(frames.at(-1)).toEqual({ type: 'pong', cursor: '0/10', t: 5 })
  })

  it('subscribes, forwards batches of its key only, and unsubscribes', async () => {
    const engine = offlineEngine()
    const { peer, frames } = session(engine)
    await peer.receive('{"type":"sub","key":1}')
    expect(frames).toEqual([{ type: 'subscribed', key: '1', cursor: '0/10', replayed: 0, models }])
    engine.hub.publish('1', '0/20', [encodeChange(change(1))], Date.now())
    engine.hub.publish('2', '0/30', [encodeChange(change(2))], Date.now())
    expect(frames.slice(1)).toEqual([{ type: 'tx', key: '1', cursor: '0/20', changes: [change(1)] }])
    await peer.receive('{"type":"unsub","key":1}')
    engine.hub.publish('1', '0/40', [encodeChange(change(3))], Date.now())
    expect(frames.slice(2)).toEqual([{ type: 'unsubscribed', key: '1' }])
    expect(engine.hub.keyCount).toBe(0)
  })

  it('replays from `since` before `subscribed`, and says when it cannot', async () => {
    const engine = offlineEngine()
    engine.hub.publish('1', '0/20', [encodeChange(change(1))], Date.now())
    engine.hub.publish('1', '0/30', [encodeChange(change(2))], Date.now())
    engine.cursor = '0/30'
    const { peer, frames } = session(engine)
    await peer.receive('{"type":"sub","key":"1","since":"0/20"}')
    expect(frames).toEqual([
      { type: 'tx', key: '1', cursor: '0/30', changes: [change(2)] },
      { type: 'subscribed', key: '1', cursor: '0/30', replayed: 1, models },
    ])
    await peer.receive('{"type":"sub","key":"1","since":"0/5"}')
    expect(frames.slice(2)).toEqual([
      { type: 'resync', key: '1', cursor: '0/30', reason: 'too-old' },
      { type: 'subscribed', key: '1', cursor: '0/30', replayed: 0, models },
    ])
    await peer.receive('{"type":"replay","key":"1","since":"0/10","ref":7}')
    expect(frames.slice(4)).toEqual([
      { type: 'tx', key: '1', cursor: '0/20', changes: [change(1)], ref: 7 },
      { type: 'tx', key: '1', cursor: '0/30', changes: [change(2)], ref: 7 },
      { type: 'replayed', key: '1', ref: 7, cursor: '0/30', replayed: 2 },
    ])
  })

  it('refuses what the authorize hook refuses, and more keys than allowed', async () => {
    const { peer, frames } = session(offlineEngine(), {
      authorize: (key) => {
        if (key === 'secret') throw Object.assign(new Error('nope'), { statusMessage: 'not a member' })
      },
      limits: { maxKeysPerSocket: 2 },
    })
    await peer.receive('{"type":"sub","key":"secret"}')
    expect(frames).toEqual([{ type: 'error', code: 'forbidden', message: '[live-sync] subscription to "secret" refused: not a member', key: 'secret' }])
    await peer.receive('{"type":"sub","key":"a"}')
    await peer.receive('{"type":"sub","key":"b"}')
    await peer.receive('{"type":"sub","key":"c"}')
    expect(frames.at(-1)).toMatchObject({ type: 'error', code: 'too-many-keys', key: 'c' })
    expect(peer.keyCount).toBe(2)
  })

  it('refuses a subscription whose authorization does not answer in time, and goes on with the next frame', async () => {
    const { peer, frames } = session(offlineEngine(), {
      authorize: key => (key === 'hangs' ? new Promise<void>(() => {}) : undefined),
      limits: { authorizeTimeoutMs: 50 },
    })
    await peer.receive('{"type":"sub","key":"hangs"}')
    expect(frames).toEqual([{ type: 'error', code: 'forbidden', message: '[live-sync] subscription to "hangs" refused: no answer within limits.authorizeTimeoutMs (50 ms)', key: 'hangs' }])
    await peer.receive('{"type":"sub","key":"fine"}')
    expect(frames.at(-1)).toMatchObject({ type: 'subscribed', key: 'fine' })
    expect(peer.keyCount).toBe(1)
  })

  it('reports live sync as unavailable when the server has no engine', async () => {
    const { peer, frames } = session(null)
    peer.hello()
    await peer.receive('{"type":"sub","key":1}')
    expect(frames).toEqual([
      { type: 'hello', v: 1, epoch: '', cursor: null },
      { type: 'error', code: 'unavailable', message: '[live-sync] live sync is not configured on this server', key: '1' },
    ])
  })

  it('subscribes but says live updates are paused while the stream is down', async () => {
    const engine = offlineEngine()
    engine.status = 'error'
    const { peer, frames } = session(engine)
    await peer.receive('{"type":"sub","key":1}')
    expect(frames).toEqual([
      { type: 'subscribed', key: '1', cursor: '0/10', replayed: 0, models },
      { type: 'error', code: 'unavailable', message: expect.stringContaining('live updates are paused'), key: '1' },
    ])
    expect(engine.hub.subscriberCount('1')).toBe(1)
  })

  it('drops every subscription when closed', async () => {
    const engine = offlineEngine()
    const { peer } = session(engine)
    await peer.receive('{"type":"sub","key":1}')
    await peer.receive('{"type":"sub","key":2}')
    expect(engine.hub.keyCount).toBe(2)
    peer.close()
    expect(engine.hub.keyCount).toBe(0)
  })

  describe('bounds what a client can make it hold', () => {
    /** A session with a clock the test moves, recording the closes it asks for. */
    function bounded(engine: LiveSyncEngine | null, options: Partial<ConstructorParameters<typeof PeerSession>[0]> = {}) {
      const clock = { now: 1_000 }
      const closes: Array<[number, string]> = []
      const result = session(engine, { now: () => clock.now, close: (code, reason) => closes.push([code, reason]), ...options })
      return { ...result, clock, closes }
    }

    it('closes a socket that sends frames faster than its token bucket allows (1008), refilling at the rate', async () => {
      const engine = offlineEngine()
      const { peer, frames, clock, closes } = bounded(engine, { limits: { frameBurst: 3, framesPerSecond: 10 } })
      await peer.receive('{"type":"sub","key":1}')
      await peer.receive('{"type":"ping"}')
      await peer.receive('{"type":"ping"}')
      clock.now += 100 // one token back
      await peer.receive('{"type":"ping"}')
      expect(closes).toEqual([])
      await peer.receive('{"type":"ping"}')
      expect(closes).toEqual([[1008, 'too many frames']])
      expect(peer.isClosed).toBe(true)
      expect(engine.hub.keyCount).toBe(0)
      // Nothing more is handled or sent.
      const sent = frames.length
      await peer.receive('{"type":"ping"}')
      engine.hub.publish('1', '0/20', [encodeChange(change(1))], Date.now())
      expect(frames.length).toBe(sent)
    })

    it('closes a socket with more frames waiting behind a pending authorization than its burst (1008)', async () => {
      const engine = offlineEngine()
      let calls = 0
      const { peer, clock, closes } = bounded(engine, {
        authorize: () => {
          calls++
          return new Promise<void>(() => {}) // never decides
        },
        limits: { frameBurst: 3, framesPerSecond: 1 },
      })
      for (let i = 0; i < 3; i++) {
        void peer.receive(`{"type":"sub","key":${i}}`)
        clock.now += 5_000 // the bucket is full again: only the waiting frames count
      }
      await Promise.resolve()
      expect(calls).toBe(1) // handled in order: the others wait
      expect(closes).toEqual([])
      void peer.receive('{"type":"ping"}')
      expect(closes).toEqual([[1008, 'too many frames waiting for authorization']])
    })

    it('closes a slow consumer (4008) at the first live frame that finds more than maxBufferedBytes unsent, and stops queueing for it', async () => {
      const engine = offlineEngine()
      let backlog = 0
      const { peer, frames, closes } = bounded(engine, { bufferedAmount: () => backlog, limits: { maxBufferedBytes: 1000 } })
      await peer.receive('{"type":"sub","key":1}')
      backlog = 1000 // at the bound: still fine
      engine.hub.publish('1', '0/20', [encodeChange(change(1))], Date.now())
      expect(frames.at(-1)).toMatchObject({ type: 'tx', cursor: '0/20' })
      backlog = 1001
      engine.hub.publish('1', '0/30', [encodeChange(change(2))], Date.now())
      expect(frames.at(-1)).toMatchObject({ type: 'tx', cursor: '0/20' })
      expect(closes).toEqual([[4008, 'slow consumer: reconnect and resume from your cursor']])
      expect(engine.hub.keyCount).toBe(0)
    })

    it('sends a subscription\'s whole replay in one burst, and answers no request of a backlogged socket', async () => {
      const engine = offlineEngine()
      for (let i = 1; i <= 3; i++) engine.hub.publish('1', `0/${20 + i}`, [encodeChange(change(i))], Date.now())
      engine.cursor = '0/23'
      let backlog = 0
      const closes: Array<[number, string]> = []
      const { peer, frames } = session(engine, {
        // Every frame stays unsent: the backlog passes the bound with the first replayed batch.
        send: (frame) => {
          backlog += frame.length
          frames.push(JSON.parse(frame))
        },
        bufferedAmount: () => backlog,
        limits: { maxBufferedBytes: 10 },
        close: (code, reason) => closes.push([code, reason]),
      })
      await peer.receive('{"type":"sub","key":1,"since":"0/10"}')
      expect(frames.map(frame => frame.type)).toEqual(['tx', 'tx', 'tx', 'subscribed'])
      expect(closes).toEqual([])
      await peer.receive('{"type":"ping"}')
      expect(frames.map(frame => frame.type)).toEqual(['tx', 'tx', 'tx', 'subscribed'])
      expect(closes).toEqual([[4008, 'slow consumer: reconnect and resume from your cursor']])
    })

    it('answers a replay request larger than maxBufferedBytes with a resync instead of copies of the history', async () => {
      const engine = offlineEngine()
      for (let i = 1; i <= 3; i++) engine.hub.publish('1', `0/${20 + i}`, [encodeChange(change(i))], Date.now())
      engine.cursor = '0/23'
      const frameLength = engine.hub.buffer.since('1', '0/10')![0]!.frame().length
      const { peer, frames } = session(engine, { limits: { maxBufferedBytes: frameLength * 2 } })
      await peer.receive('{"type":"sub","key":1}')
      await peer.receive('{"type":"replay","key":1,"since":"0/21","ref":1}')
      expect(frames.slice(1).map(frame => frame.type)).toEqual(['tx', 'tx', 'replayed'])
      await peer.receive('{"type":"replay","key":1,"since":"0/10","ref":2}')
      expect(frames.at(-1)).toEqual({ type: 'resync', key: '1', cursor: '0/23', reason: 'too-old', ref: 2 })
      expect(frames).toHaveLength(5)
    })

    it('answers hostile frames with an error frame and changes nothing', async () => {
      const engine = offlineEngine()
      const { peer, frames } = session(engine)
      const hostile = [
        '{"type":"sub","key":1,"__proto__":{"admin":true}}',
        '{"type":"sub","key":1,"x":{"constructor":{"prototype":{"admin":true}}}}',
        `{"type":"sub","key":1,"x":${'['.repeat(500)}${']'.repeat(500)}}`,
        '{"type":"sub","key":[1]}',
        '{"type":"unsub","key":null}',
        '{"type":"replay","key":1,"since":"0/1","ref":"1"}',
        '\u0000\u0001binary',
      ]
      for (const text of hostile) await peer.receive(text)
      expect(frames.map(frame => frame.type === 'error' ? frame.code : frame.type)).toEqual(hostile.map(() => 'bad-request'))
      expect(peer.keyCount).toBe(0)
      expect(engine.hub.keyCount).toBe(0)
      expect(({} as Record<string, unknown>).admin).toBeUndefined()
    })
  })
})
