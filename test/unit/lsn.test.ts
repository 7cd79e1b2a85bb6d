import { describe, expect, it } from 'vitest'
import { compareLsn, isLsn, lsnToNumber, maxLsn, normalizeLsn, previousLsn } from '../../src/runtime/shared/lsn'

describe('isLsn', () => {
  it('accepts both spellings and rejects anything else', () => {
    expect(isLsn('0/16B3F80')).toBe(true)
    expect(isLsn('00000000/0152BF30')).toBe(true)
    expect(isLsn('a/b')).toBe(true)
    for (const bad of ['', '0', '/1', '1/', '0/123456789', 'g/1', ' 0/1', 0, null, undefined, {}]) expect(isLsn(bad)).toBe(false)
  })
})

describe('normalizeLsn', () => {
  it('drops leading zeros of the padded spelling', () => {
    expect(normalizeLsn('00000000/0152BF30')).toBe('0/152BF30')
    expect(normalizeLsn('00000001/00000000')).toBe('1/0')
  })

  it('upper-cases hex digits', () => {
    expect(normalizeLsn('a/16b3f80')).toBe('A/16B3F80')
  })

  it('keeps the short spelling as it is', () => {
    expect(normalizeLsn('0/152BF60')).toBe('0/152BF60')
    expect(normalizeLsn('0/0')).toBe('0/0')
  })

  it('maps both spellings of one position to the same string', () => {
    expect(normalizeLsn('0000002A/00FF0000')).toBe(normalizeLsn('2a/ff0000'))
  })
})

describe('compareLsn', () => {
  it('orders by the low word when the high words are equal', () => {
    expect(compareLsn('0/10', '0/F')).toBeGreaterThan(0)
    expect(compareLsn('0/F', '0/10')).toBeLessThan(0)
  })

  it('treats the two spellings of one position as equal', () => {
    expect(compareLsn('00000000/0152BF30', '0/152BF30')).toBe(0)
    expect(compareLsn('1/a', '00000001/0000000A')).toBe(0)
  })

  it('compares the high word first (not as strings, not only the low word)', () => {
    expect(compareLsn('1/0', '0/FFFFFFFF')).toBeGreaterThan(0)
    expect(compareLsn('0/FFFFFFFF', '1/0')).toBeLessThan(0)
    // As strings '10/0' < '9/0'; as positions it is the other way round.
    expect(compareLsn('10/0', '9/0')).toBeGreaterThan(0)
    expect(compareLsn('2/1', '1/FFFFFFFF')).toBeGreaterThan(0)
  })

  it('works as a sort comparator', () => {
    const sorted = ['1/0', '0/A', 'A/0', '0/FFFFFFFF', '0/9'].sort(compareLsn)
    expect(sorted).toEqual(['0/9', '0/A', '0/FFFFFFFF', '1/0', 'A/0'])
  })

  it('is exact for large high words', () => {
    expect(lsnToNumber('FFFF/FFFFFFFF')).toBe(0xFFFF * 2 ** 32 + 0xFFFFFFFF)
    expect(compareLsn('FFFF/1', 'FFFF/0')).toBe(1)
  })
})

describe('maxLsn', () => {
  it('returns the later of two positions', () => {
    expect(maxLsn('0/10', '0/F')).toBe('0/10')
    expect(maxLsn('0/FFFFFFFF', '1/0')).toBe('1/0')
  })

  it('counts null and undefined as before everything', () => {
    expect(maxLsn(null, '0/5')).toBe('0/5')
    expect(maxLsn('0/5', null)).toBe('0/5')
    expect(maxLsn(undefined, '0/5')).toBe('0/5')
    expect(maxLsn(null, null)).toBeNull()
    expect(maxLsn(undefined, undefined)).toBeNull()
  })

  it('returns one of the inputs for equal positions in different spellings', () => {
    expect(['0/10', '00000000/00000010']).toContain(maxLsn('0/10', '00000000/00000010'))
  })
})

describe('previousLsn', () => {
  it('steps one byte back, across the word boundary, and stops at 0/0', () => {
    expect(previousLsn('0/10')).toBe('0/F')
    expect(previousLsn('2/0')).toBe('1/FFFFFFFF')
    expect(previousLsn('0/0')).toBe('0/0')
  })
})
