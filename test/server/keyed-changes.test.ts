/**
 * KeyedChanges, the open transaction's changes by key: parts become ready at
 * their size, and a transaction dropped as too large (cluster mode) keeps
 * only which keys it touched, up to a bound.
 */
import { describe, expect, it } from 'vitest'
import { KeyedChanges } from '../../src/runtime/server/engine/change-router'

describe('KeyedChanges', () => {
  it('lists a key as ready once its changes reach its part size (an eighth for its first part)', () => {
    const changes = new KeyedChanges(80)
    changes.push('a', 'x'.repeat(8))
    expect(changes.ready).toEqual([])
    changes.push('a', 'x'.repeat(8))
    expect(changes.ready).toEqual(['a'])
    expect(changes.take('a')).toHaveLength(2)
    expect(changes.chars).toBe(0)
  })

  it('after dropChanges holds no change, only the keys touched, and past maxKeys only that there were too many', () => {
    const changes = new KeyedChanges()
    changes.push('a', 'x'.repeat(100))
    changes.push('b', 'y')
    changes.dropChanges(3)
    expect(changes.chars).toBe(0)
    expect(changes.size).toBe(0)
    changes.push('c', 'z'.repeat(1000))
    changes.push('a', 'x')
    expect(changes.chars).toBe(0)
    expect(changes.dropped).toEqual(new Set(['a', 'b', 'c']))
    changes.push('d', 'w')
    expect(changes.dropped).toBe('all')
    changes.push('e', 'v')
    expect(changes.dropped).toBe('all')
    expect(changes.size).toBe(0)
  })
})
