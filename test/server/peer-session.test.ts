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

const change = (id: number) => ({ op: 'insert' as const, model: 'Task', id, row: { id, orgId: 1 } })

describe('peer session', () => {
  it('says hello with the protocol version, cursor and models', () => {
    const { peer, frames } = session(offlineEngine())
    peer.hello()
    expect(frames).toEqual([{ type: 'hello', v: 1, epoch: '', cursor: '0/10', models: { Task: { id: ['id'] } } }])
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
    expect(frames).toEqual([{ type: 'subscribed', key: '1', cursor: '0/10', replayed: 0 }])
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
      { type: 'subscribed', key: '1', cursor: '0/30', replayed: 1 },
    ])
    await peer.receive('{"type":"sub","key":"1","since":"0/5"}')
    expect(frames.slice(2)).toEqual([
      { type: 'resync', key: '1', cursor: '0/30', reason: 'too-old' },
      { type: 'subscribed', key: '1', cursor: '0/30', replayed: 0 },
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
      maxKeys: 2,
    })
    await peer.receive('{"type":"sub","key":"secret"}')
    expect(frames).toEqual([{ type: 'error', code: 'forbidden', message: '[live-sync] subscription to "secret" refused: not a member', key: 'secret' }])
    await peer.receive('{"type":"sub","key":"a"}')
    await peer.receive('{"type":"sub","key":"b"}')
    await peer.receive('{"type":"sub","key":"c"}')
    expect(frames.at(-1)).toMatchObject({ type: 'error', code: 'too-many-keys', key: 'c' })
    expect(peer.keyCount).toBe(2)
  })

  it('reports live sync as unavailable when the server has no engine', async () => {
    const { peer, frames } = session(null)
    peer.hello()
    await peer.receive('{"type":"sub","key":1}')
    expect(frames).toEqual([
      { type: 'hello', v: 1, epoch: '', cursor: null, models: {} },
      { type: 'error', code: 'unavailable', message: '[live-sync] live sync is not configured on this server', key: '1' },
    ])
  })

  it('subscribes but says live updates are paused while the stream is down', async () => {
    const engine = offlineEngine()
    engine.status = 'error'
    const { peer, frames } = session(engine)
    await peer.receive('{"type":"sub","key":1}')
    expect(frames).toEqual([
      { type: 'subscribed', key: '1', cursor: '0/10', replayed: 0 },
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
})
