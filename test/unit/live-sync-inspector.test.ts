/**
 * What the DevTools tab reads of a browser tab's client: its subscriptions
 * (key, phase, cursor, each subscriber's status and watched models), the
 * transactions delivered, and what the server refused or dropped. Only a
 * client given an inspector (development) records frames.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { LiveSyncInspector } from '../../src/runtime/app/live-sync-inspector'
import { CloseCode } from '../../src/runtime/shared/protocol'
import { fakeClient, recorder } from './fake-socket'
import { ins, tx } from './helpers'

beforeEach(() => {
  vi.useFakeTimers()
})
afterEach(() => {
  vi.useRealTimers()
})

describe('the DevTools view of a tab', () => {
  it('lists the subscriptions with their watched models, cursor and status', () => {
    const { client, sockets } = fakeClient()
    client.subscribe(1, { ...recorder().listener, watch: [{ name: 'tasks', model: 'Task' }] })
    client.subscribe('2', { ...recorder().listener, watch: [{ name: 'projects', model: 'Project' }] })
    expect(client.inspect().map(s => [s.key, s.phase])).toEqual([['1', 'pending'], ['2', 'pending']])
    const socket = sockets[0]!
    socket.open({ cursor: '0/10' })
    socket.receive({ type: 'subscribed', key: '1', cursor: '0/10', replayed: 0 })
    socket.receive({ type: 'error', code: 'forbidden', message: '[live-sync] subscription to "2" refused: not a member', key: '2' })
    expect(client.inspect()).toEqual([
      { key: '1', phase: 'live', cursor: '0/10', error: null, subscribers: [{ status: 'live', error: null, since: null, watch: [{ name: 'tasks', model: 'Task' }] }] },
      { key: '2', phase: 'failed', cursor: null, error: '[live-sync] subscription to "2" refused: not a member', subscribers: [{ status: 'error', error: '[live-sync] subscription to "2" refused: not a member', since: null, watch: [{ name: 'projects', model: 'Project' }] }] },
    ])
  })

  it('records delivered transactions, refusals, resyncs and closes when given an inspector', () => {
    const inspector = new LiveSyncInspector()
    const { client, sockets } = fakeClient({ inspector })
    client.subscribe('a', recorder().listener)
    const socket = sockets[0]!
    socket.open({ cursor: '0/10' })
    socket.receive({ type: 'subscribed', key: 'a', cursor: '0/10', replayed: 0 })
    socket.receive(tx('a', '0/20', [ins({ id: 1 }), ins({ id: 2 }), { op: 'delete', model: 'Task', id: 3, row: { id: 3 } }]))
    socket.receive({ type: 'resync', key: 'a', cursor: '0/30', reason: 'truncate' })
    socket.receive({ type: 'error', code: 'too-many-keys', message: '[live-sync] a socket may subscribe to at most 1000 keys', key: 'b' })
    socket.drop(CloseCode.SLOW_CONSUMER)
    expect(inspector.feed).toEqual([{ at: expect.any(Number), key: 'a', cursor: '0/20', ops: { insert: 2, update: 0, delete: 1 }, models: ['Task'], size: expect.any(Number), replay: false }])
    expect(inspector.feed[0]!.size).toBe(JSON.stringify(tx('a', '0/20', [ins({ id: 1 }), ins({ id: 2 }), { op: 'delete', model: 'Task', id: 3, row: { id: 3 } }])).length)
    expect(inspector.refusals.map(r => [r.key, r.code])).toEqual([['a', 'resync:truncate'], ['b', 'too-many-keys'], [null, CloseCode.SLOW_CONSUMER]])
    expect(client.inspector).toBe(inspector)
  })

  it('keeps nothing without an inspector (production)', () => {
    const { client } = fakeClient()
    expect(client.inspector).toBeUndefined()
  })
})
