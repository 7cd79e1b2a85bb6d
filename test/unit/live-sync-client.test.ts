import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { CloseCode, PROTOCOL_VERSION } from '../../src/runtime/shared/protocol'
import { distinct, fakeClient, FakeSocket, recorder } from './fake-socket'
import { ins, tx } from './helpers'

beforeEach(() => {
  vi.useFakeTimers()
})
afterEach(() => {
  vi.useRealTimers()
})

/** A client whose socket is open, with one listener per key in `keys`, all live (subscribed at `cursor`). */
function liveClient(keys: string[] = ['a'], cursor = '0/10') {
  const { client, sockets, warnings } = fakeClient()
  const listeners = keys.map(key => Object.assign(recorder(), { key }))
  const stops = listeners.map(listener => client.subscribe(listener.key, listener.listener))
  const socket = sockets[0]!
  socket.open({ cursor })
  for (const key of keys) socket.receive({ type: 'subscribed', key, cursor, replayed: 0 })
  socket.take()
  return { client, sockets, warnings, socket, listeners, stops }
}

describe('one socket, ref-counted subscriptions', () => {
  it('uses one socket for every subscription and asks for the protocol version in the URL', () => {
    const { client, sockets, socket } = fakeClient()
    client.subscribe('a', recorder().listener)
    client.subscribe('b', recorder().listener)
    client.subscribe(7, recorder().listener)
    expect(sockets).toHaveLength(1)
    expect(socket().url).toBe(`ws://test.local/_live_sync?v=${PROTOCOL_VERSION}`)
    expect(socket().sent).toEqual([]) // nothing before the hello

    socket().open()
    expect(socket().take()).toEqual([{ type: 'sub', key: 'a' }, { type: 'sub', key: 'b' }, { type: 'sub', key: 7 }])

    client.subscribe('c', recorder().listener)
    expect(sockets).toHaveLength(1)
    expect(socket().take()).toEqual([{ type: 'sub', key: 'c' }])
    expect(client.keyCount).toBe(4)
  })

  it('appends the version to a URL that has a query already', () => {
    const { client, sockets } = fakeClient({ url: 'ws://test.local/_live_sync?tenant=1' })
    client.subscribe('a', recorder().listener)
    expect(sockets[0]!.url).toBe(`ws://test.local/_live_sync?tenant=1&v=${PROTOCOL_VERSION}`)
  })

  it('sends one sub per key however many listeners, and unsub when the last one leaves', () => {
    const { client, sockets } = fakeClient()
    const stopFirst = client.subscribe('a', recorder().listener)
    const socket = sockets[0]!
    socket.open()
    expect(socket.take()).toEqual([{ type: 'sub', key: 'a' }])

    const stopSecond = client.subscribe('a', recorder().listener)
    const stopThird = client.subscribe('a', recorder().listener)
    expect(socket.take()).toEqual([])
    expect(client.keyCount).toBe(1)

    stopFirst()
    stopThird()
    expect(socket.take()).toEqual([])
    stopSecond()
    expect(socket.take()).toEqual([{ type: 'unsub', key: 'a' }])
    expect(client.keyCount).toBe(0)

    stopSecond() // a second call is harmless
    expect(socket.take()).toEqual([])
  })

  it('sends neither sub nor unsub for a key left before the socket opened', () => {
    const { client, socket } = fakeClient()
    client.subscribe('a', recorder().listener)()
    socket().open()
    expect(socket().sent).toEqual([])
  })

  it('subscribes a new key from the oldest since of the listeners registered before the sub is sent', () => {
    const { client, sockets } = fakeClient()
    client.subscribe('a', recorder().listener, '0/20')
    client.subscribe('a', recorder().listener, '00000000/00000010')
    client.subscribe('a', recorder().listener, null)
    client.subscribe('a', recorder().listener, '0/30')
    client.subscribe('b', recorder().listener, null)
    sockets[0]!.open()
    expect(sockets[0]!.take()).toEqual([{ type: 'sub', key: 'a', since: '00000000/00000010' }, { type: 'sub', key: 'b' }])
  })

  it('delivers tx frames in order, to the listeners of their key only', () => {
    const { client, socket, listeners: [a, b] } = liveClient(['a', 'b'])
    const a2 = recorder()
    client.subscribe('a', a2.listener) // joins without a cursor: no replay
    for (const [key, cursor] of [['a', '0/11'], ['b', '0/12'], ['a', '0/13'], ['a', '0/14']] as const) {
      socket.receive(tx(key, cursor, [ins({ id: cursor })]))
    }
    expect(a!.cursors).toEqual(['0/11', '0/13', '0/14'])
    expect(a2.cursors).toEqual(['0/11', '0/13', '0/14'])
    expect(b!.cursors).toEqual(['0/12'])
    expect(a!.batches[0]!.changes).toEqual([ins({ id: '0/11' })])
    expect(socket.take()).toEqual([])
  })

  it('ignores frames of keys it does not hold and frames that are not JSON text', () => {
    const { socket, warnings, listeners: [a] } = liveClient(['a'])
    socket.receive(tx('zzz', '0/11'))
    socket.onmessage?.({ data: '{not json' })
    socket.onmessage?.({ data: new Uint8Array([1, 2]) })
    socket.receive(tx('a', '0/12'))
    expect(a!.cursors).toEqual(['0/12'])
    expect(warnings).toEqual([expect.stringMatching(/not JSON/)])
  })

  it('delivers a resync to every listener of the key', () => {
    const { client, socket, listeners: [a, b] } = liveClient(['a', 'b'])
    const a2 = recorder()
    client.subscribe('a', a2.listener)
    socket.receive({ type: 'resync', key: 'a', cursor: '0/20', reason: 'truncate', tables: ['tasks'] })
    expect(a!.received).toEqual([['resync', 'truncate']])
    expect(a2.received).toEqual([['resync', 'truncate']])
    expect(b!.received).toEqual([])
  })

  it('tells listeners of a sub that was too old to resync, then goes live', () => {
    const { client, socket } = fakeClient()
    const a = recorder()
    client.subscribe('a', a.listener, '0/1')
    socket().open()
    expect(socket().take()).toEqual([{ type: 'sub', key: 'a', since: '0/1' }])
    socket().receive({ type: 'resync', key: 'a', cursor: '0/50', reason: 'too-old' })
    socket().receive({ type: 'subscribed', key: 'a', cursor: '0/50', replayed: 0 })
    socket().receive(tx('a', '0/51'))
    expect(a.received).toEqual([['resync', 'too-old'], ['tx', '0/51', undefined]])
    expect(a.status).toBe('live')
  })
})

