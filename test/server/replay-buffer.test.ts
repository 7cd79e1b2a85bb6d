import { describe, expect, it } from 'vitest'
import { encodeChange, KeyBatch } from '../../src/runtime/server/engine/key-batch'
import { ReplayBuffer } from '../../src/runtime/server/engine/replay-buffer'

const batch = (key: string, lo: number, rows: number, at = 0) =>
  new KeyBatch(key, `0/${lo.toString(16).toUpperCase()}`, Array.from({ length: rows }, (_, i) => encodeChange({ op: 'insert', model: 'M', id: i, row: {} })), at)

describe('replay buffer', () => {
  it('returns a key\'s batches after a cursor, oldest first', () => {
    const buffer = new ReplayBuffer()
    buffer.reset('0/0')
    for (const [key, lo] of [['a', 1], ['b', 2], ['a', 3], ['a', 4]] as const) buffer.add(batch(key, lo, 1))
    expect(buffer.since('a', '0/1')!.map(b => b.cursor)).toEqual(['0/3', '0/4'])
    expect(buffer.since('a', '0/0')!.map(b => b.cursor)).toEqual(['0/1', '0/3', '0/4'])
    expect(buffer.since('b', '0/4')).toEqual([])
    expect(buffer.since('c', '0/0')).toEqual([])
  })

  it('evicts the oldest batches beyond the row limit and raises the floor', () => {
    const buffer = new ReplayBuffer({ maxRows: 5 })
    buffer.reset('0/0')
    buffer.add(batch('a', 1, 2))
    buffer.add(batch('b', 2, 2))
    buffer.add(batch('a', 3, 2)) // 6 rows: the first batch goes
    expect(buffer.size).toEqual({ batches: 2, rows: 4, keys: 2 })
    expect(buffer.floor).toBe('0/1')
    expect(buffer.since('a', '0/0')).toBeNull() // would miss 0/1
    expect(buffer.since('a', '0/1')!.map(b => b.cursor)).toEqual(['0/3'])
  })

  it('evicts by age', () => {
    const buffer = new ReplayBuffer({ maxAgeMs: 1000 })
    buffer.reset('0/0')
    buffer.add(batch('a', 1, 1, 0))
    buffer.add(batch('a', 2, 1, 500))
    buffer.add(batch('a', 3, 1, 1600)) // older than 600 ms before it: both others go
    expect(buffer.floor).toBe('0/2')
    expect(buffer.since('a', '0/1')).toBeNull()
    expect(buffer.since('a', '0/2')!.map(b => b.cursor)).toEqual(['0/3'])
  })

  it('serializes a batch once however many times its frame is asked for', () => {
    const b = batch('a', 1, 3)
    expect(b.frame()).toBe(b.frame())
    expect(JSON.parse(b.frame())).toEqual({ type: 'tx', key: 'a', cursor: '0/1', changes: [0, 1, 2].map(id => ({ op: 'insert', model: 'M', id, row: {} })) })
    expect(JSON.parse(b.replayFrame(9))).toEqual({ ...JSON.parse(b.frame()), ref: 9 })
    expect(b.size).toBe(3)
    // Once encoded for sockets, the bytes are the one copy kept; the text and replays derive from them.
    const text = b.frame()
    expect(b.frameBytes()).toBe(b.frameBytes())
    expect(b.frame()).toBe(text)
    expect(JSON.parse(b.replayFrame(3)).ref).toBe(3)
    expect(b.changes).toHaveLength(3)
  })
})

describe('a transaction too large for the history', () => {
  it('is discarded whole (its newest batches with its cursors) and the floor raised to it', () => {
    const buffer = new ReplayBuffer()
    buffer.reset('0/0')
    buffer.add(batch('a', 1, 1))
    buffer.add(batch('a', 0x10, 3))
    buffer.add(batch('b', 0x10, 3))
    buffer.add(batch('a', 0x20, 1))
    buffer.discard('0/10', '0/20')
    expect(buffer.size).toEqual({ batches: 1, rows: 1, keys: 1 })
    expect(buffer.floor).toBe('0/20')
    expect(buffer.since('a', '0/1')).toBeNull()
    expect(buffer.since('a', '0/20')).toEqual([])
  })
})

describe('a transaction\'s changes by key', () => {
  it('lists a key once its changes reach the part size: an eighth of it for its first part', async () => {
    const { KeyedChanges } = await import('../../src/runtime/server/engine/change-router')
    const changes = new KeyedChanges(800)
    for (let i = 0; i < 9; i++) changes.push('a', 'x'.repeat(9)) // 10 characters each, with the comma
    expect(changes.ready).toEqual([])
    changes.push('a', 'x'.repeat(9))
    expect(changes.ready).toEqual(['a']) // 100 = 800 / 8
    changes.ready = []
    expect(changes.take('a')).toHaveLength(10)
    expect(changes.chars).toBe(0)
    for (let i = 0; i < 79; i++) changes.push('a', 'x'.repeat(9))
    expect(changes.ready).toEqual([])
    changes.push('a', 'x'.repeat(9)) // 800: a full part
    changes.push('b', 'y')
    expect(changes.ready).toEqual(['a'])
    expect(changes.chars).toBe(802)
  })
})