describe('a second listener joining with an older cursor', () => {
  it('asks for a replay with a ref, buffers its live batches until replayed, and drops those the replay covered', () => {
    const { client, socket, listeners: [first] } = liveClient(['a'], '0/50')
    const late = recorder()
    client.subscribe('a', late.listener, '0/20')
    const [replay] = socket.take()
    expect(replay).toEqual({ type: 'replay', key: 'a', since: '0/20', ref: expect.any(Number) })
    const ref = (replay as { ref: number }).ref

    socket.receive(tx('a', '0/51')) // live, already dispatched before the server handled the replay
    socket.receive(tx('a', '0/30', [], ref)) // the replay
    socket.receive(tx('a', '0/40', [], ref))
    socket.receive(tx('a', '0/51', [], ref))
    socket.receive({ type: 'replayed', key: 'a', ref, cursor: '0/51', replayed: 3 })
    socket.receive(tx('a', '0/52'))
    socket.receive(tx('a', '0/53'))

    expect(first!.cursors).toEqual(['0/51', '0/52', '0/53'])
    expect(late.received).toEqual([['tx', '0/30', ref], ['tx', '0/40', ref], ['tx', '0/51', ref], ['tx', '0/52', undefined], ['tx', '0/53', undefined]])
  })

  it('delivers the buffered batches newer than the replay, in order, when replayed arrives', () => {
    const { client, socket } = liveClient(['a'], '0/50')
    const late = recorder()
    client.subscribe('a', late.listener, '0/20')
    const { ref } = socket.take()[0] as { ref: number }
    socket.receive(tx('a', '0/30', [], ref))
    socket.receive(tx('a', '0/51'))
    socket.receive(tx('a', '0/52'))
    expect(late.cursors).toEqual(['0/30'])
    expect(late.status).toBe('connecting')
    socket.receive({ type: 'replayed', key: 'a', ref, cursor: '0/50', replayed: 1 })
    expect(late.cursors).toEqual(['0/30', '0/51', '0/52'])
    expect(late.status).toBe('live')
  })

  it('asks for no replay when the listener\'s data is as new as the key or has no cursor', () => {
    const { client, socket } = liveClient(['a'], '0/50')
    const current = recorder()
    const unknown = recorder()
    client.subscribe('a', current.listener, '0/50')
    client.subscribe('a', unknown.listener, null)
    expect(socket.take()).toEqual([])
    socket.receive(tx('a', '0/51'))
    expect(current.cursors).toEqual(['0/51'])
    expect(unknown.cursors).toEqual(['0/51'])
    expect(current.status).toBe('live')
  })

  it('waits for subscribed before asking for the replay when it joins a key whose sub is under way', () => {
    const { client, socket } = fakeClient()
    const first = recorder()
    const late = recorder()
    client.subscribe('a', first.listener, '0/40')
    socket().open()
    expect(socket().take()).toEqual([{ type: 'sub', key: 'a', since: '0/40' }])
    client.subscribe('a', late.listener, '0/20')
    expect(socket().take()).toEqual([])
    socket().receive(tx('a', '0/45')) // replayed for the sub
    socket().receive({ type: 'subscribed', key: 'a', cursor: '0/45', replayed: 1 })
    const [replay] = socket().take()
    expect(replay).toMatchObject({ type: 'replay', key: 'a', since: '0/20' })
    const { ref } = replay as { ref: number }
    socket().receive(tx('a', '0/30', [], ref))
    socket().receive(tx('a', '0/45', [], ref))
    socket().receive({ type: 'replayed', key: 'a', ref, cursor: '0/45', replayed: 2 })
    socket().receive(tx('a', '0/46'))
    expect(first.cursors).toEqual(['0/45', '0/46'])
    expect(late.cursors).toEqual(['0/30', '0/45', '0/46'])
  })

  it('hands a listener that joins a sub under way the sub\'s replay, held until subscribed, instead of asking for its own', () => {
    const { client, socket } = fakeClient()
    const first = recorder()
    const late = recorder()
    client.subscribe('a', first.listener, '0/10')
    socket().open()
    socket().take()
    socket().receive(tx('a', '0/20')) // replayed for the sub (everything after 0/10): held
    expect(first.received).toEqual([])
    client.subscribe('a', late.listener, '0/15')
    socket().receive({ type: 'subscribed', key: 'a', cursor: '0/20', replayed: 1 })
    expect(socket().take()).toEqual([])
    expect(first.received).toEqual([['tx', '0/20', undefined]])
    expect(late.received).toEqual([['tx', '0/20', undefined]])
    expect(late.status).toBe('live')
  })

  it('asks for a replay when it joins a sub under way from before the sub\'s own cursor', () => {
    const { client, socket } = fakeClient()
    const late = recorder()
    client.subscribe('a', recorder().listener, '0/10')
    socket().open()
    socket().take()
    client.subscribe('a', late.listener, '0/5')
    socket().receive({ type: 'subscribed', key: 'a', cursor: '0/20', replayed: 0 })
    expect(socket().take()).toEqual([{ type: 'replay', key: 'a', since: '0/5', ref: expect.any(Number) }])
  })

  it('drops the frames held for a sub whose socket closes, and subscribes again from the older cursor', () => {
    const { client, socket, sockets } = fakeClient()
    const listener = recorder()
    client.subscribe('a', listener.listener, '0/10')
    socket().open()
    socket().take()
    socket().receive(tx('a', '0/20'))
    socket().drop()
    vi.advanceTimersByTime(1_000)
    expect(sockets).toHaveLength(2)
    socket().open()
    expect(socket().take()).toEqual([{ type: 'sub', key: 'a', since: '0/10' }])
    expect(listener.received).toEqual([])
  })

  it('gives a resync answering its replay to that listener only, then its buffered batches', () => {
    const { client, socket, listeners: [first] } = liveClient(['a'], '0/50')
    const late = recorder()
    client.subscribe('a', late.listener, '0/1')
    const { ref } = socket.take()[0] as { ref: number }
    socket.receive(tx('a', '0/51'))
    socket.receive({ type: 'resync', key: 'a', cursor: '0/51', reason: 'too-old', ref })
    expect(late.received).toEqual([['resync', 'too-old'], ['tx', '0/51', undefined]])
    expect(first!.received).toEqual([['tx', '0/51', undefined]])
    expect(late.status).toBe('live')
  })

  it('gives a live resync that arrives during its replay to the catching-up listener after the replay', () => {
    // The replay is built from history that does not record truncations, so
    // the listener must still hear of one that happened meanwhile.
    const { client, socket, listeners: [first] } = liveClient(['a'], '0/50')
    const late = recorder()
    client.subscribe('a', late.listener, '0/20')
    const { ref } = socket.take()[0] as { ref: number }
    socket.receive({ type: 'resync', key: 'a', cursor: '0/50', reason: 'truncate', tables: ['tasks'] })
    socket.receive(tx('a', '0/30', [], ref))
    socket.receive({ type: 'replayed', key: 'a', ref, cursor: '0/50', replayed: 1 })
    expect(first!.received).toEqual([['resync', 'truncate']])
    expect(late.received).toEqual([['tx', '0/30', ref], ['resync', 'truncate']])
  })

  it('stops delivering to a catching-up listener that leaves, and ignores replay frames of unknown refs', () => {
    const { client, socket, listeners: [first] } = liveClient(['a'], '0/50')
    const late = recorder()
    const stop = client.subscribe('a', late.listener, '0/20')
    const { ref } = socket.take()[0] as { ref: number }
    stop()
    socket.receive(tx('a', '0/30', [], ref))
    socket.receive(tx('a', '0/31', [], ref + 100))
    socket.receive({ type: 'replayed', key: 'a', ref, cursor: '0/50', replayed: 1 })
    socket.receive(tx('a', '0/51'))
    expect(late.batches).toEqual([])
    expect(first!.cursors).toEqual(['0/51'])
    expect(socket.take()).toEqual([]) // "a" still has a listener: no unsub
  })
})

describe('transactions sent in parts', () => {
  const part = (key: string, cursor: string, index: number, last: boolean, ids: number[], ref?: number) =>
    ({ ...tx(key, cursor, ids.map(id => ins({ id })), ref), part: index, last })

  it('applies a transaction once, at its last part, with every part\'s changes in order, between other keys\' frames', () => {
    const { socket, listeners: [a, b] } = liveClient(['a', 'b'])
    socket.receive(part('a', '0/21', 0, false, [1, 2]))
    socket.receive(tx('b', '0/15'))
    socket.receive(part('a', '0/21', 1, false, [3]))
    expect(a!.batches).toEqual([])
    socket.receive(part('a', '0/30', 2, true, [4]))
    socket.receive(tx('a', '0/31', [ins({ id: 5 })]))
    expect(b!.cursors).toEqual(['0/15'])
    expect(a!.cursors).toEqual(['0/30', '0/31'])
    expect(a!.batches[0]!.changes.map(change => change.id)).toEqual([1, 2, 3, 4])
    expect(a!.batches[0]).not.toHaveProperty('part')
  })

  it('never applies a transaction whose first part it did not see, and resumes from the last whole one', () => {
    const { client, sockets, socket, listeners: [a] } = liveClient(['a'], '0/10')
    socket.receive(part('a', '0/21', 1, false, [2])) // subscribed in its middle
    socket.receive(part('a', '0/30', 2, true, [3]))
    expect(a!.batches).toEqual([])
    socket.receive(part('a', '0/31', 0, false, [4]))
    // The socket drops mid-transaction: the key resumes from 0/10, where the server replays it whole.
    socket.drop()
    vi.runOnlyPendingTimers()
    sockets[1]!.open()
    expect(sockets[1]!.take()).toEqual([{ type: 'sub', key: 'a', since: '0/10' }])
    sockets[1]!.receive(part('a', '0/31', 0, false, [4]))
    sockets[1]!.receive(part('a', '0/40', 1, true, [5]))
    sockets[1]!.receive({ type: 'subscribed', key: 'a', cursor: '0/40', replayed: 2 })
    expect(a!.cursors).toEqual(['0/40'])
    expect(a!.batches[0]!.changes.map(change => change.id)).toEqual([4, 5])
    expect(client.keyCount).toBe(1)
  })

  it('drops a half-received transaction when its key is told to resync', () => {
    const { socket, listeners: [a] } = liveClient(['a'])
    socket.receive(part('a', '0/21', 0, false, [1]))
    socket.receive({ type: 'resync', key: 'a', cursor: '0/20', reason: 'gap' })
    socket.receive(part('a', '0/30', 1, true, [2]))
    expect(a!.received).toEqual([['resync', 'gap']])
  })

  it('assembles a replay\'s parts by its ref, apart from the key\'s live parts', () => {
    const { client, socket, listeners: [first] } = liveClient(['a'], '0/50')
    const late = recorder()
    client.subscribe('a', late.listener, '0/20')
    const { ref } = socket.take()[0] as { ref: number }
    socket.receive(part('a', '0/31', 0, false, [1], ref))
    socket.receive(part('a', '0/51', 0, false, [7]))
    socket.receive(part('a', '0/40', 1, true, [2], ref))
    socket.receive({ type: 'replayed', key: 'a', ref, cursor: '0/50', replayed: 2 })
    socket.receive(part('a', '0/60', 1, true, [8]))
    expect(late.received).toEqual([['tx', '0/40', ref], ['tx', '0/60', undefined]])
    expect(late.batches[0]!.changes.map(change => change.id)).toEqual([1, 2])
    expect(first!.batches.map(batch => batch.changes.map(change => change.id))).toEqual([[7, 8]])
  })
})

describe('reconnecting', () => {
  it('reconnects after a close with exponential backoff, capped, with jitter from random()', () => {
    let roll = 0
    const { client, sockets } = fakeClient({ random: () => roll, reconnect: { minDelayMs: 100, maxDelayMs: 1_000 } })
    client.subscribe('a', recorder().listener)
    /** Drops the newest socket with `random` at `value`; returns when the next one was created (ms after the drop). */
    const delayAfterDrop = (value: number) => {
      roll = value
      const count = sockets.length
      sockets.at(-1)!.drop()
      let elapsed = 0
      while (sockets.length === count) {
        vi.advanceTimersByTime(1)
        elapsed++
        if (elapsed > 10_000) throw new Error('no reconnect')
      }
      return elapsed
    }
    // random() = 0 gives the shortest delay of each step, random() → 1 the longest.
    const shortest = [0, 0, 0, 0, 0, 0].map(() => delayAfterDrop(0))
    expect(shortest[1]).toBe(shortest[0]! * 2)
    expect(shortest[2]).toBe(shortest[1]! * 2)
    expect(shortest[3]).toBe(shortest[2]! * 2)
    expect(shortest[0]).toBeGreaterThanOrEqual(50)
    expect(shortest[0]).toBeLessThanOrEqual(100)
    expect(shortest.at(-1)).toBe(shortest.at(-2)) // capped
    expect(shortest.at(-1)).toBeLessThanOrEqual(1_000)
    const longest = delayAfterDrop(0.999999)
    expect(longest).toBeGreaterThan(shortest.at(-1)!)
    expect(longest).toBeLessThanOrEqual(1_000)
    expect(sockets.length).toBe(8)
  })

  it('starts the backoff over after a connection that reached the hello', () => {
    const { client, sockets } = fakeClient({ random: () => 0 })
    client.subscribe('a', recorder().listener)
    const firstDelay = () => {
      const count = sockets.length
      sockets.at(-1)!.drop()
      let elapsed = 0
      while (sockets.length === count) {
        vi.advanceTimersByTime(1)
        elapsed++
      }
      return elapsed
    }
    const initial = firstDelay()
    expect(firstDelay()).toBe(initial * 2)
    sockets.at(-1)!.open()
    expect(firstDelay()).toBe(initial)
  })

  it('reconnects after a slow-consumer close (4008) and resumes every key from its cursor, saying why', () => {
    const { client, sockets, socket, listeners: [listener], warnings } = liveClient(['a'], '0/10')
    socket.receive(tx('a', '0/20'))
    socket.drop(CloseCode.SLOW_CONSUMER)
    expect(listener!.status).toBe('reconnecting')
    expect(warnings).toEqual([expect.stringMatching(/did not keep up.*resuming from the last cursor/)])
    vi.advanceTimersByTime(100)
    expect(sockets).toHaveLength(2)
    const next = sockets[1]!
    next.open({ cursor: '0/30' })
    expect(next.take()).toEqual([{ type: 'sub', key: 'a', since: '0/20' }])
    next.receive(tx('a', '0/25'))
    next.receive({ type: 'subscribed', key: 'a', cursor: '0/30', replayed: 1 })
    expect(listener!.cursors).toEqual(['0/20', '0/25'])
    expect(listener!.status).toBe('live')
    expect(client.keyCount).toBe(1)
  })

  it('backs off when slow-consumer closes come one after another, though each socket reached its hello', () => {
    // No heartbeat in the way while the clock jumps.
    const { client, sockets } = fakeClient({ random: () => 0, heartbeatIntervalMs: 600_000 })
    client.subscribe('a', recorder().listener)
    sockets[0]!.open()
    /** Closes the newest (open) socket as a slow consumer; returns the delay until the next socket. */
    const delayAfterSlowClose = () => {
      const count = sockets.length
      sockets.at(-1)!.drop(CloseCode.SLOW_CONSUMER)
      let elapsed = 0
      while (sockets.length === count) {
        vi.advanceTimersByTime(1)
        elapsed++
      }
      sockets.at(-1)!.open()
      return elapsed
    }
    const first = delayAfterSlowClose()
    expect(delayAfterSlowClose()).toBe(first * 2)
    expect(delayAfterSlowClose()).toBe(first * 4)
    // A socket that lasted a while starts the streak over.
    vi.advanceTimersByTime(61_000)
    const count = sockets.length
    expect(delayAfterSlowClose()).toBe(first)
    expect(sockets).toHaveLength(count + 1)
  })

  it('does not open a socket while the reconnect delay runs, however many subscribe', () => {
    const { client, sockets, socket } = liveClient(['a'])
    socket.drop()
    client.subscribe('b', recorder().listener)
    expect(sockets).toHaveLength(1)
    vi.advanceTimersByTime(100)
    expect(sockets).toHaveLength(2)
  })

  it('resubscribes every key from its last cursor (from tx, subscribed and pong)', () => {
    const { client, sockets, socket } = fakeClient()
    client.subscribe('fromTx', recorder().listener, '0/5')
    client.subscribe('fromSubscribed', recorder().listener, '0/5')
    client.subscribe('fromPong', recorder().listener)
    client.subscribe('notLive', recorder().listener, '0/7')
    socket().open({ cursor: '0/10' })
    socket().receive({ type: 'subscribed', key: 'fromTx', cursor: '0/10', replayed: 0 })
    socket().receive({ type: 'subscribed', key: 'fromSubscribed', cursor: '0/10', replayed: 0 })
    socket().receive({ type: 'subscribed', key: 'fromPong', cursor: '0/10', replayed: 0 })
    socket().receive(tx('fromTx', '0/30'))
    socket().receive(tx('fromPong', '0/20'))
    vi.advanceTimersByTime(1_000) // the heartbeat's ping
    expect(socket().take().at(-1)).toMatchObject({ type: 'ping' })
    socket().receive({ type: 'pong', cursor: '0/25' })
    socket().drop()

    vi.advanceTimersByTime(100)
    expect(sockets).toHaveLength(2)
    sockets[1]!.open({ cursor: '0/40' })
    expect(sockets[1]!.take()).toEqual([
      { type: 'sub', key: 'fromTx', since: '0/30' },
      { type: 'sub', key: 'fromSubscribed', since: '0/25' },
      { type: 'sub', key: 'fromPong', since: '0/25' },
      { type: 'sub', key: 'notLive', since: '0/7' }, // never subscribed: its listener's cursor still counts
    ])
  })

  it('resumes a key from the cursor a catching-up listener needs', () => {
    const { client, sockets, socket } = liveClient(['a'], '0/50')
    const late = recorder()
    client.subscribe('a', late.listener, '0/20')
    socket.drop()
    vi.advanceTimersByTime(100)
    sockets[1]!.open()
    expect(sockets[1]!.take()).toEqual([{ type: 'sub', key: 'a', since: '0/20' }])
    sockets[1]!.receive(tx('a', '0/30'))
    sockets[1]!.receive({ type: 'subscribed', key: 'a', cursor: '0/50', replayed: 1 })
    expect(late.cursors).toEqual(['0/30'])
    expect(late.status).toBe('live')
  })

  it('replays for a listener that joined during the reconnect with a cursor older than the key\'s', () => {
    const { client, sockets, socket, listeners: [first] } = liveClient(['a'], '0/50')
    socket.drop()
    const late = recorder()
    client.subscribe('a', late.listener, '0/20')
    vi.advanceTimersByTime(100)
    const next = sockets[1]!
    next.open()
    expect(next.take()).toEqual([{ type: 'sub', key: 'a', since: '0/50' }])
    next.receive({ type: 'subscribed', key: 'a', cursor: '0/50', replayed: 0 })
    const [replay] = next.take()
    expect(replay).toEqual({ type: 'replay', key: 'a', since: '0/20', ref: expect.any(Number) })
    const { ref } = replay as { ref: number }
    next.receive(tx('a', '0/30', [], ref))
    next.receive({ type: 'replayed', key: 'a', ref, cursor: '0/50', replayed: 1 })
    next.receive(tx('a', '0/51'))
    expect(late.cursors).toEqual(['0/30', '0/51'])
    expect(first!.cursors).toEqual(['0/51'])
  })

  it('ignores frames of a socket it has left', () => {
    const { sockets, socket, listeners: [a] } = liveClient(['a'])
    socket.drop()
    vi.advanceTimersByTime(100)
    socket.receive(tx('a', '0/99'))
    sockets[1]!.open()
    sockets[1]!.receive({ type: 'subscribed', key: 'a', cursor: '0/10', replayed: 0 })
    sockets[1]!.receive(tx('a', '0/11'))
    expect(a!.cursors).toEqual(['0/11'])
  })

  it('keeps the socket closed and the timer idle once no key is left', () => {
    const { sockets, socket, stops } = liveClient(['a'])
    stops[0]!()
    socket.drop()
    vi.advanceTimersByTime(60_000)
    expect(sockets).toHaveLength(1)
  })
})

describe('odd cases', () => {
  it('warns and retries later when the socket cannot be created', () => {
    let fail = true
    const sockets: FakeSocket[] = []
    const { client, warnings } = fakeClient({
      createSocket: (url) => {
        if (fail) throw new Error('blocked by CSP')
        sockets.push(new FakeSocket(url))
        return sockets.at(-1)!
      },
    })
    const a = recorder()
    client.subscribe('a', a.listener)
    expect(warnings).toEqual([expect.stringMatching(/could not open the WebSocket: blocked by CSP/)])
    expect(a.status).toBe('reconnecting')
    fail = false
    vi.advanceTimersByTime(100)
    expect(sockets).toHaveLength(1)
    sockets[0]!.open()
    expect(sockets[0]!.take()).toEqual([{ type: 'sub', key: 'a' }])
  })

  it('shares one subscription between a number key and its string spelling', () => {
    const { client, socket } = liveClient(['5'])
    const numeric = recorder()
    client.subscribe(5, numeric.listener)
    expect(socket.take()).toEqual([])
    socket.receive(tx('5', '0/11'))
    expect(numeric.cursors).toEqual(['0/11'])
  })
})

describe('heartbeat', () => {
  it('sends a ping every interval while connected', () => {
    const { socket } = liveClient(['a'])
    vi.advanceTimersByTime(999)
    expect(socket.take()).toEqual([])
    for (let beat = 0; beat < 3; beat++) {
      vi.advanceTimersByTime(1)
      expect(socket.take()).toEqual([{ type: 'ping', t: expect.any(Number) }])
      socket.receive({ type: 'pong', cursor: '0/10' })
      vi.advanceTimersByTime(999)
    }
    expect(socket.closes).toEqual([])
  })

  it('closes the socket and reconnects when a ping gets no answer in time', () => {
    const { sockets, socket, listeners: [a] } = liveClient(['a'])
    vi.advanceTimersByTime(1_000)
    expect(socket.take()).toEqual([{ type: 'ping', t: expect.any(Number) }])
    vi.advanceTimersByTime(299)
    expect(socket.closes).toEqual([])
    vi.advanceTimersByTime(1)
    expect(socket.closes).toEqual([{ code: 4000, reason: 'heartbeat timeout' }])
    expect(a!.status).toBe('reconnecting')
    vi.advanceTimersByTime(100)
    expect(sockets).toHaveLength(2)
    socket.drop() // the old socket's late close event changes nothing
    expect(sockets).toHaveLength(2)
  })

  it('counts any frame as an answer to the ping', () => {
    const { socket } = liveClient(['a'])
    vi.advanceTimersByTime(1_000)
    expect(socket.take()).toEqual([{ type: 'ping', t: expect.any(Number) }])
    socket.receive(tx('a', '0/11'))
    vi.advanceTimersByTime(999) // past the answer's deadline, before the next ping
    expect(socket.closes).toEqual([])
  })

  it('sends no ping before the hello', () => {
    const { client, socket } = fakeClient()
    client.subscribe('a', recorder().listener)
    vi.advanceTimersByTime(10_000)
    expect(socket().sent).toEqual([])
  })
})

describe('statuses', () => {
  it('reports connecting, live, reconnecting and live again', () => {
    const { client, sockets } = fakeClient()
    const a = recorder()
    client.subscribe('a', a.listener)
    const socket = sockets[0]!
    socket.open()
    socket.receive({ type: 'subscribed', key: 'a', cursor: '0/10', replayed: 0 })
    socket.drop()
    vi.advanceTimersByTime(100)
    sockets[1]!.open()
    sockets[1]!.receive({ type: 'subscribed', key: 'a', cursor: '0/10', replayed: 0 })
    expect(distinct(a.statuses)).toEqual(['connecting', 'live', 'reconnecting', 'live'])
  })

  it('reports a status only when it changes', () => {
    const { client, sockets } = fakeClient()
    const a = recorder()
    client.subscribe('a', a.listener)
    client.subscribe('b', recorder().listener)
    sockets[0]!.open()
    sockets[0]!.receive({ type: 'subscribed', key: 'a', cursor: '0/10', replayed: 0 })
    sockets[0]!.receive({ type: 'subscribed', key: 'b', cursor: '0/10', replayed: 0 })
    expect(a.statuses).toEqual(distinct(a.statuses))
  })

  it('gives the listeners of a key an error frame about that key, and leaves the other keys live', () => {
    const { client, socket } = fakeClient()
    const a = recorder()
    const b = recorder()
    client.subscribe('a', a.listener)
    client.subscribe('b', b.listener)
    socket().open()
    socket().receive({ type: 'error', code: 'forbidden', message: '[live-sync] subscription to "a" refused', key: 'a' })
    socket().receive({ type: 'subscribed', key: 'b', cursor: '0/10', replayed: 0 })
    expect(a.status).toBe('error')
    expect(a.errors.at(-1)).toMatchObject({ message: '[live-sync] subscription to "a" refused', code: 'forbidden' })
    expect(b.status).toBe('live')
    expect(b.errors.at(-1)).toBeNull()
  })

  it('does not move a key whose sub failed forward with pongs', () => {
    const { client, sockets, socket } = fakeClient()
    client.subscribe('a', recorder().listener, '0/5')
    socket().open()
    socket().receive({ type: 'error', code: 'internal', message: 'boom', key: 'a' })
    vi.advanceTimersByTime(1_000)
    socket().receive({ type: 'pong', cursor: '0/90' })
    socket().drop()
    vi.advanceTimersByTime(100)
    sockets[1]!.open()
    // The listener's data is still at 0/5: nothing after it has reached it.
    expect(sockets[1]!.take()).toEqual([{ type: 'sub', key: 'a', since: '0/5' }])
  })

  it('clears a key\'s error when a later sub succeeds', () => {
    const { client, sockets, socket } = fakeClient()
    const a = recorder()
    client.subscribe('a', a.listener)
    socket().open()
    socket().receive({ type: 'error', code: 'unavailable', message: 'not yet', key: 'a' })
    socket().drop()
    vi.advanceTimersByTime(100)
    sockets[1]!.open()
    sockets[1]!.receive({ type: 'subscribed', key: 'a', cursor: '0/1', replayed: 0 })
    expect(a.status).toBe('live')
    expect(a.errors.at(-1)).toBeNull()
  })

  it('shows paused live updates as an error until the server\'s stream restarts with a resync', () => {
    const { client, socket } = fakeClient()
    const a = recorder()
    client.subscribe('a', a.listener)
    socket().open()
    socket().receive({ type: 'subscribed', key: 'a', cursor: null, replayed: 0 })
    socket().receive({ type: 'error', code: 'unavailable', message: '[live-sync] live updates are paused', key: 'a' })
    expect(a.status).toBe('error')
    socket().receive({ type: 'resync', key: 'a', cursor: '0/20', reason: 'gap' })
    expect(a.status).toBe('live')
    expect(a.errors.at(-1)).toBeNull()
    expect(a.received).toEqual([['resync', 'gap']])
  })

  it('gives up with status error on a protocol version mismatch in hello, and never reconnects', () => {
    const { client, sockets, socket } = fakeClient()
    const a = recorder()
    client.subscribe('a', a.listener)
    socket().open({ v: (PROTOCOL_VERSION + 1) as typeof PROTOCOL_VERSION })
    expect(a.status).toBe('error')
    expect(a.errors.at(-1)?.message).toMatch(/protocol/)
    expect(socket().closes).toEqual([{ code: 1002, reason: 'protocol version' }])
    expect(socket().sent).toEqual([])
    socket().drop()
    vi.advanceTimersByTime(120_000)
    client.subscribe('b', recorder().listener)
    expect(sockets).toHaveLength(1)
  })

  it('gives up on an unsupported-version error frame', () => {
    const { client, sockets, socket } = fakeClient()
    const a = recorder()
    client.subscribe('a', a.listener)
    socket().open()
    socket().receive({ type: 'error', code: 'unsupported-version', message: 'speak v2' })
    socket().drop()
    vi.advanceTimersByTime(120_000)
    expect(a.status).toBe('error')
    expect(sockets).toHaveLength(1)
  })

  it('tells the listeners when the client is closed, and does not reconnect', () => {
    const { client, sockets, socket, listeners: [a] } = liveClient(['a'])
    client.close()
    expect(socket.closes).toEqual([{ code: 1000, reason: 'client closed' }])
    expect(a!.status).toBe('error')
    vi.advanceTimersByTime(120_000)
    expect(sockets).toHaveLength(1)
  })

  it('ends a catch-up with status error when the server answers its replay with an error', () => {
    const { client, sockets, socket, listeners: [first] } = liveClient(['a'], '0/50')
    const late = recorder()
    client.subscribe('a', late.listener, '0/20')
    const { ref } = socket.take()[0] as { ref: number }
    socket.receive(tx('a', '0/51'))
    socket.receive({ type: 'error', code: 'internal', message: 'replay failed', key: 'a', ref })
    socket.receive(tx('a', '0/52'))
    expect(late.status).toBe('error')
    expect(late.cursors).toEqual(['0/51', '0/52'])
    expect(first!.status).toBe('live')

    // The next socket resumes the key from where that listener's data is.
    socket.drop()
    vi.advanceTimersByTime(100)
    sockets[1]!.open()
    expect(sockets[1]!.take()).toEqual([{ type: 'sub', key: 'a', since: '0/20' }])
    sockets[1]!.receive({ type: 'subscribed', key: 'a', cursor: '0/52', replayed: 0 })
    expect(late.status).toBe('live')
  })

  it('keeps a listener that is catching up connecting until its replay is done', () => {
    const { client, socket, listeners: [first] } = liveClient(['a'], '0/50')
    const late = recorder()
    client.subscribe('a', late.listener, '0/20')
    const { ref } = socket.take()[0] as { ref: number }
    expect(late.status).toBe('connecting')
    expect(first!.status).toBe('live')
    socket.receive({ type: 'replayed', key: 'a', ref, cursor: '0/50', replayed: 0 })
    expect(late.statuses).toEqual(['connecting', 'live'])
  })
})

describe('leaving and coming back to a key on one socket', () => {
  it('drops the frames of the old subscription that arrive before unsubscribed', () => {
    const { client, socket, stops } = liveClient(['a'], '0/10')
    stops[0]!()
    const again = recorder()
    client.subscribe('a', again.listener, '0/40')
    expect(socket.take()).toEqual([{ type: 'unsub', key: 'a' }, { type: 'sub', key: 'a', since: '0/40' }])
    // Still for the old subscription (sent before the server read the unsub):
    socket.receive(tx('a', '0/20'))
    socket.receive({ type: 'unsubscribed', key: 'a' })
    // For the new one:
    socket.receive(tx('a', '0/41'))
    socket.receive({ type: 'subscribed', key: 'a', cursor: '0/41', replayed: 1 })
    socket.receive(tx('a', '0/42'))
    expect(again.cursors).toEqual(['0/41', '0/42'])
    expect(distinct(again.statuses)).toEqual(['connecting', 'live'])
  })

  it('does not go live on the subscribed of the old subscription', () => {
    const { client, socket } = fakeClient()
    const stop = client.subscribe('a', recorder().listener)
    socket().open()
    stop()
    const again = recorder()
    client.subscribe('a', again.listener)
    socket().receive({ type: 'subscribed', key: 'a', cursor: '0/10', replayed: 0 })
    expect(again.status).toBe('connecting')
    socket().receive({ type: 'unsubscribed', key: 'a' })
    socket().receive({ type: 'subscribed', key: 'a', cursor: '0/11', replayed: 0 })
    expect(again.status).toBe('live')
  })
})

describe('knownCursor', () => {
  it('follows the newest position heard of in hello, tx, subscribed and pong', () => {
    const { client, socket } = fakeClient({ initialCursor: '0/5' })
    expect(client.knownCursor).toBe('0/5')
    client.subscribe('a', recorder().listener)
    socket().open({ cursor: '0/10' })
    expect(client.knownCursor).toBe('0/10')
    socket().receive({ type: 'subscribed', key: 'a', cursor: '0/12', replayed: 0 })
    expect(client.knownCursor).toBe('0/12')
    socket().receive(tx('a', '1/0'))
    expect(client.knownCursor).toBe('1/0')
    socket().receive({ type: 'pong', cursor: '0/FFFFFFFF' })
    expect(client.knownCursor).toBe('1/0') // never goes back
    socket().receive({ type: 'pong', cursor: '1/10' })
    expect(client.knownCursor).toBe('1/10')
  })

  it('takes the epoch from hello and the models from subscribed', () => {
    const { client, socket } = fakeClient()
    client.subscribe('a', recorder().listener)
    socket().open({ epoch: 'e-42' })
    expect(client.epoch).toBe('e-42')
    expect(client.models).toEqual({})
    socket().receive({ type: 'subscribed', key: 'a', cursor: '0/1', replayed: 0, models: { Membership: { id: ['userId', 'orgId'] } } })
    expect(client.models).toEqual({ Membership: { id: ['userId', 'orgId'] } })
  })
})

describe('snapshots', () => {
  it('asks after the key\'s sub, gathers the pages per model and resolves with the rows and the cursor', async () => {
    const { client, socket } = fakeClient()
    client.subscribe('a', recorder().listener)
    const snapshot = client.snapshot('a', [{ model: 'Task' }, { model: 'Project', include: ['tasks'] }])
    socket().open()
    const [sub, request] = socket().take()
    expect(sub).toEqual({ type: 'sub', key: 'a' })
    expect(request).toEqual({ type: 'snapshot', key: 'a', models: [{ model: 'Task' }, { model: 'Project', include: ['tasks'] }], ref: expect.any(Number) })
    const ref = (request as { ref: number }).ref
    socket().receive({ type: 'snapshot', key: 'a', ref, index: 0, rows: [{ id: 1 }] })
    socket().receive({ type: 'snapshot', key: 'a', ref, index: 1, rows: [{ id: 5, tasks: [] }] })
    socket().receive({ type: 'snapshot', key: 'a', ref, index: 0, rows: [{ id: 2 }] })
    socket().receive({ type: 'snapshotted', key: 'a', ref, cursor: '0/30', models: { OpenTask: { id: ['id'] } } })
    await expect(snapshot).resolves.toEqual({ cursor: '0/30', rows: [[{ id: 1 }, { id: 2 }], [{ id: 5, tasks: [] }]] })
    expect(client.models.OpenTask).toEqual({ id: ['id'] })
    expect(client.knownCursor).toBe('0/30')
  })

  it('asks again on the next socket when the socket drops before the answer, without the first socket\'s pages', async () => {
    const { client, socket, sockets } = liveClient(['a'])
    const snapshot = client.snapshot('a', [{ model: 'Task' }])
    const first = socket.take()[0] as { ref: number }
    socket.receive({ type: 'snapshot', key: 'a', ref: first.ref, index: 0, rows: [{ id: 1 }] })
    socket.drop()
    await vi.advanceTimersByTimeAsync(200)
    const next = sockets[1]!
    next.open()
    const frames = next.take()
    expect(frames.map(frame => frame.type)).toEqual(['sub', 'snapshot'])
    next.receive({ type: 'snapshot', key: 'a', ref: first.ref, index: 0, rows: [{ id: 2 }] })
    next.receive({ type: 'snapshotted', key: 'a', ref: first.ref, cursor: '0/40', models: {} })
    await expect(snapshot).resolves.toEqual({ cursor: '0/40', rows: [[{ id: 2 }]] })
  })

  it('rejects on the server\'s error for the request, when the key is unsubscribed, and for a key not subscribed', async () => {
    const { client, socket, stops } = liveClient(['a'])
    const refused = client.snapshot('a', [{ model: 'Nope' }])
    const { ref } = socket.take()[0] as { ref: number }
    socket.receive({ type: 'error', code: 'bad-request', message: 'model "Nope" is not watched', key: 'a', ref })
    await expect(refused).rejects.toThrow('model "Nope" is not watched')

    const abandoned = client.snapshot('a', [{ model: 'Task' }])
    stops[0]!()
    await expect(abandoned).rejects.toThrow(/unsubscribed before its snapshot/)
    await expect(client.snapshot('b', [{ model: 'Task' }])).rejects.toThrow(/not subscribed/)
  })

  it('rejects when the key\'s subscription is refused', async () => {
    const { client, socket } = fakeClient()
    client.subscribe('a', recorder().listener)
    const snapshot = client.snapshot('a', [{ model: 'Task' }])
    socket().open()
    socket().receive({ type: 'error', code: 'forbidden', message: 'not yours', key: 'a' })
    await expect(snapshot).rejects.toThrow('not yours')
  })
})
